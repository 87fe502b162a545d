"""Storage containment attacked over real HTTP: aws.upload paths that try to reach another
storage user's folder or the system through encodings at the JSON and form layers, look-alike
characters, NUL bytes and symlinks (to a file, and as a parent folder); and the worker-time race
where a queued file is swapped for a symlink before the worker opens it. Nothing is queued,
and the other user's bytes never reach S3.

The path parser itself is covered character by character in tests/unit/test_storage.py, and
the plain '..' / '/' / symlink-to-file refusals over HTTP in
tests/integration/test_upload_checks.py; these are the combinations those do not send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.envelopes import envelope_of, ok, refused
from tests.security.support import compact, post_json, request_object, signed_text, upload_count
from tests.service import RunningService, make_settings, running_service
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.signature import compute_signature

BUCKET = "storage-attacks"
BOB_BYTES = b"BOB-PRIVATE-VIDEO-0123456789"
PASSWD = Path("/etc/passwd")


@pytest.fixture(scope="module")
def s3(moto_endpoint: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def svc(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, s3: Any
) -> Iterator[RunningService]:
    settings = make_settings(tmp_path_factory.mktemp("storage-attacks"))
    with running_service(settings, moto_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def alice(svc: RunningService) -> IssuedCredentials:
    issued = svc.add_account(6001, "alice")
    svc.write_source("sestore1/alice/clip.mp4", b"alice's own video")
    return issued


@pytest.fixture(scope="module")
def bob(svc: RunningService) -> IssuedCredentials:
    issued = svc.add_account(6002, "bob")
    svc.write_source("sestore1/bob/secret.mp4", BOB_BYTES)
    svc.write_source("sestore2/bob/secret.mp4", BOB_BYTES)
    return issued


def signed_raw(issued: IssuedCredentials, raw_path_literal: str) -> str:
    """An aws.upload whose path is written into the JSON text exactly as given (escapes and
    all), signed over that text as a client that builds its JSON by hand would."""
    head = compact(request_object(issued, "aws.upload", bucket=BUCKET, acl="private"))
    text = head[:-1] + ',"path":' + raw_path_literal + "}"
    signature = compute_signature(issued.secret, text)
    return text[:-1] + f',"signature":"{signature}"}}'


def assert_refused_and_nothing_queued(
    svc: RunningService,
    response: httpx.Response,
    status: int,
    expected: str,
    *accounts: IssuedCredentials,
    before: list[int],
) -> None:
    message = refused(response, status, expected)
    assert BOB_BYTES.decode() not in response.text
    assert "root:" not in response.text  # no line of /etc/passwd
    assert str(svc.storage_root) not in message
    assert [upload_count(svc, a) for a in accounts] == before


# -- paths that are refused before touching the disk -----------------------------------------

RAW_PATHS = {
    # JSON escapes decode to the characters the parser then refuses.
    "json-escaped dots and slashes": (r'"sestore1\/alice\/\u002e\u002e\/bob\/secret.mp4"', 400),
    "json-escaped NUL": (r'"sestore1/alice/clip.mp4\u0000/../../bob/secret.mp4"', 400),
    "json-escaped fullwidth dots": (r'"sestore1/alice/\uff0e\uff0e/bob/secret.mp4"', 400),
    "raw two dot leader": ('"sestore1/alice/\u2025/bob/secret.mp4"', 400),
    "json-escaped division slash": (r'"sestore1/alice/..\u2215bob\u2215secret.mp4"', 400),
    "encoded dot dot": ('"sestore1/alice/%2e%2e/bob/secret.mp4"', 400),
    "backslash traversal": (r'"sestore1/alice/..\\bob\\secret.mp4"', 400),
    "traversal above the volume": ('"../sestore1/bob/secret.mp4"', 400),
    "absolute system file": ('"/etc/passwd"', 400),
    "storage user in another case": ('"sestore1/Bob/secret.mp4"', 403),
    "fullwidth storage user": (r'"sestore1/\uff41lice/../bob/secret.mp4"', 400),
    "storage user with a trailing space": ('"sestore1/bob /secret.mp4"', 403),
}


@pytest.mark.parametrize("case", RAW_PATHS, ids=list(RAW_PATHS))
def test_encoded_and_lookalike_paths_are_refused(
    svc: RunningService,
    http: httpx.Client,
    alice: IssuedCredentials,
    bob: IssuedCredentials,
    case: str,
) -> None:
    literal, status = RAW_PATHS[case]
    before = [upload_count(svc, alice), upload_count(svc, bob)]
    response = post_json(http, svc.url, signed_raw(alice, literal))
    expected = "not in your storage folder" if status == 403 else "Path"
    assert_refused_and_nothing_queued(svc, response, status, expected, alice, bob, before=before)


def test_double_encoding_through_the_form_layer_is_refused(
    svc: RunningService, http: httpx.Client, alice: IssuedCredentials
) -> None:
    """The form body is URL-decoded once (that is the transport); the path inside is never
    decoded again, and a '%2e' left after the first decoding is refused, not followed."""
    text = signed_text(
        alice,
        "aws.upload",
        path="sestore1/alice/%2e%2e/bob/secret.mp4",
        bucket=BUCKET,
        acl="private",
    )
    body = "json=" + text.replace("%", "%25").replace("&", "%26").replace("+", "%2B")
    before = [upload_count(svc, alice)]
    response = http.post(
        svc.url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_refused_and_nothing_queued(svc, response, 400, "URL-encoded", alice, before=before)


# -- symlinks the customer planted in their own folder ---------------------------------------


def _plant(case: str, folder: Path, storage_root: Path) -> str:
    """Create the links of ``case`` in ``folder`` (a subfolder of alice's, two levels below
    the volume); returns the path, relative to ``folder``, to ask for."""
    bob_file = "../../bob/secret.mp4"
    if case == "relative link to the other user's file":
        (folder / "rel.mp4").symlink_to(bob_file)
        return "rel.mp4"
    if case == "parent folder linked to the other user's folder":
        (folder / "shared").symlink_to("../../bob", target_is_directory=True)
        return "shared/secret.mp4"
    if case == "parent folder linked to /etc":
        (folder / "etc").symlink_to("/etc", target_is_directory=True)
        return "etc/passwd"
    if case == "link to the volume above":
        (folder / "up").symlink_to("../..", target_is_directory=True)
        return "up/bob/secret.mp4"
    if case == "chain of two links":
        (folder / "hop2.mp4").symlink_to(bob_file)
        (folder / "hop1.mp4").symlink_to("hop2.mp4")
        return "hop1.mp4"
    if case == "link to /etc/passwd":
        (folder / "passwd.mp4").symlink_to(PASSWD)
        return "passwd.mp4"
    if case == "link to the process environment":
        # Followed, this would upload the service's environment (and its master key).
        (folder / "env.mp4").symlink_to("/proc/self/environ")
        return "env.mp4"
    if case == "link to the other user's file on another volume":
        (folder / "vol2.mp4").symlink_to(storage_root / "sestore2" / "bob" / "secret.mp4")
        return "vol2.mp4"
    raise AssertionError(case)


SYMLINK_CASES = [
    "relative link to the other user's file",
    "parent folder linked to the other user's folder",
    "parent folder linked to /etc",
    "link to the volume above",
    "chain of two links",
    "link to /etc/passwd",
    "link to the process environment",
    "link to the other user's file on another volume",
]


@pytest.mark.parametrize("case", SYMLINK_CASES)
def test_symlinks_out_of_the_folder_are_refused(
    svc: RunningService,
    http: httpx.Client,
    alice: IssuedCredentials,
    bob: IssuedCredentials,
    case: str,
) -> None:
    sub = f"links{SYMLINK_CASES.index(case)}"
    folder = svc.storage_root / "sestore1" / "alice" / sub
    folder.mkdir()
    path = f"sestore1/alice/{sub}/{_plant(case, folder, svc.storage_root)}"
    # The planted links do reach the target: only the service's checks stand in the way.
    assert (svc.storage_root / path).resolve().exists()
    before = [upload_count(svc, alice), upload_count(svc, bob)]
    response = post_json(
        http, svc.url, signed_text(alice, "aws.upload", path=path, bucket=BUCKET, acl="private")
    )
    assert_refused_and_nothing_queued(
        svc, response, 403, "leads outside your storage folder", alice, bob, before=before
    )


# -- the worker-time race ----------------------------------------------------------------------


def _bucket_bodies(s3: Any) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {
        item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listed
    }


def test_file_or_folder_swapped_for_a_symlink_after_queueing_is_refused_by_the_worker(
    svc: RunningService,
    http: httpx.Client,
    alice: IssuedCredentials,
    bob: IssuedCredentials,
    s3: Any,
) -> None:
    folder = svc.storage_root / "sestore1" / "alice"

    def queue(path: str, key: str) -> int:
        text = signed_text(
            alice, "aws.upload", path=path, bucket=BUCKET, acl="private", destination_path=key
        )
        return int(ok(post_json(http, svc.url, text))["data"]["id"])

    svc.write_source("sestore1/alice/race/swap.mp4", b"alice's file that will be swapped")
    svc.write_source("sestore1/alice/dir/secret.mp4", b"alice's file in a folder")
    svc.write_source("sestore1/alice/control.mp4", b"alice's control file")
    file_swap = queue("sestore1/alice/race/swap.mp4", "race/file-swap.mp4")
    parent_swap = queue("sestore1/alice/dir/secret.mp4", "race/parent-swap.mp4")
    control = queue("sestore1/alice/control.mp4", "race/control.mp4")

    # After the API's checks, before any worker: the file becomes a link to bob's file, and
    # the folder becomes a link to bob's folder (which holds a secret.mp4).
    (folder / "race" / "swap.mp4").unlink()
    (folder / "race" / "swap.mp4").symlink_to(svc.storage_root / "sestore1" / "bob" / "secret.mp4")
    (folder / "dir").rename(folder / "dir.old")
    (folder / "dir").symlink_to(svc.storage_root / "sestore1" / "bob", target_is_directory=True)

    svc.drain()

    def record(upload_id: int) -> dict[str, Any]:
        text = signed_text(alice, "aws.status", id=upload_id)
        data: dict[str, Any] = ok(post_json(http, svc.url, text))["data"]
        return data

    assert record(control)["state"] == "completed"  # the worker and S3 do work
    for upload_id in (file_swap, parent_swap):
        swapped = record(upload_id)
        assert (swapped["state"], swapped["error_code"]) == ("failed", "PathOutsideFolder")
        assert str(svc.storage_root) not in swapped["message"]
        assert swapped["results"] == {}

    bodies = _bucket_bodies(s3)
    assert set(bodies) == {"race/control.mp4"}
    for body in bodies.values():
        assert BOB_BYTES not in body
    # Bob's files are untouched and nobody else queued anything for them.
    assert (svc.storage_root / "sestore1" / "bob" / "secret.mp4").read_bytes() == BOB_BYTES
    assert upload_count(svc, bob) == 0


def test_another_users_file_hard_linked_into_the_folder_is_refused(
    svc: RunningService,
    http: httpx.Client,
    alice: IssuedCredentials,
    bob: IssuedCredentials,
    s3: Any,
) -> None:
    """A hard link is the same file under a second name: containment of the name says
    nothing about whose bytes they are. Refused by the API, and by the worker when the link
    is swapped in after the upload was queued."""
    folder = svc.storage_root / "sestore1" / "alice"
    bobs = svc.storage_root / "sestore1" / "bob" / "secret.mp4"
    (folder / "linked.mp4").hardlink_to(bobs)
    before = [upload_count(svc, alice)]
    text = signed_text(
        alice, "aws.upload", path="sestore1/alice/linked.mp4", bucket=BUCKET, acl="private"
    )
    assert_refused_and_nothing_queued(
        svc, post_json(http, svc.url, text), 403, "hard links", alice, before=before
    )

    svc.write_source("sestore1/alice/later.mp4", b"alice's file, then a link to bob's")
    queued = signed_text(
        alice,
        "aws.upload",
        path="sestore1/alice/later.mp4",
        bucket=BUCKET,
        acl="private",
        destination_path="links/later.mp4",
    )
    upload_id = int(ok(post_json(http, svc.url, queued))["data"]["id"])
    (folder / "later.mp4").unlink()
    (folder / "later.mp4").hardlink_to(bobs)
    svc.drain()
    status = signed_text(alice, "aws.status", id=upload_id)
    record = ok(post_json(http, svc.url, status))["data"]
    assert (record["state"], record["error_code"]) == ("failed", "SourceHardLinked")
    assert not any(key.startswith("links/") for key in _bucket_bodies(s3))


def test_refusals_left_the_service_serving(
    svc: RunningService, http: httpx.Client, alice: IssuedCredentials
) -> None:
    response = post_json(http, svc.url, signed_text(alice, "aws.status", limit=1000))
    records = envelope_of(response)["data"]
    assert response.status_code == 200
    assert all(r["cdn_id"] == alice.cdn for r in records)
