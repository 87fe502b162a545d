"""A log line when a volume has queued uploads and no live worker serves it.

Run by every worker (in its claim loop) and by the API process (in a thread of its own), so
that the warning appears even when no worker runs at all. Each process says it once when a
volume becomes uncovered and once when it is served again, never once per check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vod2s3.store.coverage import Coverage
from vod2s3.store.outage import OutageLog

log = logging.getLogger("vod2s3.coverage")

CHECK_INTERVAL = 60.0  # seconds; the first check waits one interval (workers registering)


class CoverageWatch:
    def __init__(self, read: Callable[[], Coverage]) -> None:
        self._read = read
        self._uncovered: set[str] = set()

    def check(self) -> tuple[str, ...]:
        """Read the coverage and log what changed; returns the uncovered volumes."""
        coverage = self._read()
        waits = {wait.volume: wait for wait in coverage.volumes}
        uncovered = set(coverage.uncovered)
        for volume in sorted(uncovered - self._uncovered):
            wait = waits[volume]
            log.warning(
                "volume %s has %d queued uploads (the oldest for %.0f s) and no live worker "
                "serves it: start one with `vod2s3 worker --volumes %s` (or without "
                "--volumes); `vod2s3 workers list` shows what runs",
                volume,
                wait.queued,
                wait.oldest_queued_seconds,
                volume,
                extra={"event": "volume_without_worker", "volume": volume},
            )
        for volume in sorted(self._uncovered - uncovered):
            log.info(
                "volume %s: served by a live worker again, or nothing left queued",
                volume,
                extra={"event": "volume_covered", "volume": volume},
            )
        self._uncovered = uncovered
        return tuple(sorted(uncovered))

    def run(self, stopping: threading.Event, interval: float = CHECK_INTERVAL) -> None:
        """Check every ``interval`` seconds until ``stopping`` is set."""
        outage = OutageLog("volume coverage check", log, interval)
        while not stopping.wait(interval):
            try:
                self.check()
                outage.succeeded()
            except Exception as error:
                outage.failed(error)
