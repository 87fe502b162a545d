"""The worker loop: keep up to ``concurrency`` uploads running, claiming as slots free up."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from vod2s3.errors import DatabaseUnavailable
from vod2s3.store.outage import OutageLog
from vod2s3.store.rows import ClaimedUpload
from vod2s3.store.workers import WorkerLock, WorkerRegistry
from vod2s3.worker.job import JobContext, abort_cancelled, run_job
from vod2s3.worker.retention import RetentionSweep

log = logging.getLogger("vod2s3.worker")
SWEEP_INTERVAL = 5.0  # seconds between sweeps for cancelled uploads' multipart uploads
REAP_INTERVAL = 1.0  # seconds between looks for dead workers whose uploads to take over


def new_owner_id() -> str:
    # Fits the 64 characters of lease_owner and workers.name.
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        ctx: JobContext,
        registry: WorkerRegistry,
        worker_id: int,
        lock: WorkerLock,
        concurrency: int,
        volumes: tuple[str, ...] = (),
        retention: RetentionSweep | None = None,
    ) -> None:
        self._wakeup = threading.Event()
        self._ctx = ctx
        self._registry = registry
        self.worker_id = worker_id
        self._lock = lock
        self._volumes = volumes
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="upload")
        self._next_reap = 0.0
        self._retention = retention  # None: VOD2S3_RETENTION_DAYS=0, records kept forever
        interval = ctx.settings.poll_interval
        # The claim loop also looks for dead workers: one outage, one pair of lines.
        self._claims_outage = OutageLog("worker claim loop", log, interval)
        self._sweep_outage = OutageLog("cancel sweep", log, max(interval, SWEEP_INTERVAL))

    @property
    def stopping(self) -> threading.Event:
        return self._ctx.shutting_down

    @property
    def name(self) -> str:
        return self._ctx.worker_name

    def claim_one(self) -> tuple[ClaimedUpload, float] | None:
        """Claim the next due upload; with the monotonic time the claim was asked at."""
        asked_at = time.monotonic()
        claimed = self._ctx.queue.claim(self.worker_id, self.name, self._volumes)
        return None if claimed is None else (claimed, asked_at)

    def warm_up(self) -> None:
        """Load what the first upload would otherwise pay for (S3's service model)."""
        self._ctx.clients.warm()

    def sweep(self) -> int:
        """Abort the multipart uploads that cancelled uploads left behind; returns how many."""
        abandoned = self._ctx.journal.abandoned()
        for each in abandoned:
            abort_cancelled(self._ctx, each)
        return len(abandoned)

    def reap(self) -> list[int]:
        """Take over the uploads of workers that died; returns their ids."""
        dead = self._registry.reap(self.worker_id)
        for worker_id in dead:
            log.warning(
                "worker %s is gone; its uploads are taken over now",
                worker_id,
                extra={"event": "worker_dead", "dead_worker": worker_id},
            )
        return dead

    def run_one(self) -> bool:
        """Claim and run one upload in this thread; False if nothing was due."""
        claim = self.claim_one()
        if claim is None:
            return False
        run_job(self._ctx, *claim)
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
            "worker %s (id %s) started (volumes: %s)",
            self.name,
            self.worker_id,
            ",".join(self._volumes) or "all",
        )
        log.debug(
            "worker %s: leases of %ss, renewed every %ss; dead workers looked for every %ss",
            self.name,
            self._ctx.queue.lease.total_seconds(),
            self._ctx.keeper.interval,
            REAP_INTERVAL,
        )
        self.warm_up()
        keeper_stop = threading.Event()
        keeper = threading.Thread(
            target=self._ctx.keeper.run, args=(keeper_stop,), name="heartbeat", daemon=True
        )
        keeper.start()
        retention = self._retention.start(self.stopping) if self._retention else None
        try:
            self._loop(interval, next_sweep)
        finally:
            self._pool.shutdown(wait=True)
            self._ctx.sender.close()
            keeper_stop.set()
            keeper.join()
            if retention is not None:
                retention.join()
            self.close()
        log.info("worker %s stopped", self.name)

    def _loop(self, interval: float, next_sweep: float) -> None:
        while not self.stopping.is_set():
            if not self._slots.acquire(timeout=interval):
                continue
            claim = None
            try:
                self._reap_when_due()
                claim = self.claim_one()
                self._claims_outage.succeeded()
            except Exception as error:
                self._claims_outage.failed(error)
            if claim is None:
                self._slots.release()
                next_sweep = self._sweep_when_due(next_sweep)
                # Idle until the poll interval passes, or until this process's API queues
                # something (serve): then the upload starts at once.
                self.wakeup.wait(interval)
                self.wakeup.clear()
                continue
            self._pool.submit(self._run_and_free, *claim)

    def close(self) -> None:
        """Say this worker has stopped, and let go of its lock."""
        try:
            self._registry.stop(self.worker_id)
        except DatabaseUnavailable:
            log.warning("worker %s: could not record its stop (database unavailable)", self.name)
        self._lock.release()

    def _reap_when_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_reap:
            self._next_reap = now + REAP_INTERVAL
            self.reap()

    def _sweep_when_due(self, due: float) -> float:
        """Sweep at most every SWEEP_INTERVAL seconds, and only while idle."""
        now = time.monotonic()
        if now < due:
            return due
        try:
            self.sweep()
            self._sweep_outage.succeeded()
        except Exception as error:
            self._sweep_outage.failed(error)
        return now + SWEEP_INTERVAL

    def _run_and_free(self, claimed: ClaimedUpload, claimed_at: float) -> None:
        try:
            run_job(self._ctx, claimed, claimed_at)
        except DatabaseUnavailable:
            # It stayed away longer than the job waits: the lease expires and the next claim
            # resumes the upload.
            log.warning("upload %s: database unavailable; left for the next claim", claimed.id)
        except Exception:
            # The lease will expire and the next claim retries it: nothing is lost.
            log.exception("upload %s: unexpected error", claimed.id)
        finally:
            self._slots.release()
