"""aws.cancel and aws.retry over real HTTP, with real uploads to moto."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import KINDS, database_url
from tests.faultproxy import FaultProxy, Rule
from tests.service import (
    RunningService,
    make_settings,
    running_service,
    wait_until,
    worker_env,
    worker_process,
)
from vod2s3.client import ClientError


def open_uploads(s3_client: Any, bucket: str) -> list[Any]:
    return list(s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_cancel_a_queued_upload(service: RunningService, s3_client: Any, bucket: str) -> None:
    api = service.client(service.add_account(158, "jb"))
    path = service.write_source("sestore1/jb/a.mp4", b"video")
    upload_id = api.upload(path, bucket, "private")["id"]

    envelope = api.call("aws.cancel", id=upload_id)
    again = api.cancel(upload_id)  # cancelling twice is one cancel

    assert envelope["message"] == "AWS Upload Cancelled"
    assert envelope["data"]["state"] == "cancelled"
    assert again["state"] == "cancelled"
    assert again["finished"] is not None
    assert service.drain() == 0
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_cancel_of_a_finished_upload_is_refused(service: RunningService, bucket: str) -> None:
    api = service.client(service.add_account(158, "jb"))
    upload_id = api.upload(service.write_source("sestore1/jb/a.mp4", b"v"), bucket, "private")["id"]
    service.drain()

    with pytest.raises(ClientError) as refused:
        api.cancel(upload_id)
    assert refused.value.http_status == 409
    assert "already completed" in refused.value.message
    assert api.get(upload_id)["state"] == "completed"


def test_cancel_and_retry_of_unknown_or_foreign_ids_are_404(
    service: RunningService, bucket: str
) -> None:
    mine = service.client(service.add_account(158, "jb"))
    theirs = service.client(service.add_account(159, "other"))
    foreign = theirs.upload(service.write_source("sestore1/other/a.mp4", b"v"), bucket, "private")[
        "id"
    ]

    for action in (mine.cancel, mine.retry):
        for upload_id in (foreign, 999_999):
            with pytest.raises(ClientError) as refused:
                action(upload_id)
            assert refused.value.http_status == 404
            assert refused.value.message == f"No upload with id {upload_id}"
    assert theirs.get(foreign)["state"] == "queued"


def test_cancel_needs_an_id(service: RunningService) -> None:
    api = service.client(service.add_account(158, "jb"))
    with pytest.raises(ClientError) as refused:
        api.call("aws.cancel")
    assert refused.value.http_status == 400
    assert "Field 'id' is required" in refused.value.message


def test_retry_a_failed_upload_under_the_same_id(service: RunningService, s3_client: Any) -> None:
    api = service.client(service.add_account(158, "jb"))
    upload_id = api.upload(
        service.write_source("sestore1/jb/a.mp4", b"later"), "late-bucket", "private"
    )["id"]
    service.drain()
    assert api.get(upload_id)["error_code"] == "NoSuchBucket"
    s3_client.create_bucket(Bucket="late-bucket")

    envelope = api.call("aws.retry", id=upload_id)
    assert envelope["message"] == "AWS Upload Queued"
    assert envelope["data"]["state"] == "queued"
    assert envelope["data"]["attempts"] == 0
    assert envelope["data"]["error_code"] == ""
    service.drain()

    record = api.get(upload_id)
    assert record["state"] == "completed"
    assert record["id"] == upload_id
    assert len(api.status()) == 1
    assert s3_client.get_object(Bucket="late-bucket", Key="a.mp4")["Body"].read() == b"later"


def test_retry_of_a_queued_or_completed_upload_is_refused(
    service: RunningService, bucket: str
) -> None:
    api = service.client(service.add_account(158, "jb"))
    upload_id = api.upload(service.write_source("sestore1/jb/a.mp4", b"v"), bucket, "private")["id"]
    for second, expected in enumerate(("queued", "completed")):
        # Each a request of its own (another timestamp): the same signed request twice is
        # one request, answered the same way.
        with pytest.raises(ClientError) as refused:
            api.call("aws.retry", id=upload_id, timestamp=int(time.time()) + second)
        assert refused.value.http_status == 409
        assert f"is {expected}" in refused.value.message
        service.drain()


@pytest.fixture
def slow_service(tmp_path: Path, s3_endpoint: str) -> Iterator[tuple[RunningService, FaultProxy]]:
    with (
        FaultProxy(s3_endpoint) as proxy,
        running_service(
            make_settings(tmp_path, parts_in_flight=1, poll_interval=0.05), proxy.url
        ) as running,
    ):
        proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.3, times=-1))
        yield running, proxy


def test_cancel_a_running_multipart_upload_aborts_it(
    slow_service: tuple[RunningService, FaultProxy], s3_client: Any, bucket: str
) -> None:
    service, proxy = slow_service
    api = service.client(service.add_account(158, "jb"))
    data = os.urandom(30 * 1024 * 1024)  # 6 parts, one at a time, 0.3 s each
    upload_id = api.upload(service.write_source("sestore1/jb/big.mp4", data), bucket, "private")[
        "id"
    ]
    worker = service.runtime.worker(concurrency=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while api.get(upload_id)["bytes_uploaded"] == 0:
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)

        cancelled = api.cancel(upload_id)
        assert cancelled["state"] == "cancelled"

        # The worker notices at its next write and stops; the sweep aborts the upload.
        while open_uploads(s3_client, bucket):
            assert time.monotonic() < deadline + 20, "the multipart upload was not aborted"
            time.sleep(0.1)
    finally:
        worker.stopping.set()
        thread.join(timeout=30)

    assert proxy.count("AbortMultipartUpload") >= 1
    assert proxy.count("CompleteMultipartUpload") == 0
    assert proxy.count("UploadPart") < 6
    record = api.get(upload_id)
    assert record["state"] == "cancelled"
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_stopped_by_a_cancel_logs_a_cancel(
    kind: str, tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    """A `vod2s3 worker` whose upload the customer cancels says so, not that its lease was
    lost to another worker."""
    log = tmp_path / "worker.log"
    with (
        database_url(kind, tmp_path) as url,
        FaultProxy(s3_endpoint) as proxy,
        running_service(make_settings(tmp_path, database_url=url), proxy.url) as service,
    ):
        proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.3, times=-1))
        api = service.client(service.add_account(158, "jb"))
        data = os.urandom(30 * 1024 * 1024)  # 6 parts, one at a time, 0.3 s each
        path = service.write_source("sestore1/jb/big.mp4", data)
        upload_id = api.upload(path, bucket, "private")["id"]
        with worker_process(worker_env(service), log) as worker:
            wait_until(worker, log, lambda: api.get(upload_id)["bytes_uploaded"] > 0)
            assert api.cancel(upload_id)["state"] == "cancelled"
            stopped = f"INFO vod2s3.worker: upload {upload_id} (cdn 158): cancelled; stopping"
            wait_until(worker, log, lambda: stopped in log.read_text())
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]

    text = log.read_text()
    assert text.count(stopped) == 1, text
    assert "lease ended" not in text
    assert "Traceback" not in text
    assert proxy.count("CompleteMultipartUpload") == 0
