"""Prometheus /metrics: the queue read from the database, the worker's and the API's counters,
callback outcomes, and `vod2s3 worker --metrics-port` for a worker running on its own."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port
from tests.service import RunningService, make_settings, running_service
from vod2s3.client import Vod2s3Client
from vod2s3.config import MiB
from vod2s3.jsonenc import php_json_encode
from vod2s3.metrics import DatabaseReading, Metrics

VOD2S3 = Path(sys.executable).parent / "vod2s3"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


METRICS_TOKEN = "m3tr1cs-t0ken-for-the-tests"


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[str, Samples]:
    response = httpx.get(url, timeout=10, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def label_values(samples: Samples) -> set[str]:
    return {v for _, labels in samples for _, v in labels}


def test_metrics_after_uploads_and_api_calls(
    service: RunningService, bucket: str, tmp_path: Path
) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    big = os.urandom(6 * MiB)  # two parts (5 MiB + 1 MiB)
    small = b"x" * 1000  # one PutObject
    first = api.upload(service.write_source("sestore1/jb/big.mp4", big), bucket, "private")
    second = api.upload(service.write_source("sestore1/jb/small.mp4", small), bucket, "private")
    third = api.upload(service.write_source("sestore1/jb/third.mp4", small), bucket, "private")
    api.cancel(third["id"])

    assert service.drain() == 2
    assert api.get(first["id"])["state"] == "completed"
    assert api.get(second["id"])["state"] == "completed"
    # Requests that cannot name a known command: each is counted as "unknown".
    assert httpx.post(service.url, json={"command": f"aws.{issued.api_key}"}).status_code == 400
    assert httpx.post(service.url, json={"command": ["aws.upload"]}).status_code == 400
    assert httpx.get(service.url).status_code == 405
    # Known commands refused: counted under the command's name, with the refusal's status.
    unsigned = {k: v for k, v in api.build_request("aws.status").items() if k != "signature"}
    missing = httpx.post(service.url, data={"json": php_json_encode(unsigned)})
    assert missing.status_code == 400
    assert missing.json()["message"] == "Field 'signature' is required"
    wrong = Vod2s3Client(service.url, issued.cdn, issued.api_key, "not-the-secret")
    refused = httpx.post(
        service.url, data={"json": php_json_encode(wrong.build_request("aws.status"))}
    )
    assert refused.status_code == 401
    assert refused.json()["message"].startswith("Invalid api_key, cdn or signature")

    text, samples = scrape(f"{service.base_url}/metrics")

    depth = {state: value(samples, "vod2s3_queue_depth", state=state) for state in
             ("queued", "uploading", "completed", "failed", "cancelled")}  # fmt: skip
    assert depth == {"queued": 0, "uploading": 0, "completed": 2, "failed": 0, "cancelled": 1}
    assert value(samples, "vod2s3_database_up") == 1

    assert value(samples, "vod2s3_api_requests_total", command="aws.upload", status="200") == 3
    assert value(samples, "vod2s3_api_requests_total", command="aws.cancel", status="200") == 1
    assert value(samples, "vod2s3_api_requests_total", command="aws.status", status="200") == 2
    assert value(samples, "vod2s3_api_requests_total", command="aws.status", status="400") == 1
    assert value(samples, "vod2s3_api_requests_total", command="aws.status", status="401") == 1
    assert value(samples, "vod2s3_api_requests_total", command="unknown", status="400") == 2
    assert value(samples, "vod2s3_api_requests_total", command="unknown", status="405") == 1
    commands = {dict(labels).get("command") for name, labels in samples
                if name == "vod2s3_api_requests_total"}  # fmt: skip
    assert commands == {"aws.upload", "aws.cancel", "aws.status", "unknown"}

    assert value(samples, "vod2s3_uploads_finished_total", outcome="completed") == 2
    assert value(samples, "vod2s3_uploads_finished_total", outcome="cancelled") == 1
    assert value(samples, "vod2s3_uploads_finished_total", outcome="failed") == 0
    assert value(samples, "vod2s3_uploaded_bytes_total") == len(big) + len(small)
    assert value(samples, "vod2s3_upload_duration_seconds_count", outcome="completed") == 2
    assert value(samples, "vod2s3_upload_duration_seconds_bucket", outcome="completed",
                 le="7200.0") == 2  # fmt: skip
    assert value(samples, "vod2s3_callback_deliveries_total", outcome="delivered") == 0

    # The uplink budget's bytes: each body byte once (the signer's hashing read is not
    # counted), per account too; no cap is set, so no cap series.
    sent = len(big) + len(small)
    assert value(samples, "vod2s3_sent_bytes_total") == sent
    assert value(samples, "vod2s3_account_sent_bytes_total", cdn="158") == sent
    assert not [name for name, _ in samples if name.startswith("vod2s3_bandwidth_cap")]

    # Nothing about the account: no key, no secret anywhere in the text; its cdn id only
    # in the uplink budget's per-account series (docs/decisions.md).
    for secret in (issued.api_key, issued.secret, service.runtime.settings.master_key):
        assert secret not in text
    per_account = {"vod2s3_account_sent_bytes_total", "vod2s3_account_sent_bytes_created"}
    others = [(name, labels) for name, labels in samples if name not in per_account]
    assert "158" not in label_values(dict.fromkeys(others, 0.0))
    assert not any("cdn" in label for _, labels in others for label, _ in labels)


def test_queue_depth_is_read_from_the_database_at_scrape_time(
    service: RunningService, bucket: str
) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    for n in range(3):
        api.upload(service.write_source(f"sestore1/jb/{n}.mp4", b"v" * 100), bucket, "private")
    _, before = scrape(f"{service.base_url}/metrics")
    assert value(before, "vod2s3_queue_depth", state="queued") == 3
    service.drain()
    _, after = scrape(f"{service.base_url}/metrics")
    assert value(after, "vod2s3_queue_depth", state="queued") == 0
    assert value(after, "vod2s3_queue_depth", state="completed") == 3


def test_each_app_has_its_own_registry(tmp_path: Path, s3_endpoint: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_service(make_settings(tmp_path / "a"), s3_endpoint) as one,
        running_service(make_settings(tmp_path / "b"), s3_endpoint) as two,
    ):
        httpx.get(one.url)
        _, first = scrape(f"{one.base_url}/metrics")
        _, second = scrape(f"{two.base_url}/metrics")
    assert value(first, "vod2s3_api_requests_total", command="unknown", status="405") == 1
    assert ("vod2s3_api_requests_total", (("command", "unknown"), ("status", "405"))) not in second


def test_metrics_without_a_database_says_so_instead_of_failing() -> None:
    metrics = Metrics()

    def broken() -> DatabaseReading:
        raise RuntimeError("database gone")

    metrics.watch_database(broken)
    text = metrics.exposition().decode()
    assert "vod2s3_database_up 0.0" in text
    assert "vod2s3_queue_depth{" not in text


# -- callback outcomes ------------------------------------------------------------------------


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_callback_deliveries_are_counted_by_outcome(
    tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    settings = make_settings(tmp_path, callback_allow=(ipaddress.ip_network("127.0.0.0/8"),))
    with running_service(settings, s3_endpoint) as service, receiver() as hook:
        api = service.client(service.add_account(158, "jb"))
        path = service.write_source("sestore1/jb/a.mp4", b"a" * 100)
        api.upload(path, bucket, "private", callback=hook)
        closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        api.upload(service.write_source("sestore1/jb/b.mp4", b"b" * 100), bucket, "private",
                   callback=closed)  # fmt: skip
        service.drain()
        deliverer = service.runtime.deliverer()
        while deliverer.deliver_one():
            pass
        _, samples = scrape(f"{service.base_url}/metrics")
    assert value(samples, "vod2s3_callback_deliveries_total", outcome="delivered") == 1
    assert value(samples, "vod2s3_callback_deliveries_total", outcome="retry") == 1
    assert value(samples, "vod2s3_callback_deliveries_total", outcome="failed") == 0


# -- a worker process on its own --------------------------------------------------------------


def test_worker_process_serves_its_metrics_on_its_own_port(
    service: RunningService, bucket: str
) -> None:
    issued = service.add_account(158, "jb")
    api = service.client(issued)
    data = b"w" * 5000
    upload_id = api.upload(service.write_source("sestore1/jb/w.mp4", data), bucket, "private")["id"]
    settings = service.runtime.settings
    port = free_port()
    env = {
        **os.environ,
        "VOD2S3_DATABASE_URL": settings.database_url,
        "VOD2S3_STORAGE_ROOT": str(settings.storage_root),
        "VOD2S3_INTEGRITY": settings.integrity,
        "VOD2S3_MASTER_KEY": settings.master_key,
        "VOD2S3_POLL_INTERVAL": "0.1",
        "VOD2S3_METRICS_TOKEN": METRICS_TOKEN,
    }
    proc = subprocess.Popen(
        [str(VOD2S3), "worker", "--concurrency", "1", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while api.get(upload_id)["state"] != "completed":
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the worker did not complete the upload"
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        # The port means what the API's paths mean; /metrics wants the token.
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
        assert httpx.get(f"{base}/nothing").status_code == 404
        assert httpx.get(f"{base}/metrics").status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * len(METRICS_TOKEN)}
        assert httpx.get(f"{base}/metrics", headers=wrong).status_code == 401
        text, samples = scrape(f"{base}/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert value(samples, "vod2s3_uploads_finished_total", outcome="completed") == 1
        assert value(samples, "vod2s3_uploaded_bytes_total") == len(data)
        assert value(samples, "vod2s3_upload_duration_seconds_count", outcome="completed") == 1
        assert value(samples, "vod2s3_queue_depth", state="completed") == 1
        assert issued.secret not in text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0


def test_a_client_that_leaves_mid_body_is_counted_as_such_not_as_a_server_error(
    service: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can open a connection, promise a body and hang up: that must not show as a
    5xx (alerts) nor log a traceback."""
    host, port = service.base_url.split("//", 1)[1].split(":")
    head = (
        b"POST /stable/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    with caplog.at_level(logging.INFO, logger="vod2s3"):
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                conn.sendall(head + b'{"command":"aws.st')

        def counted() -> float:
            _, now = scrape(f"{service.base_url}/metrics")
            key = ("vod2s3_api_requests_total", (("command", "unknown"), ("status", "499")))
            return now.get(key, 0.0)

        deadline = time.monotonic() + 10
        while counted() < 3:
            assert time.monotonic() < deadline, "the disconnects were not counted"
            time.sleep(0.05)
    _, samples = scrape(f"{service.base_url}/metrics")
    assert not [key for key in samples if ("status", "500") in key[1]]
    assert "disconnected before its request body arrived" in caplog.text
    assert "unhandled error" not in caplog.text
    assert "Traceback" not in caplog.text


def test_the_apis_metrics_want_the_token_when_one_is_set(tmp_path: Path, s3_endpoint: str) -> None:
    settings = make_settings(tmp_path, metrics_token=METRICS_TOKEN)
    with running_service(settings, s3_endpoint) as svc:
        url = f"{svc.base_url}/metrics"
        refused = httpx.get(url)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        _text, samples = scrape(url, {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert samples
