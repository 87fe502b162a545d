"""The lease queue: claim an upload, hold it, and end the attempt — all fenced.

A claim leases one due upload to a worker and raises its fencing token (``lease_token``).
Every later write of the holder names the token in its WHERE clause together with a
margin of lease still to run by the database's clock (:mod:`vod2s3.store.sqltime`), and
extends the lease as it writes. A worker that lost the upload — to a claim after its
lease ran out, to a cancel, or to the takeover of a worker found dead — is refused, and
learns so from the ``False`` (or ``None``) it gets back.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    BindParameter,
    ColumnElement,
    Engine,
    Integer,
    String,
    Update,
    and_,
    bindparam,
    delete,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)

from vod2s3.store.db import transaction
from vod2s3.store.outbox import enqueue_callback
from vod2s3.store.rows import CLAIMED_COLUMNS, ClaimedUpload, Lease
from vod2s3.store.schema import accounts, upload_parts, uploads
from vod2s3.store.sqltime import SqlTime, TimeKind, later_sql, now_sql

# Bound parameters, named apart from the columns they set.
_VOLUMES = bindparam("claim_volumes", expanding=True, type_=String())
_WORKER_ID = bindparam("claim_worker_id", type_=Integer())
_WORKER_NAME = bindparam("claim_worker_name", type_=String())
GUARD_ID = bindparam("guard_id", type_=Integer())
_TOKEN = bindparam("guard_token", type_=Integer())
_HELD: BindParameter[Any] = bindparam("guard_held", expanding=True)
LEASE_OFFSET = "sql_lease"  # now + the lease: when a lease taken or renewed now runs out
_MARGIN = "sql_margin"  # now + the margin a holder must still have to act
_DELAY = "sql_delay"  # now + a retry's backoff

# What ending an attempt writes: the lease and the multipart upload are over.
_NO_LEASE = {"lease_owner": None, "lease_expires": None, "worker_id": None}
_NO_MULTIPART = {"multipart_upload_id": None, "part_size": None, "source_mtime_ns": None}


def margin_of(lease: timedelta) -> timedelta:
    """The lease a holder must have left, by the database's clock, to write or to start a
    destructive S3 action. Heartbeats renew every third of a lease, so a healthy holder
    always has two thirds left; a quarter leaves room for one missed beat."""
    return lease / 4


@dataclass(frozen=True)
class Finished:
    """An outcome the holder recorded; ``seconds`` since the upload's first claim."""

    seconds: float | None


def holder_guard(kind: TimeKind) -> ColumnElement[bool]:
    """The fence of every holder's write: the token still holds, with margin to spare."""
    return and_(
        uploads.c.id == GUARD_ID,
        uploads.c.lease_token == _TOKEN,
        uploads.c.state == "uploading",
        uploads.c.lease_expires > later_sql(kind, _MARGIN),
    )


def holder_params(
    time: SqlTime, lease: Lease, length: timedelta, renew: bool, **offsets: timedelta
) -> dict[str, Any]:
    """Parameters of a guarded statement: the lease's identity and the times it compares
    (and, when ``renew``, the new end of the lease)."""
    if renew:
        offsets[LEASE_OFFSET] = length
    return {
        GUARD_ID.key: lease.upload_id,
        _TOKEN.key: lease.token,
        **time.bind(sql_margin=margin_of(length), **offsets),
    }


# -- claim -------------------------------------------------------------------------------


def _claimable(kind: TimeKind, by_volume: bool) -> ColumnElement[bool]:
    now = now_sql(kind)
    claimable = or_(
        and_(uploads.c.state == "queued", uploads.c.next_attempt_at <= now),
        and_(uploads.c.state == "uploading", uploads.c.lease_expires < now),
    )
    return and_(claimable, uploads.c.volume.in_(_VOLUMES)) if by_volume else claimable


@functools.cache
def _claim(kind: TimeKind, postgres: bool, by_volume: bool) -> Update:
    """Built once per kind with bound parameters: SQLAlchemy then reuses the statement's
    cache key and compiled form, which would otherwise cost more than running it on SQLite."""
    now = now_sql(kind)
    claimable = _claimable(kind, by_volume)
    candidate = _candidate(kind, postgres, by_volume)
    return (
        update(uploads)
        .where(uploads.c.id == candidate, claimable)
        .values(
            state="uploading",
            message="Uploading",
            lease_owner=_WORKER_NAME,
            worker_id=_WORKER_ID,
            lease_token=uploads.c.lease_token + 1,
            lease_expires=later_sql(kind, LEASE_OFFSET),
            attempts=uploads.c.attempts + 1,
            started=func.coalesce(uploads.c.started, now),
            last_updated=now,
        )
        .returning(*CLAIMED_COLUMNS)
    )


# Written into the SQL, not bound: only a literal lets SQLite (and a generic PostgreSQL
# plan) prove that a condition matches the partial index of queued uploads.
_QUEUED: ColumnElement[str] = literal_column("'queued'")

# The accounts that have queued uploads, found by skipping through the partial index of
# queued uploads (a loose index scan): one probe per busy account, none per idle one.
# Written as SQL because SQLite, without statistics, would walk another index and sort
# every queued row for each probe; only its INDEXED BY, which SQLAlchemy does not render,
# keeps it on the partial index.
_BUSY_ACCOUNTS = """
SELECT account_id FROM (
    SELECT account_id FROM uploads{hint} WHERE state = 'queued' ORDER BY account_id LIMIT 1
) AS lowest
UNION ALL
SELECT (
    SELECT later.account_id FROM uploads AS later{hint}
    WHERE later.state = 'queued' AND later.account_id > busy.account_id
    ORDER BY later.account_id LIMIT 1
) FROM busy WHERE busy.account_id IS NOT NULL
"""


def _busy_accounts(postgres: bool) -> CTE:
    hint = "" if postgres else " INDEXED BY ix_uploads_queued_account_id"
    busy = text(_BUSY_ACCOUNTS.format(hint=hint)).columns(account_id=Integer())
    return busy.cte("busy", recursive=True)


def _candidate(kind: TimeKind, postgres: bool, by_volume: bool) -> ColumnElement[Any]:
    """Which upload a claim takes, without sorting the queue: an expired or revoked lease
    first (few rows are uploading), else the busy accounts in round-robin order — the one
    whose last claim is oldest first — each asked for its oldest due upload through the
    partial index of queued uploads. Cost grows with the accounts that have work, not
    with the queue or the idle accounts (docs/benchmarks.md)."""
    now = now_sql(kind)
    expired = select(uploads.c.id).where(
        uploads.c.state == "uploading", uploads.c.lease_expires < now
    )
    busy = _busy_accounts(postgres)
    # Each busy account's turn is looked up by primary key (a join would let the planner
    # scan the whole accounts table to hash it), and the few turns are materialized, so
    # that they are sorted rather than found by walking every account in the order of the
    # last_claimed index, idle ones included.
    last_claimed = (
        select(accounts.c.last_claimed).where(accounts.c.id == busy.c.account_id).scalar_subquery()
    )
    # A disabled account's uploads wait, queued, until it is enabled again (its
    # credentials must not be used): its turn is skipped, by primary key like the above.
    enabled = (
        select(accounts.c.id)
        .where(accounts.c.id == busy.c.account_id, accounts.c.disabled == false())
        .exists()
    )
    turns = (
        select(busy.c.account_id.label("id"), last_claimed.label("last_claimed"))
        .where(busy.c.account_id.is_not(None), enabled)
        .cte("turns")
        .prefix_with("MATERIALIZED")
    )
    due = uploads.alias("due")
    oldest_due = select(due.c.id).where(
        due.c.account_id == turns.c.id,
        due.c.state == _QUEUED,
        due.c.next_attempt_at <= now,
    )
    if by_volume:
        expired = expired.where(uploads.c.volume.in_(_VOLUMES))
        oldest_due = oldest_due.where(due.c.volume.in_(_VOLUMES))
    # SKIP LOCKED on PostgreSQL: concurrent claimers pass over each other's candidates.
    # SQLite has no row locks (the transaction holds the database's write lock) and no
    # LATERAL: each turn's oldest due upload is a scalar subquery there.
    expired_first = (
        expired.order_by(uploads.c.lease_expires)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    oldest_due = oldest_due.order_by(due.c.next_attempt_at, due.c.id).limit(1)
    if postgres:
        per_account = oldest_due.with_for_update(skip_locked=True).lateral("due_upload")
        next_turn = select(per_account.c.id).select_from(turns.join(per_account, true()))
    else:
        first_due = oldest_due.scalar_subquery()
        next_turn = select(first_due).select_from(turns).where(first_due.is_not(None))
    next_turn = next_turn.order_by(turns.c.last_claimed, turns.c.id).limit(1)
    return func.coalesce(expired_first, next_turn.scalar_subquery())


@functools.cache
def _turn_taken(kind: TimeKind) -> Update:
    return (
        update(accounts)
        .where(accounts.c.id == bindparam("turn_account", type_=Integer()))
        .values(last_claimed=now_sql(kind))
    )


# -- holding -----------------------------------------------------------------------------


@functools.cache
def _renew_all(kind: TimeKind) -> Update:
    now = now_sql(kind)
    return (
        update(uploads)
        .where(
            tuple_(uploads.c.id, uploads.c.lease_token).in_(_HELD),
            uploads.c.state == "uploading",
            uploads.c.lease_expires > now,
        )
        .values(lease_expires=later_sql(kind, LEASE_OFFSET))
        .returning(uploads.c.id)
    )


@functools.cache
def _fence(kind: TimeKind) -> Update:
    return (
        update(uploads)
        .where(holder_guard(kind))
        .values(lease_expires=later_sql(kind, LEASE_OFFSET))
        .returning(uploads.c.id)
    )


@functools.cache
def _end(kind: TimeKind, outcome: str) -> Update:
    """Complete, fail, requeue or release; the columns that vary come as parameters."""
    now = now_sql(kind)
    values: dict[str, Any] = {**_NO_LEASE, "last_updated": now}
    if outcome in ("completed", "failed"):
        values.update(_NO_MULTIPART, state=outcome, finished=now)
    elif outcome == "requeued":
        values.update(state="queued", next_attempt_at=later_sql(kind, _DELAY))
    else:  # released: given back untouched, the attempt not counted (message: a parameter)
        values.update(
            state="queued",
            attempts=uploads.c.attempts - 1,
            next_attempt_at=now,
        )
    return (
        update(uploads)
        .where(holder_guard(kind))
        .values(**values)
        .returning(
            uploads.c.started, uploads.c.last_updated, uploads.c.account_id, uploads.c.callback
        )
    )


# Forgetting an upload's parts: at the end of an attempt, and when the journal starts over.
FORGET_PARTS = delete(upload_parts).where(upload_parts.c.upload_id == GUARD_ID)


class LeaseQueue:
    """Claims, renewals and the end of each attempt."""

    def __init__(self, engine: Engine, time: SqlTime, lease: timedelta) -> None:
        self._engine = engine
        self._time = time
        self.lease = lease
        self._postgres = engine.dialect.name == "postgresql"

    def claim(
        self, worker_id: int, worker_name: str, volumes: tuple[str, ...] = ()
    ) -> ClaimedUpload | None:
        """Take the next due upload — a queued one, or one whose lease ran out or whose
        worker was found dead — and lease it to the worker under a new fencing token. One
        guarded statement: on PostgreSQL the candidate is locked with SKIP LOCKED; on
        SQLite the transaction holds the write lock."""
        params: dict[str, Any] = {
            _WORKER_ID.key: worker_id,
            _WORKER_NAME.key: worker_name,
            **self._time.bind(sql_lease=self.lease),
        }
        if volumes:
            params[_VOLUMES.key] = list(volumes)
        statement = _claim(self._time.kind, self._postgres, bool(volumes))
        with transaction(self._engine) as conn:
            row = conn.execute(statement, params).first()
            if row is None:
                return None
            claimed = ClaimedUpload.from_row(row)
            conn.execute(
                _turn_taken(self._time.kind),
                {"turn_account": claimed.account_id, **self._time.bind()},
            )
        return claimed

    def renew(self, leases: Sequence[Lease]) -> set[int]:
        """Extend every lease that still holds, in one statement; returns the upload ids
        renewed. A lease missing from the answer is lost."""
        if not leases:
            return set()
        held = [(lease.upload_id, lease.token) for lease in leases]
        with transaction(self._engine) as conn:
            rows = conn.execute(
                _renew_all(self._time.kind),
                {_HELD.key: held, **self._time.bind(sql_lease=self.lease)},
            )
            return {int(row.id) for row in rows}

    def fence(self, lease: Lease) -> bool:
        """Before a destructive or final S3 action: does the token still hold, with margin
        to spare? Renews the lease when it does, so the action has a whole lease to run."""
        with transaction(self._engine) as conn:
            row = conn.execute(
                _fence(self._time.kind), holder_params(self._time, lease, self.lease, renew=True)
            ).first()
            return row is not None

    def complete(
        self,
        lease: Lease,
        results: dict[str, str],
        status: int,
        checksum: str,
        size: int,
        parts_recorded: bool = True,
        integrity: dict[str, str] | None = None,
    ) -> Finished | None:
        """Record success; the parts are forgotten and the callback queued, in the same
        transaction. None when the lease no longer holds. ``parts_recorded=False`` (the
        holder knows no multipart upload was journalled) skips forgetting parts."""
        return self._finish(
            lease,
            "completed",
            parts_recorded,
            message="Successfully Uploaded to AWS",
            results=results,
            status=status,
            checksum=checksum,
            integrity=integrity,
            error_code="",
            bytes_total=size,
            bytes_uploaded=size,
        )

    def fail(self, lease: Lease, status: int, code: str, message: str) -> Finished | None:
        """Record a permanent failure; parts forgotten, callback queued, in one transaction."""
        return self._finish(lease, "failed", True, message=message, status=status, error_code=code)

    def _finish(
        self, lease: Lease, outcome: str, parts_recorded: bool, **values: Any
    ) -> Finished | None:
        params = {**holder_params(self._time, lease, self.lease, renew=False), **values}
        with transaction(self._engine) as conn:
            row = conn.execute(_end(self._time.kind, outcome), params).first()
            if row is None:
                return None
            if parts_recorded:
                conn.execute(FORGET_PARTS, {GUARD_ID.key: lease.upload_id})
            enqueue_callback(conn, self._time, lease.upload_id, row.account_id, row.callback)
        return Finished(_seconds_between(row.started, row.last_updated))

    def requeue(self, lease: Lease, delay: timedelta, status: int, code: str, message: str) -> bool:
        """Back to the queue after a transient failure, due again after ``delay`` (by the
        database's clock). The multipart upload and its parts stay for the next attempt."""
        params = {
            **holder_params(self._time, lease, self.lease, renew=False, sql_delay=delay),
            "message": message,
            "status": status,
            "error_code": code,
        }
        with transaction(self._engine) as conn:
            return conn.execute(_end(self._time.kind, "requeued"), params).first() is not None

    def release(self, lease: Lease, message: str = "Queued") -> bool:
        """Give a claimed upload back untouched (graceful shutdown; its account disabled):
        the attempt is not counted against it, and its multipart upload stays to be
        resumed. ``message`` says why it waits."""
        params = {**holder_params(self._time, lease, self.lease, renew=False), "message": message}
        with transaction(self._engine) as conn:
            return conn.execute(_end(self._time.kind, "released"), params).first() is not None


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()
