"""Scale benchmarks of the shared database: queue claims per second with concurrent claimers
(PostgreSQL and SQLite), and `aws.status` requests per second and latency at 1,000 and
1,000,000 rows, against a bare Starlette/uvicorn endpoint as the ceiling.

    .venv/bin/python bench/scale.py claims [--rows 20000] [--accounts 50] [--claimers 1,4,16]
        [--idle-accounts 0] [--sqlite-claimers 1,4] [--duration 10]
    .venv/bin/python bench/scale.py status [--sizes 1000,1000000] [--accounts 1000]
        [--concurrency 1,8] [--duration 15]

Every PostgreSQL database it makes is called vod2s3_bench_<kind>_<pid> and is dropped at the
end, including on failure or Ctrl+C. See bench/README.md and docs/benchmarks-scale.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import sqlalchemy.exc
from common import (
    REPO,
    BenchError,
    Server,
    free_port,
    git_state,
    host_cpu,
    host_process_busy,
    log,
    percentile,
    proc_cpu,
    self_cpu,
    wait_for_quiet,
)
from cryptography.fernet import Fernet
from sqlalchemy import DateTime, Engine, bindparam, create_engine, event, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from vod2s3.accounts import AccountStore
from vod2s3.client import Vod2s3Client
from vod2s3.clock import SystemClock
from vod2s3.crypto import SecretBox
from vod2s3.errors import DatabaseUnavailable
from vod2s3.jsonenc import php_json_encode
from vod2s3.store import migrate
from vod2s3.store.db import make_engine
from vod2s3.store.queue import LeaseQueue
from vod2s3.store.records import RecordStore
from vod2s3.store.schema import NEVER_CLAIMED
from vod2s3.store.schema import accounts as accounts_table
from vod2s3.store.sqltime import sql_time_for

PAGE = 25  # aws.status's default limit
LEASE = timedelta(minutes=10)  # longer than any run: no lease expires during a measurement
SUCCESS_PREFIX = b'{"status":"success"'

Cred = tuple[int, str, str]  # cdn, api_key, secret
T = TypeVar("T")
DB_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, DatabaseUnavailable)


class Disturbed(BenchError):
    """PostgreSQL restarted during a measurement (tests on this machine restart it): the
    measurement is repeated."""


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def retrying(what: str, attempts: int, action: Callable[[], T], admin_url: str) -> T:
    """Run action; when PostgreSQL went away or restarted meanwhile, wait for it and run it
    again, up to attempts times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (Disturbed, *DB_ERRORS) as error:
            if attempt == attempts:
                raise
            log(f"  {what}: {first_line(error)}: waiting for PostgreSQL, then again")
            wait_for_postgres(admin_url)
    raise AssertionError("unreachable")


def wait_for_postgres(admin_url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    engine = create_engine(_psycopg(admin_url), poolclass=NullPool)
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                time.sleep(1.0)  # a restart in progress may still be settling
                return
            except DB_ERRORS:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"PostgreSQL did not come back within {timeout:.0f} s"
                    ) from None
                time.sleep(1.0)
    finally:
        engine.dispose()


def _on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the finally blocks: servers stop, databases go


# -- CPU accounting (as in bench/compare.py) ----------------------------------------------


class CpuWindow:
    """CPU of named groups of processes over the measured window, and of everything else on
    the machine ('other': other engineers' jobs, PostgreSQL's background writers)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self._groups = groups
        self._start = {name: self._read(pids()) for name, pids in groups.items()}
        self._host, self._self = host_cpu(), self_cpu()
        self.processes: dict[str, tuple[int, int]] = {}

    @staticmethod
    def _read(pids: list[int]) -> dict[int, float]:
        return {pid: cpu for pid in pids if (cpu := proc_cpu(pid)) is not None}

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, pids in self._groups.items():
            before = self._start[name]
            now = self._read(list(set(pids()) | set(before)))
            # How many processes each group had at the start and at the end (a process that
            # ended during the window is missing from the end and its CPU from the figure).
            self.processes[name] = (len(before), len(now))
            # A process that appeared during the window counts from zero.
            used[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
        host = host_cpu()
        used["bench"] = self_cpu() - self._self
        busy = host_process_busy(self._host, host)
        used["other"] = max(busy - sum(used.values()), 0.0)
        used["softirq"] = host["softirq"] - self._host["softirq"]
        return {name: round(value, 3) for name, value in used.items()}


# -- databases --------------------------------------------------------------------------


def _psycopg(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


class PgDatabase:
    """A database of our own on the server the admin URL points at, dropped by drop()."""

    def __init__(self, admin_url: str, name: str) -> None:
        if not name.startswith("vod2s3_bench_"):
            raise ValueError(name)
        self.name = name
        self.url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        self._admin_url = admin_url
        self._admin = create_engine(
            _psycopg(admin_url), isolation_level="AUTOCOMMIT", pool_pre_ping=True
        )
        self._maintenance = create_engine(
            _psycopg(self.url), isolation_level="AUTOCOMMIT", pool_pre_ping=True
        )
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def backend_pids(self) -> list[int]:
        """The server processes serving client connections to this database."""
        try:
            with self._admin.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = :name AND backend_type = 'client backend'"
                    ),
                    {"name": self.name},
                ).all()
        except DB_ERRORS as error:
            log(f"  cannot list {self.name}'s server processes: {first_line(error)}")
            return []  # restarting: the window will be measured again
        return [int(row[0]) for row in rows]

    def background_pids(self) -> list[int]:
        """The server's own processes (WAL writer, checkpointer, autovacuum...). On a server
        shared with other jobs part of their work is for those jobs."""
        try:
            with self._admin.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
                ).all()
        except DB_ERRORS:
            return []
        return [int(row[0]) for row in rows]

    def server_started(self) -> str:
        """When the PostgreSQL server started: a change means it restarted meanwhile."""

        def read() -> str:
            with self._admin.connect() as conn:
                return str(conn.exec_driver_sql("SELECT pg_postmaster_start_time()").scalar_one())

        return retrying("reading the server's start time", 5, read, self._admin_url)

    def maintenance(self, sql: str) -> None:
        """VACUUM and friends, which cannot run inside a transaction."""
        with self._maintenance.connect() as conn:
            conn.exec_driver_sql(sql)

    def drop(self) -> None:
        self._maintenance.dispose()

        def drop() -> None:
            with self._admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

        try:
            retrying(f"dropping {self.name}", 5, drop, self._admin_url)
        finally:
            self._admin.dispose()


def unchanged_server(db: PgDatabase | None, action: Callable[[], T]) -> T:
    """action's result, or Disturbed when PostgreSQL restarted while it ran."""
    if db is None:
        return action()
    before = db.server_started()
    try:
        result = action()
    except BenchError as error:
        if db.server_started() != before:
            raise Disturbed(f"PostgreSQL restarted ({first_line(error)})") from error
        raise
    if db.server_started() != before:
        raise Disturbed("PostgreSQL restarted during the window")
    return result


def create_accounts(engine: Engine, box: SecretBox, count: int) -> list[Cred]:
    """Accounts cdn 1..count through AccountStore.create; their ids are their cdns."""
    store = AccountStore(engine, box, SystemClock())
    creds: list[Cred] = []
    for cdn in range(1, count + 1):
        issued = store.create(cdn, f"user{cdn}")
        creds.append((issued.cdn, issued.api_key, issued.secret))
    with engine.connect() as conn:
        bad = conn.exec_driver_sql("SELECT count(*) FROM accounts WHERE id <> cdn").scalar_one()
    if bad:
        raise BenchError("account ids do not match their cdns (not a fresh database?)")
    return creds


# Queued rows for the claim benchmark, plain enough for both dialects. Row x belongs to
# account 1 + (x - 1) % accounts, so every account's rows are spread through the table.
QUEUED_INSERT = """
INSERT INTO uploads (
    account_id, cdn_id, request_signature, path, volume, bucket, destination_path, metadata,
    acl, callback, options, state, message, status, error_code, results, checksum, attempts,
    bytes_total, bytes_uploaded, callback_state, callback_attempts, callback_status,
    callback_error, created, last_updated, next_attempt_at)
SELECT
    1 + (x - 1) % :accounts, 1 + (x - 1) % :accounts, 'bench-' || x,
    'sestore1/bench/f' || x || '.mp4', 'sestore1', 'vod2s3-bench', 'bench/f' || x || '.mp4',
    '{}', 'private', '', '{}', 'queued', 'Queued', 0, '', '{}', '', 0,
    0, 0, 'none', 0, 0, '', :t, :t, :t
"""
PG_SERIES = "FROM generate_series(1, :rows) AS g(x)"
SQLITE_SERIES_CTE = (
    "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :rows)"
)

# Finished uploads as aws.status shows them: mostly completed with S3's results, every 50th
# failed. Row x belongs to account 1 + (x - 1) % accounts; ids and `created` ascend with x.
STATUS_INSERT_PG = """
INSERT INTO uploads (
    account_id, cdn_id, request_signature, path, volume, bucket, destination_path, metadata,
    acl, callback, options, state, message, status, error_code, results, checksum, attempts,
    bytes_total, bytes_uploaded, callback_state, callback_attempts, callback_status,
    callback_error, created, last_updated, started, finished, next_attempt_at)
SELECT
    a, a, 'bench-' || x,
    'sestore1/user' || a || '/videos/clip-' || x || '.mp4', 'sestore1', 'bench-bucket-' || a,
    'videos/clip-' || x || '.mp4', json_build_object('title', 'Clip ' || x), 'private', '',
    '{"content_type": "video/mp4"}'::json, s.state,
    CASE WHEN failed THEN 'Access Denied' ELSE 'Successfully Uploaded to AWS' END,
    CASE WHEN failed THEN 403 ELSE 200 END,
    CASE WHEN failed THEN 'AccessDenied' ELSE '' END,
    CASE WHEN failed THEN '{}'::json ELSE json_build_object(
        'Bucket', 'bench-bucket-' || a, 'ETag', '"' || md5(x::text) || '"',
        'Key', 'videos/clip-' || x || '.mp4',
        'Location', 'https://bench-bucket-' || a || '.s3.amazonaws.com/videos/clip-' || x || '.mp4',
        'ObjectURL', 'https://bench-bucket-' || a || '.s3.amazonaws.com/videos/clip-' || x || '.mp4'
    ) END,
    CASE WHEN failed THEN '' ELSE substr(md5('c' || x), 1, 8) END, 1,
    size, CASE WHEN failed THEN 0 ELSE size END, 'none', 0, 0, '',
    created, created + interval '2 minutes', created + interval '1 second',
    created + interval '2 minutes', created
FROM (
    SELECT x, 1 + (x - 1) % :accounts AS a, x % 50 = 0 AS failed,
        CASE WHEN x % 50 = 0 THEN 'failed' ELSE 'completed' END AS state,
        10000000 + (x::bigint * 7919) % 900000000 AS size,
        CAST(:t AS timestamp) - (:rows - x) * interval '1 second' AS created
    FROM generate_series(1, :rows) AS g(x)
) AS s
"""


def fill_queued(engine: Engine, rows: int, accounts: int) -> None:
    """Empty the queue and fill it with `rows` due uploads; reset the round-robin."""
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        sql = f"{SQLITE_SERIES_CTE} {QUEUED_INSERT} FROM g"
    else:
        sql = f"{QUEUED_INSERT} {PG_SERIES}"
    due = SystemClock().now() - timedelta(minutes=1)
    statement = text(sql).bindparams(bindparam("t", type_=DateTime))
    with engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql("DELETE FROM upload_parts")
            conn.exec_driver_sql("DELETE FROM callback_deliveries")
            conn.exec_driver_sql("DELETE FROM uploads")
        else:
            conn.exec_driver_sql(
                "TRUNCATE upload_parts, callback_deliveries, uploads RESTART IDENTITY"
            )
        # Every account as if never claimed (migration 0006 made the column non-NULL).
        conn.execute(update(accounts_table).values(last_claimed=NEVER_CLAIMED))
        conn.execute(statement, {"rows": rows, "accounts": accounts, "t": due})
    if sqlite:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def fill_status(db: PgDatabase, engine: Engine, rows: int, accounts: int) -> float:
    """Bulk-load `rows` finished uploads; returns the seconds it took (with VACUUM ANALYZE)."""
    started = time.monotonic()
    statement = text(STATUS_INSERT_PG).bindparams(bindparam("t", type_=DateTime))
    now = SystemClock().now() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(statement, {"rows": rows, "accounts": accounts, "t": now})
    # What autovacuum would have done to a table this old: hint bits, visibility map, stats.
    db.maintenance("VACUUM (ANALYZE) uploads")
    db.maintenance("VACUUM (ANALYZE) accounts")
    return time.monotonic() - started


@contextlib.contextmanager
def captured_sql(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (with their parameters) an operation sends, as the driver gets them."""
    seen: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, _many: bool
    ) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def explain(engine: Engine, statement: str, params: Any, prefix: str) -> list[str]:
    """The plan of a captured statement, in a transaction that is rolled back."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            rows = conn.exec_driver_sql(f"{prefix} {statement}", params).all()
        finally:
            transaction.rollback()
    return [" | ".join(str(v) for v in row) for row in rows]


# -- processes --------------------------------------------------------------------------


def spawn_context() -> Any:
    # Fresh interpreters: no engine, pool or thread is inherited from this process.
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def children(
    target: Callable[..., None], args_list: Sequence[tuple[Any, ...]]
) -> Iterator[list[tuple[Any, Connection]]]:
    """Start one process per args tuple (each gets its pipe end first); stop them all at
    the end, whatever happened."""
    ctx = spawn_context()
    started: list[tuple[Any, Connection]] = []
    try:
        for args in args_list:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), daemon=True)
            proc.start()
            child.close()
            started.append((proc, parent))
        yield started
    finally:
        for _proc, pipe in started:
            with contextlib.suppress(OSError, ValueError):
                pipe.send("bye")
        for proc, pipe in started:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            pipe.close()


def receive(pipe: Connection, timeout: float, what: str) -> Any:
    if not pipe.poll(timeout):
        raise BenchError(f"no {what} from a child process within {timeout:.0f} s")
    try:
        message = pipe.recv()
    except EOFError:
        raise BenchError(f"a child process ended before sending its {what}") from None
    if isinstance(message, dict) and message.get("error"):
        raise BenchError(f"a child process failed: {message['error']}")
    return message


# -- claims -----------------------------------------------------------------------------


def claimer_main(pipe: Connection, url: str, index: int) -> None:
    """One claimer process: claim, then complete, as fast as it can within the window."""
    engine = make_engine(url)
    try:
        queue = LeaseQueue(engine, sql_time_for(engine, SystemClock()), LEASE)
        owner = f"bench-{index}-{os.getpid()}"
        done = lost = 0

        def cycle() -> tuple[bool, float]:
            nonlocal done, lost
            t0 = time.monotonic()
            row = queue.claim(index + 1, owner)
            claimed = time.monotonic() - t0
            if row is None:
                return False, claimed
            if queue.complete(row.lease, {}, 200, "", 0) is not None:
                done += 1
            else:
                lost += 1
            return True, claimed

        if not cycle()[0]:
            raise BenchError("the queue is empty at the start")
        pipe.send("ready")
        start, end = pipe.recv()
        claim_s: list[float] = []
        cycle_s: list[float] = []
        drained = False
        while (t0 := time.monotonic()) < end:
            claimed, took = cycle()
            t2 = time.monotonic()
            if not claimed:
                drained = True
                break
            if start <= t0 and t2 <= end:
                claim_s.append(took)
                cycle_s.append(t2 - t0)
        pipe.send(
            {"claim_s": claim_s, "cycle_s": cycle_s, "done": done, "lost": lost, "drained": drained}
        )
        wait_for_bye(pipe)
    except BaseException as error:
        pipe.send({"error": f"{type(error).__name__}: {error}"})
    finally:
        engine.dispose()


def wait_for_bye(pipe: Connection) -> None:
    """Stay (with the database connection open) until the parent has read this process's
    CPU and its server process's: a process that ended would be missing from the figures."""
    with contextlib.suppress(EOFError, OSError):
        if pipe.poll(300):
            pipe.recv()


@dataclass
class ClaimSample:
    backend: str
    rows: int
    accounts: int
    claimers: int
    duration_s: float
    idle_accounts: int = 0
    claims: int = 0
    claims_per_s: float = 0.0
    claim_p50_ms: float = 0.0
    claim_p99_ms: float = 0.0
    cycle_p50_ms: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_processes: dict[str, tuple[int, int]] = field(default_factory=dict)
    waited_for_quiet_s: float = 0.0
    drained: bool = False
    lost: int = 0
    double_claims: int = 0
    completed_rows_match: bool = True
    error: str = ""


def measure_claims(
    url: str,
    backend: str,
    rows: int,
    accounts: int,
    claimers: int,
    args: argparse.Namespace,
    db: PgDatabase | None,
) -> ClaimSample:
    sample = ClaimSample(backend, rows, accounts, claimers, args.duration, args.idle_accounts)
    completed_before = count_completed(url)
    with children(claimer_main, [(url, i) for i in range(claimers)]) as procs:
        for _proc, pipe in procs:
            receive(pipe, 120, "ready")
        sample.waited_for_quiet_s = round(wait_for_quiet(args.wait_idle), 1)
        start = time.monotonic() + args.warmup
        end = start + args.duration
        for _proc, pipe in procs:
            pipe.send((start, end))
        time.sleep(max(0.0, start - time.monotonic()))
        pids = [proc.pid for proc, _pipe in procs]
        groups: dict[str, Callable[[], list[int]]] = {"claimers": lambda: pids}
        if db is not None:
            groups["postgres"] = db.backend_pids
            groups["postgres_background"] = db.background_pids
        window = CpuWindow(groups)
        time.sleep(max(0.0, end - time.monotonic()))
        sample.cpu_s = window.stop()
        sample.cpu_processes = window.processes
        results = [receive(pipe, 120, "result") for _proc, pipe in procs]
    claim_s = sorted(x for r in results for x in r["claim_s"])
    cycle_s = sorted(x for r in results for x in r["cycle_s"])
    sample.claims = len(claim_s)
    sample.claims_per_s = round(len(claim_s) / args.duration, 1)
    sample.claim_p50_ms = round(percentile(claim_s, 50) * 1000, 2)
    sample.claim_p99_ms = round(percentile(claim_s, 99) * 1000, 2)
    sample.cycle_p50_ms = round(percentile(cycle_s, 50) * 1000, 2)
    sample.drained = any(r["drained"] for r in results)
    sample.lost = sum(r["lost"] for r in results)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            # Every row is claimed once: a second claim of a row would count 2 attempts.
            sample.double_claims = conn.exec_driver_sql(
                "SELECT count(*) FROM uploads WHERE attempts > 1"
            ).scalar_one()
    finally:
        engine.dispose()
    completed = count_completed(url) - completed_before
    sample.completed_rows_match = completed == sum(r["done"] for r in results)
    return sample


def count_completed(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM uploads WHERE state = 'completed'"
                ).scalar_one()
            )
    finally:
        engine.dispose()


def claim_plan(engine: Engine, backend: str) -> list[str]:
    """The claim statement LeaseQueue.claim sends, explained on the full queue (the one row
    it claims to capture the statement is completed; the EXPLAIN itself is rolled back)."""
    queue = LeaseQueue(engine, sql_time_for(engine, SystemClock()), LEASE)
    with captured_sql(engine) as seen:
        row = queue.claim(0, "bench-explain")
    if row is None:
        raise BenchError("the queue is empty")
    queue.complete(row.lease, {}, 200, "", 0)
    statement, params = next((s, p) for s, p in seen if "UPDATE uploads" in s)
    if backend == "sqlite":
        return explain(engine, statement, params, "EXPLAIN QUERY PLAN")
    return explain(engine, statement, params, "EXPLAIN (ANALYZE, BUFFERS)")


def run_claims(args: argparse.Namespace, meta: dict[str, Any], save: Callable[[], None]) -> int:
    samples: list[ClaimSample] = []
    meta["samples"] = samples
    meta["plans"] = {}
    plans: dict[str, list[str]] = meta["plans"]
    tmp = Path(tempfile.mkdtemp(prefix="vod2s3-bench-scale-"))
    backends = [("postgresql", c) for c in args.claimer_list]
    backends += [("sqlite", c) for c in args.sqlite_claimer_list]
    try:
        for backend in ("postgresql", "sqlite"):
            levels = [c for b, c in backends if b == backend]
            if not levels:
                continue
            db: PgDatabase | None = None
            if backend == "postgresql":
                prepare = functools.partial(
                    prepare_claims_db, args.admin_url, args.accounts, args.idle_accounts
                )
                db = retrying("creating the database", args.retries, prepare, args.admin_url)
                url = db.url
            else:
                url = f"sqlite:///{tmp / 'claims.db'}"
                prepare_schema(url, args.accounts, args.idle_accounts)
            engine = make_engine(url)
            try:
                for rows in args.row_list:
                    for claimers in levels:
                        log(f"{backend}: {rows} queued rows, {claimers} claimer(s)")
                        level = functools.partial(
                            claims_level, engine, db, url, backend, rows, claimers, args, plans
                        )
                        try:
                            sample = retrying("measuring", args.retries, level, args.admin_url)
                        except (BenchError, *DB_ERRORS) as error:
                            sample = ClaimSample(
                                backend, rows, args.accounts, claimers, 0, args.idle_accounts
                            )
                            sample.error = first_line(error)
                        samples.append(sample)
                        save()
                        log(f"  {claim_line(sample)}")
            finally:
                engine.dispose()
                if db is not None:
                    db.drop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(claims_table(samples))
    for key, plan in plans.items():
        print(f"\nClaim statement plan, {key}:\n")
        print("\n".join("    " + line for line in plan))
    bad = [s for s in samples if s.error or s.drained or s.lost or s.double_claims]
    bad += [s for s in samples if not s.completed_rows_match]
    return 1 if bad else 0


def prepare_schema(url: str, accounts: int, idle: int = 0) -> None:
    """The schema, `accounts` accounts and `idle` more that never queue anything, in an empty
    database."""
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        box = SecretBox(Fernet.generate_key().decode())
        create_accounts(engine, box, accounts)
        create_idle_accounts(engine, box, accounts + 1, idle)
    finally:
        engine.dispose()


def create_idle_accounts(engine: Engine, box: SecretBox, first_cdn: int, count: int) -> None:
    """``count`` accounts that never queue anything, in one statement (AccountStore.create
    would take minutes for 10,000). They share one encrypted secret: nothing signs with
    them. Never claimed, they sort first in the fair-turn order, as idle accounts do."""
    if not count:
        return
    secret = box.encrypt("idle")
    now = SystemClock().now()
    rows = [
        {
            "cdn": cdn,
            "storage_user": f"idle{cdn}",
            "api_key": f"IDLE{cdn:028d}",
            "secret_enc": secret,
            "disabled": False,
            "aws_access_key_id": "",
            "aws_secret_access_key_enc": "",
            "aws_region": "us-east-1",
            "aws_endpoint_url": "",
            "allowed_buckets": [],
            "created": now,
            "last_claimed": NEVER_CLAIMED,
        }
        for cdn in range(first_cdn, first_cdn + count)
    ]
    with engine.begin() as conn:
        conn.execute(accounts_table.insert(), rows)


def prepare_claims_db(admin_url: str, accounts: int, idle: int = 0) -> PgDatabase:
    db = PgDatabase(admin_url, f"vod2s3_bench_claims_{os.getpid()}")
    try:
        prepare_schema(db.url, accounts, idle)
    except BaseException:
        db.drop()
        raise
    return db


def claims_level(
    engine: Engine,
    db: PgDatabase | None,
    url: str,
    backend: str,
    rows: int,
    claimers: int,
    args: argparse.Namespace,
    plans: dict[str, list[str]],
) -> ClaimSample:
    """Fill the queue, explain the claim once per queue size, and measure."""
    fill_queued(engine, rows, args.accounts)
    if db is not None:
        db.maintenance("VACUUM (ANALYZE) uploads")
    key = f"{backend} {rows} rows"
    if key not in plans:
        plans[key] = claim_plan(engine, backend)
    measure = functools.partial(
        measure_claims, url, backend, rows, args.accounts, claimers, args, db
    )
    return unchanged_server(db, measure)


def claim_line(s: ClaimSample) -> str:
    if s.error:
        return f"FAILED: {s.error}"
    other = s.cpu_s.get("other", 0.0)
    flags = [
        "QUEUE DRAINED" if s.drained else "",
        f"{s.lost} LOST LEASES" if s.lost else "",
        f"{s.double_claims} ROWS CLAIMED TWICE" if s.double_claims else "",
        "" if s.completed_rows_match else "COMPLETED COUNT MISMATCH",
    ]
    return (
        f"{s.claims_per_s:.1f} claims/s, claim p50 {s.claim_p50_ms:.1f} ms p99 "
        f"{s.claim_p99_ms:.1f} ms, other processes {other:.1f} CPU-s "
        + " ".join(f for f in flags if f)
    )


def claims_table(samples: Sequence[ClaimSample]) -> str:
    lines = [
        "| database | queued rows | claimers | claims/s | claim p50 ms | claim p99 ms "
        "| claim+complete p50 ms | claimers CPU-s | postgres CPU-s (backends + own "
        "processes) | other CPU-s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in samples:
        if s.error:
            lines.append(f"| {s.backend} | {s.rows} | {s.claimers} | failed: {s.error} |")
            continue
        pg = "—"
        if "postgres" in s.cpu_s:
            pg = f"{s.cpu_s['postgres']:.1f} + {s.cpu_s['postgres_background']:.1f}"
        lines.append(
            f"| {s.backend} | {s.rows:,} | {s.claimers} | {s.claims_per_s:,.1f} "
            f"| {s.claim_p50_ms:.2f} | {s.claim_p99_ms:.2f} | {s.cycle_p50_ms:.2f} "
            f"| {s.cpu_s['claimers']:.1f} | {pg} | {s.cpu_s['other']:.1f} |"
        )
    duration = samples[0].duration_s if samples else 0
    lines.append(
        f"\nCPU-s are over the {duration:g} s window; the machine has {os.cpu_count()} cores "
        "shared by the claimers, the database and 'other' (other jobs on the machine)."
    )
    return "\n".join(lines)


# -- aws.status -------------------------------------------------------------------------


def client_main(pipe: Connection, url: str, creds: list[Cred], threads: int, seed: int) -> None:
    """One load-generator process: `threads` threads, each with its own kept-alive httpx
    client, each sending signed aws.status requests (default limit, a random account's
    newest uploads) one after another."""
    try:
        signers = [Vod2s3Client(url, cdn, key, secret) for cdn, key, secret in creds]
        window: list[float] = []
        go = threading.Event()
        ready = threading.Barrier(threads + 1)
        results: list[dict[str, Any]] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            latencies: list[float] = []
            errors = 0
            first_error = ""
            size = 0
            with httpx.Client(timeout=30) as http:

                def one() -> tuple[bool, float, int, str]:
                    signer = rng.choice(signers)
                    body = php_json_encode(signer.build_request("aws.status"))
                    t0 = time.monotonic()
                    try:
                        response = http.post(url, data={"json": body})
                        content = response.content
                    except httpx.HTTPError as error:
                        return False, time.monotonic() - t0, 0, repr(error)
                    took = time.monotonic() - t0
                    if response.status_code == 200 and content.startswith(SUCCESS_PREFIX):
                        return True, took, len(content), ""
                    return (
                        False,
                        took,
                        len(content),
                        f"HTTP {response.status_code}: {content[:200]!r}",
                    )

                ok, _took, _size, why = one()
                if not ok:
                    with lock:
                        results.append({"error": f"first request failed: {why}"})
                ready.wait()
                go.wait()
                start, end = window
                while (t0 := time.monotonic()) < end:
                    ok, took, length, why = one()
                    if t0 < start or t0 + took > end:
                        continue
                    if ok:
                        latencies.append(took)
                        size += length
                    else:
                        errors += 1
                        first_error = first_error or why
            with lock:
                results.append(
                    {
                        "latencies": latencies,
                        "errors": errors,
                        "first_error": first_error,
                        "bytes": size,
                    }
                )

        pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
        for thread in pool:
            thread.start()
        ready.wait(timeout=120)
        failed = [r["error"] for r in results if "error" in r]
        if failed:
            raise BenchError(failed[0])
        pipe.send("ready")
        window.extend(pipe.recv())
        go.set()
        for thread in pool:
            thread.join()
        pipe.send(
            {
                "latencies": [x for r in results for x in r["latencies"]],
                "errors": sum(r["errors"] for r in results),
                "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
                "bytes": sum(r["bytes"] for r in results),
            }
        )
        wait_for_bye(pipe)
    except BaseException as error:
        pipe.send({"error": f"{type(error).__name__}: {error}"})


@dataclass
class StatusSample:
    target: str  # "vod2s3" or "ceiling"
    rows: int
    accounts: int
    concurrency: int
    processes: int
    duration_s: float
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    errors: int = 0
    first_error: str = ""
    response_bytes: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_processes: dict[str, tuple[int, int]] = field(default_factory=dict)
    waited_for_quiet_s: float = 0.0

    def per_request_ms(self, group: str) -> float:
        return self.cpu_s.get(group, 0.0) * 1000 / self.requests if self.requests else 0.0


def measure_status(
    server: Server,
    target: str,
    rows: int,
    creds: list[Cred],
    concurrency: int,
    args: argparse.Namespace,
    db: PgDatabase | None,
) -> StatusSample:
    processes = min(concurrency, args.client_processes)
    if concurrency % processes:
        raise BenchError(f"concurrency {concurrency} is not a multiple of {processes} processes")
    threads = concurrency // processes
    sample = StatusSample(target, rows, len(creds), concurrency, processes, args.duration)
    url = f"http://127.0.0.1:{server.port}/stable/"
    work = [(url, creds, threads, n) for n in range(processes)]
    with children(client_main, work) as procs:
        for _proc, pipe in procs:
            receive(pipe, 120, "ready")
        sample.waited_for_quiet_s = round(wait_for_quiet(args.wait_idle), 1)
        start = time.monotonic() + args.warmup
        end = start + args.duration
        for _proc, pipe in procs:
            pipe.send((start, end))
        time.sleep(max(0.0, start - time.monotonic()))
        pids = [proc.pid for proc, _pipe in procs]
        groups: dict[str, Callable[[], list[int]]] = {
            "server": lambda: [server.pid],
            "clients": lambda: pids,
        }
        if db is not None:
            groups["postgres"] = db.backend_pids
            groups["postgres_background"] = db.background_pids
        window = CpuWindow(groups)
        time.sleep(max(0.0, end - time.monotonic()))
        sample.cpu_s = window.stop()
        sample.cpu_processes = window.processes
        results = [receive(pipe, 120, "result") for _proc, pipe in procs]
    latencies = sorted(x for r in results for x in r["latencies"])
    sample.requests = len(latencies)
    sample.rps = round(len(latencies) / args.duration, 1)
    sample.p50_ms = round(percentile(latencies, 50) * 1000, 2)
    sample.p99_ms = round(percentile(latencies, 99) * 1000, 2)
    sample.mean_ms = round(sum(latencies) / len(latencies) * 1000, 2) if latencies else 0.0
    sample.errors = sum(r["errors"] for r in results)
    sample.first_error = next((r["first_error"] for r in results if r["first_error"]), "")
    sample.response_bytes = sum(r["bytes"] for r in results) // max(1, len(latencies))
    return sample


@dataclass
class QueryReport:
    rows: int
    accounts: int
    load_s: float
    table_mib: float
    index_mib: dict[str, float]
    sql: str
    plan_first: list[str]
    plan: list[str]
    uses_index: bool
    inprocess_p50_ms: float
    inprocess_p99_ms: float


def status_query_report(engine: Engine, rows: int, accounts: int, load_s: float) -> QueryReport:
    """The SQL RecordStore.latest sends for the default aws.status, its plan on this table,
    and how long latest() takes in-process (no HTTP) for random accounts."""
    store = RecordStore(engine, sql_time_for(engine, SystemClock()))
    account = accounts // 2 + 1
    with captured_sql(engine) as seen:
        got = store.latest(account, PAGE, 0)
    if len(got) != min(PAGE, rows // accounts):
        raise BenchError(f"latest() returned {len(got)} rows")
    statement, params = next((s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT"))
    prefix = "EXPLAIN (ANALYZE, BUFFERS)"
    # The first run after the load, then a warm one (the figure the load test sees).
    plan_first = explain(engine, statement, params, prefix)
    plan = explain(engine, statement, params, prefix)
    rng = random.Random(1)
    timings: list[float] = []
    for _ in range(500):
        t0 = time.monotonic()
        store.latest(rng.randint(1, accounts), PAGE, 0)
        timings.append(time.monotonic() - t0)
    timings.sort()
    with engine.connect() as conn:
        table = conn.exec_driver_sql("SELECT pg_relation_size('uploads')").scalar_one()
        indexes = conn.exec_driver_sql(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
            "WHERE relname = 'uploads' ORDER BY indexrelname"
        ).all()
    literal = statement
    for name, value in sorted(params.items(), key=lambda kv: -len(kv[0])):
        literal = literal.replace(f"%({name})s", repr(value))
    return QueryReport(
        rows=rows,
        accounts=accounts,
        load_s=round(load_s, 1),
        table_mib=round(table / 2**20, 1),
        index_mib={str(n): round(s / 2**20, 1) for n, s in indexes},
        sql=literal,
        plan_first=plan_first,
        plan=plan,
        uses_index=any("ix_uploads_account_id_id" in line for line in plan),
        inprocess_p50_ms=round(percentile(timings, 50) * 1000, 3),
        inprocess_p99_ms=round(percentile(timings, 99) * 1000, 3),
    )


def run_status(args: argparse.Namespace, meta: dict[str, Any], save: Callable[[], None]) -> int:
    samples: list[StatusSample] = []
    reports: list[QueryReport] = []
    meta["samples"] = samples
    meta["queries"] = reports
    workdir = Path(tempfile.mkdtemp(prefix="vod2s3-bench-scale-"))
    master_key = Fernet.generate_key().decode()
    creds: list[Cred] = []
    try:
        for rows in args.size_list:
            accounts = max(1, min(args.accounts, rows // PAGE))
            log(f"loading {rows:,} rows across {accounts} accounts")
            db, creds, report = retrying(
                "loading",
                args.retries,
                functools.partial(prepare_status_db, args.admin_url, rows, accounts, master_key),
                args.admin_url,
            )
            server: Server | None = None
            try:
                reports.append(report)
                save()
                log(
                    f"  loaded in {report.load_s:.1f} s; table {report.table_mib} MiB; latest() "
                    f"p50 {report.inprocess_p50_ms} ms; uses ix_uploads_account_id_id: "
                    f"{report.uses_index}"
                )
                env = dict(os.environ)
                env.update(
                    VOD2S3_DATABASE_URL=db.url,
                    VOD2S3_MASTER_KEY=master_key,
                    VOD2S3_RATE_LIMIT="0",
                    VOD2S3_ADDRESS_RATE_LIMIT="0",
                    VOD2S3_LOG_LEVEL="WARNING",
                )
                port = free_port()
                server = Server(
                    [args.vod2s3_bin, "api", "--host", "127.0.0.1", "--port", str(port)],
                    env,
                    workdir,
                    workdir / f"api-{rows}.log",
                )
                server.wait_ready()
                url = f"http://127.0.0.1:{port}/stable/"
                retrying(
                    "checking the answer",
                    args.retries,
                    functools.partial(check_status_answer, url, creds[0], rows, accounts),
                    args.admin_url,
                )
                for concurrency in args.concurrency_list:
                    measure = functools.partial(
                        measure_status, server, "vod2s3", rows, creds, concurrency, args, db
                    )
                    window = functools.partial(unchanged_server, db, measure)
                    sample = retrying("measuring", args.retries, window, args.admin_url)
                    samples.append(sample)
                    save()
                    log(f"  {status_line(sample)}")
            finally:
                if server is not None:
                    server.stop()
                db.drop()
        if args.ceiling:
            port = free_port()
            ceiling = Server(
                [sys.executable, str(REPO / "bench" / "ceiling_app.py"), "--port", str(port)],
                dict(os.environ),
                workdir,
                workdir / "ceiling.log",
            )
            try:
                ceiling.wait_ready()
                for concurrency in args.concurrency_list:
                    sample = measure_status(ceiling, "ceiling", 0, creds, concurrency, args, None)
                    samples.append(sample)
                    save()
                    log(f"  {status_line(sample)}")
            finally:
                ceiling.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(status_table(samples))
    for report in reports:
        print(f"\n{report.rows:,} rows across {report.accounts} accounts: {report.sql}\n")
        print("\n".join("    " + line for line in report.plan))
    bad = [s for s in samples if s.errors or not s.requests]
    # A table of a few pages is read whole, as it should be; at scale the index must serve.
    bad_plans = [r for r in reports if r.rows >= 100_000 and not r.uses_index]
    return 1 if bad or bad_plans else 0


def prepare_status_db(
    admin_url: str, rows: int, accounts: int, master_key: str
) -> tuple[PgDatabase, list[Cred], QueryReport]:
    """A fresh database with the accounts and rows, and the report on its status query."""
    db = PgDatabase(admin_url, f"vod2s3_bench_status_{os.getpid()}")
    engine = make_engine(db.url)
    try:
        migrate.upgrade(engine)
        creds = create_accounts(engine, SecretBox(master_key), accounts)
        load_s = fill_status(db, engine, rows, accounts)
        report = status_query_report(engine, rows, accounts, load_s)
    except BaseException:
        db.drop()
        raise
    finally:
        engine.dispose()
    return db, creds, report


def check_status_answer(url: str, cred: Cred, rows: int, accounts: int) -> None:
    """The default aws.status answers with the account's newest page, newest first."""
    with httpx.Client(timeout=30) as http:
        signer = Vod2s3Client(url, *cred)
        body = php_json_encode(signer.build_request("aws.status"))
        envelope = http.post(url, data={"json": body}).json()
    data = envelope.get("data") or []
    expected = min(PAGE, rows // accounts)
    ids = [record["id"] for record in data]
    if envelope.get("status") != "success" or len(data) != expected or ids != sorted(ids)[::-1]:
        raise BenchError(f"unexpected aws.status answer: {str(envelope)[:300]}")


def status_line(s: StatusSample) -> str:
    line = (
        f"{s.target} {s.rows:,} rows, {s.concurrency} at once: {s.rps:.0f} req/s, "
        f"p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms, other processes "
        f"{s.cpu_s.get('other', 0.0):.1f} CPU-s"
    )
    if s.errors:
        line += f", {s.errors} ERRORS (first: {s.first_error})"
    return line


def status_table(samples: Sequence[StatusSample]) -> str:
    ceilings = {s.concurrency: s for s in samples if s.target == "ceiling" and s.requests}
    lines = [
        "| endpoint | rows | at once | req/s | % of ceiling | p50 ms | p99 ms | server CPU ms/req "
        "| postgres CPU ms/req | clients CPU ms/req | other CPU-s | bytes/answer |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in samples:
        ceiling = ceilings.get(s.concurrency)
        share = f"{100 * s.rps / ceiling.rps:.0f} %" if ceiling and ceiling.rps else "—"
        name = "aws.status" if s.target == "vod2s3" else "ceiling (constant JSON)"
        rows = f"{s.rows:,}" if s.target == "vod2s3" else "—"
        pg = f"{s.per_request_ms('postgres'):.2f}" if "postgres" in s.cpu_s else "—"
        lines.append(
            f"| {name} | {rows} | {s.concurrency} | {s.rps:,.0f} | {share} | {s.p50_ms:.2f} "
            f"| {s.p99_ms:.2f} | {s.per_request_ms('server'):.2f} | {pg} "
            f"| {s.per_request_ms('clients'):.2f} | {s.cpu_s.get('other', 0.0):.1f} "
            f"| {s.response_bytes:,} |"
        )
    duration = samples[0].duration_s if samples else 0
    lines.append(
        f"\nEach row is one {duration:g} s window after a warm-up. 'other CPU-s' is CPU used by "
        "processes outside the measurement (other jobs on the machine) during the window."
    )
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------


def int_list(raw: str) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {raw!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every number must be at least 1: {raw!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a database on the PostgreSQL server, used to create and drop our own",
    )
    common.add_argument("--duration", type=float, default=None, help="seconds per window")
    common.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    common.add_argument(
        "--wait-idle",
        type=float,
        default=10.0,
        metavar="S",
        help="before each window wait up to S seconds for other processes to go quiet",
    )
    common.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    common.add_argument(
        "--retries",
        type=int,
        default=4,
        help="attempts per measurement when PostgreSQL restarts meanwhile (other jobs do)",
    )
    sub = parser.add_subparsers(dest="kind", required=True)

    claims = sub.add_parser("claims", parents=[common], help="claims per second")
    claims.add_argument(
        "--rows",
        type=int_list,
        default=[20_000],
        dest="row_list",
        help="queued rows at the start of each window (comma-separated)",
    )
    claims.add_argument("--accounts", type=int, default=50, help="accounts with queued work")
    claims.add_argument(
        "--idle-accounts",
        type=int,
        default=0,
        help="more accounts that never queue anything (claims must not walk them)",
    )
    claims.add_argument(
        "--claimers",
        type=int_list,
        default=[1, 4, 16],
        dest="claimer_list",
        help="concurrent claimer processes on PostgreSQL",
    )
    claims.add_argument(
        "--sqlite-claimers",
        default="1,4",
        help="concurrent claimer processes on SQLite ('' for none)",
    )

    status = sub.add_parser("status", parents=[common], help="aws.status throughput, latency")
    status.add_argument(
        "--sizes",
        type=int_list,
        default=[1000, 1_000_000],
        dest="size_list",
        help="rows in the uploads table (comma-separated)",
    )
    status.add_argument(
        "--accounts",
        type=int,
        default=1000,
        help="accounts the rows are spread over (at most rows/25)",
    )
    status.add_argument(
        "--concurrency",
        type=int_list,
        default=[1, 8],
        dest="concurrency_list",
        help="requests in flight (comma-separated levels)",
    )
    status.add_argument(
        "--client-processes",
        type=int,
        default=2,
        help="load-generator processes (threads share the rest)",
    )
    status.add_argument("--no-ceiling", dest="ceiling", action="store_false")
    status.add_argument("--vod2s3-bin", default=str(Path(sys.executable).parent / "vod2s3"))

    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 10.0 if args.kind == "claims" else 15.0
    if args.kind == "claims":
        raw = args.sqlite_claimers.strip()
        try:
            args.sqlite_claimer_list = int_list(raw) if raw else []
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    results_path: Path = args.results_dir / f"scale-{args.kind}-{stamp}.json"
    wait_for_postgres(args.admin_url)
    meta: dict[str, Any] = {
        "started": stamp,
        "argv": sys.argv,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "git": git_state(),
        "host": host_info(args.admin_url),
    }

    def save() -> None:
        data = {
            key: [asdict(x) for x in value] if key in ("samples", "queries") else value
            for key, value in meta.items()
        }
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, results_path)

    try:
        if args.kind == "claims":
            status = run_claims(args, meta, save)
        else:
            status = run_status(args, meta, save)
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    finally:
        save()
    print(
        f"\nmachine: {meta['host']['cpus']} cores, {meta['host']['cpu_model']}; "
        f"PostgreSQL {meta['host']['postgres']}"
    )
    print(f"raw samples: {results_path}")
    return status


def host_info(admin_url: str) -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    engine = create_engine(_psycopg(admin_url))
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar_one()
            settings = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in ("shared_buffers", "work_mem", "synchronous_commit", "max_connections")
            }
    finally:
        engine.dispose()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "postgres": version,
        "postgres_settings": settings,
        "started_at": datetime.now().isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    sys.exit(main())
