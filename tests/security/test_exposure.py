"""Excessive data exposure (OWASP API3 and API8:2023): over a full flow — accounts, AWS
settings, uploads that complete and fail, bad signatures, rotation, a disabled account — no
API secret, AWS secret access key or master key appears in any log line (at DEBUG, SQL echo
included), any response, `accounts list`, or the SQLite files (database, -wal, -shm); and no
error envelope or record message carries a traceback or the operator's storage paths.

tests/integration/test_cli.py already checks the INFO log of `vod2s3 api` and the database
after rotation; this runs everything at DEBUG, through `vod2s3 serve` with its worker, and
scans every channel at once."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.envelopes import LEAK_MARKERS, envelope_of, ok, refused
from tests.helpers import free_port, wait_for_http
from tests.security.support import post_json, request_object, sign, signed_text
from tests.service import RunningService, stop_gracefully
from vod2s3.accounts import IssuedCredentials
from vod2s3.jsonenc import php_json_encode

VOD2S3 = str(Path(sys.executable).parent / "vod2s3")
AWS_SECRET = "AWS-SECRET-ACCESS-KEY-Qx7Zt2Lm9Pw4"


@dataclass
class Transcript:
    """Everything a client or an operator could read, gathered as the flow runs."""

    responses: list[httpx.Response] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    def send(self, http: httpx.Client, url: str, body: str) -> httpx.Response:
        response = post_json(http, url, body)
        self.responses.append(response)
        return response


def sqlite_bytes(db_path: Path) -> bytes:
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    assert db_path in files
    return b"".join(p.read_bytes() for p in files)


def assert_nowhere(secrets: dict[str, str], channels: dict[str, str | bytes]) -> None:
    for channel, content in channels.items():
        for name, secret in secrets.items():
            if isinstance(content, bytes):
                assert secret.encode() not in content, f"{name} appears in {channel}"
            else:
                assert secret not in content, f"{name} appears in {channel}"


def assert_clean_envelopes(responses: list[httpx.Response], operator_paths: list[str]) -> None:
    for response in responses:
        envelope_of(response)  # also checks the traceback markers
        for path in operator_paths:
            assert path not in response.text, (path, response.text)


def source_failures(
    svc: RunningService, http: httpx.Client, issued: IssuedCredentials
) -> list[httpx.Response]:
    """aws.upload refusals that are about the file system, each quoting the customer's path."""
    folder = svc.storage_root / "sestore1" / issued.storage_user
    (folder / "adir").mkdir()
    os.mkfifo(folder / "pipe.mp4")
    (folder / "dangling.mp4").symlink_to(folder / "nowhere.mp4")
    (folder / "loop1.mp4").symlink_to("loop2.mp4")
    (folder / "loop2.mp4").symlink_to("loop1.mp4")
    (folder / "outside.mp4").symlink_to(svc.storage_root.parent / "operator-only.mp4")
    responses = []
    for name in (
        "missing.mp4",
        "adir",
        "pipe.mp4",
        "dangling.mp4",
        "loop1.mp4",
        "outside.mp4",
        "nodir/x.mp4",
        "adir/../../x.mp4",
    ):
        path = f"sestore1/{issued.storage_user}/{name}"
        text = signed_text(issued, "aws.upload", path=path, bucket="videos", acl="private")
        response = post_json(http, svc.url, text)
        assert response.status_code in (400, 403), response.text
        responses.append(response)
    for path in ("sestore9/jb/x.mp4", "sestore1/nobody/x.mp4", "sestore2/jb/x.mp4"):
        text = signed_text(issued, "aws.upload", path=path, bucket="videos", acl="private")
        responses.append(post_json(http, svc.url, text))
    return responses


def test_nothing_secret_leaks_in_process_at_debug(
    service: RunningService,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    # SQL statements and their parameters too, as an operator debugging the database would see.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    svc = service
    runtime = svc.runtime
    http = httpx.Client(timeout=30)
    log = Transcript()
    try:
        issued = runtime.accounts.create(158, "jb")
        runtime.accounts.set_aws(
            158, "AKIAEXPOSURE", AWS_SECRET, "us-east-1", endpoint_url=svc.s3_endpoint
        )
        (svc.storage_root / "sestore1" / "jb").mkdir(parents=True, exist_ok=True)
        (svc.storage_root / "sestore2" / "jb").mkdir(parents=True, exist_ok=True)
        svc.write_source("sestore1/jb/good.mp4", b"good video")
        svc.write_source("sestore1/jb/vanishing.mp4", b"soon gone")

        good = ok(
            log.send(
                http,
                svc.url,
                signed_text(
                    issued, "aws.upload", path="sestore1/jb/good.mp4", bucket=bucket, acl="private"
                ),
            )
        )["data"]["id"]
        no_bucket = ok(
            log.send(
                http,
                svc.url,
                signed_text(
                    issued,
                    "aws.upload",
                    path="sestore1/jb/good.mp4",
                    bucket="no-such-bucket-x",
                    acl="private",
                ),
            )
        )["data"]["id"]
        vanished = ok(
            log.send(
                http,
                svc.url,
                signed_text(
                    issued,
                    "aws.upload",
                    path="sestore1/jb/vanishing.mp4",
                    bucket=bucket,
                    acl="private",
                ),
            )
        )["data"]["id"]
        (svc.storage_root / "sestore1" / "jb" / "vanishing.mp4").unlink()
        svc.drain()
        records = {
            upload_id: ok(log.send(http, svc.url, signed_text(issued, "aws.status", id=upload_id)))[
                "data"
            ]
            for upload_id in (good, no_bucket, vanished)
        }
        assert records[good]["state"] == "completed"
        assert records[no_bucket]["state"] == "failed"
        assert (records[vanished]["state"], records[vanished]["error_code"]) == (
            "failed",
            "SourceMissing",
        )

        # Bad signatures of every kind, a stale timestamp, an unknown id.
        obj = request_object(issued, "aws.status")
        for secret in ("wrong", "", issued.api_key):
            refused(log.send(http, svc.url, php_json_encode(sign(obj, secret))), 401)
        stale = request_object(issued, "aws.status", timestamp=time.time() - 3600)
        refused(log.send(http, svc.url, php_json_encode(sign(stale, issued.secret))), 401)
        refused(log.send(http, svc.url, signed_text(issued, "aws.status", id=99999)), 404)

        # Rotation: both secrets in use during the grace period; then a disabled account.
        rotated = runtime.accounts.rotate_secret(158)
        fresh = IssuedCredentials(issued.cdn, issued.storage_user, issued.api_key, rotated)
        ok(log.send(http, svc.url, signed_text(fresh, "aws.status")))
        ok(log.send(http, svc.url, signed_text(issued, "aws.status")))
        runtime.accounts.set_disabled(158, True)
        refused(log.send(http, svc.url, signed_text(fresh, "aws.status")), 403)
        runtime.accounts.set_disabled(158, False)

        log.responses += source_failures(svc, http, fresh)
        scraped = http.get(svc.base_url + "/metrics")
        # /metrics is newer than this suite: where it exists, its labels are checked too.
        metrics_text = scraped.text if scraped.status_code == 200 else ""
    finally:
        http.close()

    listed = subprocess.run(
        [VOD2S3, "accounts", "list", "--json"],
        env=_env(runtime.settings.database_url, svc.storage_root, runtime.settings.master_key),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(listed.stdout)[0]["api_key"] == issued.api_key

    messages = [r.getMessage() for r in caplog.records]
    assert any("sqlalchemy.engine" in r.name for r in caplog.records)  # SQL echo was on
    assert any(r.name.startswith("vod2s3") for r in caplog.records)
    db_path = runtime.settings.sqlite_path
    assert db_path is not None
    secrets = {
        "first API secret": issued.secret,
        "rotated API secret": rotated,
        "AWS secret access key": AWS_SECRET,
        "master key": runtime.settings.master_key,
    }
    assert_nowhere(
        secrets,
        {
            "log text": caplog.text,
            "log messages": "\n".join(messages),
            "log arguments": "\n".join(repr(r.args) for r in caplog.records),
            "responses": "\n".join(r.text for r in log.responses),
            "accounts list --json": listed.stdout + listed.stderr,
            "metrics": metrics_text,
            "SQLite files": sqlite_bytes(db_path),
        },
    )
    assert issued.api_key not in metrics_text
    assert issued.api_key.encode() in sqlite_bytes(db_path)  # the scan reads the real file
    operator_paths = [str(svc.storage_root), str(svc.storage_root.resolve()), str(tmp_path)]
    assert_clean_envelopes(log.responses, operator_paths)
    for record in records.values():
        for path in operator_paths:
            assert path not in record["message"]
        for marker in LEAK_MARKERS:
            assert marker not in record["message"]


def _env(database_url: str, storage_root: Path, master_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env.update(
        VOD2S3_DATABASE_URL=database_url,
        VOD2S3_STORAGE_ROOT=str(storage_root),
        VOD2S3_MASTER_KEY=master_key,
        VOD2S3_LOG_LEVEL="DEBUG",
        VOD2S3_POLL_INTERVAL="0.05",
    )
    return env


@dataclass
class Serve:
    env: dict[str, str]
    cwd: Path
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VOD2S3, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )


@pytest.fixture(params=["text", "json"])
def serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Serve]:
    storage = tmp_path / "storage"
    (storage / "sestore1" / "jb").mkdir(parents=True)
    env = _env(f"sqlite:///{tmp_path / 'db.sqlite'}", storage, Fernet.generate_key().decode())
    env["VOD2S3_LOG_FORMAT"] = request.param
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [VOD2S3, "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
            yield Serve(env, tmp_path, f"http://127.0.0.1:{port}/stable/", proc, log_path)
        finally:
            stop_gracefully(proc)


def test_nothing_secret_leaks_from_vod2s3_serve_at_debug(
    serve: Serve, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    created = json.loads(
        serve.cli("accounts", "create", "--cdn", "158", "--storage-user", "jb", "--json").stdout
    )
    serve.cli(
        "accounts",
        "set-aws",
        "--cdn",
        "158",
        "--access-key-id",
        "AKIAEXPOSURE",
        "--secret-access-key",
        AWS_SECRET,
        "--endpoint-url",
        s3_endpoint,
    )
    issued = IssuedCredentials(158, "jb", created["api_key"], created["secret"])
    (tmp_path / "storage" / "sestore1" / "jb" / "v.mp4").write_bytes(b"served video")
    responses: list[httpx.Response] = []
    with httpx.Client(timeout=30) as http:

        def send(body: str) -> httpx.Response:
            response = post_json(http, serve.url, body)
            responses.append(response)
            return response

        upload_id = ok(
            send(
                signed_text(
                    issued, "aws.upload", path="sestore1/jb/v.mp4", bucket=bucket, acl="private"
                )
            )
        )["data"]["id"]
        ok(
            send(
                signed_text(
                    issued,
                    "aws.upload",
                    path="sestore1/jb/v.mp4",
                    bucket="no-such-bucket-y",
                    acl="private",
                )
            )
        )
        deadline = time.monotonic() + 60
        while True:
            record = ok(send(signed_text(issued, "aws.status", id=upload_id)))["data"]
            if record["state"] == "completed":
                break
            assert record["state"] in ("queued", "uploading"), record
            assert time.monotonic() < deadline, record
            time.sleep(0.1)
        for secret in ("wrong", created["api_key"], ""):
            refused(send(php_json_encode(sign(request_object(issued, "aws.status"), secret))), 401)
        rotated = json.loads(
            serve.cli("accounts", "rotate-secret", "--cdn", "158", "--json", "--yes").stdout
        )["secret"]
        fresh = IssuedCredentials(158, "jb", created["api_key"], rotated)
        ok(send(signed_text(fresh, "aws.status")))
        ok(send(signed_text(issued, "aws.status")))
        refused(send(signed_text(fresh, "aws.status", id=upload_id + 1000)), 404)

    listed_json = serve.cli("accounts", "list", "--json")
    listed_table = serve.cli("accounts", "list")
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=30) == 0
    server_log = serve.log_path.read_text()
    assert "upload 1" in server_log  # the worker's lines are in it
    assert "DEBUG" in server_log  # and the level really was DEBUG

    secrets = {
        "first API secret": created["secret"],
        "rotated API secret": rotated,
        "AWS secret access key": AWS_SECRET,
        "master key": serve.env["VOD2S3_MASTER_KEY"],
    }
    assert_nowhere(
        secrets,
        {
            "serve log (DEBUG)": server_log,
            "responses": "\n".join(r.text for r in responses),
            "accounts list --json": listed_json.stdout + listed_json.stderr,
            "accounts list": listed_table.stdout + listed_table.stderr,
            "SQLite files": sqlite_bytes(tmp_path / "db.sqlite"),
        },
    )
    assert "Traceback" not in server_log
    assert_clean_envelopes(responses, [str(tmp_path)])
