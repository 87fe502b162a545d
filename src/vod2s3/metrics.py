"""Prometheus metrics: one registry per :class:`Metrics` (one per Runtime), never the
process-wide default, so that tests can build several apps in one process.

What is counted where (docs/observability.md):

- ``vod2s3_queue_depth{state}``: uploads in the database by state, read from the shared
  database at scrape time, so every process reports the same, database-wide numbers.
- ``vod2s3_uploads_finished_total{outcome}``, ``vod2s3_uploaded_bytes_total`` and
  ``vod2s3_upload_duration_seconds{outcome}``: counted by the process that did the work (the
  worker for completed / failed, the API for cancelled), as Prometheus counters usually are.
  ``sum()`` over the processes gives the service's totals.
- ``vod2s3_api_requests_total{command,status}``: the API process.
- ``vod2s3_callback_deliveries_total{outcome}``: the process that delivers callbacks.

No label carries an account's cdn id, API key, secret or anything else a client chooses:
a cdn label would make a time series per customer and per outcome, unbounded as customers
are added. The command label only takes the names of known commands ("unknown" otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vod2s3.store.outage import OutageLog

log = logging.getLogger("vod2s3.metrics")

UPLOAD_STATES = ("queued", "uploading", "completed", "failed", "cancelled")
FINISH_OUTCOMES = ("completed", "failed", "cancelled")
CALLBACK_OUTCOMES = ("delivered", "retry", "failed")
UNKNOWN_COMMAND = "unknown"
# Video files take from about a second to a couple of hours.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 5400, 7200)


class QueueCollector(Collector):
    """Uploads by state, counted in the database when Prometheus scrapes."""

    def __init__(self, count_by_state: Callable[[], dict[str, int]]) -> None:
        self._count_by_state = count_by_state
        self._outage = OutageLog("metrics queue depth", log, None)

    def describe(self) -> Iterable[Metric]:
        # Described without a database query (register() calls this).
        yield GaugeMetricFamily("vod2s3_queue_depth", "Uploads in the database by state")
        yield GaugeMetricFamily("vod2s3_database_up", "1 if the last scrape read the database")

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("vod2s3_database_up", "1 if the last scrape read the database")
        try:
            counts = self._count_by_state()
            self._outage.succeeded()
        except Exception as error:
            self._outage.failed(error)
            up.add_metric([], 0)
            yield up
            return
        depth = GaugeMetricFamily(
            "vod2s3_queue_depth", "Uploads in the database by state", labels=["state"]
        )
        for state in (*UPLOAD_STATES, *sorted(set(counts) - set(UPLOAD_STATES))):
            depth.add_metric([state], counts.get(state, 0))
        up.add_metric([], 1)
        yield depth
        yield up


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
        # Known label values start at zero, so rate() and absent() work from the start.
        for outcome in FINISH_OUTCOMES:
            self.uploads_finished.labels(outcome)
        for outcome in CALLBACK_OUTCOMES:
            self.callback_deliveries.labels(outcome)
        self._queue: QueueCollector | None = None

    def watch_queue(self, count_by_state: Callable[[], dict[str, int]]) -> None:
        """Report the queue depth read by ``count_by_state`` (once per registry)."""
        if self._queue is None:
            self._queue = QueueCollector(count_by_state)
            self.registry.register(self._queue)

    # -- what the parts of the service report --------------------------------------------

    def upload_finished(self, outcome: str, seconds: float | None = None) -> None:
        self.uploads_finished.labels(outcome).inc()
        if seconds is not None:
            self.upload_duration.labels(outcome).observe(max(0.0, seconds))

    def bytes_uploaded(self, count: int) -> None:
        if count > 0:
            self.uploaded_bytes.inc(count)

    def api_request(self, command: object, status: int, known: Container[str]) -> None:
        """``command`` as the client sent it: only a known command's name becomes a label."""
        label = command if isinstance(command, str) and command in known else UNKNOWN_COMMAND
        self.api_requests.labels(label, str(status)).inc()

    def callback_delivery(self, outcome: str) -> None:
        self.callback_deliveries.labels(outcome).inc()

    def exposition(self) -> bytes:
        """The text format; reads the database (call it off the event loop)."""
        return generate_latest(self.registry)
