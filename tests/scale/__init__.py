"""Scale-out tests: real `vod2s3 api` and `vod2s3 worker` processes sharing one PostgreSQL
database, with moto's S3 server behind the loopback fault proxy.

The harness: :class:`Fleet` runs the processes (one log file each, so a log line's file names
its worker), :func:`make_sources` writes the source files, and :func:`claims` reads the claim
intervals back out of a worker's log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.fernet import Fernet

from tests.helpers import free_port, wait_for_http
from tests.pgcluster import PgCluster, throwaway_postgres
from vod2s3.client import Vod2s3Client
from vod2s3.config import MiB

VOD2S3 = Path(sys.executable).parent / "vod2s3"
PART = 5 * MiB
LEASE_SECONDS = 5  # the least the settings allow
FINAL = ("completed", "failed", "cancelled")


# -- PostgreSQL --------------------------------------------------------------------------


@contextlib.contextmanager
def restartable_postgres_database(keep_log: Path | None = None) -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test's own (:mod:`tests.pgcluster`), which the test may
    stop, start and restart without touching the machine's server on 127.0.0.1:5432 or the
    tests using it. Its database's URL is ``.url``. Stopped and deleted afterwards; its
    server log copied to ``keep_log``. Fails when CI=true and the PostgreSQL server binaries
    are missing, skips otherwise."""
    with throwaway_postgres(keep_log) as cluster:
        yield cluster


# -- source files ------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    index: int
    cdn: int
    user: str
    volume: str
    path: str  # as the customer names it: <volume>/<user>/<path in the folder>
    bucket: str
    key: str
    size: int
    sha256: str

    @property
    def multipart(self) -> bool:
        return self.size >= PART


def write_source(
    root: Path, index: int, cdn: int, user: str, volume: str, bucket: str, size: int
) -> Source:
    relative = f"clips/file-{index:03d}.mp4"
    target = root / volume / user / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    target.write_bytes(data)
    return Source(
        index=index,
        cdn=cdn,
        user=user,
        volume=volume,
        path=f"{volume}/{user}/{relative}",
        bucket=bucket,
        key=f"{user}/{volume}/file-{index:03d}.mp4",
        size=size,
        sha256=hashlib.sha256(data).hexdigest(),
    )


# -- the processes -----------------------------------------------------------------------


@dataclass
class Account:
    cdn: int
    user: str
    bucket: str
    api_key: str
    secret: str

    def client(self, api_url: str) -> Vod2s3Client:
        return Vod2s3Client(f"{api_url}/stable/", self.cdn, self.api_key, self.secret)


@dataclass
class Fleet:
    """`vod2s3` subprocesses sharing one database and one storage root; each one logs to
    ``<logs>/<name>.log``. Whatever is still running at the end is killed."""

    tmp_path: Path
    database_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    killed_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.tmp_path / "storage"
        self.logs = self.tmp_path / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        for volume in ("sestore1", "sestore2"):
            (self.root / volume).mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "VOD2S3_DATABASE_URL": self.database_url,
            "VOD2S3_STORAGE_ROOT": str(self.root),
            "VOD2S3_MASTER_KEY": Fernet.generate_key().decode(),
            "VOD2S3_PART_SIZE": str(PART),
            "VOD2S3_MULTIPART_THRESHOLD": str(PART),
            "VOD2S3_LEASE_SECONDS": str(LEASE_SECONDS),
            "VOD2S3_POLL_INTERVAL": "0.1",
            "VOD2S3_RETRY_BASE_DELAY": "0",
            "VOD2S3_RETRY_MAX_DELAY": "0",
            "VOD2S3_RATE_LIMIT": "0",
            "VOD2S3_ADDRESS_RATE_LIMIT": "0",
            # No integrity probe: fault rules and request counts see only the uploads.
            "VOD2S3_INTEGRITY": "crc32c",
            "VOD2S3_LOG_LEVEL": "INFO",
            "VOD2S3_LOG_FORMAT": "text",
            **self.extra_env,
        }

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(VOD2S3), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"vod2s3 {' '.join(args)}: {done.stderr}"
        return done.stdout

    def add_account(self, cdn: int, user: str, bucket: str, s3_endpoint: str) -> Account:
        issued = json.loads(
            self.cli("accounts", "create", "--cdn", str(cdn), "--storage-user", user, "--json")
        )
        self.cli(
            "accounts",
            "set-aws",
            "--cdn",
            str(cdn),
            "--access-key-id",
            "testing",
            "--secret-access-key",
            "testing",
            "--endpoint-url",
            s3_endpoint,
            "--buckets",
            bucket,
        )
        for volume in ("sestore1", "sestore2"):
            (self.root / volume / user).mkdir(parents=True, exist_ok=True)
        return Account(cdn, user, bucket, issued["api_key"], issued["secret"])

    def _spawn(
        self, name: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        assert name not in self.procs, name
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [str(VOD2S3), *args],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def start_api(self, name: str) -> str:
        port = free_port()
        proc = self._spawn(name, "api", "--host", "127.0.0.1", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", proc=proc)
        return url

    def start_worker(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Start ``vod2s3 worker <args>`` (``env`` added to the fleet's environment); returns
        its owner id (from its first log line)."""
        proc = self._spawn(name, "worker", *args, env=env)
        deadline = time.monotonic() + 30
        while True:
            found = re.search(r"worker (\S+) (?:\(id \d+\) )?started", self.log(name))
            if found:
                return found.group(1)
            assert proc.poll() is None, f"{name} exited ({proc.returncode})\n{self.log(name)}"
            assert time.monotonic() < deadline, f"{name} did not start\n{self.log(name)}"
            time.sleep(0.05)

    def kill(self, name: str) -> float:
        """SIGKILL; returns when it is dead (the time it was known dead, epoch seconds)."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.killed_at[name] = time.time()
        return self.killed_at[name]

    def pause(self, name: str) -> None:
        """SIGSTOP: the process is frozen (its connections stay open) until :meth:`resume`."""
        self.procs[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT after :meth:`pause`."""
        self.procs[name].send_signal(signal.SIGCONT)

    def stop(self, name: str, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds it took)."""
        proc = self.procs[name]
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=timeout)
        return status, time.monotonic() - began

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-chars:]}" for name in sorted(self.procs))


# -- the claim log -----------------------------------------------------------------------

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) [A-Z]+ [\w.]+: (.*)$")
_STARTED = re.compile(r"upload (\d+) \(cdn \d+\): attempt (\d+) started$")
_ENDED = {
    "completed": re.compile(r"upload (\d+) \(cdn \d+\): completed$"),
    "failed": re.compile(r"upload (\d+) \(cdn \d+\): failed: "),
    "released": re.compile(r"upload (\d+): released for another worker"),
    "lease lost": re.compile(r"upload (\d+): this worker's lease ended"),
    "cancelled": re.compile(r"upload (\d+) \(cdn \d+\): cancelled; stopping$"),
    "error": re.compile(r"upload (\d+): unexpected error"),
    "abandoned": re.compile(r"upload (\d+): database unavailable; left for the next claim"),
    "requeued": re.compile(r"upload (\d+): \S+, retry in [\d.]+s$"),
}


@dataclass
class Claim:
    """One worker's hold on one upload, from its "attempt started" line to the line that
    ends it (or to the worker's death)."""

    worker: str
    upload: int
    attempt: int
    start: float
    end: float | None = None  # None: never ended
    how: str = ""


def _when(stamp: str) -> float:
    # logging's asctime is local time, like time.time()'s reading of the clock.
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_events(text: str) -> Iterator[tuple[float, str]]:
    for line in text.splitlines():
        found = _LINE.match(line)
        if found:
            yield _when(found.group(1)), found.group(2)


_GAVE_UP = ("lease lost", "cancelled", "abandoned")


def claims(
    worker: str, text: str, killed_at: float | None = None, lost_is_over: bool = False
) -> list[Claim]:
    """The claims in one worker's log. Those still open when the worker was killed end at
    ``killed_at``.

    A worker claims an upload again only once its earlier claim has ended, unless that claim's
    lease expired while the database was away and its job had not yet given up (allowed with
    ``lost_is_over``): then the job that gives up ("lease lost", "abandoned") is taken to be
    the older one."""
    result: list[Claim] = []
    open_claims: dict[int, list[Claim]] = {}
    for when, message in log_events(text):
        started = _STARTED.match(message)
        if started:
            upload = int(started.group(1))
            held = open_claims.setdefault(upload, [])
            assert lost_is_over or not held, f"{worker} started upload {upload} twice at once"
            claim = Claim(worker, upload, int(started.group(2)), when)
            held.append(claim)
            result.append(claim)
            continue
        for how, pattern in _ENDED.items():
            ended = pattern.match(message)
            if ended and open_claims.get(int(ended.group(1))):
                held = open_claims[int(ended.group(1))]
                claim = held.pop(0 if how in _GAVE_UP else -1)
                claim.end, claim.how = when, how
                break
    for held in open_claims.values():
        for claim in held:
            if killed_at is not None:
                claim.end, claim.how = killed_at, "killed"
    return result


# A claim ended by a log line was given up (committed) a moment before that line was written:
# another worker may claim the upload in that moment. A double claim by two live workers lasts
# as long as both upload, and shows in the attempts column too (see the tests).
LOG_SLACK = 0.25


def overlaps(all_claims: list[Claim], lost_is_over: bool = False) -> list[str]:
    """Pairs of claims on one upload by two workers at once, the earlier one not dead. With
    ``lost_is_over``, a claim that ended without writing its outcome ("lease lost", or given
    up while the database was away) counts as over when the other began: the database was
    away longer than a lease, the lease expired, and the guarded writes refused whatever the
    earlier worker tried after the takeover."""
    by_upload: dict[int, list[Claim]] = {}
    for claim in all_claims:
        by_upload.setdefault(claim.upload, []).append(claim)
    found = []
    for upload, held in by_upload.items():
        held.sort(key=lambda c: c.start)
        for i, earlier in enumerate(held):
            for later in held[i + 1 :]:
                if lost_is_over and earlier.how in _GAVE_UP:
                    continue
                if earlier.end is None:
                    found.append(f"upload {upload}: {earlier} never ended, then {later}")
                    continue
                slack = 0.0 if earlier.how == "killed" else LOG_SLACK
                if later.start < earlier.end - slack:
                    found.append(f"upload {upload}: {earlier} overlaps {later}")
    return found


def completions(text: str) -> list[int]:
    return [
        int(found.group(1))
        for _, message in log_events(text)
        if (found := _ENDED["completed"].match(message))
    ]


def wait_until(condition: Any, what: str, timeout: float, fleet: Fleet | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f"\n{fleet.tail()}" if fleet else "")
            )
        time.sleep(0.02)
