"""Which volumes wait, for how long, and whether a live worker serves them.

Read at every scrape of /metrics, by the dashboard, and by each worker's periodic check
(worker/coverage.py). A worker is live while its heartbeat is younger than a lease: it
beats every third of one, so a live worker is never taken for gone, and a worker that died
without saying so (kill -9, a lost host) stops counting within a lease. A worker started
without volumes serves every volume.

Uploads of disabled accounts are left out: they wait on purpose (docs/operator-guide.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, Select, false, func, select

from vod2s3.store.db import transaction
from vod2s3.store.rows import WorkerRow
from vod2s3.store.schema import accounts, uploads, workers
from vod2s3.store.sqltime import SqlTime, TimeKind, later_sql, now_sql

_LIVE_SINCE = "sql_live_since"  # now minus a lease: an older heartbeat is not a live worker's


@dataclass(frozen=True)
class VolumeWait:
    volume: str
    queued: int
    oldest_queued_seconds: float
    live_workers: int  # live workers that serve this volume

    @property
    def covered(self) -> bool:
        return self.live_workers > 0


@dataclass(frozen=True)
class Coverage:
    live_workers: tuple[WorkerRow, ...]
    volumes: tuple[VolumeWait, ...]  # the volumes with queued uploads, by name

    @property
    def uncovered(self) -> tuple[str, ...]:
        return tuple(wait.volume for wait in self.volumes if not wait.covered)


@functools.cache
def _waiting(kind: TimeKind) -> Select[Any]:
    return (
        select(uploads.c.volume, func.count(), func.min(uploads.c.created), now_sql(kind))
        .join(accounts, accounts.c.id == uploads.c.account_id)
        .where(uploads.c.state == "queued", accounts.c.disabled == false())
        .group_by(uploads.c.volume)
        .order_by(uploads.c.volume)
    )


@functools.cache
def _live(kind: TimeKind) -> Select[Any]:
    return select(workers).where(
        workers.c.stopped.is_(None), workers.c.last_heartbeat > later_sql(kind, _LIVE_SINCE)
    )


class CoverageQueries:
    def __init__(self, engine: Engine, time: SqlTime, live_within: timedelta) -> None:
        self._engine = engine
        self._time = time
        self._live_within = live_within

    def read(self) -> Coverage:
        params = self._time.bind(**{_LIVE_SINCE: -self._live_within})
        with transaction(self._engine) as conn:
            waiting = conn.execute(_waiting(self._time.kind), params).all()
            live = tuple(
                WorkerRow.from_row(row) for row in conn.execute(_live(self._time.kind), params)
            )
        volumes = tuple(
            VolumeWait(
                volume=volume,
                queued=int(count),
                oldest_queued_seconds=max(0.0, (now - oldest).total_seconds()),
                live_workers=sum(1 for w in live if not w.volumes or volume in w.volumes),
            )
            for volume, count, oldest, now in (tuple(row) for row in waiting)
        )
        return Coverage(live, volumes)
