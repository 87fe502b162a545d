"""Account states that mean something (issue 15): a disabled account's uploads wait and
resume, a running one goes back to the queue with its parts kept, and `accounts delete`
removes an account, its records and what it left on S3. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import KINDS, database_url
from tests.faultproxy import FaultProxy, Rule
from tests.service import VOD2S3, RunningService, make_settings, running_service
from vod2s3.accounts import WAITING_WHILE_DISABLED
from vod2s3.client import ClientError

MiB = 1024 * 1024


@pytest.fixture(params=KINDS)
def slow(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
) -> Iterator[tuple[RunningService, FaultProxy]]:
    """The service on either database, its parts sent one at a time through a proxy that
    can slow them down."""
    with (
        database_url(str(request.param), tmp_path) as url,
        FaultProxy(s3_endpoint) as proxy,
        running_service(
            make_settings(tmp_path, database_url=url, parts_in_flight=1), proxy.url
        ) as running,
    ):
        yield running, proxy


def cli(
    service: RunningService, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    settings = service.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env.update(
        VOD2S3_DATABASE_URL=settings.database_url,
        VOD2S3_MASTER_KEY=settings.master_key,
        VOD2S3_STORAGE_ROOT=str(settings.storage_root),
    )
    done = subprocess.run(
        [VOD2S3, *args],
        env=env,
        stdin=subprocess.DEVNULL,  # a question is answered by end of input: "no"
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    if check:
        assert done.returncode == 0, f"{args}: {done.stderr}"
    return done


def open_uploads(s3_client: Any, bucket: str) -> list[Any]:
    return list(s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_a_disabled_accounts_queued_upload_waits_then_resumes(
    slow: tuple[RunningService, FaultProxy], s3_client: Any, bucket: str
) -> None:
    service, proxy = slow
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    upload_id = api.upload(service.write_source("sestore1/jb/d.mp4", b"wait"), bucket, "private")[
        "id"
    ]
    disabled = cli(service, "accounts", "disable", "--cdn", "158")
    assert "1 queued uploads wait" in disabled.stdout

    assert service.drain() == 0  # nothing a worker may start
    account_id = service.runtime.accounts.get(158).id
    record = service.runtime.uploads.get(account_id, upload_id)
    assert record is not None
    assert (record.state, record.message, record.attempts) == ("queued", WAITING_WHILE_DISABLED, 0)
    assert proxy.count("PutObject") == 0  # its credentials were never used

    assert (
        "1 waiting uploads queued again"
        in cli(service, "accounts", "enable", "--cdn", "158").stdout
    )
    assert service.drain() == 1
    assert api.get(upload_id)["state"] == "completed"


def test_a_running_upload_stops_at_its_next_part_and_keeps_its_parts(
    slow: tuple[RunningService, FaultProxy], s3_client: Any, bucket: str
) -> None:
    service, proxy = slow
    proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=1.0, times=-1))
    api = service.client(service.add_account(158, "jb"))
    data = os.urandom(12 * 5 * MiB)  # 12 parts, one at a time, a second each
    upload_id = api.upload(service.write_source("sestore1/jb/big.mp4", data), bucket, "private")[
        "id"
    ]
    account_id = service.runtime.accounts.get(158).id
    worker = service.runtime.worker(concurrency=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: api.get(upload_id)["bytes_uploaded"] > 0, "the upload to start")
        service.runtime.accounts.set_disabled(158, True)
        # Workers see an account's state within their account cache's 5 seconds.
        wait_for(lambda: _state(service, account_id, upload_id) == "queued", "the upload to stop")
        record = service.runtime.uploads.get(account_id, upload_id)
        assert record is not None
        assert (record.message, record.attempts) == (WAITING_WHILE_DISABLED, 0)
        multipart, kept = service.stored_multipart(upload_id)
        assert multipart is not None
        assert 0 < len(kept) < 12  # its parts are kept
        assert len(open_uploads(s3_client, bucket)) == 1  # and nothing was aborted

        proxy.clear()  # its rules and its counts
        service.runtime.accounts.set_disabled(158, False)
        wait_for(lambda: _state(service, account_id, upload_id) == "completed", "completion")
    finally:
        worker.stopping.set()
        thread.join(timeout=30)
    # Resumed, not restarted: only the parts not yet confirmed were sent again.
    assert proxy.count("UploadPart") == 12 - len(kept)
    assert proxy.count("CreateMultipartUpload") == 0
    stored = s3_client.get_object(Bucket=bucket, Key=api.get(upload_id)["destination_path"])
    assert stored["Body"].read() == data


def _state(service: RunningService, account_id: int, upload_id: int) -> str:
    record = service.runtime.uploads.get(account_id, upload_id)
    assert record is not None
    return record.state


def wait_for(done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_accounts_delete_refuses_active_uploads_then_cancels_aborts_and_deletes(
    slow: tuple[RunningService, FaultProxy], s3_client: Any, bucket: str
) -> None:
    service, proxy = slow
    proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=1.0, times=-1))
    issued = service.add_account(158, "jb")
    service.runtime.accounts.set_aws(158, "testing", "testing", "us-east-1", service.s3_endpoint)
    keep = service.client(service.add_account(159, "kb"))
    api = service.client(issued)
    kept_id = keep.upload(service.write_source("sestore1/kb/k.mp4", b"kept"), bucket, "private")[
        "id"
    ]
    done_id = api.upload(service.write_source("sestore1/jb/a.mp4", b"done"), bucket, "private")[
        "id"
    ]
    service.drain()
    # 12 parts, a second each: still running after the three commands below.
    big = service.write_source("sestore1/jb/big.mp4", os.urandom(12 * 5 * MiB))
    running_id = api.upload(big, bucket, "private")["id"]
    worker = service.runtime.worker(concurrency=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: api.get(running_id)["bytes_uploaded"] > 0, "the upload to start")
        assert len(open_uploads(s3_client, bucket)) == 1

        refused = cli(service, "accounts", "delete", "--cdn", "158", "--yes", check=False)
        assert refused.returncode != 0
        assert "1 queued or running uploads" in refused.stderr
        assert "--cancel-uploads" in refused.stderr
        unasked = cli(
            service, "accounts", "delete", "--cdn", "158", "--cancel-uploads", check=False
        )
        assert unasked.returncode != 0  # no --yes and nobody to answer: nothing done
        assert api.get(done_id)["state"] == "completed"

        deleted = cli(service, "accounts", "delete", "--cdn", "158", "--cancel-uploads", "--yes")
        assert (
            "2 upload records, 1 uploads cancelled, 1 multipart uploads aborted" in deleted.stdout
        )
    finally:
        worker.stopping.set()
        thread.join(timeout=30)

    assert open_uploads(s3_client, bucket) == []
    with pytest.raises(ClientError) as gone:
        api.call("aws.status")
    assert gone.value.http_status == 401
    listed = json.loads(cli(service, "accounts", "list", "--json").stdout)
    assert [account["cdn"] for account in listed] == [159]
    assert keep.get(kept_id)["state"] == "completed"  # another account's records stay
    unknown = cli(service, "accounts", "delete", "--cdn", "158", "--yes", check=False)
    assert unknown.returncode != 0
    assert "No account with cdn 158" in unknown.stderr


def test_accounts_set_changes_storage_user_and_buckets_without_the_aws_secret(
    slow: tuple[RunningService, FaultProxy],
) -> None:
    service, _ = slow
    service.add_account(158, "jb")
    service.runtime.accounts.set_aws(158, "key-id", "aws-secret", "eu-west-1")
    said = cli(
        service, "accounts", "set", "--cdn", "158", "--storage-user", "jb2", "--buckets", "a-b, c-d"
    )
    assert "storage user jb2, buckets: a-b, c-d" in said.stdout
    account = service.runtime.accounts.get(158)
    assert (account.storage_user, account.allowed_buckets) == ("jb2", ("a-b", "c-d"))
    assert account.aws_secret_access_key(service.runtime.box) == "aws-secret"  # untouched
    cli(service, "accounts", "set", "--cdn", "158", "--buckets", "")
    assert service.runtime.accounts.get(158).allowed_buckets == ()
    bad = cli(service, "accounts", "set", "--cdn", "158", "--storage-user", "../x", check=False)
    assert bad.returncode != 0
    assert "is not a folder name" in bad.stderr
