"""The part journal: the multipart upload an attempt began and the parts S3 confirmed to it,
so that the worker taking over re-sends only what was in flight.

Every read and write names the holder's fencing token, with margin to spare, in the same
statement that touches the upload's row (see :mod:`vod2s3.store.queue`), and extends the
lease: a worker that lost the upload can neither read a state it might then destroy nor
write over the new owner's. Progress (``bytes_uploaded``) is the sum of the recorded parts,
so a journal write that is retried cannot count a part twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, Integer, String, Update, bindparam, delete, func, select, update

from vod2s3.store.db import dialect_insert, transaction
from vod2s3.store.queue import (
    FORGET_PARTS,
    GUARD_ID,
    LEASE_OFFSET,
    holder_guard,
    holder_params,
)
from vod2s3.store.rows import (
    ABANDONED_COLUMNS,
    AbandonedMultipart,
    Lease,
    StoredMultipart,
    StoredPart,
)
from vod2s3.store.schema import upload_parts, uploads
from vod2s3.store.sqltime import SqlTime, TimeKind, later_sql, now_sql

_PART_NUMBER = bindparam("of_part", type_=Integer())
_KEEP = bindparam("keep_parts", expanding=True, type_=Integer())
_MULTIPART_ID = bindparam("of_multipart", type_=String())


@dataclass(frozen=True)
class JournalRead:
    """A guarded read: ``held`` is False when the lease is gone (``multipart`` is then
    None and must not be acted on)."""

    held: bool
    multipart: StoredMultipart | None


def _parts_total(*only: Any) -> Any:
    total = select(func.coalesce(func.sum(upload_parts.c.size), 0)).where(
        upload_parts.c.upload_id == uploads.c.id, *only
    )
    return total.scalar_subquery()


@functools.cache
def _held_write(kind: TimeKind, progress: str) -> Update:
    """A guarded update of the row that renews the lease. ``progress`` says how
    ``bytes_uploaded`` follows: "reset" (a new multipart upload), "kept" (the sum of the
    parts kept), "plus-part" (the sum of the other parts plus the one being recorded)."""
    values: dict[str, Any] = {
        "lease_expires": later_sql(kind, LEASE_OFFSET),
        "last_updated": now_sql(kind),
    }
    if progress == "reset":
        values["bytes_uploaded"] = 0
    elif progress == "kept":
        values["bytes_uploaded"] = _parts_total(upload_parts.c.part_number.in_(_KEEP))
    else:
        values["bytes_uploaded"] = _parts_total(
            upload_parts.c.part_number != _PART_NUMBER
        ) + bindparam("sent_part_size", type_=Integer())
    return update(uploads).where(holder_guard(kind)).values(**values).returning(uploads.c.id)


@functools.cache
def _held_read(kind: TimeKind) -> Update:
    return (
        update(uploads)
        .where(holder_guard(kind))
        .values(lease_expires=later_sql(kind, LEASE_OFFSET))
        .returning(uploads.c.multipart_upload_id, uploads.c.part_size, uploads.c.source_mtime_ns)
    )


_PARTS = (
    select(upload_parts)
    .where(upload_parts.c.upload_id == GUARD_ID)
    .order_by(upload_parts.c.part_number)
)
_FORGET_OTHERS = delete(upload_parts).where(
    upload_parts.c.upload_id == GUARD_ID, upload_parts.c.part_number.not_in(_KEEP)
)


def _upsert_part(dialect: str) -> Any:
    """Insert a part, or replace the one of the same number (a retried write, or a part
    sent again): one statement on both databases."""
    insert = dialect_insert(dialect)
    statement = insert(upload_parts)
    return statement.on_conflict_do_update(
        index_elements=[upload_parts.c.upload_id, upload_parts.c.part_number],
        set_={
            "etag": statement.excluded.etag,
            "checksum": statement.excluded.checksum,
            "size": statement.excluded.size,
        },
    )


class PartJournal:
    def __init__(self, engine: Engine, time: SqlTime, lease: timedelta) -> None:
        self._engine = engine
        self._time = time
        self._lease = lease
        self._upsert = _upsert_part(engine.dialect.name)

    def _params(self, lease: Lease) -> dict[str, Any]:
        return holder_params(self._time, lease, self._lease, renew=True)

    def started(
        self,
        lease: Lease,
        multipart_upload_id: str,
        part_size: int,
        source_mtime_ns: int,
    ) -> bool:
        """A new multipart upload exists; any earlier one's parts are forgotten."""
        params = {
            **self._params(lease),
            "multipart_upload_id": multipart_upload_id,
            "part_size": part_size,
            "source_mtime_ns": source_mtime_ns,
        }
        with transaction(self._engine) as conn:
            if conn.execute(_held_write(self._time.kind, "reset"), params).first() is None:
                return False
            conn.execute(FORGET_PARTS, {GUARD_ID.key: lease.upload_id})
            return True

    def resumed(self, lease: Lease, kept: Sequence[StoredPart]) -> bool:
        """Keep only the parts S3 was found to hold."""
        numbers = [part.number for part in kept]
        params = {**self._params(lease), _KEEP.key: numbers}
        with transaction(self._engine) as conn:
            if conn.execute(_held_write(self._time.kind, "kept"), params).first() is None:
                return False
            conn.execute(_FORGET_OTHERS, {GUARD_ID.key: lease.upload_id, _KEEP.key: numbers})
            return True

    def part_sent(self, lease: Lease, part: StoredPart) -> bool:
        """A part S3 confirmed; the record's progress becomes the sum of its parts."""
        params = {
            **self._params(lease),
            _PART_NUMBER.key: part.number,
            "sent_part_size": part.size,
        }
        with transaction(self._engine) as conn:
            if conn.execute(_held_write(self._time.kind, "plus-part"), params).first() is None:
                return False
            conn.execute(
                self._upsert,
                {
                    "upload_id": lease.upload_id,
                    "part_number": part.number,
                    "etag": part.etag,
                    "checksum": part.checksum,
                    "size": part.size,
                },
            )
            return True

    def read(self, lease: Lease) -> JournalRead:
        """The multipart upload the row names and its recorded parts, read only while the
        lease holds (and renewed by the same statement)."""
        with transaction(self._engine) as conn:
            row = conn.execute(_held_read(self._time.kind), self._params(lease)).first()
            if row is None:
                return JournalRead(held=False, multipart=None)
            if row.multipart_upload_id is None:
                return JournalRead(held=True, multipart=None)
            parts = conn.execute(_PARTS, {GUARD_ID.key: lease.upload_id}).all()
        return JournalRead(
            held=True,
            multipart=StoredMultipart(
                upload_id=row.multipart_upload_id,
                part_size=int(row.part_size),
                source_mtime_ns=int(row.source_mtime_ns),
                parts=tuple(
                    StoredPart(p.part_number, p.etag, p.checksum, int(p.size)) for p in parts
                ),
            ),
        )

    # -- cancelled uploads ---------------------------------------------------------------

    def abandoned(self, limit: int = 20, account_id: int | None = None) -> list[AbandonedMultipart]:
        """Cancelled uploads (of every account, or of one) whose multipart upload still
        needs aborting."""
        query = select(*ABANDONED_COLUMNS).where(
            uploads.c.state == "cancelled", uploads.c.multipart_upload_id.is_not(None)
        )
        if account_id is not None:
            query = query.where(uploads.c.account_id == account_id)
        with transaction(self._engine) as conn:
            rows = conn.execute(query.order_by(uploads.c.id).limit(limit))
            return [AbandonedMultipart.from_row(row) for row in rows]

    def forget_abandoned(self, upload_id: int, multipart_upload_id: str) -> None:
        """After the abort: only if the row still names that multipart upload and is still
        cancelled (a retry meanwhile keeps its state)."""
        with transaction(self._engine) as conn:
            done = conn.execute(
                update(uploads)
                .where(
                    uploads.c.id == GUARD_ID,
                    uploads.c.state == "cancelled",
                    uploads.c.multipart_upload_id == _MULTIPART_ID,
                )
                .values(multipart_upload_id=None, part_size=None, source_mtime_ns=None),
                {GUARD_ID.key: upload_id, _MULTIPART_ID.key: multipart_upload_id},
            ).rowcount
            if done:
                conn.execute(FORGET_PARTS, {GUARD_ID.key: upload_id})
