"""Prometheus metrics: one registry per :class:`Metrics` (one per Runtime), never the
process-wide default, so that tests can build several apps in one process.

What is counted where (docs/observability.md):

- ``vod2s3_queue_depth{state}``, ``vod2s3_oldest_queued_seconds{volume}``,
  ``vod2s3_volume_without_worker{volume}``, ``vod2s3_workers_live``,
  ``vod2s3_callbacks_failing``: read from the shared database at scrape time, so every
  process reports the same, database-wide numbers.
- ``vod2s3_uploads_finished_total{outcome}``, ``vod2s3_uploaded_bytes_total`` and
  ``vod2s3_upload_duration_seconds{outcome}``: counted by the process that did the work (the
  worker for completed / failed, the API for cancelled), as Prometheus counters usually are.
  ``sum()`` over the processes gives the service's totals.
- ``vod2s3_api_requests_total{command,status}``: the API process.
- ``vod2s3_callback_deliveries_total{outcome}``: the process that delivers callbacks.
- ``vod2s3_sent_bytes_total``, ``vod2s3_account_sent_bytes_total{cdn}`` and
  ``vod2s3_bandwidth_cap_bytes_per_second{scope,cdn}``: the worker's uplink budget
  (vod2s3/bandwidth/).

No label carries an account's API key, secret or anything else a client chooses, and only
the uplink budget's series carry a cdn id: the operator asked for bytes/s per account.
They stay bounded by what one worker process did since it started (an account appears
once it has sent a byte there; its cap series only while it sends), and carry no other
label, so there is one series per account, not one per account and outcome
(docs/decisions.md). The command label only takes the names of known commands ("unknown"
otherwise).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vod2s3.store.coverage import VolumeWait
from vod2s3.store.outage import OutageLog

log = logging.getLogger("vod2s3.metrics")

UPLOAD_STATES = ("queued", "uploading", "completed", "failed", "cancelled")
FINISH_OUTCOMES = ("completed", "failed", "cancelled")
CALLBACK_OUTCOMES = ("delivered", "retry", "failed")
UNKNOWN_COMMAND = "unknown"
# Video files take from about a second to a couple of hours.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 5400, 7200)


@dataclass(frozen=True)
class DatabaseReading:
    """What the shared database says at a scrape (the same in every process)."""

    depth: dict[str, int]  # uploads by state
    volumes: tuple[VolumeWait, ...]  # volumes with queued uploads (enabled accounts)
    live_workers: int
    callbacks_failing: int  # deliveries still pending after a failed attempt


class DatabaseCollector(Collector):
    """The gauges read from the database when Prometheus scrapes."""

    def __init__(self, read: Callable[[], DatabaseReading]) -> None:
        self._read = read
        self._outage = OutageLog("metrics database gauges", log, None)

    def describe(self) -> Iterable[Metric]:
        # Described without a database query (register() calls this).
        return self._families()

    def collect(self) -> Iterator[Metric]:
        try:
            reading = self._read()
            self._outage.succeeded()
        except Exception as error:
            self._outage.failed(error)
            up = GaugeMetricFamily("vod2s3_database_up", _DATABASE_UP)
            up.add_metric([], 0)
            yield up
            return
        yield from self._families(reading)

    @staticmethod
    def _families(reading: DatabaseReading | None = None) -> list[Metric]:
        depth = GaugeMetricFamily(
            "vod2s3_queue_depth", "Uploads in the database by state", labels=["state"]
        )
        oldest = GaugeMetricFamily(
            "vod2s3_oldest_queued_seconds",
            "Age of the oldest queued upload per volume (disabled accounts left out)",
            labels=["volume"],
        )
        uncovered = GaugeMetricFamily(
            "vod2s3_volume_without_worker",
            "1 for a volume with queued uploads that no live worker serves, else 0",
            labels=["volume"],
        )
        live = GaugeMetricFamily(
            "vod2s3_workers_live", "Workers whose heartbeat is younger than a lease"
        )
        failing = GaugeMetricFamily(
            "vod2s3_callbacks_failing",
            "Callback deliveries still pending after a failed attempt (not yet given up)",
        )
        up = GaugeMetricFamily("vod2s3_database_up", _DATABASE_UP)
        families: list[Metric] = [depth, oldest, uncovered, live, failing, up]
        if reading is None:
            return families
        counts = reading.depth
        for state in (*UPLOAD_STATES, *sorted(set(counts) - set(UPLOAD_STATES))):
            depth.add_metric([state], counts.get(state, 0))
        for wait in reading.volumes:
            oldest.add_metric([wait.volume], wait.oldest_queued_seconds)
            uncovered.add_metric([wait.volume], 0 if wait.covered else 1)
        live.add_metric([], reading.live_workers)
        failing.add_metric([], reading.callbacks_failing)
        up.add_metric([], 1)
        return families


_DATABASE_UP = "1 if the last scrape read the database"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.uploads_finished = Counter(
            "vod2s3_uploads_finished",
            "Uploads that ended, by outcome, counted by the process that ended them",
            ["outcome"],
            registry=registry,
        )
        self.uploaded_bytes = Counter(
            "vod2s3_uploaded_bytes",
            "Bytes S3 confirmed (parts and single PUTs) sent by this process",
            registry=registry,
        )
        self.upload_duration = Histogram(
            "vod2s3_upload_duration_seconds",
            "Seconds from an upload's first claim to its outcome (retries included)",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.api_requests = Counter(
            "vod2s3_api_requests",
            "Requests to /stable/ by command (known commands only) and HTTP status",
            ["command", "status"],
            registry=registry,
        )
        self.callback_deliveries = Counter(
            "vod2s3_callback_deliveries",
            "Callback delivery attempts by outcome (retry: failed, tried again later)",
            ["outcome"],
            registry=registry,
        )
        self.sent_bytes = Counter(
            "vod2s3_sent_bytes",
            "Request body bytes this worker process handed to its S3 connections",
            registry=registry,
        )
        self.account_sent_bytes = Counter(
            "vod2s3_account_sent_bytes",
            "Request body bytes this worker process sent for each account (by cdn id)",
            ["cdn"],
            registry=registry,
        )
        self.bandwidth_caps = Gauge(
            "vod2s3_bandwidth_cap_bytes_per_second",
            "The cap in force in this worker process: its own (scope worker), and each "
            "sending account's fair share within it (scope account); absent: no cap",
            ["scope", "cdn"],
            registry=registry,
        )
        # Known label values start at zero, so rate() and absent() work from the start.
        for outcome in FINISH_OUTCOMES:
            self.uploads_finished.labels(outcome)
        for outcome in CALLBACK_OUTCOMES:
            self.callback_deliveries.labels(outcome)
        self._database: DatabaseCollector | None = None

    def watch_database(self, read: Callable[[], DatabaseReading]) -> None:
        """Report the gauges ``read`` from the database at each scrape (once per registry)."""
        if self._database is None:
            self._database = DatabaseCollector(read)
            self.registry.register(self._database)

    # -- what the parts of the service report --------------------------------------------

    def upload_finished(self, outcome: str, seconds: float | None = None) -> None:
        self.uploads_finished.labels(outcome).inc()
        if seconds is not None:
            self.upload_duration.labels(outcome).observe(max(0.0, seconds))

    def bytes_uploaded(self, count: int) -> None:
        if count > 0:
            self.uploaded_bytes.inc(count)

    def bytes_sent(self, cdn: int, count: int) -> None:
        self.sent_bytes.inc(count)
        self.account_sent_bytes.labels(str(cdn)).inc(count)

    def bandwidth_cap(self, scope: str, cdn: int | None, rate: float | None) -> None:
        """The cap in force for the worker (``cdn`` None) or an account; None: none."""
        labels = (scope, "" if cdn is None else str(cdn))
        if rate is not None:
            self.bandwidth_caps.labels(*labels).set(rate)
            return
        with contextlib.suppress(KeyError):  # there was no cap to take away
            self.bandwidth_caps.remove(*labels)

    def api_request(self, command: object, status: int, known: Container[str]) -> None:
        """``command`` as the client sent it: only a known command's name becomes a label."""
        label = command if isinstance(command, str) and command in known else UNKNOWN_COMMAND
        self.api_requests.labels(label, str(status)).inc()

    def callback_delivery(self, outcome: str) -> None:
        self.callback_deliveries.labels(outcome).inc()

    def exposition(self) -> bytes:
        """The text format; reads the database (call it off the event loop)."""
        return generate_latest(self.registry)
