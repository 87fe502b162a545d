"""Limits that keep one client from exhausting the service, over real HTTP. The server runs
on a FakeClock, so the rate limit refills when the test moves the clock, never by sleeping."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import FakeClock
from tests.service import RunningService, make_settings, running_service
from vod2s3.client import ClientError
from vod2s3.jsonenc import php_json_encode


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: the client signs each request with time.time().
    return FakeClock(time.time())


@pytest.fixture
def limited(tmp_path: Path, s3_endpoint: str, clock: FakeClock) -> Iterator[RunningService]:
    settings = make_settings(
        tmp_path, rate_limit=2.0, rate_burst=5, max_queued_per_account=2, body_timeout=0.5
    )
    with running_service(settings, s3_endpoint, clock=clock) as running:
        yield running


def test_requests_over_the_rate_get_429_with_retry_after(
    limited: RunningService, clock: FakeClock
) -> None:
    busy = limited.client(limited.add_account(158, "jb"))
    calm = limited.client(limited.add_account(159, "other"))
    # Distinct requests: the same signed request again is a replay, limited apart.
    offsets = itertools.count()
    for _ in range(5):
        busy.status(offset=next(offsets))

    def over_the_rate() -> httpx.Response:
        signed = busy.build_request("aws.status", offset=next(offsets))
        return httpx.post(limited.url, data={"json": php_json_encode(signed)})

    response = over_the_rate()

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["status"] == "failure"
    assert "Too many requests" in body["message"]
    assert calm.status() == []  # another account is not held back
    clock.advance(0.25)  # half a token at 2 per second: still too soon
    assert over_the_rate().status_code == 429
    clock.advance(0.75)  # Retry-After's second has passed
    assert busy.status(offset=next(offsets)) == []


def test_queued_uploads_per_account_are_capped(limited: RunningService, bucket: str) -> None:
    api = limited.client(limited.add_account(158, "jb"))
    for name in ("a", "b"):
        api.upload(limited.write_source(f"sestore1/jb/{name}.mp4", b"v"), bucket, "private")

    with pytest.raises(ClientError) as refused:
        api.upload(limited.write_source("sestore1/jb/c.mp4", b"v"), bucket, "private")

    assert refused.value.http_status == 429
    assert "2 uploads queued or running" in refused.value.message
    assert len(api.status()) == 2
    limited.drain()
    # The fifth request, the last of the burst: refused only by the cap, now lifted.
    assert api.upload("sestore1/jb/c.mp4", bucket, "private")["state"] == "queued"


def test_a_body_that_trickles_in_gets_408(limited: RunningService) -> None:
    host, port = limited.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /stable/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"command":'
        )
        started = time.monotonic()
        received = b""
        # Read until the server closes the connection or the envelope is complete.
        while b'"data":null}' not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        answer = received.decode()
    assert time.monotonic() - started < 3
    assert answer.startswith("HTTP/1.1 408")
    assert '"status":"failure"' in answer
    assert "did not arrive within 0.5 s" in answer
