"""The worker against S3 faults: real HTTP API, real moto behind the loopback fault proxy.

Every test queues an upload through the signed API, runs the service's own worker (one
attempt at a time with ``run_one`` where the state between attempts matters, then ``drain``),
and checks the record, the object's bytes, what the proxy saw on the wire, and that no
multipart upload was left open in the bucket.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.service import RunningService, make_settings, running_service
from vod2s3.client import Vod2s3Client
from vod2s3.config import MiB, Settings
from vod2s3.worker.loop import Worker

KEY = "faults/video.mp4"
PATH = f"sestore1/jb/{KEY}"


@dataclass
class Harness:
    service: RunningService
    api: Vod2s3Client
    proxy: FaultProxy
    bucket: str

    def queue(self, data: bytes) -> int:
        self.service.write_source(PATH, data)
        record = self.api.upload(PATH, self.bucket, "private")
        assert record["state"] == "queued"
        return int(record["id"])

    def worker(self) -> Worker:
        return self.service.runtime.worker(concurrency=1)

    def attempt(self, upload_id: int) -> dict[str, Any]:
        """Run exactly one attempt in this thread; the record afterwards."""
        assert self.worker().run_one()
        return self.api.get(upload_id)


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as running:
        yield running


@pytest.fixture
def start(
    tmp_path: Path, s3_endpoint: str, proxy: FaultProxy, bucket: str
) -> Iterator[Callable[..., Harness]]:
    """Starts the service with retries due at once (so tests never sleep on backoff) and an
    account whose S3 endpoint is the fault proxy. Keyword arguments override settings."""
    with ExitStack() as stack:

        def _start(**overrides: Any) -> Harness:
            settings = make_settings(
                tmp_path, retry_base_delay=0.0, retry_max_delay=0.0, **overrides
            )
            service = stack.enter_context(running_service(settings, s3_endpoint))
            issued = service.add_account(158, "jb")
            service.runtime.accounts.set_aws(
                158, "testing", "testing", "us-east-1", endpoint_url=proxy.url
            )
            return Harness(service, service.client(issued), proxy, bucket)

        yield _start


def open_uploads(s3_client: Any, bucket: str) -> list[Any]:
    return list(s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def stored(s3_client: Any, bucket: str) -> bytes:
    return bytes(s3_client.get_object(Bucket=bucket, Key=KEY)["Body"].read())


def counts(numbers: list[int]) -> dict[int, int]:
    return {n: numbers.count(n) for n in sorted(set(numbers))}


# --- transient faults: retried, resumed, completed -------------------------------------------


def test_slow_down_on_one_part_is_retried_and_resumes_the_upload(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    data = os.urandom(26 * MiB)  # six parts of 5 MiB (the last one 1 MiB), four in flight
    upload_id = h.queue(data)
    h.proxy.add_rule(Rule(operation="UploadPart", part_number=2, status=503, code="SlowDown"))

    first = h.attempt(upload_id)

    assert first["state"] == "queued"
    assert first["error_code"] == "SlowDown"
    assert first["status"] == 503
    assert first["attempts"] == 1
    assert first["message"].startswith("Queued for retry (attempt 1 of 3 failed: S3 asked")
    assert len(open_uploads(s3_client, h.bucket)) == 1  # kept for the next attempt

    assert h.service.drain() == 1
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    assert record["error_code"] == ""
    assert record["results"]["ETag"].endswith('-6"')
    # Resumed, not restarted: only the refused part went twice.
    assert counts(h.proxy.part_numbers()) == {1: 1, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1}
    assert h.proxy.count("CreateMultipartUpload") == 1
    assert h.proxy.count("ListParts") >= 1
    assert stored(s3_client, h.bucket) == data
    assert open_uploads(s3_client, h.bucket) == []


def test_internal_error_on_put_object_is_retried(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    data = os.urandom(MiB)  # below the threshold: one PutObject
    upload_id = h.queue(data)
    h.proxy.add_rule(Rule(operation="PutObject", status=500, code="InternalError"))

    first = h.attempt(upload_id)
    assert first["state"] == "queued"
    assert first["error_code"] == "InternalError"
    assert first["status"] == 500

    h.service.drain()
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    assert record["status"] == 200
    assert h.proxy.count("PutObject") == 2
    assert h.proxy.count("CreateMultipartUpload") == 0
    assert stored(s3_client, h.bucket) == data


def test_dropped_connection_on_one_part_is_retried(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    data = os.urandom(17 * MiB)  # four parts
    upload_id = h.queue(data)
    h.proxy.add_rule(Rule(operation="UploadPart", part_number=3, action="drop"))

    first = h.attempt(upload_id)
    assert (first["state"], first["error_code"], first["status"]) == (
        "queued",
        "ConnectionError",
        0,
    )

    h.service.drain()
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    assert counts(h.proxy.part_numbers()) == {1: 1, 2: 1, 3: 2, 4: 1}
    assert stored(s3_client, h.bucket) == data
    assert open_uploads(s3_client, h.bucket) == []


def test_read_timeout_on_one_part_is_retried(start: Callable[..., Harness], s3_client: Any) -> None:
    h = start(s3_read_timeout=1.0)
    data = os.urandom(17 * MiB)
    upload_id = h.queue(data)
    # S3 answers part 2 only after 3 s; the worker stops listening after 1 s.
    h.proxy.add_rule(Rule(operation="UploadPart", part_number=2, action="delay", delay=3.0))

    began = time.monotonic()
    first = h.attempt(upload_id)
    assert time.monotonic() - began < 2.9  # given up on by the read timeout, not answered
    assert (first["state"], first["error_code"], first["status"]) == ("queued", "Timeout", 0)
    assert "did not answer in time" in first["message"]

    h.service.drain()
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    assert stored(s3_client, h.bucket) == data
    assert open_uploads(s3_client, h.bucket) == []


def test_error_inside_a_200_answer_to_complete_is_retried(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    data = os.urandom(17 * MiB)
    upload_id = h.queue(data)
    h.proxy.add_rule(Rule(operation="CompleteMultipartUpload", action="error_200"))

    first = h.attempt(upload_id)
    assert (first["state"], first["error_code"]) == ("queued", "InternalError")

    h.service.drain()
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    # Every part was confirmed by the first attempt: the second one only completes.
    assert counts(h.proxy.part_numbers()) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert h.proxy.count("CompleteMultipartUpload") == 2
    assert stored(s3_client, h.bucket) == data
    assert open_uploads(s3_client, h.bucket) == []


# --- giving up: permanent errors at once, transient ones after max_attempts --------------------


def test_access_denied_on_a_part_fails_at_once_and_aborts(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    upload_id = h.queue(os.urandom(17 * MiB))
    h.proxy.add_rule(
        Rule(operation="UploadPart", part_number=2, status=403, code="AccessDenied", times=-1)
    )

    assert h.service.drain() == 1
    record = h.api.get(upload_id)

    assert record["state"] == "failed"
    assert record["attempts"] == 1
    assert record["error_code"] == "AccessDenied"
    assert record["status"] == 403
    assert record["message"].startswith("S3 refused access to bucket 'videos' (AccessDenied")
    assert record["results"] == {}
    assert h.proxy.count("AbortMultipartUpload") >= 1
    assert open_uploads(s3_client, h.bucket) == []
    assert s3_client.list_objects_v2(Bucket=h.bucket).get("KeyCount") == 0


def test_slow_down_every_time_fails_after_max_attempts_and_aborts(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    upload_id = h.queue(os.urandom(17 * MiB))
    h.proxy.add_rule(Rule(operation="UploadPart", status=503, code="SlowDown", times=-1))

    assert h.service.drain() == 3
    record = h.api.get(upload_id)

    assert record["state"] == "failed"
    assert record["attempts"] == 3
    assert record["error_code"] == "SlowDown"
    assert record["status"] == 503
    # One multipart upload, resumed by attempts 2 and 3, then aborted when giving up.
    assert h.proxy.count("CreateMultipartUpload") == 1
    assert h.proxy.count("AbortMultipartUpload") >= 1
    assert open_uploads(s3_client, h.bucket) == []
    assert h.service.stored_multipart(upload_id) == (None, set())


# --- what S3 says in headers reaches the record -----------------------------------------------


def test_expiration_and_request_charged_headers_reach_results(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    expiration = 'expiry-date="Fri, 23 Dec 2012 00:00:00 GMT", rule-id="picture-deletion-rule"'
    h.proxy.add_rule(
        Rule(
            operation="PutObject",
            action="headers",
            headers={"x-amz-expiration": expiration, "x-amz-request-charged": "requester"},
        )
    )
    upload_id = h.queue(b"small video")

    h.service.drain()
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert record["results"]["Expiration"] == expiration
    assert record["results"]["RequestCharged"] == "requester"


# --- the source changes while it is being sent -------------------------------------------------


def test_source_changed_mid_upload_restarts_with_the_new_content(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    h = start()
    old = os.urandom(17 * MiB)
    new = os.urandom(17 * MiB)
    upload_id = h.queue(old)
    source = h.service.storage_root / PATH
    mtime_ns = source.stat().st_mtime_ns
    # Part 2 is held back long enough for the file to be rewritten in place meanwhile.
    h.proxy.add_rule(Rule(operation="UploadPart", part_number=2, action="delay", delay=1.0))
    rewritten = threading.Event()

    def rewrite_once_the_upload_began() -> None:
        deadline = time.monotonic() + 10
        while h.service.stored_multipart(upload_id)[0] is None:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        source.write_bytes(new)  # same inode, same size: only the content and mtime differ
        os.utime(source, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
        rewritten.set()

    writer = threading.Thread(target=rewrite_once_the_upload_began)
    writer.start()
    try:
        first = h.attempt(upload_id)
    finally:
        writer.join()
    assert rewritten.is_set()

    assert first["state"] == "queued"
    assert first["error_code"] == "SourceChanged"
    assert "changed while it was being uploaded" in first["message"]
    assert open_uploads(s3_client, h.bucket) == []  # the old parts must never be used
    sent_by_first = len(h.proxy.part_numbers())

    h.service.drain()
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    # Started over: a new multipart upload with every part sent again.
    assert h.proxy.count("CreateMultipartUpload") == 2
    assert sorted(h.proxy.part_numbers()[sent_by_first:]) == [1, 2, 3, 4]
    assert stored(s3_client, h.bucket) == new
    assert open_uploads(s3_client, h.bucket) == []


# --- connections --------------------------------------------------------------------------


def test_one_large_file_goes_over_more_than_three_connections_at_default_settings(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    """Issue 14: a worker used to send at most 3 parts at once (its 3 part buffers), however
    long and lossy the link. Parts now hold no buffer, and the worker's own limit starts
    above 3. Each part is held at the proxy a moment, so the ones sent together overlap."""
    defaults = Settings()
    h = start(
        parts_in_flight=defaults.parts_in_flight,
        parts_in_memory=defaults.parts_in_memory,
        s3_max_connections=defaults.s3_max_connections,
        s3_max_connections_per_upload=defaults.s3_max_connections_per_upload,
    )
    data = os.urandom(41 * MiB)  # nine parts of 5 MiB
    upload_id = h.queue(data)
    h.proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.5, times=-1))

    assert h.service.drain() == 1
    record = h.api.get(upload_id)

    assert record["state"] == "completed", record["message"]
    assert h.proxy.most_in_flight("UploadPart") > 3
    assert sorted(h.proxy.part_numbers()) == list(range(1, 10))
    assert stored(s3_client, h.bucket) == data


def test_a_stalled_part_is_abandoned_and_the_upload_completes(
    start: Callable[..., Harness], s3_client: Any
) -> None:
    """The proxy stops reading part 2's body. With VOD2S3_STALL_SECONDS=1 the worker gives
    that connection up long before its 60 s timeouts, and part 2 goes again, on a fresh
    connection, in the next attempt."""
    h = start(
        part_size=16 * MiB,  # more than the loopback socket buffers hold
        stall_seconds=1.0,
        s3_connect_timeout=60.0,
        s3_read_timeout=60.0,
    )
    data = os.urandom(33 * MiB)  # parts of 16, 16 and 1 MiB
    upload_id = h.queue(data)
    h.proxy.add_rule(Rule(operation="UploadPart", part_number=2, action="stall"))
    drained: list[int] = []
    worker = threading.Thread(target=lambda: drained.append(h.service.drain()), daemon=True)

    worker.start()
    worker.join(timeout=45)  # a hang until the 60 s timeouts fails here instead

    assert drained == [2]  # two attempts ran
    record = h.api.get(upload_id)
    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    assert counts(h.proxy.part_numbers()) == {1: 1, 2: 2, 3: 1}
    assert [s.status for s in h.proxy.seen if s.part_number == 2] == [0, 200]
    assert stored(s3_client, h.bucket) == data
    assert open_uploads(s3_client, h.bucket) == []
