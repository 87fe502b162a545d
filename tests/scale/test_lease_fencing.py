"""Fenced leases between real `vod2s3 worker` processes on PostgreSQL, with moto's S3 server
behind the fault proxy (which tells the workers apart by their User-Agent,
``vod2s3-worker/<name>``).

- A worker whose clock is five minutes ahead of (or behind) the others' neither takes a live
  upload from a healthy worker nor fails to take over one whose worker died, and a lease it
  takes is not taken from it: leases run on the database's clock.
- A worker frozen (SIGSTOP) past its lease, then thawed while the worker that took its
  upload over is sending, stops: it sends no part, aborts nothing, and says its lease ended.
- A worker killed (SIGKILL) in the middle of a multipart upload is taken over within seconds
  even with a two-minute lease (its advisory lock is gone), and the parts it had confirmed
  are not sent again.

The skewed clock is libfaketime's (Debian package ``faketime``), preloaded into the worker
alone with the monotonic clock left real, as a host with a wrong wall clock has it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import Engine, text

from tests.databases import postgres_database
from tests.faultproxy import FaultProxy, Rule, Seen
from tests.helpers import missing_requirement
from tests.scale import PART, Fleet, Source, log_events, wait_until, write_source
from vod2s3.client import Vod2s3Client
from vod2s3.config import MiB
from vod2s3.store.db import make_engine

pytestmark = pytest.mark.postgres

BUCKET = "fenced-videos"
SKEW = 300  # seconds: far beyond a lease, well inside S3's 15 minutes of signature skew

# -- a worker on a skewed clock ----------------------------------------------------------

# The library is preloaded straight into the worker: the `faketime` command forks and waits,
# so the process the fleet signals (SIGKILL) would be the wrapper, not the worker.
_LIBFAKETIME = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)

# libfaketime 0.9.10 (Debian 12) breaks Python 3.11's time.sleep when the monotonic clock is
# left alone: clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) answers EINVAL
# (wolfcw/libfaketime#426). Faking the monotonic clock instead hangs every lock and event
# wait with a timeout (sem_clockwait, wolfcw/libfaketime#390). So the monotonic clock stays
# real and sleeps become timed lock waits, which it leaves alone. Imported by the worker's
# interpreter at start-up (sitecustomize, through PYTHONPATH).
_SLEEP_SHIM = """\
import _thread
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    lock = _thread.allocate_lock()
    lock.acquire()
    lock.acquire(timeout=min(seconds, _thread.TIMEOUT_MAX))


time.sleep = _sleep
"""


def skewed_clock(offset: int, tmp_path: Path) -> dict[str, str]:
    """The environment that runs a worker with its wall clock ``offset`` seconds off: checked
    here on a probe interpreter (its time.time() moved, time.sleep works)."""
    found = [path for pattern in _LIBFAKETIME for path in sorted(glob.glob(pattern))]
    if not found:
        missing_requirement("libfaketime is not installed (Debian: apt-get install faketime)")
    shim = tmp_path / "faketime-shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(_SLEEP_SHIM)
    python_path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH")) if p)
    env = {
        "LD_PRELOAD": found[0],
        "FAKETIME": f"{offset:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        # File times come from the file's writer, not from the skewed reader's clock (the
        # source's mtime is compared when an upload is resumed).
        "NO_FAKE_STAT": "1",
        "PYTHONPATH": python_path,
    }
    before = time.time()
    probe = subprocess.run(
        [sys.executable, "-c", "import time; time.sleep(0.01); print(time.time())"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode == 0, probe.stderr
    moved = float(probe.stdout) - before
    assert abs(moved - offset) < 5, f"libfaketime moved the clock by {moved:.1f}s, not {offset}s"
    return env


def log_clock_offset(fleet: Fleet, name: str, started_between: tuple[float, float]) -> float:
    """How far the worker's clock is from ours, by the time stamp of its first log line (its
    local time) and the interval it was started in."""
    stamp = next(log_events(fleet.log(name)))[0]
    low, high = started_between
    if stamp > high:
        return stamp - high
    return min(0.0, stamp - low)


# -- the scene ---------------------------------------------------------------------------


def agent(worker: str) -> str:
    """What a worker's requests carry in their User-Agent."""
    return f"vod2s3-worker/{worker}"


@dataclass
class Scene:
    fleet: Fleet
    proxy: FaultProxy
    client: Vod2s3Client
    engine: Engine
    s3: Any

    def queue(self, index: int, size: int) -> tuple[int, Source]:
        source = write_source(self.fleet.root, index, 1, "alpha", "sestore1", BUCKET, size)
        record = self.client.upload(source.path, BUCKET, "private", destination_path=source.key)
        return int(record["id"]), source

    def row(self, upload_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT state, attempts, lease_owner, bytes_uploaded, multipart_upload_id "
                    "FROM uploads WHERE id = :id"
                ),
                {"id": upload_id},
            ).one()

    def confirmed(self, upload_id: int) -> set[int]:
        """The part numbers recorded as sent (the journal a resuming attempt trusts)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT part_number FROM upload_parts WHERE upload_id = :id"),
                {"id": upload_id},
            )
            return {int(row.part_number) for row in rows}

    def held_by(self, upload_id: int, worker: str) -> bool:
        row = self.row(upload_id)
        return bool(row.state == "uploading" and row.lease_owner == worker)

    def done(self, upload_id: int) -> bool:
        return bool(self.row(upload_id).state == "completed")

    def intact(self, source: Source) -> bool:
        body = self.s3.get_object(Bucket=BUCKET, Key=source.key)["Body"].read()
        return hashlib.sha256(body).hexdigest() == source.sha256

    def open_multipart_uploads(self) -> list[Any]:
        return list(self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def sent(
    seen: list[Seen], source: Source, worker: str, operation: str = "UploadPart"
) -> list[Seen]:
    """The requests for ``source``'s object that ``worker`` sent."""
    path = f"/{BUCKET}/{source.key}"
    return [
        s
        for s in seen
        if s.operation == operation and s.path == path and agent(worker) in s.user_agent
    ]


def parts_of(requests: list[Seen]) -> list[int]:
    return [s.part_number for s in requests if s.part_number is not None]


def started_attempt(fleet: Fleet, name: str, upload_id: int) -> bool:
    """Did the worker's log say it started an attempt at the upload?"""
    pattern = re.compile(rf"upload {upload_id} \(cdn \d+\): attempt \d+ started$")
    return any(pattern.match(message) for _, message in log_events(fleet.log(name)))


@contextlib.contextmanager
def scene(tmp_path: Path, s3_endpoint: str, s3_client: Any, env: dict[str, str]) -> Iterator[Scene]:
    """A fresh PostgreSQL database, an API, one account on moto behind the fault proxy."""
    with (
        postgres_database() as url,
        FaultProxy(s3_endpoint) as proxy,
        Fleet(tmp_path, url, env) as fleet,
    ):
        fleet.cli("db", "upgrade")
        s3_client.create_bucket(Bucket=BUCKET)
        account = fleet.add_account(1, "alpha", BUCKET, proxy.url)
        engine = make_engine(url)
        try:
            with account.client(fleet.start_api("api")) as client:
                yield Scene(fleet, proxy, client, engine, s3_client)
        finally:
            engine.dispose()


def first_times(
    conditions: dict[str, Callable[[], bool]],
    since: float,
    what: str,
    timeout: float,
    fleet: Fleet,
) -> dict[str, float]:
    """Wait until each condition has held; the seconds after ``since`` (monotonic) at which
    each was first seen to."""
    found: dict[str, float] = {}

    def all_seen() -> bool:
        for name, condition in conditions.items():
            if name not in found and condition():
                found[name] = time.monotonic() - since
        return len(found) == len(conditions)

    try:
        wait_until(all_seen, what, timeout, fleet)
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}\nseen by then: {found}") from None
    return found


def refused_as(proxy: FaultProxy, worker: str) -> str:
    """The error an UploadPart from ``worker`` gets at the proxy now (a request of the
    test's own, for an object no upload touches)."""
    client = boto3.client(
        "s3",
        endpoint_url=proxy.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(user_agent_extra=agent(worker), retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as refused:
        client.upload_part(
            Bucket=BUCKET, Key="trap-check", UploadId="trap-check", PartNumber=1, Body=b"x"
        )
    return str(refused.value.response["Error"]["Code"])


def report(figures: str) -> None:
    print(f"\n[lease fencing] {figures}")


# -- 1. a skewed clock -------------------------------------------------------------------

SKEW_PART_DELAY = 2.0  # seconds per UploadPart, one part at a time per upload
LIVE_PARTS = 8  # 16 s: over three 5-second leases, all of them with the skewed worker up
DOOMED_PARTS = 14  # killed with about 6 parts to go


@pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_skewed_clock_neither_steals_a_live_lease_nor_misses_a_dead_one(
    skew: int, tmp_path: Path, s3_endpoint: str, s3_client: Any
) -> None:
    skewed_env = skewed_clock(skew, tmp_path)
    env = {"VOD2S3_WORKER_CONCURRENCY": "2", "VOD2S3_PARTS_IN_FLIGHT": "1"}
    with scene(tmp_path, s3_endpoint, s3_client, env) as sc:
        fleet, proxy = sc.fleet, sc.proxy
        proxy.add_rule(
            Rule(operation="UploadPart", action="delay", delay=SKEW_PART_DELAY, times=-1)
        )
        live_id, live = sc.queue(1, LIVE_PARTS * PART)
        doomed_id, doomed = sc.queue(2, DOOMED_PARTS * PART)
        normal = fleet.start_worker("normal")
        wait_until(
            lambda: sc.held_by(live_id, normal) and sc.held_by(doomed_id, normal),
            "the normal worker to hold both multipart uploads",
            30,
            fleet,
        )

        # The skewed worker starts beside it; its clock really is off.
        before = time.time()
        skewed = fleet.start_worker("skewed", env=skewed_env)
        offset = log_clock_offset(fleet, "skewed", (before, time.time()))
        assert abs(offset - skew) < 10, f"the skewed worker's clock is off by {offset:.0f}s"
        beside_since = time.monotonic()

        # It claims what is free (a small upload, while the normal worker's slots are full)...
        small_id, small = sc.queue(3, MiB)
        wait_until(lambda: sc.done(small_id), "the small upload", 30, fleet)
        assert sent(proxy.seen, small, skewed, "PutObject"), "the skewed worker did not claim"

        # ... but not the live upload, renewed by the normal worker for several leases.
        wait_until(
            lambda: sc.done(live_id), "the live upload", LIVE_PARTS * SKEW_PART_DELAY + 30, fleet
        )
        beside = time.monotonic() - beside_since
        assert beside > 2 * 5, f"the workers ran side by side for only {beside:.1f}s"
        assert sent(proxy.seen, live, skewed) == []
        assert not started_attempt(fleet, "skewed", live_id)
        live_record = sc.client.get(live_id)
        assert (live_record["state"], live_record["attempts"]) == ("completed", 1), live_record

        # The normal worker dies half-way through the other upload: the skewed one takes it.
        row = sc.row(doomed_id)
        assert (row.state, row.lease_owner) == ("uploading", normal), row
        assert row.multipart_upload_id, row
        assert row.bytes_uploaded > 0, row
        killed = time.monotonic()
        fleet.kill("normal")
        confirmed = sc.confirmed(doomed_id)
        takeover = first_times(
            {
                "claimed": lambda: sc.row(doomed_id).attempts == 2,
                "sending": lambda: bool(sent(proxy.seen, doomed, skewed)),
            },
            killed,
            "the skewed worker to take over the dead one's upload",
            30,
            fleet,
        )
        assert sc.row(doomed_id).lease_owner == skewed

        # A lease the skewed worker holds is not taken from it either.
        fresh = fleet.start_worker("fresh")
        fresh_since = time.monotonic()
        wait_until(
            lambda: sc.done(doomed_id), "the taken-over upload", DOOMED_PARTS * 3 + 30, fleet
        )
        fresh_beside = time.monotonic() - fresh_since
        doomed_record = sc.client.get(doomed_id)
        assert (doomed_record["state"], doomed_record["attempts"]) == ("completed", 2), (
            doomed_record
        )
        by_skewed = parts_of(sent(proxy.seen, doomed, skewed))
        assert by_skewed, "the skewed worker sent no part of the upload it took over"
        assert set(by_skewed).isdisjoint(confirmed), (by_skewed, confirmed)
        assert sent(proxy.seen, doomed, fresh) == []
        assert not started_attempt(fleet, "fresh", doomed_id)

        for source in (live, doomed, small):
            assert sc.intact(source), source
        assert sc.open_multipart_uploads() == []
        assert proxy.count("AbortMultipartUpload") == 0
        by_normal = parts_of(sent(proxy.seen, doomed, normal))
        report(
            f"skew {skew:+d}s (worker log clock off by {offset:+.1f}s): side by side with the "
            f"live lease for {beside:.1f}s, UploadParts for it: normal "
            f"{len(parts_of(sent(proxy.seen, live, normal)))}, skewed 0; after SIGKILL the "
            f"skewed worker claimed it after {takeover['claimed']:.2f}s, sent a part after "
            f"{takeover['sending']:.2f}s ({len(confirmed)} parts confirmed before, none "
            f"re-sent); UploadParts of that upload: normal {len(by_normal)}, "
            f"skewed {len(by_skewed)}, a fresh normal worker beside it for "
            f"{fresh_beside:.1f}s: 0"
        )


# -- 2. SIGSTOP past the lease -------------------------------------------------------------

STOP_PART_DELAY = 1.5
STOP_PARTS = 12
IN_FLIGHT = 2


def test_a_worker_paused_past_its_lease_stops_and_aborts_nothing(
    tmp_path: Path, s3_endpoint: str, s3_client: Any
) -> None:
    env = {"VOD2S3_WORKER_CONCURRENCY": "1", "VOD2S3_PARTS_IN_FLIGHT": str(IN_FLIGHT)}
    with scene(tmp_path, s3_endpoint, s3_client, env) as sc:
        fleet, proxy = sc.fleet, sc.proxy
        proxy.add_rule(
            Rule(operation="UploadPart", action="delay", delay=STOP_PART_DELAY, times=-1)
        )
        upload_id, source = sc.queue(1, STOP_PARTS * PART)
        a = fleet.start_worker("a")
        wait_until(lambda: sc.held_by(upload_id, a), "A to claim the upload", 30, fleet)
        b = fleet.start_worker("b")

        # Freeze A while both its parts wait at the proxy (none about to be sent), once it
        # has confirmed some.
        wait_until(
            lambda: len(sc.confirmed(upload_id)) >= 2 and proxy.in_flight() == IN_FLIGHT,
            "A to be half-way through, its parts in flight",
            30,
            fleet,
        )
        fleet.pause("a")
        paused = time.monotonic()

        # B takes the upload over once A's lease has run out, and sends parts.
        takeover = first_times(
            {
                "B to claim the upload": lambda: sc.row(upload_id).attempts == 2,
                "B to send a part": lambda: bool(sent(proxy.seen, source, b)),
            },
            paused,
            "B to take the upload over",
            30,
            fleet,
        )
        assert sc.row(upload_id).lease_owner == b

        # Anything A still sends for the upload is refused for good (a trap for an abort).
        proxy.add_rule(
            Rule(
                operation="UploadPart",
                user_agent=agent(a),
                action="status",
                status=403,
                code="AccessDenied",
                times=-1,
            ),
            first=True,
        )
        assert refused_as(proxy, a) == "AccessDenied"  # the trap is armed, for A only
        assert sc.row(upload_id).state == "uploading"
        thawed = proxy.arrivals()
        fleet.resume("a")
        frozen_for = time.monotonic() - paused
        wait_until(
            lambda: f"upload {upload_id}: this worker's lease ended" in fleet.log("a"),
            "A to say its lease ended",
            15,
            fleet,
        )
        wait_until(lambda: sc.done(upload_id), "the upload", 60, fleet)

        after = proxy.seen_since(thawed)
        assert sent(after, source, b), "B was not sending when A was thawed"
        assert [s for s in after if agent(a) in s.user_agent] == []
        assert proxy.count("AbortMultipartUpload") == 0
        assert fleet.alive("a")
        record = sc.client.get(upload_id)
        assert (record["state"], record["attempts"]) == ("completed", 2), record
        assert sc.intact(source)
        assert sc.open_multipart_uploads() == []
        assert len(sent(proxy.seen, source, b, "CompleteMultipartUpload")) == 1
        report(
            f"SIGSTOP: A frozen {frozen_for:.1f}s with lease 5s; B claimed the upload "
            f"{takeover['B to claim the upload']:.1f}s after the SIGSTOP, sent its first part "
            f"after {takeover['B to send a part']:.1f}s; UploadParts: A "
            f"{len(sent(proxy.seen, source, a))} (0 after "
            f"SIGCONT), B {len(sent(proxy.seen, source, b))}; "
            f"AbortMultipartUpload 0"
        )


# -- 3. SIGKILL with a long lease ----------------------------------------------------------

KILL_PARTS = 12
KILL_PART_DELAY = 1.0
TAKEOVER_LIMIT = 5.0  # seconds from SIGKILL, with a 120-second lease


def test_a_killed_worker_is_taken_over_within_seconds_despite_a_long_lease(
    tmp_path: Path, s3_endpoint: str, s3_client: Any
) -> None:
    env = {
        "VOD2S3_LEASE_SECONDS": "120",
        "VOD2S3_WORKER_CONCURRENCY": "1",
        "VOD2S3_PARTS_IN_FLIGHT": str(IN_FLIGHT),
    }
    with scene(tmp_path, s3_endpoint, s3_client, env) as sc:
        fleet, proxy = sc.fleet, sc.proxy
        proxy.add_rule(
            Rule(operation="UploadPart", action="delay", delay=KILL_PART_DELAY, times=-1)
        )
        upload_id, source = sc.queue(1, KILL_PARTS * PART)
        w1 = fleet.start_worker("w1")
        wait_until(lambda: sc.held_by(upload_id, w1), "w1 to claim the upload", 30, fleet)
        w2 = fleet.start_worker("w2")
        wait_until(
            lambda: len(sc.confirmed(upload_id)) >= 4, "w1 to be half-way through", 30, fleet
        )

        killed = time.monotonic()
        fleet.kill("w1")
        confirmed = sc.confirmed(upload_id)
        resumed = first_times(
            {
                "w2 to claim the upload": lambda: sc.row(upload_id).attempts == 2,
                "w2 to send a part": lambda: bool(sent(proxy.seen, source, w2)),
            },
            killed,
            "w2 to resume the upload",
            60,
            fleet,
        )
        claimed_after = resumed["w2 to claim the upload"]
        assert claimed_after < TAKEOVER_LIMIT, f"taken over {claimed_after:.1f}s after the kill"
        assert sc.row(upload_id).lease_owner == w2
        wait_until(lambda: sc.done(upload_id), "the upload", 60, fleet)

        by_w2 = parts_of(sent(proxy.seen, source, w2))
        assert set(by_w2).isdisjoint(confirmed), (by_w2, confirmed)
        record = sc.client.get(upload_id)
        assert (record["state"], record["attempts"]) == ("completed", 2), record
        assert sc.intact(source)
        assert sc.open_multipart_uploads() == []
        report(
            f"SIGKILL with lease 120s: taken over (attempts 2) {claimed_after:.2f}s after "
            f"the kill, first UploadPart by w2 after {resumed['w2 to send a part']:.2f}s; "
            f"parts confirmed "
            f"before the kill {sorted(confirmed)}, UploadParts: w1 "
            f"{len(sent(proxy.seen, source, w1))}, w2 {len(by_w2)} {sorted(by_w2)}"
        )
