"""Connections that hold the server without finishing a request, over raw sockets: a header
deadline, caps on open connections per address and in all, and repeated events logged once
per interval (issue 12, item 2)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.helpers import free_port, wait_for_http
from tests.service import RunningService, make_settings, running_service

HEADER_TIMEOUT = 0.5
VOD2S3 = str(Path(sys.executable).parent / "vod2s3")


def connect(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect((host, port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s pass: fail)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def port_of(svc: RunningService) -> int:
    return int(svc.base_url.rsplit(":", 1)[1])


@pytest.fixture
def svc(tmp_path: Path, s3_endpoint: str) -> Iterator[RunningService]:
    settings = make_settings(
        tmp_path, header_timeout=HEADER_TIMEOUT, connections_per_address=4, max_connections=16
    )
    with running_service(settings, s3_endpoint, ipv6_too=True) as running:
        yield running


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
    svc: RunningService,
) -> None:
    started = time.monotonic()
    with contextlib.closing(connect("127.0.0.1", port_of(svc))) as sock:
        assert read_until_closed(sock) == b""
    assert HEADER_TIMEOUT <= time.monotonic() - started < 5


def test_headers_trickled_a_byte_at_a_time_are_cut_off(svc: RunningService) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    started = time.monotonic()
    sent = 0
    with contextlib.closing(connect("127.0.0.1", port_of(svc))) as sock:
        sock.settimeout(0.1)  # the pace of the trickle: one byte per 0.1 s
        with contextlib.suppress(OSError):
            for byte in request:
                sock.sendall(bytes([byte]))
                sent += 1
                try:
                    if sock.recv(1) == b"":
                        break  # closed by the server
                except TimeoutError:
                    continue
    # Each byte arrived in time, but the headers as a whole did not: closed long before the
    # last byte (which would take 23 s), and no answer was given.
    assert sent < len(request) // 2
    assert time.monotonic() - started < 5


def test_the_deadline_starts_again_for_each_request_on_a_kept_alive_connection(
    svc: RunningService,
) -> None:
    ask = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with contextlib.closing(connect("127.0.0.1", port_of(svc))) as sock:
        for _ in range(3):
            sock.sendall(ask)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # half a request, never finished
        assert read_until_closed(sock) == b""


def test_connections_over_the_per_address_cap_get_503_while_others_are_served(
    svc: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    port = port_of(svc)
    caplog.set_level(logging.INFO, logger="vod2s3.api")
    held = [connect("127.0.0.1", port) for _ in range(4)]
    try:
        # The cap is counted when the server has taken each connection: one request on each
        # shows they all were.
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        refused = []
        for _ in range(5):
            with contextlib.closing(connect("127.0.0.1", port)) as extra:
                refused.append(read_until_closed(extra))
        # Another address is not held back by this one's connections.
        assert httpx.get(f"http://[::1]:{port}/healthz").status_code == 200
    finally:
        for sock in held:
            sock.close()

    for answer in refused:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert b"retry-after: 1" in head.lower()
        envelope = json.loads(body)
        assert (envelope["status"], envelope["code"]) == ("failure", "1000")  # busy
        assert "Too many connections from your address (at most 4" in envelope["message"]
    # Five refusals, one log line: repeated events are summarised, not logged each time.
    lines = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "127.0.0.1" in lines[0]
    # Once the held connections are gone, the address is served again.
    assert httpx.get(f"{svc.base_url}/healthz").status_code == 200


def test_the_cap_on_all_connections_refuses_every_address_alike(
    tmp_path: Path, s3_endpoint: str
) -> None:
    settings = make_settings(tmp_path, connections_per_address=64, max_connections=16)
    with running_service(settings, s3_endpoint, ipv6_too=True) as svc:
        port = port_of(svc)
        held = [connect("127.0.0.1", port) for _ in range(16)]
        try:
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            with contextlib.closing(connect("::1", port)) as extra:
                answer = read_until_closed(extra)
        finally:
            for sock in held:
                sock.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"too many connections open" in answer
        assert httpx.get(f"http://[::1]:{port}/healthz").status_code == 200


def test_a_flood_of_idle_connections_cannot_use_up_the_servers_files(tmp_path: Path) -> None:
    """The probe's attack on `vod2s3 api` itself: more idle connections than the process may
    open files. The server takes what its file limit leaves room for, refuses the rest with
    a 503, logs that once, and serves at once when the flood goes."""
    port = free_port()
    env = dict(
        os.environ,
        VOD2S3_DATABASE_URL=f"sqlite:///{tmp_path / 'vod2s3.db'}",
        VOD2S3_STORAGE_ROOT=str(tmp_path / "storage"),
        VOD2S3_MASTER_KEY=Fernet.generate_key().decode(),
        VOD2S3_CONNECTIONS_PER_ADDRESS="10000",  # only the file limit stands in the way
        VOD2S3_HEADER_TIMEOUT="60",
    )
    (tmp_path / "storage").mkdir()
    subprocess.run([VOD2S3, "db", "upgrade"], env=env, check=True, capture_output=True)
    log_path = tmp_path / "api.log"

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with log_path.open("wb") as log_file:
        api = subprocess.Popen(
            [VOD2S3, "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=few_files,
        )
        flood: list[socket.socket] = []
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=api)
            flood.extend(connect("127.0.0.1", port) for _ in range(400))
            # 256 files, 128 kept for the database and the rest: 128 connections are taken
            # (and wait for their headers); the other 272 are answered and closed at once.
            answered: dict[socket.socket, bytes] = {}
            deadline = time.monotonic() + 20
            while len(answered) < 272 and time.monotonic() < deadline:
                waiting = [sock for sock in flood if sock not in answered]
                ready, _, _ = select.select(waiting, [], [], 0.5)
                for sock in ready:
                    answered[sock] = read_until_closed(sock)
            quiet, _, _ = select.select([s for s in flood if s not in answered], [], [], 0.3)
            assert (len(answered), len(quiet)) == (272, 0)
            assert all(answer.startswith(b"HTTP/1.1 503") for answer in answered.values())
            for sock in flood:
                sock.close()
            flood.clear()
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        finally:
            for sock in flood:
                sock.close()
            api.terminate()
            api.wait(timeout=30)
    log = log_path.read_text()
    assert log.count("refused a connection") == 1, log
    assert "Traceback" not in log, log
