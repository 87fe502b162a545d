"""Workers: who is running, what they serve, and the takeover of those that died.

Every worker process registers a row. On PostgreSQL it also holds a session-level advisory
lock keyed on its id, on a connection of its own, for as long as it lives: when the process
dies its connection closes and the lock is free, which another worker can tell at once
(``pg_try_advisory_xact_lock`` succeeds) — and then revokes the dead worker's leases so
that the next claim resumes its uploads, without waiting for the leases to run out. On
SQLite every process shares one host, so a worker whose process is gone (its PID, with the
same start time, no longer exists) is dead.

A revoked lease is fenced like an expired one: the fencing token changes with the next
claim, so even a worker wrongly found dead can no longer write or act on S3 state.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Insert,
    Integer,
    Interval,
    Update,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)

from vod2s3.bandwidth.report import SendingReport
from vod2s3.store.db import transaction
from vod2s3.store.rows import WorkerRow
from vod2s3.store.schema import uploads, workers
from vod2s3.store.sqltime import SqlTime, TimeKind, now_sql

log = logging.getLogger("vod2s3.worker")

# The advisory locks' first key: the workers' namespace ("v2s3"), the second is the id.
LOCK_NAMESPACE = 0x76327333
# A lease revoked from a dead worker: in the past by any clock, so the next claim takes it.
REVOKED = datetime(1970, 1, 1)
# After PostgreSQL restarts, every lock is free until the live workers take theirs again
# (within a heartbeat tick): locks are not trusted as a sign of death until then.
RESTART_GRACE = timedelta(seconds=5)

_ME = bindparam("me", type_=Integer())
_DEAD = bindparam("dead", expanding=True, type_=Integer())


def process_started(pid: int) -> int:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or 0
    where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0


def process_alive(pid: int, started: int) -> bool:
    """Is the process that registered (``pid`` started at ``started``) still running?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    return started == 0 or process_started(pid) in (0, started)


@functools.cache
def _register(kind: TimeKind) -> Insert:
    now = now_sql(kind)
    return insert(workers).values(started=now, last_heartbeat=now).returning(workers.c.id)


@functools.cache
def _beat(kind: TimeKind) -> Update:
    return (
        update(workers)
        .where(workers.c.id == _ME)
        .values(
            last_heartbeat=now_sql(kind),
            stopped=None,
            stop_reason="",
            sending=bindparam("sending", type_=JSON()),
        )
    )


@functools.cache
def _stop(kind: TimeKind) -> Update:
    return (
        update(workers)
        .where(workers.c.id == _ME, workers.c.stopped.is_(None))
        .values(stopped=now_sql(kind), stop_reason="stopped")
    )


@functools.cache
def _declare_dead(kind: TimeKind) -> Update:
    return (
        update(workers)
        .where(workers.c.id.in_(_DEAD), workers.c.stopped.is_(None))
        .values(stopped=now_sql(kind), stop_reason="dead")
        .returning(workers.c.id)
    )


# Live-registered workers whose advisory lock is free: their sessions are gone. The
# transaction-level lock taken to find out is released when the transaction ends. Built
# once: every worker runs it every second.
_POSTGRES_DEAD = select(workers.c.id).where(
    workers.c.stopped.is_(None),
    workers.c.id != _ME,
    func.statement_timestamp() - func.pg_postmaster_start_time()
    > bindparam("grace", type_=Interval()),
    func.pg_try_advisory_xact_lock(LOCK_NAMESPACE, workers.c.id),
)


_REVOKE = (
    update(uploads)
    .where(uploads.c.state == "uploading", uploads.c.worker_id.in_(_DEAD))
    .values(lease_expires=REVOKED)
)


class WorkerRegistry:
    def __init__(self, engine: Engine, time: SqlTime) -> None:
        self._engine = engine
        self._time = time
        self._postgres = engine.dialect.name == "postgresql"
        self._host = socket.gethostname()[:255]

    def register(self, name: str, volumes: tuple[str, ...], version: str) -> int:
        pid = os.getpid()
        values = {
            "name": name[:64],
            "host": self._host,
            "pid": pid,
            "process_started": process_started(pid),
            "volumes": list(volumes),
            "version": version[:32],
            **self._time.bind(),
        }
        with transaction(self._engine) as conn:
            return int(conn.execute(_register(self._time.kind), values).scalar_one())

    def beat(self, worker_id: int, sending: SendingReport | None = None) -> None:
        """The worker is alive (and back, if it had been taken for dead), and sends what
        ``sending`` says."""
        report = None if sending is None else sending.as_json()
        with transaction(self._engine) as conn:
            conn.execute(
                _beat(self._time.kind),
                {_ME.key: worker_id, "sending": report, **self._time.bind()},
            )

    def stop(self, worker_id: int) -> None:
        with transaction(self._engine) as conn:
            conn.execute(_stop(self._time.kind), {_ME.key: worker_id, **self._time.bind()})

    def reap(self, me: int) -> list[int]:
        """Find the workers that died (other than ``me``), mark them so and revoke their
        leases; returns their ids."""
        with transaction(self._engine) as conn:
            if self._postgres:
                dead = [
                    int(row.id)
                    for row in conn.execute(_POSTGRES_DEAD, {_ME.key: me, "grace": RESTART_GRACE})
                ]
            else:
                dead = self._dead_on_this_host(conn, me)
            if not dead:
                return []
            declared = [
                int(row.id)
                for row in conn.execute(
                    _declare_dead(self._time.kind), {_DEAD.key: dead, **self._time.bind()}
                )
            ]
            if declared:
                conn.execute(_REVOKE, {_DEAD.key: declared})
        return declared

    def _dead_on_this_host(self, conn: Connection, me: int) -> list[int]:
        rows = conn.execute(
            select(workers.c.id, workers.c.pid, workers.c.process_started).where(
                workers.c.stopped.is_(None), workers.c.host == self._host, workers.c.id != me
            )
        )
        return [int(row.id) for row in rows if not process_alive(int(row.pid), row.process_started)]

    def uploads_held(self) -> dict[int, int]:
        """How many uploads each worker (by id) holds the lease of now."""
        query = (
            select(uploads.c.worker_id, func.count())
            .where(uploads.c.state == "uploading", uploads.c.worker_id.is_not(None))
            .group_by(uploads.c.worker_id)
        )
        with transaction(self._engine) as conn:
            return {int(worker): int(count) for worker, count in conn.execute(query)}

    def listed(self, include_stopped: bool = False) -> list[WorkerRow]:
        query = select(workers).order_by(workers.c.id)
        if not include_stopped:
            query = query.where(workers.c.stopped.is_(None))
        with transaction(self._engine) as conn:
            return [WorkerRow.from_row(row) for row in conn.execute(query)]


class WorkerLock:
    """PostgreSQL only: the session advisory lock that says this worker is alive, on a
    connection that is not returned to the pool while the worker runs."""

    def __init__(self, engine: Engine, worker_id: int) -> None:
        self._engine = engine
        self._worker_id = worker_id
        self._conn: Connection | None = None

    @property
    def needed(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def hold(self) -> bool:
        """Take the lock, or check that it is still held and take it again on a new
        connection if the old one broke (PostgreSQL restarted, the connection was killed);
        False while the database cannot be reached."""
        if not self.needed:
            return True
        try:
            if self._conn is not None:
                self._conn.execute(text("SELECT 1")).close()
                self._conn.commit()
                return True
        except Exception:
            log.warning("worker %s: lost the connection holding its lock", self._worker_id)
            self._drop()
        try:
            conn = self._engine.connect()
            conn.execute(
                text("SELECT pg_advisory_lock(:namespace, :worker)"),
                {"namespace": LOCK_NAMESPACE, "worker": self._worker_id},
            )
            conn.commit()
        except Exception:
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(:namespace, :worker)"),
                    {"namespace": LOCK_NAMESPACE, "worker": self._worker_id},
                )
                self._conn.commit()
            except Exception:
                log.debug("worker %s: unlock failed", self._worker_id, exc_info=True)
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:
                log.debug("closing a broken lock connection failed", exc_info=True)
            self._conn = None
