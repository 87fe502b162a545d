"""Workers and volumes in view (issue 15): which volumes wait, for how long, whether a live
worker serves them — on /metrics, and in the log once per change. On both databases."""

from __future__ import annotations

import logging

import pytest

from tests.integration.test_metrics import scrape, value
from tests.service import RunningService
from vod2s3 import __version__
from vod2s3.coverage_watch import CoverageWatch


def queue(service: RunningService, cdn: int, volume: str, count: int, bucket: str) -> None:
    api = service.client(service.add_account(cdn, f"u{cdn}"))
    for n in range(count):
        path = service.write_source(f"{volume}/u{cdn}/{n}.mp4", b"v")
        api.upload(path, bucket, "private")


def test_a_volume_without_a_live_worker_shows_on_metrics_and_in_the_log_once(
    service_on_each_database: RunningService, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_on_each_database
    (service.storage_root / "sestore2").mkdir(exist_ok=True)
    queue(service, 158, "sestore1", 2, bucket)
    queue(service, 159, "sestore2", 1, bucket)
    queue(service, 160, "sestore2", 1, bucket)
    service.runtime.accounts.set_disabled(160, True)  # waits on purpose: not counted
    workers = service.runtime.workers
    first = workers.register("w1", ("sestore1",), __version__)

    _, samples = scrape(f"{service.base_url}/metrics")
    assert value(samples, "vod2s3_workers_live") == 1
    assert value(samples, "vod2s3_volume_without_worker", volume="sestore1") == 0
    assert value(samples, "vod2s3_volume_without_worker", volume="sestore2") == 1
    assert value(samples, "vod2s3_oldest_queued_seconds", volume="sestore2") >= 0
    assert value(samples, "vod2s3_callbacks_failing") == 0
    coverage = service.runtime.coverage.read()
    assert [(w.volume, w.queued) for w in coverage.volumes] == [("sestore1", 2), ("sestore2", 1)]

    watch = CoverageWatch(service.runtime.coverage.read)
    with caplog.at_level(logging.INFO, logger="vod2s3.coverage"):
        assert watch.check() == ("sestore2",)
        assert watch.check() == ("sestore2",)  # still uncovered: said once
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "volume sestore2 has 1 queued uploads" in warnings[0]
        assert "vod2s3 worker --volumes sestore2" in warnings[0]

        every = workers.register("w2", (), __version__)  # no volumes: serves them all
        assert watch.check() == ()
        assert "volume sestore2: served by a live worker again" in caplog.text

        workers.stop(every)
        workers.stop(first)
        assert watch.check() == ("sestore1", "sestore2")
    _, samples = scrape(f"{service.base_url}/metrics")
    assert value(samples, "vod2s3_workers_live") == 0
    assert value(samples, "vod2s3_volume_without_worker", volume="sestore1") == 1


def test_nothing_queued_means_no_volume_series(service_on_each_database: RunningService) -> None:
    text, samples = scrape(f"{service_on_each_database.base_url}/metrics")
    assert "vod2s3_oldest_queued_seconds{" not in text
    assert "vod2s3_volume_without_worker{" not in text
    assert value(samples, "vod2s3_workers_live") == 0
