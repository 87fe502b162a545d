"""ScaleEngine clients as their users write them, in their own languages, from Debian's
packages: Perl (libwww-perl, JSON, Digest::SHA), Ruby (rest-client) and PHP (curl). Each
queues an upload, reads its status, and, for a wrong secret, reaches its own failure branch
with vod2s3's message when failures come with HTTP 200 (issue 13, items 8 and 10)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import missing_requirement, php_binary
from tests.service import RunningService, make_settings, running_service
from vod2s3.api.auth import BAD_CREDENTIALS

CLIENTS = Path(__file__).resolve().parent / "clients"
METADATA = '{"title":"My Show \u00e9p/1"}'


def interpreter(name: str) -> list[str]:
    """How to run one client: perl and ruby must be there (with their libraries) in CI."""
    if name == "php":
        return [php_binary(), str(CLIENTS / "scaleengine.php")]
    binary = shutil.which(name)
    libraries = {
        "perl": ["-MLWP::UserAgent", "-MJSON", "-MDigest::SHA", "-e1"],
        "ruby": ["-rrest-client", "-rjson", "-e1"],
    }[name]
    if binary is None or subprocess.run([binary, *libraries], capture_output=True).returncode:
        missing_requirement(
            f"{name} with its HTTP and JSON libraries is not installed "
            "(.ci/run installs libwww-perl, libjson-perl, ruby-rest-client)"
        )
    script = CLIENTS / f"scaleengine.{'pl' if name == 'perl' else 'rb'}"
    return [binary, str(script)]


# Each client, with the arguments it takes before its fields.
STACKS = {
    "perl-lwp-urlencoded": ("perl", []),
    "ruby-rest-client-multipart": ("ruby", []),
    "php-curl-urlencoded-%20": ("php", ["%20"]),
    "php-curl-urlencoded-plus": ("php", ["+"]),
}


def run_client(stack: str, svc: RunningService, secret: str, api_key: str, *fields: str) -> str:
    name, extra = STACKS[stack]
    done = subprocess.run(
        [*interpreter(name), svc.url, api_key, secret, "158", *fields[:1], *extra, *fields[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(params=["200", "native"])
def svc(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
) -> Iterator[RunningService]:
    settings = make_settings(tmp_path, failure_http_status=request.param)
    with running_service(settings, s3_endpoint) as running:
        yield running


@pytest.mark.parametrize("stack", list(STACKS))
def test_a_scaleengine_client_queues_reads_and_sees_failures(
    stack: str, svc: RunningService, bucket: str
) -> None:
    issued = svc.add_account(158, "jb")
    path = svc.write_source("sestore1/jb/show 1/ép.mp4", b"video")
    key, secret = issued.api_key, issued.secret

    queued = run_client(
        stack,
        svc,
        secret,
        key,
        "aws.upload",
        f"path={path}",
        f"bucket={bucket}",
        "acl=private",
        f"metadata={METADATA}",
    )
    assert queued.startswith("SUCCESS "), queued
    upload_id = svc.runtime.uploads.latest(svc.runtime.accounts.get(158).id, 1, 0)[0].id
    assert f'"id":{upload_id}' in queued.replace(": ", ":")
    status = run_client(stack, svc, secret, key, "aws.status", f"id={upload_id}")
    assert status.startswith("SUCCESS "), status
    assert '"state":"queued"' in status.replace(": ", ":")

    wrong = run_client(stack, svc, "0" * 64, key, "aws.status")

    if svc.runtime.settings.failure_http_status == "200":
        assert wrong.startswith(f"FAILURE 0001: {BAD_CREDENTIALS}"), wrong
    elif stack.startswith("perl"):
        assert wrong == "HTTP-ERROR 401"  # LWP's is_success: the message is never read
    elif stack.startswith("ruby"):
        assert wrong == "EXCEPTION RestClient::Unauthorized"
    else:
        # PHP's curl hands over any body: the failure branch is reached either way.
        assert wrong == f"FAILURE 0001: {BAD_CREDENTIALS} (HTTP 401)"
