"""The operator's view of uploads across every account: filtered listings and one upload
in full, with its callback deliveries (`vod2s3 uploads list` and `show`).

Read-only. "Older than" is measured on the database's clock (:mod:`vod2s3.store.sqltime`),
the clock every ``created`` was written with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, desc, select

from vod2s3.store.db import transaction
from vod2s3.store.rows import JOB_COLUMNS, RECORD_COLUMNS, FromRow, UploadJobFields, UploadRecord
from vod2s3.store.schema import accounts, callback_deliveries, uploads
from vod2s3.store.sqltime import SqlTime, later_sql

_CREATED_BEFORE = "sql_created_before"  # now minus --older-than (a negative offset)


@dataclass(frozen=True)
class UploadFilters:
    """Every filter given must match; None (or no states) matches everything."""

    cdn: int | None = None
    states: tuple[str, ...] = ()
    volume: str | None = None
    bucket: str | None = None
    older_than: timedelta | None = None  # created at least this long ago
    before_id: int | None = None  # the next page: uploads older than this one


@dataclass(frozen=True, slots=True)
class DeliveryRow(FromRow):
    """One callback delivery of an upload (the outbox's row, without its body)."""

    delivery_id: str
    url: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int
    last_error: str
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class UploadDetail:
    """The record the customer sees, and the operator's fields beside it."""

    record: UploadRecord
    job: UploadJobFields
    deliveries: tuple[DeliveryRow, ...] = ()


@dataclass(frozen=True)
class UploadPage:
    uploads: list[UploadDetail]
    more: bool  # further uploads match: ask again with before_id = the last one's id


_DETAIL_COLUMNS = (*RECORD_COLUMNS, *JOB_COLUMNS)
_DELIVERY_COLUMNS = tuple(callback_deliveries.c[name] for name in DeliveryRow.__dataclass_fields__)


def _detail(row: Any) -> UploadDetail:
    return UploadDetail(UploadRecord.from_row(row), UploadJobFields.from_row(row))


class UploadOverview:
    def __init__(self, engine: Engine, time: SqlTime) -> None:
        self._engine = engine
        self._time = time

    def page(self, filters: UploadFilters, limit: int) -> UploadPage:
        """Up to ``limit`` matching uploads, newest first (by id, so pages never overlap
        or skip however many uploads are queued meanwhile)."""
        conditions: list[ColumnElement[bool]] = []
        offsets: dict[str, timedelta] = {}
        if filters.cdn is not None:
            # Through the account's id: the (account_id, id) index serves the listing.
            account = select(accounts.c.id).where(accounts.c.cdn == filters.cdn)
            conditions.append(uploads.c.account_id == account.scalar_subquery())
        if filters.states:
            conditions.append(uploads.c.state.in_(filters.states))
        if filters.volume is not None:
            conditions.append(uploads.c.volume == filters.volume)
        if filters.bucket is not None:
            conditions.append(uploads.c.bucket == filters.bucket)
        if filters.older_than is not None:
            conditions.append(uploads.c.created < later_sql(self._time.kind, _CREATED_BEFORE))
            offsets[_CREATED_BEFORE] = -filters.older_than
        if filters.before_id is not None:
            conditions.append(uploads.c.id < filters.before_id)
        query = (
            select(*_DETAIL_COLUMNS)
            .where(*conditions)
            .order_by(desc(uploads.c.id))
            .limit(limit + 1)  # one more says whether there are more
        )
        with transaction(self._engine) as conn:
            rows = conn.execute(query, self._time.bind(**offsets)).all()
        return UploadPage([_detail(row) for row in rows[:limit]], more=len(rows) > limit)

    def show(self, upload_id: int) -> UploadDetail | None:
        """One upload whatever its account, with its callback deliveries, oldest first."""
        with transaction(self._engine) as conn:
            row = conn.execute(select(*_DETAIL_COLUMNS).where(uploads.c.id == upload_id)).first()
            if row is None:
                return None
            deliveries = conn.execute(
                select(*_DELIVERY_COLUMNS)
                .where(callback_deliveries.c.upload_id == upload_id)
                .order_by(callback_deliveries.c.id)
            ).all()
        detail = _detail(row)
        return UploadDetail(
            detail.record, detail.job, tuple(DeliveryRow.from_row(d) for d in deliveries)
        )
