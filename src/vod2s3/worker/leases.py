"""The leases a worker holds, kept alive by one heartbeat for all of them.

Each claimed upload is a :class:`HeldLease`. One thread per worker renews every lease it
holds in a single statement every third of a lease, keeps the worker's row and (on
PostgreSQL) its advisory lock alive, and marks lost the leases the database no longer
renews. Between renewals a lease is trusted only until a deadline on this process's
monotonic clock — the time the last renewal was asked for, plus the lease, less the
safety margin — so a worker that was paused (SIGSTOP, a VM stall) past its lease stops
sending the moment it runs again, before it hears from the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from vod2s3.bandwidth.report import SendingReport
from vod2s3.store.outage import OutageLog
from vod2s3.store.queue import LeaseQueue, margin_of
from vod2s3.store.rows import Lease
from vod2s3.store.workers import WorkerLock, WorkerRegistry

log = logging.getLogger("vod2s3.worker")
TICK_SECONDS = 1.0  # how often the worker's lock connection is checked


@dataclass
class HeldLease:
    lease: Lease
    length: timedelta
    valid_until: float  # time.monotonic()
    lost: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def taken(cls, lease: Lease, length: timedelta, asked_at: float) -> HeldLease:
        held = cls(lease, length, asked_at)
        held.renewed(asked_at)
        return held

    def renewed(self, asked_at: float) -> None:
        """The database extended the lease by a statement sent at ``asked_at`` (monotonic):
        it runs at least until then plus the lease, by any clock that keeps time."""
        until = asked_at + (self.length - margin_of(self.length)).total_seconds()
        with self._lock:
            self.valid_until = max(self.valid_until, until)

    def lose(self) -> None:
        self.lost = True

    def usable(self) -> bool:
        """May this worker still act for the upload?"""
        return not self.lost and time.monotonic() < self.valid_until


class LeaseKeeper:
    """Renews all of a worker's leases with one statement, and keeps the worker alive;
    each heartbeat also records what the worker sends (``sending``) for the dashboard."""

    def __init__(
        self,
        queue: LeaseQueue,
        registry: WorkerRegistry,
        worker_id: int,
        lock: WorkerLock | None = None,
        sending: Callable[[], SendingReport] = SendingReport,
    ) -> None:
        self._queue = queue
        self._sending = sending
        self._registry = registry
        self._worker_id = worker_id
        self._lock = lock
        self._held: dict[int, HeldLease] = {}
        self._guard = threading.Lock()
        self._outage = OutageLog("worker heartbeat", log, TICK_SECONDS)

    @property
    def interval(self) -> float:
        return max(1.0, self._queue.lease.total_seconds() / 3)

    def hold(self, lease: Lease, asked_at: float) -> HeldLease:
        """A lease claimed by a statement sent at ``asked_at`` (monotonic)."""
        held = HeldLease.taken(lease, self._queue.lease, asked_at)
        with self._guard:
            self._held[id(held)] = held
        return held

    def drop(self, held: HeldLease) -> None:
        with self._guard:
            self._held.pop(id(held), None)

    def renew_now(self) -> None:
        """One renewal of every lease held, and the worker's heartbeat."""
        with self._guard:
            held = list(self._held.values())
        asked_at = time.monotonic()
        renewed = self._queue.renew([h.lease for h in held if not h.lost])
        for each in held:
            if each.lease.upload_id in renewed:
                each.renewed(asked_at)
            else:
                each.lose()
        self._registry.beat(self._worker_id, self._sending())

    def run(self, stopping: threading.Event) -> None:
        """Until ``stopping``: hold the lock every tick, renew every third of a lease."""
        due = time.monotonic() + self.interval
        while not stopping.wait(TICK_SECONDS):
            if self._lock is not None:
                self._lock.hold()
            if time.monotonic() < due:
                continue
            try:
                self.renew_now()
                due = time.monotonic() + self.interval
                self._outage.succeeded()
            except Exception as error:
                # The leases have slack: try again next tick.
                self._outage.failed(error)
