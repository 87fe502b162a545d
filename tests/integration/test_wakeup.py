"""In `serve`, queueing an upload wakes the worker: it starts at once, not at the next poll."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tests.service import make_settings, running_service
from vod2s3.runtime import Runtime


def test_aws_upload_wakes_an_idle_worker(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    settings = make_settings(tmp_path, poll_interval=30.0)
    worker_box: dict[str, Any] = {}

    def wake() -> None:
        worker_box["worker"].wakeup.set()

    with running_service(settings, s3_endpoint, queued=wake) as service:
        runtime: Runtime = service.runtime
        worker = runtime.worker(concurrency=1)
        worker_box["worker"] = worker
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            time.sleep(0.5)  # the worker found nothing and now idles for up to 30 s
            api = service.client(service.add_account(158, "jb"))
            path = service.write_source("sestore1/jb/now.mp4", b"right away")
            started = time.monotonic()
            upload_id = api.upload(path, bucket, "private")["id"]
            while api.get(upload_id)["state"] != "completed":
                assert time.monotonic() - started < 10, "the worker was not woken"
                time.sleep(0.05)
        finally:
            worker.stopping.set()
            worker.wakeup.set()
            thread.join(timeout=30)
