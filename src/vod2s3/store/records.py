"""The customer's side of the uploads table: queue an upload, read records, cancel, retry.

Every time written here is the database's (:mod:`vod2s3.store.sqltime`), so records made by
API processes on different hosts sort and compare by one clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Integer,
    String,
    Update,
    bindparam,
    desc,
    func,
    select,
    true,
    update,
)

from vod2s3.store.db import dialect_insert, transaction
from vod2s3.store.outbox import enqueue_callback, supersede_callbacks
from vod2s3.store.rows import RECORD_COLUMNS, UploadRecord
from vod2s3.store.schema import uploads
from vod2s3.store.sqltime import SqlTime, TimeKind, now_sql

EMPTY_RESULTS: dict[str, str] = {}
_ACTIVE = ("queued", "uploading")


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


class TooManyActive(Exception):
    """The account already has the most uploads queued or running that it may have."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"{cap} uploads queued or running")


# Statements run for every request are built once, with bound parameters: SQLAlchemy then
# reuses their cache keys and compiled forms, where building them again each time cost
# more CPU than SQLite spent running them.
_ACCOUNT = bindparam("of_account", type_=Integer())
_SIGNATURE = bindparam("of_signature", type_=String())
_UPLOAD = bindparam("of_upload", type_=Integer())
_LIMIT = bindparam("page_limit", type_=Integer())
_OFFSET = bindparam("page_offset", type_=Integer())
_STATE = bindparam("in_state", type_=String())

_BY_SIGNATURE = select(*RECORD_COLUMNS).where(
    uploads.c.account_id == _ACCOUNT, uploads.c.request_signature == _SIGNATURE
)
_COUNT_ACTIVE = (
    select(func.count())
    .select_from(uploads)
    .where(uploads.c.account_id == _ACCOUNT, uploads.c.state.in_(_ACTIVE))
)
_OWN_UPLOAD = select(*RECORD_COLUMNS).where(
    uploads.c.id == _UPLOAD, uploads.c.account_id == _ACCOUNT
)
_ANY_UPLOAD = select(*RECORD_COLUMNS).where(uploads.c.id == _UPLOAD)
# aws.status: LIMIT and OFFSET are bound parameters either way (SQLAlchemy's default).
_LATEST = (
    select(*RECORD_COLUMNS)
    .where(uploads.c.account_id == _ACCOUNT)
    .order_by(desc(uploads.c.id))
    .limit(_LIMIT)
    .offset(_OFFSET)
)
_LATEST_IN_STATE = _LATEST.where(uploads.c.state == _STATE)


_CAP = bindparam("active_cap", type_=Integer())


@functools.cache
def _queue_new(kind: TimeKind, dialect: str, capped: bool) -> Insert:
    """One statement for the usual case: insert the upload unless the same signed request
    is already queued (the unique constraint, ON CONFLICT DO NOTHING) or, when ``capped``,
    the account already has the most active uploads it may have. No row back means one
    of those two; the caller tells which."""
    now = now_sql(kind)
    given = {
        name: bindparam(f"new_{name}", type_=uploads.c[name].type)
        for name in (field.name for field in fields(NewUpload))
    }
    fixed = {
        name: bindparam(f"fixed_{name}", value=value, type_=uploads.c[name].type)
        for name, value in (
            ("state", "queued"),
            ("message", "Queued"),
            ("status", 0),
            ("error_code", ""),
            ("results", EMPTY_RESULTS),
            ("checksum", ""),
            ("attempts", 0),
            ("bytes_uploaded", 0),
            ("callback_state", "none"),
            ("callback_attempts", 0),
        )
    }
    values: dict[str, Any] = {
        **given,
        **fixed,
        "created": now,
        "last_updated": now,
        "next_attempt_at": now,
    }
    row = select(*values.values())
    if capped:
        active = (
            select(func.count())
            .select_from(uploads)
            .where(uploads.c.account_id == given["account_id"], uploads.c.state.in_(_ACTIVE))
            .scalar_subquery()
        )
        row = row.where(active < _CAP)
    else:
        row = row.where(true())  # SQLite reads "SELECT … ON CONFLICT" only after a WHERE
    insert = dialect_insert(dialect)
    return (
        insert(uploads)
        .from_select(list(values), row)
        .on_conflict_do_nothing(index_elements=[uploads.c.account_id, uploads.c.request_signature])
        .returning(*RECORD_COLUMNS)
    )


def _customer_change(from_states: tuple[str, ...], **values: Any) -> Update:
    """The customer's side of a guarded transition: the account's upload, only from
    ``from_states``."""
    return (
        update(uploads)
        .where(
            uploads.c.id == _UPLOAD,
            uploads.c.account_id == _ACCOUNT,
            uploads.c.state.in_(from_states),
        )
        .values(**values)
        .returning(*RECORD_COLUMNS)
    )


@functools.cache
def _cancel(kind: TimeKind) -> Update:
    now = now_sql(kind)
    return _customer_change(
        _ACTIVE,
        state="cancelled",
        message="Cancelled",
        error_code="Cancelled",
        finished=now,
        last_updated=now,
        lease_owner=None,
        lease_expires=None,
        worker_id=None,
    )


@functools.cache
def _retry(kind: TimeKind) -> Update:
    now = now_sql(kind)
    return _customer_change(
        ("failed", "cancelled"),
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


class RecordStore:
    """Upload records as customers create and see them."""

    def __init__(self, engine: Engine, time: SqlTime) -> None:
        self._engine = engine
        self._time = time

    def enqueue(self, new: NewUpload, max_active: int = 0) -> tuple[UploadRecord, bool]:
        """Queue ``new``; returns (record, created). A replay of the same signed request
        returns the record the first arrival created, with created=False. With
        ``max_active``, raise :class:`TooManyActive` rather than queue beyond that many of
        the account's uploads queued or running. One transaction, and one statement unless
        the request is a replay or over the cap."""
        params = {
            **{f"new_{name}": value for name, value in vars(new).items()},
            _CAP.key: max_active,
            **self._time.bind(),
        }
        statement = _queue_new(self._time.kind, self._engine.dialect.name, bool(max_active))
        with transaction(self._engine) as conn:
            row = conn.execute(statement, params).first()
            if row is not None:
                return UploadRecord.from_row(row), True
            existing = conn.execute(
                _BY_SIGNATURE,
                {_ACCOUNT.key: new.account_id, _SIGNATURE.key: new.request_signature},
            ).first()
        if existing is not None:
            return UploadRecord.from_row(existing), False
        raise TooManyActive(max_active)

    def find_by_signature(self, account_id: int, signature: str) -> UploadRecord | None:
        with transaction(self._engine) as conn:
            row = conn.execute(
                _BY_SIGNATURE, {_ACCOUNT.key: account_id, _SIGNATURE.key: signature}
            ).first()
        return None if row is None else UploadRecord.from_row(row)

    def get(self, account_id: int, upload_id: int) -> UploadRecord | None:
        """The record, only if it belongs to ``account_id``."""
        with transaction(self._engine) as conn:
            row = conn.execute(
                _OWN_UPLOAD, {_UPLOAD.key: upload_id, _ACCOUNT.key: account_id}
            ).first()
        return None if row is None else UploadRecord.from_row(row)

    def account_of(self, upload_id: int) -> int | None:
        """The id of the account an upload belongs to (None: no such upload): for
        operators acting on an upload on its account's behalf."""
        with transaction(self._engine) as conn:
            found = conn.execute(
                select(uploads.c.account_id).where(uploads.c.id == _UPLOAD),
                {_UPLOAD.key: upload_id},
            ).scalar()
        return None if found is None else int(found)

    def get_any(self, upload_id: int) -> UploadRecord | None:
        """The record whatever its account: for workers, callbacks and operators only."""
        with transaction(self._engine) as conn:
            row = conn.execute(_ANY_UPLOAD, {_UPLOAD.key: upload_id}).first()
        return None if row is None else UploadRecord.from_row(row)

    def latest(
        self, account_id: int, limit: int, offset: int, state: str | None = None
    ) -> list[UploadRecord]:
        """The account's records, newest first (served by the (account_id, id) index)."""
        params: dict[str, Any] = {_ACCOUNT.key: account_id, _LIMIT.key: limit, _OFFSET.key: offset}
        query = _LATEST
        if state is not None:
            query, params[_STATE.key] = _LATEST_IN_STATE, state
        with transaction(self._engine) as conn:
            return [UploadRecord.from_row(row) for row in conn.execute(query, params)]

    def cancel(self, account_id: int, upload_id: int) -> tuple[UploadRecord | None, bool]:
        """Stop a queued or running upload: (the record, whether this call cancelled it).
        The worker running it is refused at its next write or check and stops; the
        multipart upload it leaves is aborted by the worker's sweep of cancelled uploads.
        The callback is queued in the same transaction."""
        with transaction(self._engine) as conn:
            row = conn.execute(
                _cancel(self._time.kind),
                {_UPLOAD.key: upload_id, _ACCOUNT.key: account_id, **self._time.bind()},
            ).first()
            if row is not None:
                if row.callback:
                    enqueue_callback(conn, self._time, upload_id, account_id, row.callback)
                    row = conn.execute(_ANY_UPLOAD, {_UPLOAD.key: upload_id}).one()
                return UploadRecord.from_row(row), True
        return self.get(account_id, upload_id), False

    def retry(self, account_id: int, upload_id: int) -> tuple[UploadRecord | None, bool]:
        """Queue a failed or cancelled upload again under its id: (the record, whether this
        call requeued it). A multipart upload it left behind is resumed if S3 still has it.
        Callbacks of the outcome being retried are withdrawn in the same transaction, so
        they never arrive after the new outcome's."""
        with transaction(self._engine) as conn:
            row = conn.execute(
                _retry(self._time.kind),
                {_UPLOAD.key: upload_id, _ACCOUNT.key: account_id, **self._time.bind()},
            ).first()
            if row is not None:
                supersede_callbacks(conn, self._time, upload_id)
                return UploadRecord.from_row(row), True
        return self.get(account_id, upload_id), False

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with transaction(self._engine) as conn:
            conn.execute(select(1))

    def count_by_state(self) -> dict[str, int]:
        """How many uploads are in each state (the queue depth of /metrics and the
        dashboard)."""
        with transaction(self._engine) as conn:
            return counts_by_state(conn)


def counts_by_state(conn: Connection) -> dict[str, int]:
    """How many uploads are in each state."""
    rows = conn.execute(select(uploads.c.state, func.count()).group_by(uploads.c.state))
    return {state: int(count) for state, count in rows}
