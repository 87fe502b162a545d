"""The worker loop: keep up to ``concurrency`` uploads running, claiming as slots free up."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vod2s3.errors import DatabaseUnavailable
from vod2s3.worker.job import JobContext, abort_cancelled, run_job

log = logging.getLogger("vod2s3.worker")
SWEEP_INTERVAL = 5.0  # seconds between sweeps for cancelled uploads' multipart uploads


def new_owner_id() -> str:
    # Short enough, with a claim's "/<n>", for the 64 characters of lease_owner.
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(self, ctx: JobContext, concurrency: int, volumes: tuple[str, ...] = ()) -> None:
        self._wakeup = threading.Event()
        self._ctx = ctx
        self._volumes = volumes
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="upload")
        self._claims = itertools.count(1)

    @property
    def stopping(self) -> threading.Event:
        return self._ctx.shutting_down

    def claim_one(self) -> Any | None:
        # Each claim leases the upload to an owner id of its own. A job still running after
        # its lease expired (its heartbeats failed while the database was away) and the claim
        # that took the upload over, even in this same worker, must not pass each other's
        # guards.
        owner = f"{self._ctx.owner}/{next(self._claims)}"
        return self._ctx.uploads.claim(owner, self._ctx.lease, self._volumes)

    def _job(self, row: Any) -> None:
        run_job(dataclasses.replace(self._ctx, owner=row.lease_owner), row)

    def warm_up(self) -> None:
        """Load what the first upload would otherwise pay for (S3's service model)."""
        self._ctx.clients.warm()

    def sweep(self) -> int:
        """Abort the multipart uploads that cancelled uploads left behind; returns how many."""
        rows = self._ctx.uploads.cancelled_with_multipart()
        for row in rows:
            abort_cancelled(self._ctx, row)
        return len(rows)

    def run_one(self) -> bool:
        """Claim and run one upload in this thread; False if nothing was due."""
        row = self.claim_one()
        if row is None:
            return False
        self._job(row)
        return True

    @property
    def wakeup(self) -> threading.Event:
        return self._wakeup

    def run(self) -> None:
        """Until ``stopping`` is set: claim whenever a slot is free, else wait a poll interval.
        On stop, uploads in flight give their claims back (see run_job) before this returns."""
        interval = self._ctx.settings.poll_interval
        next_sweep = 0.0
        log.info(
            "worker %s started (volumes: %s)", self._ctx.owner, ",".join(self._volumes) or "all"
        )
        self.warm_up()
        while not self.stopping.is_set():
            if not self._slots.acquire(timeout=interval):
                continue
            try:
                row = self.claim_one()
            except DatabaseUnavailable:
                log.warning("database unavailable; worker pausing")
                row = None
            except Exception:
                log.exception("claim failed")
                row = None
            if row is None:
                self._slots.release()
                next_sweep = self._sweep_when_due(next_sweep)
                # Idle until the poll interval passes, or until this process's API queues
                # something (serve): then the upload starts at once.
                self.wakeup.wait(interval)
                self.wakeup.clear()
                continue
            self._pool.submit(self._run_and_free, row)
        self._pool.shutdown(wait=True)
        log.info("worker %s stopped", self._ctx.owner)

    def _sweep_when_due(self, due: float) -> float:
        """Sweep at most every SWEEP_INTERVAL seconds, and only while idle."""
        now = time.monotonic()
        if now < due:
            return due
        try:
            self.sweep()
        except Exception:
            log.warning("sweep of cancelled uploads failed", exc_info=True)
        return now + SWEEP_INTERVAL

    def _run_and_free(self, row: Any) -> None:
        try:
            self._job(row)
        except DatabaseUnavailable:
            # It stayed away longer than the job waits: the lease expires and the next claim
            # resumes the upload.
            log.warning("upload %s: database unavailable; left for the next claim", row.id)
        except Exception:
            # The lease will expire and the next claim retries it: nothing is lost.
            log.exception("upload %s: unexpected error", row.id)
        finally:
            self._slots.release()
