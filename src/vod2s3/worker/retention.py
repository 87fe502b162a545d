"""The retention sweep: each worker deletes the uploads that finished more than
``VOD2S3_RETENTION_DAYS`` days ago, when it starts and then every hour, in a thread of its
own so that a long purge never holds up claims."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from vod2s3.store.outage import OutageLog
from vod2s3.store.retention import FinishedUploads

log = logging.getLogger("vod2s3.worker")
RETENTION_INTERVAL = 3600.0  # seconds between sweeps: records age by days, not minutes


class RetentionSweep:
    def __init__(self, finished: FinishedUploads, days: int) -> None:
        self._finished = finished
        self.days = days

    def sweep(self, stopping: threading.Event | None = None) -> int:
        """Delete what has been kept long enough; returns how many uploads went."""
        deleted = self._finished.purge(timedelta(days=self.days), stopping=stopping)
        if deleted:
            log.info(
                "retention: deleted %s uploads finished more than %s days ago",
                deleted,
                self.days,
                extra={"event": "retention_purge"},
            )
        return deleted

    def run(self, stopping: threading.Event) -> None:
        """Sweep now and every RETENTION_INTERVAL until ``stopping``. A failure (the
        database away) is logged and tried again at the next sweep."""
        outage = OutageLog("retention sweep", log, RETENTION_INTERVAL)
        while not stopping.is_set():
            try:
                self.sweep(stopping)
                outage.succeeded()
            except Exception as error:
                outage.failed(error)
            stopping.wait(RETENTION_INTERVAL)

    def start(self, stopping: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stopping,), name="retention", daemon=True)
        thread.start()
        return thread
