"""A running vod2s3 for tests: the real Starlette app under uvicorn on 127.0.0.1, a SQLite
(or PostgreSQL) database, a storage folder, and an account whose S3 is the moto server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import select

from tests.helpers import free_port
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.app import create_app
from vod2s3.api.server import api_server
from vod2s3.client import Vod2s3Client
from vod2s3.clock import Clock
from vod2s3.config import MiB, Settings
from vod2s3.runtime import Runtime
from vod2s3.store import migrate
from vod2s3.store.schema import upload_parts, uploads


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = Settings(
        database_url=f"sqlite:///{tmp_path / 'vod2s3.db'}",
        storage_root=tmp_path / "storage",
        master_key=Fernet.generate_key().decode(),
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
        parts_in_flight=4,
        parts_in_memory=4,
        rate_limit=0.0,  # on only in the tests of the limiters themselves
        address_rate_limit=0.0,
        # A fixed check, without the "auto" probe's requests: the fault proxy's rules and
        # the request counts then see only the uploads' own. tests/stores runs "auto".
        integrity="crc32c",
        lease_seconds=30,
        max_attempts=3,
        poll_interval=0.05,
    )
    return replace(base, **overrides)


@dataclass
class RunningService:
    runtime: Runtime
    base_url: str
    s3_endpoint: str

    @property
    def url(self) -> str:
        return f"{self.base_url}/stable/"

    @property
    def storage_root(self) -> Path:
        return self.runtime.settings.storage_root

    def add_account(
        self, cdn: int, storage_user: str, buckets: list[str] | None = None
    ) -> IssuedCredentials:
        issued = self.runtime.accounts.create(cdn, storage_user)
        self.runtime.accounts.set_aws(
            cdn, "testing", "testing", "us-east-1", endpoint_url=self.s3_endpoint, buckets=buckets
        )
        (self.storage_root / "sestore1" / storage_user).mkdir(parents=True, exist_ok=True)
        return issued

    def client(self, issued: IssuedCredentials) -> Vod2s3Client:
        return Vod2s3Client(self.url, issued.cdn, issued.api_key, issued.secret)

    def write_source(self, path: str, data: bytes) -> str:
        target = self.storage_root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return path

    def stored_multipart(self, upload_id: int) -> tuple[str | None, set[int]]:
        """What the part journal holds for an upload: its multipart upload id (None when it
        names none) and the numbers of the parts recorded."""
        with self.runtime.engine.connect() as conn:
            named = conn.execute(
                select(uploads.c.multipart_upload_id).where(uploads.c.id == upload_id)
            ).scalar_one()
            numbers = conn.execute(
                select(upload_parts.c.part_number).where(upload_parts.c.upload_id == upload_id)
            ).scalars()
            return named, set(numbers)

    def drain(self, timeout: float = 120.0) -> int:
        """Run a worker in this thread until nothing is due; returns how many it ran."""
        worker = self.runtime.worker(concurrency=1)
        try:
            worker.sweep()
            ran = 0
            deadline = time.monotonic() + timeout
            while worker.run_one():
                ran += 1
                assert time.monotonic() < deadline, "worker did not drain the queue in time"
            return ran
        finally:
            worker.close()


@contextmanager
def running_service(
    settings: Settings,
    s3_endpoint: str,
    queued: Callable[[], None] | None = None,
    clock: Clock | None = None,
    ipv6_too: bool = False,
) -> Iterator[RunningService]:
    """The API on 127.0.0.1 (and on [::1], same port, with ``ipv6_too``: two client
    addresses). ``clock`` (a FakeClock) moves the clock window and grace periods without
    sleeping; ``queued`` is the hook serve uses to wake its worker."""
    runtime = Runtime.open(settings, clock)
    migrate.upgrade(runtime.engine)
    settings.storage_root.mkdir(parents=True, exist_ok=True)
    (settings.storage_root / "sestore1").mkdir(exist_ok=True)
    port = free_port()
    # The server `vod2s3 api` runs, with its connection limits and header deadline.
    server = api_server(create_app(runtime.services(queued)), settings, "127.0.0.1", port)
    sockets = [_listening(socket.AF_INET6, "::1", port)] if ipv6_too else []
    if sockets:
        sockets.append(_listening(socket.AF_INET, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, args=(sockets or None,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "API server did not start"
        time.sleep(0.02)
    try:
        yield RunningService(runtime, f"http://127.0.0.1:{port}", s3_endpoint)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for sock in sockets:
            sock.close()
        runtime.close()


def _listening(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


# -- `vod2s3 worker` as a process of its own, on a running service's database ---------------

VOD2S3 = str(Path(sys.executable).parent / "vod2s3")


def worker_env(service: RunningService, **extra: str) -> dict[str, str]:
    """The environment of a `vod2s3 worker` on ``service``'s database and storage: 5 MiB
    parts one at a time, one upload at a time, no retry delay; ``extra`` on top."""
    settings = service.runtime.settings
    return {
        **os.environ,
        "VOD2S3_DATABASE_URL": settings.database_url,
        "VOD2S3_STORAGE_ROOT": str(settings.storage_root),
        "VOD2S3_INTEGRITY": settings.integrity,
        "VOD2S3_MASTER_KEY": settings.master_key,
        "VOD2S3_POLL_INTERVAL": "0.05",
        "VOD2S3_RETRY_BASE_DELAY": "0",
        "VOD2S3_RETRY_MAX_DELAY": "0",
        "VOD2S3_PART_SIZE": str(5 * MiB),
        "VOD2S3_MULTIPART_THRESHOLD": str(5 * MiB),
        "VOD2S3_PARTS_IN_FLIGHT": "1",
        "VOD2S3_WORKER_CONCURRENCY": "1",
        "VOD2S3_LOG_LEVEL": "INFO",
        **extra,
    }


@contextmanager
def worker_process(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`vod2s3 worker ARGS`, its output appended to ``log``; killed if the test leaves it
    running."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [VOD2S3, "worker", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def stop_gracefully(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, as systemd and the container runtime stop it; killed if it outlives
    ``timeout``, so that a test never leaves a process behind."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(proc: subprocess.Popen[bytes], log: Path, done: Callable[[], bool]) -> None:
    """Until ``done()``; fails with the log's tail if the worker exits or 60 s pass."""
    deadline = time.monotonic() + 60
    while not done():
        assert proc.poll() is None, "worker exited:\n" + log.read_text()[-3000:]
        assert time.monotonic() < deadline, "timed out:\n" + log.read_text()[-3000:]
        time.sleep(0.05)
