"""The callback outbox: written when an upload finishes, claimed and retried by deliverers.

The upload's own ``callback_state``, ``callback_attempts``, ``callback_status`` and
``callback_error`` are updated in the same transaction as the delivery row, so the record
always tells the truth about its callback. Nothing here touches the upload's outcome.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, insert, or_, select, update

from vod2s3.clock import Clock
from vod2s3.store.db import transaction
from vod2s3.store.schema import callback_deliveries, uploads


def enqueue_callback(conn: Connection, upload_id: int, now: datetime) -> None:
    """Inside the transaction that finishes ``upload_id``: queue its callback, if it has one."""
    row = conn.execute(
        select(uploads.c.account_id, uploads.c.callback).where(uploads.c.id == upload_id)
    ).first()
    if row is None or not row.callback:
        return
    supersede_callbacks(conn, upload_id, now)
    conn.execute(
        insert(callback_deliveries).values(
            upload_id=upload_id,
            account_id=row.account_id,
            delivery_id=str(uuid.uuid4()),
            url=row.callback,
            body=None,
            state="pending",
            attempts=0,
            next_attempt_at=now,
            last_status=0,
            last_error="",
            created=now,
            updated=now,
        )
    )
    conn.execute(
        update(uploads)
        .where(uploads.c.id == upload_id)
        .values(callback_state="pending", callback_attempts=0, callback_status=0, callback_error="")
    )


SUPERSEDED = "superseded by a later outcome of the upload"


def supersede_callbacks(conn: Connection, upload_id: int, now: datetime) -> None:
    """Stop retrying the callbacks of an upload's earlier outcome (it was retried and has
    ended again), so that a stale outcome never arrives after the new one and the record's
    callback fields describe the current delivery. A deliverer holding one of them finds it
    no longer pending and records nothing."""
    conn.execute(
        update(callback_deliveries)
        .where(
            callback_deliveries.c.upload_id == upload_id,
            callback_deliveries.c.state == "pending",
        )
        .values(
            state="failed",
            last_error=SUPERSEDED,
            lease_owner=None,
            lease_expires=None,
            updated=now,
        )
    )


class CallbackOutbox:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def claim(self, owner: str, lease: timedelta) -> Row[Any] | None:
        """The delivery due longest, leased to ``owner`` (an expired lease is taken over)."""
        now = self._clock.now()
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
        statement = (
            update(callback_deliveries)
            .where(callback_deliveries.c.id == candidate, due)
            .values(
                lease_owner=owner,
                lease_expires=now + lease,
                attempts=callback_deliveries.c.attempts + 1,
                updated=now,
            )
            .returning(*callback_deliveries.c)
        )
        with transaction(self._engine) as conn:
            return conn.execute(statement).first()

    def fix_body(self, delivery_pk: int, owner: str, body: str) -> bool:
        """Keep the body of the first attempt, so retries send the same bytes."""
        with transaction(self._engine) as conn:
            return (
                conn.execute(
                    update(callback_deliveries)
                    .where(self._held(delivery_pk, owner), callback_deliveries.c.body.is_(None))
                    .values(body=body)
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

    def _held(self, delivery_pk: int, owner: str) -> Any:
        return and_(
            callback_deliveries.c.id == delivery_pk,
            callback_deliveries.c.state == "pending",
            callback_deliveries.c.lease_owner == owner,
        )

    def _record(
        self,
        delivery_pk: int,
        owner: str,
        state: str,
        status: int,
        error: str,
        delay: timedelta | None,
    ) -> bool:
        now = self._clock.now()
        values: dict[str, Any] = {
            "state": state,
            "last_status": status,
            "last_error": error,
            "lease_owner": None,
            "lease_expires": None,
            "updated": now,
        }
        if delay is not None:
            values["next_attempt_at"] = now + delay
        with transaction(self._engine) as conn:
            row = conn.execute(
                update(callback_deliveries)
                .where(self._held(delivery_pk, owner))
                .values(**values)
                .returning(callback_deliveries.c.upload_id, callback_deliveries.c.attempts)
            ).first()
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

    def for_upload(self, upload_id: int) -> list[Row[Any]]:
        with transaction(self._engine) as conn:
            return list(
                conn.execute(
                    select(callback_deliveries)
                    .where(callback_deliveries.c.upload_id == upload_id)
                    .order_by(callback_deliveries.c.id)
                ).all()
            )
