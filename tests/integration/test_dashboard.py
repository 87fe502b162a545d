"""The operator dashboard: off without VOD2S3_OPERATOR_TOKEN, 401 without the right token, and
the page itself, over HTTP and in headless Chromium (a running upload's progress bar)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.service import RunningService, make_settings, running_service
from vod2s3.api.dashboard import UNAUTHORIZED_MESSAGE
from vod2s3.api.dashboard_page import callback_host, render
from vod2s3.config import MiB, Settings
from vod2s3.errors import ConfigurationError
from vod2s3.store.dashboard import Snapshot

TOKEN = "operator-token-for-the-tests-0123456789"
CDN = 158
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def dashboard_service(tmp_path: Path, s3_endpoint: str) -> Iterator[RunningService]:
    with running_service(make_settings(tmp_path, operator_token=TOKEN), s3_endpoint) as running:
        yield running


def count(html: str, state: str) -> int:
    # As served (class=count) or as Chromium serializes the DOM (class="count").
    match = re.search(rf'<span class="?count"? data-state="{state}">(\d+)</span>', html)
    assert match, f"no count for {state}"
    return int(match.group(1))


def test_dashboard_is_off_without_an_operator_token(service: RunningService) -> None:
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        response = httpx.get(f"{service.base_url}/dashboard", headers=headers)
        assert response.status_code == 404
        body = response.json()
        assert body["status"] == "failure"
        # Exactly what an unknown path gets: nothing tells that a dashboard exists.
        unknown = httpx.get(f"{service.base_url}/nothing-here").json()
        assert body["message"] == unknown["message"].replace("/nothing-here", "/dashboard")


def test_dashboard_refuses_a_missing_or_wrong_token(dashboard_service: RunningService) -> None:
    url = f"{dashboard_service.base_url}/dashboard"
    attempts: list[dict[str, Any]] = [
        {},
        {"headers": {"Authorization": "Bearer wrong-token"}},
        {"headers": {"Authorization": f"Basic {TOKEN}"}},
        {"headers": {"Authorization": f"Bearer {TOKEN}x"}},
        {"params": {"token": TOKEN[:-1]}},
        {"params": {"token": ""}},
    ]
    for attempt in attempts:
        response = httpx.get(url, **attempt)
        assert response.status_code == 401, attempt
        assert response.json() == {
            "status": "failure",
            "code": "0001",
            "message": UNAUTHORIZED_MESSAGE,
            "handle_time": response.json()["handle_time"],
            "data": None,
        }
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text


def test_dashboard_shows_the_numbers(
    dashboard_service: RunningService, bucket: str, tmp_path: Path
) -> None:
    service = dashboard_service
    api = service.client(service.add_account(CDN, "jb"))
    done = api.upload(service.write_source("sestore1/jb/ok.mp4", b"v" * 100), bucket, "private")
    gone_path = service.write_source("sestore1/jb/<b>gone</b>.mp4", b"g" * 100)
    gone = api.upload(gone_path, bucket, "private", callback="https://hooks.example.com/cb?sig=Q1")
    (service.storage_root / gone_path).unlink()
    assert service.drain() == 2
    queued = api.upload(service.write_source("sestore1/jb/q.mp4", b"q" * 100), bucket, "private")
    # The failure's callback given up on (as the deliverer does after its last attempt).
    outbox = service.runtime.outbox
    delivery = outbox.claim("test", timedelta(seconds=60))
    assert delivery is not None
    assert outbox.give_up(delivery.id, "test", 502, "HTTP 502 from the receiver <oops>")

    by_header = httpx.get(
        f"{service.base_url}/dashboard", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    by_query = httpx.get(f"{service.base_url}/dashboard", params={"token": TOKEN})
    for response in (by_header, by_query):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "script-src" not in response.headers["content-security-policy"]
    html = by_header.text
    assert '<meta http-equiv="refresh" content="5">' in html
    assert "<script" not in html
    assert (count(html, "queued"), count(html, "uploading"), count(html, "completed"),
            count(html, "failed"), count(html, "cancelled")) == (1, 0, 1, 1, 0)  # fmt: skip
    assert "No upload is running." in html
    failed_row = re.search(rf'<tr id="failed-{gone["id"]}">.*?</tr>', html)
    assert failed_row
    assert "SourceMissing" in failed_row.group(0)
    assert "does not exist" in failed_row.group(0)
    # Escaped, not markup: the path is the customer's text.
    assert "&lt;b&gt;gone&lt;/b&gt;.mp4" in failed_row.group(0)
    assert "<b>gone" not in html
    callback_row = re.search(rf'<tr id="callback-{gone["id"]}">.*?</tr>', html)
    assert callback_row
    assert "HTTP 502 from the receiver &lt;oops&gt;" in callback_row.group(0)
    assert "https://hooks.example.com" in callback_row.group(0)
    assert "sig=Q1" not in html  # the callback's query may hold the customer's tokens
    assert f'id="upload-{queued["id"]}"' not in html
    assert f'id="failed-{done["id"]}"' not in html
    assert TOKEN not in html


def test_in_flight_rows_show_progress_and_throughput() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0)
    row = SimpleNamespace(
        id=42,
        cdn_id=7,
        path='sestore1/jb/"><script>alert(1)</script>.mp4',
        bucket="videos",
        destination_path="a&b.mp4",
        bytes_uploaded=30 * MiB,
        bytes_total=120 * MiB,
        attempts=1,
        started=now - timedelta(seconds=10),
        lease_owner="host:1:abc",
    )
    html = render(Snapshot(now, {"uploading": 1}, [row], [], []))
    assert '<progress id="progress-42" value="31457280" max="125829120">25%</progress>' in html
    assert "3.0 MiB/s" in html
    assert "0:10" in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "s3://videos/a&amp;b.mp4" in html


def test_callback_host_drops_path_query_and_user_info() -> None:
    assert callback_host("https://user:pw@hooks.example.com:8443/x?token=1") == (
        "https://hooks.example.com:8443"
    )
    assert callback_host("http://[2001:db8::1]/cb") == "http://[2001:db8::1]"
    assert callback_host("http://host:99999/") == "(unparsable URL)"


def test_operator_token_setting() -> None:
    assert Settings.from_env({}).operator_token == ""
    assert Settings.from_env({"VOD2S3_OPERATOR_TOKEN": TOKEN}).operator_token == TOKEN
    assert TOKEN not in repr(Settings.from_env({"VOD2S3_OPERATOR_TOKEN": TOKEN}))
    with pytest.raises(ConfigurationError, match="at least 16"):
        Settings.from_env({"VOD2S3_OPERATOR_TOKEN": "short"})


# -- headless Chromium ------------------------------------------------------------------------


def chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


def browse(url: str, profile: Path, *extra: str) -> str:
    """Headless Chromium, loopback only; returns what it printed (the DOM with --dump-dom)."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout.decode("utf-8", errors="replace")


def test_chromium_shows_a_running_upload_and_refuses_without_the_token(
    dashboard_service: RunningService, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    browser = chromium()
    assert browser
    service = dashboard_service
    api = service.client(service.add_account(CDN, "jb"))
    service.write_source("sestore1/jb/later.mp4", b"l" * 100)
    with FaultProxy(s3_endpoint) as proxy:
        service.runtime.accounts.set_aws(
            CDN, "testing", "testing", "us-east-1", endpoint_url=proxy.url
        )
        # Three parts go out at once; the second is held back, so the upload stays running.
        proxy.add_rule(Rule(operation="UploadPart", part_number=2, action="delay", delay=300,
                            times=-1))  # fmt: skip
        path = service.write_source("sestore1/jb/running.mp4", os.urandom(12 * MiB))
        upload_id = int(api.upload(path, bucket, "private")["id"])
        worker = service.runtime.worker(concurrency=1)
        thread = threading.Thread(target=worker.run, name="dashboard-worker", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while api.get(upload_id)["bytes_uploaded"] < 5 * MiB:
                assert time.monotonic() < deadline, "no part confirmed in time"
                time.sleep(0.05)
            api.upload("sestore1/jb/later.mp4", bucket, "private")  # waits: one slot only
            uploaded = api.get(upload_id)["bytes_uploaded"]
            assert api.get(upload_id)["state"] == "uploading"

            url = f"{service.base_url}/dashboard"
            dom = browse(f"{url}?token={TOKEN}", tmp_path / "profile", "--dump-dom")
            shot = tmp_path / "shot.png"
            browse(
                f"{url}?token={TOKEN}",
                tmp_path / "profile",
                f"--screenshot={shot}",
                "--window-size=1200,900",
                "--hide-scrollbars",
            )
            refused = browse(url, tmp_path / "profile", "--dump-dom")
        finally:
            worker.stopping.set()
            proxy.stop()  # lets the held part go (as an error), so the worker can stop
            thread.join(timeout=60)
        assert not thread.is_alive()

    assert "vod2s3 operator dashboard" in dom
    assert f'id="upload-{upload_id}"' in dom
    progress = re.search(rf'<progress id="progress-{upload_id}" value="(\d+)" max="(\d+)"', dom)
    assert progress, dom
    assert int(progress.group(1)) == uploaded
    assert int(progress.group(2)) == 12 * MiB
    assert "running.mp4" in dom
    assert re.search(r'<td class="rate">[\d.]+ (B|KiB|MiB|GiB)/s</td>', dom), dom
    assert (count(dom, "queued"), count(dom, "uploading")) == (1, 1)
    assert (count(dom, "completed"), count(dom, "failed")) == (0, 0)

    assert shot.exists()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10 * 1024

    assert "<pre>" in refused  # the 401 envelope, as Chromium shows a JSON answer
    assert escape(UNAUTHORIZED_MESSAGE, quote=False) in refused
    assert f'id="upload-{upload_id}"' not in refused
