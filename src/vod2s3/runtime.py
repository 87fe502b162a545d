"""Assembles the service's parts from Settings: used by the CLI and by the tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from vod2s3 import __version__
from vod2s3.accounts import AccountStore
from vod2s3.api.context import Services
from vod2s3.api.ratelimit import AddressLimiter, RateLimiter
from vod2s3.bandwidth.uplink import Bandwidth
from vod2s3.callbacks.delivery import Deliverer
from vod2s3.callbacks.ssrf import Resolver, system_resolver
from vod2s3.clock import Clock, SystemClock
from vod2s3.config import Settings
from vod2s3.crypto import SecretBox, load_master_key, read_key_file
from vod2s3.malloc_arenas import limit_malloc_arenas
from vod2s3.metrics import DatabaseReading, Metrics
from vod2s3.s3.sending import Sender
from vod2s3.store.answers import CommandAnswers
from vod2s3.store.coverage import CoverageQueries
from vod2s3.store.dashboard import DashboardQueries
from vod2s3.store.db import make_engine
from vod2s3.store.journal import PartJournal
from vod2s3.store.outbox import CallbackOutbox
from vod2s3.store.overview import UploadOverview
from vod2s3.store.queue import LeaseQueue
from vod2s3.store.records import RecordStore
from vod2s3.store.retention import FinishedUploads
from vod2s3.store.sqltime import SqlTime, sql_time_for
from vod2s3.store.workers import WorkerLock, WorkerRegistry
from vod2s3.worker.accounts import AccountCache
from vod2s3.worker.clients import ClientCache
from vod2s3.worker.integrity import IntegrityChooser
from vod2s3.worker.job import JobContext, connection_rules
from vod2s3.worker.leases import LeaseKeeper
from vod2s3.worker.loop import Worker, new_owner_id
from vod2s3.worker.regions import BucketRegions
from vod2s3.worker.retention import RetentionSweep
from vod2s3.worker.retry import RetryPolicy


def master_key_file(settings: Settings) -> Path | None:
    """VOD2S3_MASTER_KEY_FILE, else the file beside a SQLite database."""
    if settings.master_key_file is not None:
        return settings.master_key_file
    db_path = settings.sqlite_path
    return None if db_path is None else db_path.with_name(db_path.stem + ".master-key")


def open_secret_box(settings: Settings) -> SecretBox:
    """The box of the configured keys. Keys from a file are reread when a secret decrypts
    with none of them: `vod2s3 keys rotate` adds a key to the file while processes run."""
    key_file = master_key_file(settings)
    # Only the file beside a SQLite database is made on first use: a named file must be
    # the one every host shares, and a key made up on one host would lock the others out.
    create = settings.master_key_file is None
    keys = load_master_key(settings.master_key, key_file, create)
    if settings.master_key or key_file is None:
        return SecretBox(keys)
    return SecretBox(keys, reload=lambda: read_key_file(key_file))


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    box: SecretBox
    clock: Clock = field(default_factory=SystemClock)
    # One registry for everything this process runs (API, worker, deliverer): `serve` shows
    # it all on /metrics, `vod2s3 worker --metrics-port` serves it on its own.
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.metrics.watch_database(self.database_reading)

    def database_reading(self) -> DatabaseReading:
        """The gauges of /metrics that the shared database holds."""
        coverage = self.coverage.read()
        return DatabaseReading(
            depth=self.uploads.count_by_state(),
            volumes=coverage.volumes,
            live_workers=len(coverage.live_workers),
            callbacks_failing=self.outbox.failing_count(),
        )

    @property
    def coverage(self) -> CoverageQueries:
        """A worker is live while its heartbeat is younger than a lease."""
        return CoverageQueries(self.engine, self.time, self.lease)

    @property
    def time(self) -> SqlTime:
        """The clock leases and schedules are compared with: the database server's on
        PostgreSQL (docs/architecture.md)."""
        return sql_time_for(self.engine, self.clock)

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        engine = make_engine(settings.database_url)
        box = open_secret_box(settings)
        return cls(settings, engine, box, clock or SystemClock())

    @property
    def accounts(self) -> AccountStore:
        return AccountStore(self.engine, self.box, self.clock)

    @property
    def uploads(self) -> RecordStore:
        return RecordStore(self.engine, self.time)

    @property
    def overview(self) -> UploadOverview:
        return UploadOverview(self.engine, self.time)

    @property
    def finished_uploads(self) -> FinishedUploads:
        return FinishedUploads(self.engine, self.time)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    @property
    def queue(self) -> LeaseQueue:
        return LeaseQueue(self.engine, self.time, self.lease)

    @property
    def journal(self) -> PartJournal:
        return PartJournal(self.engine, self.time, self.lease)

    @property
    def workers(self) -> WorkerRegistry:
        return WorkerRegistry(self.engine, self.time)

    def services(self, queued: Callable[[], None] | None = None) -> Services:
        # A signature may be replayed from the window before its timestamp to the window
        # after it: its first answer is kept, and its replays are recognised, that long.
        replayable = 2 * self.settings.timestamp_window
        limiter = RateLimiter(
            self.settings.rate_limit,
            self.settings.rate_burst,
            self.clock.unix,
            replay_window=replayable,
        )
        return Services(
            self.settings,
            self.accounts,
            self.uploads,
            self.box,
            self.clock,
            limiter,
            CommandAnswers(self.engine, self.time, timedelta(seconds=replayable)),
            AddressLimiter(
                self.settings.address_rate_limit, self.settings.address_rate_burst, self.clock.unix
            ),
            metrics=self.metrics,
            dashboard=DashboardQueries(self.engine, self.clock, self.time, self.coverage),
            queued=queued or (lambda: None),
        )

    def worker(self, concurrency: int | None = None, volumes: tuple[str, ...] = ()) -> Worker:
        """A worker, registered (and on PostgreSQL holding its lock) from now on."""
        limit_malloc_arenas()  # before its sending threads start
        concurrency = concurrency or self.settings.worker_concurrency
        settings = self.settings
        name = new_owner_id()
        registry = self.workers
        worker_id = registry.register(name, volumes, __version__)
        lock = WorkerLock(self.engine, worker_id)
        lock.hold()
        queue = self.queue
        clients = ClientCache(
            settings.s3_connect_timeout,
            settings.s3_read_timeout,
            settings.payload_signing,
            # urllib3 throws away connections beyond its pool: room for every request the
            # worker may send at once, and for each upload's own (CreateMultipartUpload...).
            pool_size=max(10, settings.s3_max_connections + concurrency),
            user_agent_extra=f"vod2s3-worker/{name}",
            stall_seconds=settings.stall_seconds,
        )
        accounts = AccountCache(self.accounts, self.box)
        bandwidth = Bandwidth(settings.max_bandwidth, accounts.limit, self.metrics)
        ctx = JobContext(
            settings=settings,
            accounts=accounts,
            queue=queue,
            journal=self.journal,
            uploads=self.uploads,
            clients=clients,
            integrity=IntegrityChooser(clients, settings.integrity),
            regions=BucketRegions(),
            policy=RetryPolicy(
                max_attempts=settings.max_attempts,
                base_delay=settings.retry_base_delay,
                max_delay=settings.retry_max_delay,
            ),
            keeper=LeaseKeeper(queue, registry, worker_id, lock, bandwidth.report),
            shutting_down=threading.Event(),
            worker_name=name,
            bandwidth=bandwidth,
            sender=Sender(connection_rules(settings)),
            metrics=self.metrics,
        )
        days = settings.retention_days
        retention = RetentionSweep(self.finished_uploads, days) if days else None
        return Worker(ctx, registry, worker_id, lock, concurrency, volumes, retention)

    @property
    def outbox(self) -> CallbackOutbox:
        return CallbackOutbox(self.engine, self.time)

    def deliverer(self, resolver: Resolver = system_resolver) -> Deliverer:
        settings = self.settings
        return Deliverer(
            outbox=self.outbox,
            uploads=self.uploads,
            accounts=self.accounts,
            box=self.box,
            clock=self.clock,
            allow=settings.callback_allow,
            owner=new_owner_id(),
            timeout=settings.callback_timeout,
            lease=timedelta(seconds=max(60.0, settings.callback_timeout * 3)),
            resolver=resolver,
            poll_interval=settings.poll_interval,
            metrics=self.metrics,
        )

    def close(self) -> None:
        self.engine.dispose()
