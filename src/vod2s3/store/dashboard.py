"""Read-only queries behind the operator dashboard (``GET /dashboard``).

Each list is bounded, and its rows are found through an index on their state:
``uploads (state, next_attempt_at)`` for the uploads in flight and the failed ones,
``callback_deliveries (state, next_attempt_at)`` for the callbacks given up on (the newest
first: those two are sorted among the failed rows only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, desc, func, select

from vod2s3.clock import Clock
from vod2s3.store.coverage import Coverage, CoverageQueries
from vod2s3.store.db import transaction
from vod2s3.store.outbox import SUPERSEDED
from vod2s3.store.records import counts_by_state
from vod2s3.store.schema import callback_deliveries, uploads
from vod2s3.store.sqltime import SqlTime, later_sql

_WINDOW_START = "sql_window_start"


THROUGHPUT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Snapshot:
    taken: datetime
    depth: dict[str, int]
    in_flight: list[Any]  # rows (Row) of the columns each query selects
    failures: list[Any]
    callback_failures: list[Any]
    queued: list[Any] = field(default_factory=list)
    callbacks_failing: list[Any] = field(default_factory=list)
    coverage: Coverage = field(default_factory=lambda: Coverage((), ()))
    uploads_held: dict[int, int] = field(default_factory=dict)  # by worker id
    throughput: list[Any] = field(default_factory=list)  # per account, the last hour


class DashboardQueries:
    def __init__(
        self, engine: Engine, clock: Clock, time: SqlTime, coverage: CoverageQueries
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._time = time
        self._coverage = coverage

    def snapshot(self, limit: int = 50) -> Snapshot:
        """Everything the page shows, read in one transaction (the coverage in another)."""
        coverage = self._coverage.read()
        with transaction(self._engine) as conn:
            depth = counts_by_state(conn)
            # The longest due first, through the (state, next_attempt_at) index.
            queued = conn.execute(
                select(
                    uploads.c.id,
                    uploads.c.cdn_id,
                    uploads.c.volume,
                    uploads.c.path,
                    uploads.c.bucket,
                    uploads.c.destination_path,
                    uploads.c.created,
                    uploads.c.next_attempt_at,
                    uploads.c.attempts,
                    uploads.c.message,
                )
                .where(uploads.c.state == "queued")
                .order_by(uploads.c.next_attempt_at, uploads.c.id)
                .limit(limit)
            ).all()
            # Deliveries failing now: pending, tried at least once.
            failing = conn.execute(
                select(
                    callback_deliveries.c.upload_id,
                    uploads.c.cdn_id,
                    callback_deliveries.c.url,
                    callback_deliveries.c.attempts,
                    callback_deliveries.c.last_status,
                    callback_deliveries.c.last_error,
                    callback_deliveries.c.next_attempt_at,
                )
                .join(uploads, uploads.c.id == callback_deliveries.c.upload_id)
                .where(callback_deliveries.c.state == "pending", callback_deliveries.c.attempts > 0)
                .order_by(callback_deliveries.c.next_attempt_at, callback_deliveries.c.id)
                .limit(limit)
            ).all()
            # Completed in the last hour, per account (through the index on finished).
            throughput = conn.execute(
                select(
                    uploads.c.cdn_id,
                    func.count().label("uploads"),
                    func.sum(uploads.c.bytes_total).label("bytes"),
                )
                .where(
                    uploads.c.finished >= later_sql(self._time.kind, _WINDOW_START),
                    uploads.c.state == "completed",
                )
                .group_by(uploads.c.cdn_id)
                .order_by(desc("bytes"), uploads.c.cdn_id)
                .limit(limit),
                self._time.bind(**{_WINDOW_START: -THROUGHPUT_WINDOW}),
            ).all()
            held = conn.execute(
                select(uploads.c.worker_id, func.count())
                .where(uploads.c.state == "uploading", uploads.c.worker_id.is_not(None))
                .group_by(uploads.c.worker_id)
            ).all()
            in_flight = conn.execute(
                select(
                    uploads.c.id,
                    uploads.c.cdn_id,
                    uploads.c.path,
                    uploads.c.bucket,
                    uploads.c.destination_path,
                    uploads.c.bytes_uploaded,
                    uploads.c.bytes_total,
                    uploads.c.attempts,
                    uploads.c.started,
                    uploads.c.lease_owner,
                )
                .where(uploads.c.state == "uploading")
                .order_by(uploads.c.id)
                .limit(limit)
            ).all()
            failures = conn.execute(
                select(
                    uploads.c.id,
                    uploads.c.cdn_id,
                    uploads.c.path,
                    uploads.c.bucket,
                    uploads.c.destination_path,
                    uploads.c.error_code,
                    uploads.c.status,
                    uploads.c.message,
                    uploads.c.attempts,
                    uploads.c.finished,
                )
                .where(uploads.c.state == "failed")
                .order_by(desc(uploads.c.finished), desc(uploads.c.id))
                .limit(limit)
            ).all()
            # The delivery given up on last, per upload whose callback failed for good (an
            # upload retried since has a newer outcome and callback state: it is left out).
            callbacks = conn.execute(
                select(
                    uploads.c.id,
                    uploads.c.cdn_id,
                    uploads.c.state,
                    uploads.c.callback_error,
                    uploads.c.callback_status,
                    uploads.c.callback_attempts,
                    callback_deliveries.c.delivery_id,
                    callback_deliveries.c.url,
                    callback_deliveries.c.updated,
                )
                .join(uploads, uploads.c.id == callback_deliveries.c.upload_id)
                .where(
                    callback_deliveries.c.state == "failed",
                    callback_deliveries.c.last_error != SUPERSEDED,
                    uploads.c.callback_state == "failed",
                )
                .order_by(desc(callback_deliveries.c.updated), desc(callback_deliveries.c.id))
                .limit(limit * 2)
            ).all()
        seen: set[int] = set()
        callback_failures: list[Any] = []
        for row in callbacks:
            if row.id not in seen and len(callback_failures) < limit:
                seen.add(row.id)
                callback_failures.append(row)
        return Snapshot(
            taken=self._clock.now(),
            depth=depth,
            in_flight=list(in_flight),
            failures=list(failures),
            callback_failures=callback_failures,
            queued=list(queued),
            callbacks_failing=list(failing),
            coverage=coverage,
            uploads_held={int(worker): int(count) for worker, count in held},
            throughput=list(throughput),
        )
