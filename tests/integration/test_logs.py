"""Structured logs: with VOD2S3_LOG_FORMAT=json every line is one JSON object, and the upload's
transitions carry its id, cdn, state and previous state. No secret is ever written."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.helpers import free_port, wait_for_http
from tests.service import VOD2S3, RunningService, wait_until, worker_env, worker_process
from vod2s3.client import ClientError, Vod2s3Client
from vod2s3.config import MiB, Settings
from vod2s3.errors import ConfigurationError
from vod2s3.logs import JsonFormatter, make_formatter

CDN = 158
AWS_KEY_ID = "AKIALOGTESTKEYID0001"
AWS_SECRET = "aws-secret-that-must-never-be-logged-0001"


def json_worker_env(service: RunningService) -> dict[str, str]:
    return worker_env(service, VOD2S3_LOG_FORMAT="json")


def parse_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "the worker wrote no log line"
    parsed = []
    for line in lines:
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict), line
        assert {"ts", "level", "logger", "message"} <= set(obj), line
        assert obj["ts"].endswith("Z")
        parsed.append(obj)
    return parsed


def transitions(lines: list[dict[str, Any]], upload_id: int) -> list[tuple[str, Any, Any]]:
    return [
        (line["event"], line.get("from_state"), line.get("state"))
        for line in lines
        if line.get("upload_id") == upload_id and "event" in line
    ]


def test_json_worker_logs_every_transition_with_the_upload_fields_and_no_secret(
    service: RunningService, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    issued = service.add_account(CDN, "jb")
    api = service.client(issued)
    log = tmp_path / "worker.log"
    with FaultProxy(s3_endpoint) as proxy:
        service.runtime.accounts.set_aws(
            CDN, AWS_KEY_ID, AWS_SECRET, "us-east-1", endpoint_url=proxy.url
        )
        # Upload 1: one 503 SlowDown (requeued), then completed. Upload 2: its file is gone
        # when the worker gets to it (failed).
        proxy.add_rule(Rule(operation="PutObject", status=503, code="SlowDown", times=1))
        ok = api.upload(service.write_source("sestore1/jb/ok.mp4", b"o" * 4000), bucket, "private")
        gone_path = service.write_source("sestore1/jb/gone.mp4", b"g" * 4000)
        gone = api.upload(gone_path, bucket, "private")
        (service.storage_root / gone_path).unlink()

        with worker_process(json_worker_env(service), log) as worker:
            wait_until(
                worker,
                log,
                lambda: (
                    api.get(ok["id"])["state"] == "completed"
                    and api.get(gone["id"])["state"] == "failed"
                ),
            )
            # Upload 3: four slow parts; the worker is stopped after the first (released).
            proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.5, times=-1))
            slow_path = service.write_source("sestore1/jb/slow.mp4", os.urandom(20 * MiB))
            slow = api.upload(slow_path, bucket, "private")
            wait_until(worker, log, lambda: api.get(slow["id"])["bytes_uploaded"] >= 5 * MiB)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]

    text = log.read_text()
    lines = parse_lines(text)

    assert transitions(lines, ok["id"]) == [
        ("claimed", None, "uploading"),
        ("requeued", "uploading", "queued"),
        ("claimed", None, "uploading"),
        ("completed", "uploading", "completed"),
    ]
    requeued = next(x for x in lines if x.get("event") == "requeued")
    assert requeued["error_code"] == "SlowDown"
    assert transitions(lines, gone["id"]) == [
        ("claimed", None, "uploading"),
        ("failed", "uploading", "failed"),
    ]
    failed = next(x for x in lines if x.get("event") == "failed")
    assert failed["error_code"] == "SourceMissing"
    assert transitions(lines, slow["id"]) == [
        ("claimed", None, "uploading"),
        ("released", "uploading", "queued"),
    ]
    for line in lines:
        if "upload_id" in line:
            assert line["cdn"] == CDN
            assert line["logger"].startswith("vod2s3")

    def attempts(upload_id: int) -> list[int]:
        return [
            x["attempt"]
            for x in lines
            if x.get("event") == "claimed" and x["upload_id"] == upload_id
        ]

    assert attempts(ok["id"]) == [1, 2]
    assert attempts(gone["id"]) == attempts(slow["id"]) == [1]
    assert {x["level"] for x in lines} <= {"INFO", "WARNING"}

    secrets = (issued.api_key, issued.secret, service.runtime.settings.master_key, AWS_SECRET)
    for secret in secrets:
        assert secret not in text


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The service's log lines in this process, as JSON."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("vod2s3")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def test_api_logs_cancel_and_retry_as_transitions(
    service: RunningService, bucket: str, captured: io.StringIO
) -> None:
    issued = service.add_account(CDN, "jb")
    api = service.client(issued)
    upload = api.upload(service.write_source("sestore1/jb/a.mp4", b"a" * 10), bucket, "private")
    api.cancel(upload["id"])
    api.retry(upload["id"])
    assert service.drain() == 1

    lines = parse_lines(captured.getvalue())
    assert transitions(lines, upload["id"]) == [
        ("cancelled", None, "cancelled"),
        ("retried", None, "queued"),
        ("claimed", None, "uploading"),
        ("completed", "uploading", "completed"),
    ]
    for secret in (issued.api_key, issued.secret, service.runtime.settings.master_key):
        assert secret not in captured.getvalue()


def test_the_formats() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"VOD2S3_LOG_FORMAT": " JSON "}).log_format == "json"
    with pytest.raises(ConfigurationError, match="VOD2S3_LOG_FORMAT"):
        Settings.from_env({"VOD2S3_LOG_FORMAT": "yaml"})

    record = logging.LogRecord("vod2s3.worker", logging.ERROR, __file__, 1, "boom %s", (7,), None)
    record.upload_id = 7
    record.password = "not a field: never written"
    assert make_formatter("text").format(record).endswith("ERROR vod2s3.worker: boom 7")
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(make_formatter("json").format(record))
    assert line["message"] == "boom 7"
    assert line["upload_id"] == 7
    assert "password" not in line
    assert "ValueError: bad" in line["exc"]


def test_the_api_logs_its_start_and_one_access_line_per_request(
    service: RunningService, tmp_path: Path
) -> None:
    issued = service.add_account(CDN, "jb")
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [VOD2S3, "api", "--port", str(port)],
            env=json_worker_env(service),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
            url = f"http://127.0.0.1:{port}/stable/"
            Vod2s3Client(url, CDN, issued.api_key, issued.secret).status()
            with pytest.raises(ClientError):
                Vod2s3Client(url, CDN, issued.api_key, "wrong" * 8).status()
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    lines = parse_lines(log.read_text())
    assert any(f"API on http://127.0.0.1:{port}/stable/" in line["message"] for line in lines)
    access = [line for line in lines if line["logger"] == "vod2s3.access"]
    stable = [line for line in access if line["path"] == "/stable/"]
    assert [(line["status"], line["command"], line["cdn"]) for line in stable] == [
        (200, "aws.status", CDN),
        (401, "aws.status", CDN),
    ]
    assert all(line["method"] == "POST" and line["duration_ms"] >= 0 for line in stable)
    assert any(line["path"] == "/healthz" and line["status"] == 200 for line in access)
    assert issued.secret not in log.read_text()
