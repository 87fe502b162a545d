"""What a `vod2s3 worker` logs while PostgreSQL is stopped for 8 s and started again: every
loop that polls the database says once that it is unavailable and once that it is back,
with no traceback, and the log grows by a couple of lines per loop, not by a traceback a
second. An error that is not an outage (a bug, a damaged schema) still shows its traceback,
but not at every round either.

The outage is on a throwaway PostgreSQL cluster of the test's own (tests.pgcluster), never
the machine's server on 127.0.0.1:5432 that other tests share.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.helpers import free_port
from tests.scale import Fleet, restartable_postgres_database, wait_until
from vod2s3.store.db import make_engine

OUTAGE_SECONDS = 8.0  # as in the issue: an 8 s PostgreSQL restart
LOG_GROWTH_LIMIT = 5 * 1024  # bytes; the issue saw 89 KB
# Every loop of a `vod2s3 worker` that reaches the database on its own schedule; the
# metrics' read happens at each scrape (the test scrapes during and after the outage).
LOOPS = (
    "worker claim loop",
    "worker heartbeat",
    "cancel sweep",
    "callback deliverer",
    "metrics database gauges",
)


def database_up(metrics_url: str) -> str:
    """The vod2s3_database_up sample of one scrape: "1.0" or "0.0"."""
    body = httpx.get(metrics_url, timeout=10).text
    return next(
        line.split()[-1] for line in body.splitlines() if line.startswith("vod2s3_database_up ")
    )


@pytest.mark.postgres
def test_a_database_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    tmp_path: Path,
) -> None:
    with (
        restartable_postgres_database(tmp_path / "postgres.log") as cluster,
        Fleet(tmp_path, cluster.url) as fleet,
    ):
        fleet.cli("db", "upgrade")
        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        fleet.start_worker("w", "--metrics-port", str(metrics_port))
        assert database_up(metrics_url) == "1.0"
        log_path = fleet.logs / "w.log"
        before = log_path.stat().st_size

        cluster.stop()
        stopped = time.monotonic()
        assert database_up(metrics_url) == "0.0"
        wait_until(
            lambda: all(f"{loop}: database unavailable (" in fleet.log("w") for loop in LOOPS),
            "every loop to say the database is unavailable",
            OUTAGE_SECONDS,
            fleet,
        )
        assert database_up(metrics_url) == "0.0"  # a second failed scrape: no second line
        # Stay down for the rest of the 8 s (the outage's length is the point, not a wait).
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        cluster.start()

        assert database_up(metrics_url) == "1.0"
        wait_until(
            lambda: all(f"{loop}: database available again" in fleet.log("w") for loop in LOOPS),
            "every loop to say the database is available again",
            30,
            fleet,
        )
        assert fleet.alive("w"), fleet.tail()
        grown = log_path.stat().st_size - before
        text = fleet.log("w")
        status, _ = fleet.stop("w")
        assert status == 0, fleet.tail()

    during = text.encode()[before:].decode(errors="replace")
    print(f"\nthe worker's log grew by {grown} bytes during the outage:\n{during}")
    assert "Traceback" not in text
    for loop in LOOPS:
        assert text.count(f"{loop}: database unavailable (") == 1, (loop, during)
        assert text.count(f"{loop}: database available again after") == 1, (loop, during)
    assert " WARNING vod2s3.worker: worker claim loop: database unavailable (" in text
    assert " INFO vod2s3.worker: worker claim loop: database available again after " in text
    assert grown < LOG_GROWTH_LIMIT, during


def test_an_unexpected_error_logs_its_traceback_once_not_at_every_round(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vod2s3.db'}"
    with Fleet(tmp_path, url) as fleet:
        fleet.cli("db", "upgrade")
        # One JSON object per log line: a traceback (chained, several "Traceback" lines) is
        # one line's "exc".
        fleet.start_worker("w", env={"VOD2S3_LOG_FORMAT": "json"})
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                # Not an outage: the deliverer's every round now fails on the missing table.
                conn.execute(text("DROP TABLE callback_deliveries"))
        finally:
            engine.dispose()
        unexpected = "callback deliverer: unexpected error (OperationalError: no such table"
        wait_until(lambda: unexpected in fleet.log("w"), "the deliverer's error", 30, fleet)
        # Some thirty more failed rounds, one every poll interval (0.1 s): their number is
        # the point, not something to wait for.
        time.sleep(3.0)
        assert fleet.alive("w"), fleet.tail()
        log = fleet.log("w")
        status, _ = fleet.stop("w")
        assert status == 0, fleet.tail()

    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    reported = [line for line in lines if unexpected in line["message"]]
    assert len(reported) == 1, log
    assert reported[0]["level"] == "ERROR"
    assert "Traceback" in reported[0]["exc"]
    assert [line for line in lines if "exc" in line] == reported
