"""What one small upload costs vod2s3 in CPU, part by part: the API's aws.upload, one
aws.status, and the worker's claim-upload-complete, measured in one process.

    .venv/bin/python bench/perfile.py [--files 100] [--size 65536]
        [--profile worker [--sort tottime] [--only vod2s3] [--rows 40]]

The API runs under uvicorn on 127.0.0.1 (as in the tests), the S3 endpoint is moto's server
in a child process, so the process's CPU is vod2s3's plus the client's signing (about
0.6-0.8 ms a request). The worker part runs one upload at a time in this thread (the
tests' drain()), after its clients are warmed as `vod2s3 worker` does at start-up. Also
counted: SQL statements and transactions per file, and the worker's thread CPU in its
claim, its S3 request (``put_object``: reading, checksumming and sending the file) and its
completion. ``--profile worker`` prints the
worker's cProfile (cumulative, or by own time), to see where the time goes; ``--only vod2s3``
keeps the project's own functions.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from common import REPO, self_cpu
from sqlalchemy import event

sys.path.insert(0, str(REPO))

from tests.helpers import moto_server_process
from tests.service import make_settings, running_service

from vod2s3.config import Settings

BUCKET = "perfile-bench"


class Counts:
    """SQL statements and transactions the engine ran."""

    def __init__(self, engine: Any) -> None:
        self.statements = 0
        self.transactions = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)

    def _statement(self, *_args: Any, **_kwargs: Any) -> None:
        self.statements += 1

    def _begin(self, *_args: Any, **_kwargs: Any) -> None:
        self.transactions += 1

    def reset(self) -> None:
        self.statements = self.transactions = 0


def measure(
    name: str, files: int, counts: Counts, action: Callable[[], object], note: str = ""
) -> None:
    counts.reset()
    cpu0, wall0, own0 = self_cpu(), time.perf_counter(), time.thread_time()
    action()
    cpu, wall = self_cpu() - cpu0, time.perf_counter() - wall0
    own = time.thread_time() - own0
    print(
        f"| {name} | {cpu / files * 1000:.2f} | {wall / files * 1000:.2f} | "
        f"{counts.statements / files:.1f} | {counts.transactions / files:.1f} | {note} |"
    )
    if note:  # the client runs in this thread: the rest of the process is the server
        print(f"| {name}: the server's part | {(cpu - own) / files * 1000:.2f} | | | | |")


class Phases:
    """CPU of this thread inside some functions (the worker runs in this thread): what a
    file costs in its claim, its S3 request and its completion, and the rest."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - began

        return timed

    def rows(self, files: int, total: float) -> None:
        for name, cpu in self.cpu.items():
            print(f"| worker: {name} | {cpu / files * 1000:.2f} | | | | thread CPU |")
        rest = total - sum(self.cpu.values())
        print(f"| worker: the rest | {rest / files * 1000:.2f} | | | | thread CPU |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per file")
    parser.add_argument("--signing", default="off", choices=("auto", "on", "off"))
    parser.add_argument("--profile", choices=("worker",), help="cProfile the worker part")
    parser.add_argument("--sort", default="cumulative", choices=("cumulative", "tottime"))
    parser.add_argument("--only", default="", help="profile rows whose place matches this")
    parser.add_argument("--rows", type=int, default=40, help="profile rows to print")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp())
    with moto_server_process(workdir / "moto.log") as endpoint:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        # The tests' settings, with the shipped upload tuning (the tests use smaller parts).
        shipped = Settings()
        settings = make_settings(
            workdir,
            payload_signing=args.signing,
            multipart_threshold=shipped.multipart_threshold,
            part_size=shipped.part_size,
            parts_in_flight=shipped.parts_in_flight,
            parts_in_memory=shipped.parts_in_memory,
        )
        with running_service(settings, endpoint) as svc:
            client = svc.client(svc.add_account(1, "bench"))
            data = os.urandom(args.size)
            paths = [svc.write_source(f"sestore1/bench/f{i}.mp4", data) for i in range(args.files)]
            counts = Counts(svc.runtime.engine)
            client.status(limit=1)  # first-request costs (imports, caches) out of the way

            print(f"{args.files} files of {args.size} bytes, payload signing {args.signing}\n")
            print("| per file | CPU ms | wall ms | SQL statements | transactions | |")
            print("|---|--:|--:|--:|--:|---|")
            measure(
                "aws.upload",
                args.files,
                counts,
                lambda: [client.upload(path, BUCKET, "private") for path in paths],
                "client's signing included",
            )
            measure(
                "aws.status (limit 1)",
                args.files,
                counts,
                lambda: [client.status(limit=1, state="completed") for _ in paths],
                "client's signing included",
            )
            worker = svc.runtime.worker(concurrency=1)
            worker.warm_up()  # as `vod2s3 worker` does before its first claim
            profile = cProfile.Profile() if args.profile == "worker" else None
            phases = Phases()
            queue = worker._ctx.queue
            worker.claim_one = phases.wrap("claim", worker.claim_one)  # type: ignore[method-assign]
            queue.complete = phases.wrap("complete", queue.complete)  # type: ignore[method-assign]
            # The module, not the function of the same name that vod2s3.s3 exports.
            s3_upload = importlib.import_module("vod2s3.s3.upload")
            s3_upload.put_object = phases.wrap("PutObject", s3_upload.put_object)
            worker_cpu = 0.0

            def drain() -> None:
                nonlocal worker_cpu
                if profile:
                    profile.enable()
                began = time.thread_time()
                while worker.run_one():
                    pass
                worker_cpu = time.thread_time() - began
                if profile:
                    profile.disable()

            measure("worker: claim, PutObject, complete", args.files, counts, drain)
            phases.rows(args.files, worker_cpu)
            done = client.status(limit=1, offset=args.files - 1, state="completed")
            if not done:
                raise SystemExit("not every upload completed")
            if profile:
                print()
                stats = pstats.Stats(profile).sort_stats(args.sort)
                stats.print_stats(args.only, args.rows)


if __name__ == "__main__":
    main()
