"""Small helpers shared by the test suites: free ports, waiting for servers, subprocesses."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import httpx
import pytest


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Until ``url`` answers anything; ``verify``: a CA bundle for a test's own TLS."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2.0, verify=verify)
            return
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


@contextlib.contextmanager
def moto_server_process(log_path: Path) -> Iterator[str]:
    """Run moto's S3 server as a separate process on loopback; yields its endpoint URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"{endpoint}/moto-api/", proc=proc)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def in_ci() -> bool:
    """True under CI (``CI=true``), where every test's requirements must be met."""
    return os.environ.get("CI", "").lower() == "true"


def missing_requirement(message: str) -> NoReturn:
    """A test cannot run for want of ``message``: fails when CI=true, skips otherwise."""
    if in_ci():
        pytest.fail(f"{message} (required when CI=true)", pytrace=False)
    pytest.skip(message)


def php_binary() -> str:
    """php-cli's path; skips the test without it, unless CI=true where it is required."""
    path = shutil.which("php")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("php-cli is required in CI (CI=true) to check PHP compatibility")
        pytest.skip("php-cli is not installed; PHP compatibility not checked (required if CI=true)")
    return path


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC).replace(tzinfo=None)

    def unix(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class BytesSource:
    """Bytes in memory where a body reads its part from (s3/body.py's RangeSource), counting
    the bytes read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        self.bytes_read += length
        return self.data[offset : offset + length]
