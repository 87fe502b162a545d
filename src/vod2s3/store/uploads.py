"""Operations on upload rows: enqueue, read, claim with a lease, and guarded transitions.

Every transition of a claimed row states its precondition (``state = 'uploading'`` and the
caller's ``lease_owner``) in the WHERE clause, so a worker that lost its lease cannot overwrite
what the new owner wrote: it learns so from the returned ``False``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    delete,
    desc,
    exc,
    func,
    insert,
    or_,
    select,
    true,
    update,
)

from vod2s3.clock import Clock
from vod2s3.store.db import transaction
from vod2s3.store.outbox import enqueue_callback, supersede_callbacks
from vod2s3.store.schema import RECORD_COLUMNS, accounts, upload_parts, uploads

EMPTY_RESULTS: dict[str, str] = {}


@dataclass(frozen=True)
class NewUpload:
    account_id: int
    cdn_id: int
    request_signature: str
    path: str
    volume: str
    bucket: str
    destination_path: str
    metadata: dict[str, str]
    acl: str
    callback: str
    options: dict[str, str]
    bytes_total: int


@dataclass(frozen=True)
class StoredPart:
    number: int
    etag: str
    checksum: str
    size: int


@dataclass(frozen=True)
class StoredMultipart:
    """The multipart upload an earlier attempt began, and the parts S3 confirmed to it."""

    upload_id: str
    part_size: int
    source_mtime_ns: int
    parts: tuple[StoredPart, ...]


# What complete/fail/cancel write: the multipart upload is over, its parts forgotten.
_NO_MULTIPART = {"multipart_upload_id": None, "part_size": None, "source_mtime_ns": None}


# The claim's parameters (named apart from the columns they set).
_CLAIM_NOW = bindparam("claim_now", type_=DateTime())
_CLAIM_OWNER = bindparam("claim_owner", type_=String())
_CLAIM_LEASE_EXPIRES = bindparam("claim_lease_expires", type_=DateTime())
_CLAIM_VOLUMES = bindparam("claim_volumes", expanding=True, type_=String())


@functools.cache
def _claim_statement(postgres: bool, by_volume: bool) -> Any:
    """Built once per kind with bound parameters: SQLAlchemy then reuses the statement's
    cache key and compiled form, which would otherwise cost more than running it on SQLite."""
    now = _CLAIM_NOW
    claimable = or_(
        and_(uploads.c.state == "queued", uploads.c.next_attempt_at <= now),
        and_(uploads.c.state == "uploading", uploads.c.lease_expires < now),
    )
    if by_volume:
        claimable = and_(claimable, uploads.c.volume.in_(_CLAIM_VOLUMES))
    candidate = _postgres_candidate(by_volume) if postgres else _sorted_candidate(claimable)
    return (
        update(uploads)
        .where(uploads.c.id == candidate, claimable)
        .values(
            state="uploading",
            message="Uploading",
            lease_owner=_CLAIM_OWNER,
            lease_expires=_CLAIM_LEASE_EXPIRES,
            attempts=uploads.c.attempts + 1,
            started=func.coalesce(uploads.c.started, now),
            last_updated=now,
        )
        .returning(*uploads.c)
    )


def _sorted_candidate(claimable: ColumnElement[bool]) -> Any:
    """Round-robin between accounts — the account whose last claim is oldest, then its
    upload due longest — by sorting the claimable rows. Fine for SQLite, where one
    machine's queue is small and the transaction's write lock serialises claims."""
    return (
        select(uploads.c.id)
        .join(accounts, accounts.c.id == uploads.c.account_id)
        .where(claimable)
        .order_by(accounts.c.last_claimed, accounts.c.id, uploads.c.next_attempt_at, uploads.c.id)
        .limit(1)
        .scalar_subquery()
    )


def _postgres_candidate(by_volume: bool) -> Any:
    """The same choice without sorting the queue: an expired lease first (few rows are
    uploading), else the accounts in round-robin order from their index, each asked for
    its oldest due upload through (account_id, state, next_attempt_at, id), stopping at
    the first one that has a row nobody else has locked. Cost stays flat as the queue
    grows (docs/benchmarks.md)."""
    now = _CLAIM_NOW
    expired = select(uploads.c.id).where(
        uploads.c.state == "uploading", uploads.c.lease_expires < now
    )
    due = uploads.alias("due")
    oldest_due = select(due.c.id).where(
        due.c.account_id == accounts.c.id,
        due.c.state == "queued",
        due.c.next_attempt_at <= now,
    )
    if by_volume:
        expired = expired.where(uploads.c.volume.in_(_CLAIM_VOLUMES))
        oldest_due = oldest_due.where(due.c.volume.in_(_CLAIM_VOLUMES))
    expired_first = (
        expired.order_by(uploads.c.lease_expires)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    per_account = (
        oldest_due.order_by(due.c.next_attempt_at, due.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .lateral("due_upload")
    )
    next_turn = (
        select(per_account.c.id)
        .select_from(accounts.join(per_account, true()))
        .order_by(accounts.c.last_claimed, accounts.c.id)
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(expired_first, next_turn)


class TooManyActive(Exception):
    """The account already has the most uploads queued or running that it may have."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"{cap} uploads queued or running")


# Statements run for every upload are built once, with bound parameters: SQLAlchemy then
# reuses their cache keys and compiled forms, where building them again each time cost
# more CPU than SQLite spent running them.
_INSERT_UPLOAD = insert(uploads).returning(*uploads.c)

_ACCOUNT = bindparam("of_account", type_=Integer())
_SIGNATURE = bindparam("of_signature", type_=String())
_BY_SIGNATURE = select(uploads).where(
    uploads.c.account_id == _ACCOUNT, uploads.c.request_signature == _SIGNATURE
)
_COUNT_ACTIVE = (
    select(func.count())
    .select_from(uploads)
    .where(uploads.c.account_id == _ACCOUNT, uploads.c.state.in_(("queued", "uploading")))
)

_UPLOAD = bindparam("of_upload", type_=Integer())
_OWN_UPLOAD = select(*RECORD_COLUMNS).where(
    uploads.c.id == _UPLOAD, uploads.c.account_id == _ACCOUNT
)

# aws.status: LIMIT and OFFSET are bound parameters either way (SQLAlchemy's default).
_LIMIT = bindparam("page_limit", type_=Integer())
_OFFSET = bindparam("page_offset", type_=Integer())
_STATE = bindparam("in_state", type_=String())
_LATEST = (
    select(*RECORD_COLUMNS)
    .where(uploads.c.account_id == _ACCOUNT)
    .order_by(desc(uploads.c.id))
    .limit(_LIMIT)
    .offset(_OFFSET)
)
_LATEST_IN_STATE = _LATEST.where(uploads.c.state == _STATE)

# The guard of every write by a worker: the row is still ours.
_GUARD_ID = bindparam("guard_id", type_=Integer())
_GUARD_OWNER = bindparam("guard_owner", type_=String())
_WHILE_HELD = update(uploads).where(
    uploads.c.id == _GUARD_ID,
    uploads.c.state == "uploading",
    uploads.c.lease_owner == _GUARD_OWNER,
)


def _find_by_signature(conn: Connection, account_id: int, signature: str) -> Row[Any] | None:
    return conn.execute(
        _BY_SIGNATURE, {_ACCOUNT.key: account_id, _SIGNATURE.key: signature}
    ).first()


def _count_active(conn: Connection, account_id: int) -> int:
    return int(conn.execute(_COUNT_ACTIVE, {_ACCOUNT.key: account_id}).scalar_one())


class UploadStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    # -- the customer's side -------------------------------------------------------------

    def enqueue(self, new: NewUpload, max_active: int = 0) -> tuple[Row[Any], bool]:
        """Queue ``new``; returns (row, created). A replay of the same signed request returns
        the row the first arrival created, with created=False. With ``max_active``, raise
        :class:`TooManyActive` rather than queue beyond that many of the account's uploads
        queued or running. One transaction: the replay check, the cap and the insert."""
        now = self._clock.now()
        values = {
            **new.__dict__,
            "state": "queued",
            "message": "Queued",
            "status": 0,
            "error_code": "",
            "results": EMPTY_RESULTS,
            "checksum": "",
            "attempts": 0,
            "bytes_uploaded": 0,
            "callback_state": "none",
            "callback_attempts": 0,
            "created": now,
            "last_updated": now,
            "next_attempt_at": now,
        }
        try:
            with transaction(self._engine) as conn:
                existing = _find_by_signature(conn, new.account_id, new.request_signature)
                if existing is not None:
                    return existing, False
                if max_active and _count_active(conn, new.account_id) >= max_active:
                    raise TooManyActive(max_active)
                row = conn.execute(_INSERT_UPLOAD, values).one()
            return row, True
        except exc.IntegrityError:
            # The same request, queued by another process between our check and our insert.
            again = self.find_by_signature(new.account_id, new.request_signature)
            if again is None:
                raise
            return again, False

    def find_by_signature(self, account_id: int, signature: str) -> Row[Any] | None:
        with transaction(self._engine) as conn:
            return _find_by_signature(conn, account_id, signature)

    def get(self, account_id: int, upload_id: int) -> Row[Any] | None:
        """The record's columns (RECORD_COLUMNS), only if it belongs to ``account_id``."""
        with transaction(self._engine) as conn:
            return conn.execute(
                _OWN_UPLOAD, {_UPLOAD.key: upload_id, _ACCOUNT.key: account_id}
            ).first()

    def get_any(self, upload_id: int) -> Row[Any] | None:
        """The row whatever its account: for workers and operators only."""
        with transaction(self._engine) as conn:
            return conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()

    def latest(
        self, account_id: int, limit: int, offset: int, state: str | None = None
    ) -> list[Row[Any]]:
        """The account's records (RECORD_COLUMNS), newest first (served by the (account_id, id)
        index)."""
        params: dict[str, Any] = {_ACCOUNT.key: account_id, _LIMIT.key: limit, _OFFSET.key: offset}
        query = _LATEST
        if state is not None:
            query, params[_STATE.key] = _LATEST_IN_STATE, state
        with transaction(self._engine) as conn:
            return list(conn.execute(query, params).all())

    def cancel(self, account_id: int, upload_id: int) -> tuple[Row[Any] | None, bool]:
        """Stop a queued or running upload: (the row, whether this call cancelled it). The
        worker running it loses its lease at its next write; the multipart upload it leaves
        is aborted by :meth:`cancelled_with_multipart`'s sweep (its parts stay until then)."""
        now = self._clock.now()
        return self._change_own(
            account_id,
            upload_id,
            from_states=("queued", "uploading"),
            then=lambda conn: enqueue_callback(conn, upload_id, now),
            state="cancelled",
            message="Cancelled",
            error_code="Cancelled",
            finished=now,
            last_updated=now,
            lease_owner=None,
            lease_expires=None,
        )

    def retry(self, account_id: int, upload_id: int) -> tuple[Row[Any] | None, bool]:
        """Queue a failed or cancelled upload again under its id: (the row, whether this call
        requeued it). A multipart upload it left behind is resumed if S3 still has it."""
        now = self._clock.now()
        return self._change_own(
            account_id,
            upload_id,
            from_states=("failed", "cancelled"),
            # A callback of the outcome being retried must not arrive after the new one.
            then=lambda conn: supersede_callbacks(conn, upload_id, now),
            state="queued",
            message="Queued",
            status=0,
            error_code="",
            results=EMPTY_RESULTS,
            checksum="",
            attempts=0,
            finished=None,
            next_attempt_at=now,
            last_updated=now,
            callback_state="none",
            callback_attempts=0,
            callback_status=0,
            callback_error="",
        )

    def _change_own(
        self,
        account_id: int,
        upload_id: int,
        from_states: tuple[str, ...],
        then: Callable[[Connection], None],
        **values: Any,
    ) -> tuple[Row[Any] | None, bool]:
        """The customer's side of a guarded transition: update the account's row only from
        ``from_states``, run ``then`` in the same transaction, and return (the row as it is
        now, whether this call changed it). None for an id that is not the account's."""
        with transaction(self._engine) as conn:
            changed = conn.execute(
                update(uploads)
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.account_id == account_id,
                    uploads.c.state.in_(from_states),
                )
                .values(**values)
                .returning(uploads.c.id)
            ).first()
            if changed is not None:
                then(conn)
                return conn.execute(select(uploads).where(uploads.c.id == upload_id)).one(), True
        return self.get(account_id, upload_id), False

    # -- the worker's side ---------------------------------------------------------------

    def cancelled_with_multipart(self, limit: int = 20) -> list[Row[Any]]:
        """Cancelled uploads whose multipart upload still needs aborting."""
        with transaction(self._engine) as conn:
            return list(
                conn.execute(
                    select(uploads)
                    .where(
                        uploads.c.state == "cancelled", uploads.c.multipart_upload_id.is_not(None)
                    )
                    .order_by(uploads.c.id)
                    .limit(limit)
                ).all()
            )

    def forget_multipart(self, upload_id: int, multipart_upload_id: str) -> None:
        """After the abort: only if the row still names that multipart upload and is still
        cancelled (a retry meanwhile keeps its state)."""
        with transaction(self._engine) as conn:
            done = conn.execute(
                update(uploads)
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.state == "cancelled",
                    uploads.c.multipart_upload_id == multipart_upload_id,
                )
                .values(**_NO_MULTIPART)
            ).rowcount
            if done:
                self._forget_parts(upload_id)(conn)

    def claim(self, owner: str, lease: timedelta, volumes: tuple[str, ...] = ()) -> Row[Any] | None:
        """Take the next due upload — a queued one, or one whose lease expired because its
        worker died — and lease it to ``owner``. One guarded statement: on PostgreSQL the
        candidate is locked with SKIP LOCKED; on SQLite the transaction holds the write lock."""
        now = self._clock.now()
        params: dict[str, Any] = {
            _CLAIM_NOW.key: now,
            _CLAIM_OWNER.key: owner,
            _CLAIM_LEASE_EXPIRES.key: now + lease,
        }
        if volumes:
            params[_CLAIM_VOLUMES.key] = list(volumes)
        with transaction(self._engine) as conn:
            postgres = self._engine.dialect.name == "postgresql"
            row = conn.execute(_claim_statement(postgres, bool(volumes)), params).first()
            if row is not None:
                conn.execute(
                    update(accounts).where(accounts.c.id == row.account_id).values(last_claimed=now)
                )
            return row

    def _transition(
        self,
        upload_id: int,
        owner: str,
        then: Callable[[Connection], None] | None = None,
        **values: Any,
    ) -> bool:
        """Update the row only while ``owner`` holds it; ``then`` runs in the same transaction
        when it does."""
        values.setdefault("last_updated", self._clock.now())
        guard = {_GUARD_ID.key: upload_id, _GUARD_OWNER.key: owner}
        if any(isinstance(value, ClauseElement) for value in values.values()):
            statement, params = _WHILE_HELD.values(**values), guard
        else:
            # Plain values go in as parameters: the SET clause follows their names, and the
            # statement, built once, keeps its cache key (see _claim_statement).
            statement, params = _WHILE_HELD, {**values, **guard}
        with transaction(self._engine) as conn:
            if conn.execute(statement, params).rowcount != 1:
                return False
            if then is not None:
                then(conn)
            return True

    @classmethod
    def _finished(cls, upload_id: int, now: datetime) -> Callable[[Connection], None]:
        """What ends an upload, in the transaction that records its outcome: its parts are
        forgotten and its callback goes into the outbox."""
        forget = cls._forget_parts(upload_id)

        def finish(conn: Connection) -> None:
            forget(conn)
            enqueue_callback(conn, upload_id, now)

        return finish

    @staticmethod
    def _forget_parts(upload_id: int, keep: Sequence[int] = ()) -> Callable[[Connection], None]:
        def forget(conn: Connection) -> None:
            condition = upload_parts.c.upload_id == upload_id
            if keep:
                condition = and_(condition, upload_parts.c.part_number.not_in(keep))
            conn.execute(delete(upload_parts).where(condition))

        return forget

    # -- multipart resume ----------------------------------------------------------------

    def multipart_started(
        self,
        upload_id: int,
        owner: str,
        multipart_upload_id: str,
        part_size: int,
        source_mtime_ns: int,
    ) -> bool:
        return self._transition(
            upload_id,
            owner,
            then=self._forget_parts(upload_id),
            multipart_upload_id=multipart_upload_id,
            part_size=part_size,
            source_mtime_ns=source_mtime_ns,
            bytes_uploaded=0,
        )

    def multipart_resumed(self, upload_id: int, owner: str, kept: Sequence[StoredPart]) -> bool:
        """Keep only the parts S3 was found to hold."""
        return self._transition(
            upload_id,
            owner,
            then=self._forget_parts(upload_id, keep=[part.number for part in kept]),
            bytes_uploaded=sum(part.size for part in kept),
        )

    def record_part(self, upload_id: int, owner: str, part: StoredPart) -> bool:
        """A part S3 confirmed; it also advances the record's progress."""

        def store(conn: Connection) -> None:
            conn.execute(
                delete(upload_parts).where(
                    upload_parts.c.upload_id == upload_id,
                    upload_parts.c.part_number == part.number,
                )
            )
            conn.execute(
                insert(upload_parts).values(
                    upload_id=upload_id,
                    part_number=part.number,
                    etag=part.etag,
                    checksum=part.checksum,
                    size=part.size,
                )
            )

        return self._transition(
            upload_id,
            owner,
            then=store,
            bytes_uploaded=uploads.c.bytes_uploaded + part.size,
        )

    def multipart_state(self, upload_id: int) -> StoredMultipart | None:
        with transaction(self._engine) as conn:
            row = conn.execute(
                select(
                    uploads.c.multipart_upload_id,
                    uploads.c.part_size,
                    uploads.c.source_mtime_ns,
                ).where(uploads.c.id == upload_id)
            ).first()
            if row is None or row.multipart_upload_id is None:
                return None
            parts = conn.execute(
                select(upload_parts)
                .where(upload_parts.c.upload_id == upload_id)
                .order_by(upload_parts.c.part_number)
            ).all()
        return StoredMultipart(
            upload_id=row.multipart_upload_id,
            part_size=int(row.part_size),
            source_mtime_ns=int(row.source_mtime_ns),
            parts=tuple(StoredPart(p.part_number, p.etag, p.checksum, int(p.size)) for p in parts),
        )

    def heartbeat(self, upload_id: int, owner: str, lease: timedelta) -> bool:
        """Extend the lease; False if it is no longer ours."""
        now = self._clock.now()
        return self._transition(upload_id, owner, lease_expires=now + lease, last_updated=now)

    def record_progress(self, upload_id: int, owner: str, bytes_uploaded: int) -> bool:
        return self._transition(upload_id, owner, bytes_uploaded=bytes_uploaded)

    def complete(
        self,
        upload_id: int,
        owner: str,
        results: dict[str, str],
        status: int,
        checksum: str,
        bytes_total: int,
    ) -> bool:
        now = self._clock.now()
        return self._transition(
            upload_id,
            owner,
            state="completed",
            message="Successfully Uploaded to AWS",
            results=results,
            status=status,
            checksum=checksum,
            error_code="",
            bytes_total=bytes_total,
            bytes_uploaded=bytes_total,
            finished=now,
            lease_owner=None,
            lease_expires=None,
            then=self._finished(upload_id, now),
            **_NO_MULTIPART,
        )

    def fail(self, upload_id: int, owner: str, status: int, code: str, message: str) -> bool:
        now = self._clock.now()
        return self._transition(
            upload_id,
            owner,
            state="failed",
            message=message,
            status=status,
            error_code=code,
            finished=now,
            lease_owner=None,
            lease_expires=None,
            then=self._finished(upload_id, now),
            **_NO_MULTIPART,
        )

    def requeue(
        self, upload_id: int, owner: str, delay: timedelta, status: int, code: str, message: str
    ) -> bool:
        """Back to the queue after a transient failure, due again after ``delay``."""
        now = self._clock.now()
        return self._transition(
            upload_id,
            owner,
            state="queued",
            message=message,
            status=status,
            error_code=code,
            next_attempt_at=now + delay,
            lease_owner=None,
            lease_expires=None,
        )

    def release(self, upload_id: int, owner: str) -> bool:
        """Give a claimed upload back untouched (graceful shutdown): the attempt is not
        counted against it."""
        return self._transition(
            upload_id,
            owner,
            state="queued",
            message="Queued",
            attempts=uploads.c.attempts - 1,
            next_attempt_at=self._clock.now(),
            lease_owner=None,
            lease_expires=None,
        )

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with transaction(self._engine) as conn:
            conn.execute(select(1))

    def count_by_state(self) -> dict[str, int]:
        with transaction(self._engine) as conn:
            return counts_by_state(conn)


def counts_by_state(conn: Connection) -> dict[str, int]:
    """How many uploads are in each state (the queue depth of /metrics and the dashboard)."""
    rows = conn.execute(select(uploads.c.state, func.count()).group_by(uploads.c.state)).all()
    return {state: int(count) for state, count in rows}
