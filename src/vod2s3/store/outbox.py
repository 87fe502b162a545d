"""The callback outbox: written when an upload finishes, claimed and retried by deliverers.

The upload's own ``callback_state``, ``callback_attempts``, ``callback_status`` and
``callback_error`` are updated in the same transaction as the delivery row, so the record
always tells the truth about its callback. Nothing here touches the upload's outcome. Due
times and leases are on the database's clock (:mod:`vod2s3.store.sqltime`).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Integer,
    Row,
    String,
    Update,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from vod2s3.store.db import transaction
from vod2s3.store.rows import FromRow
from vod2s3.store.schema import callback_deliveries, uploads
from vod2s3.store.sqltime import SqlTime, TimeKind, later_sql, now_sql


@dataclass(frozen=True, slots=True)
class Delivery(FromRow):
    """A claimed callback delivery."""

    id: int
    upload_id: int
    account_id: int
    delivery_id: str
    url: str
    body: str | None
    attempts: int


_UPLOAD_ID = bindparam("of_upload", type_=Integer())
_DELIVERY = bindparam("of_delivery", type_=Integer())
_OWNER = bindparam("of_owner", type_=String())
_LEASE = "sql_lease"
_DELAY = "sql_delay"


@functools.cache
def _new_delivery(kind: TimeKind) -> Insert:
    now = now_sql(kind)
    return insert(callback_deliveries).values(
        body=None,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        last_status=0,
        last_error="",
        created=now,
        updated=now,
    )


def enqueue_callback(
    conn: Connection, time: SqlTime, upload_id: int, account_id: int, url: str
) -> None:
    """Inside the transaction that finishes ``upload_id``: queue its callback to ``url``
    (the upload's ``callback``; nothing when it has none)."""
    if not url:
        return
    supersede_callbacks(conn, time, upload_id)
    conn.execute(
        _new_delivery(time.kind),
        {
            "upload_id": upload_id,
            "account_id": account_id,
            "delivery_id": str(uuid.uuid4()),
            "url": url,
            **time.bind(),
        },
    )
    conn.execute(
        update(uploads)
        .where(uploads.c.id == upload_id)
        .values(callback_state="pending", callback_attempts=0, callback_status=0, callback_error="")
    )


SUPERSEDED = "superseded by a later outcome of the upload"


@functools.cache
def _supersede(kind: TimeKind) -> Update:
    return (
        update(callback_deliveries)
        .where(
            callback_deliveries.c.upload_id == _UPLOAD_ID,
            callback_deliveries.c.state == "pending",
        )
        .values(
            state="failed",
            last_error=SUPERSEDED,
            lease_owner=None,
            lease_expires=None,
            updated=now_sql(kind),
        )
    )


def supersede_callbacks(conn: Connection, time: SqlTime, upload_id: int) -> None:
    """Stop retrying the callbacks of an upload's earlier outcome (it was retried and has
    ended again), so that a stale outcome never arrives after the new one and the record's
    callback fields describe the current delivery. A deliverer holding one of them finds it
    no longer pending and records nothing."""
    conn.execute(_supersede(time.kind), {_UPLOAD_ID.key: upload_id, **time.bind()})


@functools.cache
def _claim(kind: TimeKind) -> Update:
    now = now_sql(kind)
    due = and_(
        callback_deliveries.c.state == "pending",
        callback_deliveries.c.next_attempt_at <= now,
        or_(
            callback_deliveries.c.lease_expires.is_(None),
            callback_deliveries.c.lease_expires < now,
        ),
    )
    candidate = (
        select(callback_deliveries.c.id)
        .where(due)
        .order_by(callback_deliveries.c.next_attempt_at, callback_deliveries.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(callback_deliveries)
        .where(callback_deliveries.c.id == candidate, due)
        .values(
            lease_owner=_OWNER,
            lease_expires=later_sql(kind, _LEASE),
            attempts=callback_deliveries.c.attempts + 1,
            updated=now,
        )
        .returning(*callback_deliveries.c)
    )


def _held() -> ColumnElement[bool]:
    return and_(
        callback_deliveries.c.id == _DELIVERY,
        callback_deliveries.c.state == "pending",
        callback_deliveries.c.lease_owner == _OWNER,
    )


@functools.cache
def _record(kind: TimeKind, rescheduled: bool) -> Update:
    values: dict[str, Any] = {
        "lease_owner": None,
        "lease_expires": None,
        "updated": now_sql(kind),
    }
    if rescheduled:
        values["next_attempt_at"] = later_sql(kind, _DELAY)
    return (
        update(callback_deliveries)
        .where(_held())
        .values(**values)
        .returning(callback_deliveries.c.upload_id, callback_deliveries.c.attempts)
    )


class CallbackOutbox:
    def __init__(self, engine: Engine, time: SqlTime) -> None:
        self._engine = engine
        self._time = time

    def claim(self, owner: str, lease: timedelta) -> Delivery | None:
        """The delivery due longest, leased to ``owner`` (an expired lease is taken over)."""
        with transaction(self._engine) as conn:
            row = conn.execute(
                _claim(self._time.kind), {_OWNER.key: owner, **self._time.bind(sql_lease=lease)}
            ).first()
        return None if row is None else Delivery.from_row(row)

    def fix_body(self, delivery_pk: int, owner: str, body: str) -> bool:
        """Keep the body of the first attempt, so retries send the same bytes."""
        with transaction(self._engine) as conn:
            return (
                conn.execute(
                    update(callback_deliveries)
                    .where(_held(), callback_deliveries.c.body.is_(None))
                    .values(body=body),
                    {_DELIVERY.key: delivery_pk, _OWNER.key: owner},
                ).rowcount
                == 1
            )

    def delivered(self, delivery_pk: int, owner: str, status: int) -> bool:
        return self._record(delivery_pk, owner, "delivered", status, "", None)

    def retry_later(
        self, delivery_pk: int, owner: str, delay: timedelta, status: int, error: str
    ) -> bool:
        return self._record(delivery_pk, owner, "pending", status, error, delay)

    def give_up(self, delivery_pk: int, owner: str, status: int, error: str) -> bool:
        return self._record(delivery_pk, owner, "failed", status, error, None)

    def _record(
        self,
        delivery_pk: int,
        owner: str,
        state: str,
        status: int,
        error: str,
        delay: timedelta | None,
    ) -> bool:
        offsets = {} if delay is None else {_DELAY: delay}
        params = {
            _DELIVERY.key: delivery_pk,
            _OWNER.key: owner,
            "state": state,
            "last_status": status,
            "last_error": error,
            **self._time.bind(**offsets),
        }
        with transaction(self._engine) as conn:
            row = conn.execute(_record(self._time.kind, delay is not None), params).first()
            if row is None:
                return False
            conn.execute(
                update(uploads)
                .where(uploads.c.id == row.upload_id)
                .values(
                    callback_state=state,
                    callback_attempts=row.attempts,
                    callback_status=status,
                    callback_error=error,
                )
            )
            return True

    def failing_count(self) -> int:
        """Deliveries still pending after at least one failed attempt: callbacks failing
        now, not yet given up (found through the (state, next_attempt_at) index)."""
        with transaction(self._engine) as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(callback_deliveries)
                    .where(
                        callback_deliveries.c.state == "pending", callback_deliveries.c.attempts > 0
                    )
                ).scalar_one()
            )

    def for_upload(self, upload_id: int) -> list[Row[Any]]:
        with transaction(self._engine) as conn:
            return list(
                conn.execute(
                    select(callback_deliveries)
                    .where(callback_deliveries.c.upload_id == upload_id)
                    .order_by(callback_deliveries.c.id)
                ).all()
            )
