"""A real `vod2s3 worker` process stopped mid-upload, by SIGKILL or SIGTERM, and another
worker finishing the same upload from the parts stored in the database.

The API runs in the test process (the ``service`` fixture) and the workers are subprocesses
sharing its SQLite database. S3 is moto behind the loopback fault proxy, which slows every
part down so that there is time to stop the worker half-way, and counts the parts each worker
sends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.faultproxy import FaultProxy, Rule, Seen
from tests.service import RunningService, worker_env, worker_process
from vod2s3.client import Vod2s3Client
from vod2s3.config import MiB
from vod2s3.store.schema import upload_parts, uploads

PART = 5 * MiB
PARTS = 12
IN_FLIGHT = 2
LEASE_SECONDS = 5  # the least the settings allow
KEY = "crash/video.mp4"
PATH = f"sestore1/jb/{KEY}"


@dataclass
class Setup:
    service: RunningService
    api: Vod2s3Client
    proxy: FaultProxy
    bucket: str
    env: dict[str, str]
    logs: Path
    data: bytes
    upload_id: int

    def record(self) -> dict[str, Any]:
        return self.api.get(self.upload_id)

    def stored_parts(self) -> set[int]:
        with self.service.runtime.engine.connect() as conn:
            named = conn.execute(
                select(uploads.c.multipart_upload_id).where(uploads.c.id == self.upload_id)
            ).scalar_one()
            assert named is not None, "no multipart upload stored"
            numbers = conn.execute(
                select(upload_parts.c.part_number).where(upload_parts.c.upload_id == self.upload_id)
            ).scalars()
            return set(numbers)

    def log_tail(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-3000:] for path in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture
def setup(
    service: RunningService, s3_endpoint: str, bucket: str, tmp_path: Path
) -> Iterator[Setup]:
    """A queued 60 MiB upload (12 parts of 5 MiB) whose account's S3 is the fault proxy."""
    with FaultProxy(s3_endpoint) as proxy:
        issued = service.add_account(158, "jb")
        service.runtime.accounts.set_aws(
            158, "testing", "testing", "us-east-1", endpoint_url=proxy.url
        )
        api = service.client(issued)
        data = os.urandom(PARTS * PART)
        service.write_source(PATH, data)
        upload_id = int(api.upload(PATH, bucket, "private")["id"])
        env = worker_env(
            service,
            VOD2S3_PART_SIZE=str(PART),
            VOD2S3_MULTIPART_THRESHOLD=str(PART),
            VOD2S3_PARTS_IN_FLIGHT=str(IN_FLIGHT),
            VOD2S3_LEASE_SECONDS=str(LEASE_SECONDS),
            VOD2S3_POLL_INTERVAL="0.1",
        )
        logs = tmp_path / "workers"
        logs.mkdir()
        yield Setup(service, api, proxy, bucket, env, logs, data, upload_id)


def worker(s: Setup, name: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`vod2s3 worker` as a subprocess logging to ``name``.log, killed if the test leaves
    it running."""
    return worker_process(s.env, s.logs / f"{name}.log")


def wait_for(
    s: Setup,
    proc: subprocess.Popen[bytes],
    condition: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"worker exited ({proc.returncode}) before {what}\n" + (
            s.log_tail()
        )
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + s.log_tail()
        time.sleep(0.05)


def stop_gracefully(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> tuple[int, float]:
    """SIGTERM; (exit status, seconds it took)."""
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=timeout)
    return status, time.monotonic() - began


def confirmed(s: Setup, at_least: int) -> Callable[[], bool]:
    return lambda: s.record()["bytes_uploaded"] >= at_least * PART


def part_numbers(seen: list[Seen]) -> list[int]:
    return [r.part_number for r in seen if r.operation == "UploadPart" and r.part_number]


def open_uploads(s: Setup, s3_client: Any) -> list[Any]:
    return list(s3_client.list_multipart_uploads(Bucket=s.bucket).get("Uploads", []))


def object_bytes(s: Setup, s3_client: Any) -> bytes:
    return bytes(s3_client.get_object(Bucket=s.bucket, Key=KEY)["Body"].read())


def test_worker_killed_mid_upload_is_finished_by_another_from_the_stored_parts(
    setup: Setup, s3_client: Any
) -> None:
    s = setup
    s.proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.4, times=-1))
    # A lease far longer than the takeover may take: the second worker must find the first
    # dead (its process is gone), not wait for its lease to run out.
    s.env["VOD2S3_LEASE_SECONDS"] = "120"

    with worker(s, "first") as first:
        wait_for(s, first, confirmed(s, 2), "2 parts confirmed")
        # The second worker starts once the first holds the upload, and stands by.
        with worker(s, "second") as second:
            wait_for(s, first, confirmed(s, 4), "4 parts confirmed")
            assert s.record()["attempts"] == 1
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            killed_at = time.monotonic()

            # What the database holds is exactly what the dead worker had confirmed.
            stored = s.stored_parts()
            assert 4 <= len(stored) < PARTS
            assert s.record()["bytes_uploaded"] == len(stored) * PART

            # Requests the proxy was still holding back when the worker died go on to S3
            # (the dead worker never hears of them). Each request names its worker in its
            # User-Agent.
            wait_for(s, second, lambda: s.record()["attempts"] == 2, "the takeover", 10)
            took_over_after = time.monotonic() - killed_at
            wait_for(s, second, lambda: s.record()["state"] == "completed", "completion")
            first_agent = f":{first.pid}:"
            sent_by_first = [r for r in s.proxy.seen if first_agent in r.user_agent]
            first_parts = set(part_numbers([r for r in sent_by_first if r.status == 200]))
            status, _ = stop_gracefully(second)
            assert status == 0, s.log_tail()
    assert took_over_after < 5.0, f"took over {took_over_after:.1f}s after the kill"
    assert stored <= first_parts

    by_second = [r for r in s.proxy.seen if first_agent not in r.user_agent]
    sent_by_second = part_numbers(by_second)
    resent = [n for n in sent_by_second if n in first_parts]
    print(
        f"\nSIGKILL: {len(stored)} parts confirmed in the database at the kill "
        f"({sorted(stored)}); the first worker had {len(first_parts)} parts accepted by S3; "
        f"the second sent {sorted(sent_by_second)}, of which {len(resent)} re-sent {resent}"
    )

    record = s.record()
    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 2
    assert record["results"]["ETag"].endswith(f'-{PARTS}"')
    # Parts confirmed in the database are never sent again; only those that were in flight
    # when the worker died (at most parts_in_flight of them) are.
    assert not stored & set(sent_by_second)
    assert sorted(sent_by_second) == sorted(set(range(1, PARTS + 1)) - stored)
    assert len(resent) <= IN_FLIGHT
    operations = [seen.operation for seen in by_second]
    assert "CreateMultipartUpload" not in operations  # resumed, not restarted
    assert "ListParts" in operations
    assert object_bytes(s, s3_client) == s.data
    assert open_uploads(s, s3_client) == []


def test_worker_stopped_by_sigterm_releases_the_upload_and_keeps_its_parts(
    setup: Setup, s3_client: Any
) -> None:
    s = setup
    s.proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.4, times=-1))

    with worker(s, "first") as first:
        wait_for(s, first, confirmed(s, 4), "4 parts confirmed")
        status, took = stop_gracefully(first)
    assert status == 0, s.log_tail()
    assert took < 5.0

    record = s.record()
    assert record["state"] == "queued"
    assert record["message"] == "Queued"
    assert record["attempts"] == 0  # given back: the attempt does not count
    assert record["error_code"] == ""
    stored = s.stored_parts()
    assert 4 <= len(stored) < PARTS
    assert record["bytes_uploaded"] == len(stored) * PART
    assert len(open_uploads(s, s3_client)) == 1  # kept for the next worker
    # The parts that were in flight at the stop were finished and recorded, not dropped.
    first_parts = set(part_numbers([r for r in s.proxy.seen if r.status == 200]))
    assert first_parts == stored
    s.proxy.clear()

    with worker(s, "second") as second:
        wait_for(s, second, lambda: s.record()["state"] == "completed", "completion")
        status, _ = stop_gracefully(second)
        assert status == 0, s.log_tail()

    sent_by_second = part_numbers(s.proxy.seen)
    print(
        f"\nSIGTERM: stopped in {took:.2f}s with {len(stored)} parts stored; "
        f"the next worker sent {sorted(sent_by_second)}"
    )
    record = s.record()
    assert record["state"] == "completed", record["message"]
    assert record["attempts"] == 1
    assert sorted(sent_by_second) == sorted(set(range(1, PARTS + 1)) - stored)
    assert s.proxy.count("CreateMultipartUpload") == 0
    assert object_bytes(s, s3_client) == s.data
    assert open_uploads(s, s3_client) == []
