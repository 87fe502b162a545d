"""The uplink budget against moto on loopback: how close a capped worker's average comes to
its cap, and how evenly accounts with different numbers of uploads share it.

    .venv/bin/python bench/bandwidth.py [--cap 10M] [--seconds 60] [--share-cap 6M]
                                        [--share-seconds 30] [--workdir DIR]

1. **Cap**: one account, one worker with ``VOD2S3_MAX_BANDWIDTH=--cap``, a file large
   enough to keep it sending; the average over ``--seconds`` after a 5 s warm-up, measured
   where the bytes arrive (tests/faultproxy.py in front of moto). Target: within ±5 %.
2. **Shares**: three accounts with 1, 2 and 3 uploads running at once in one worker
   (``VOD2S3_WORKER_CONCURRENCY=6``) capped at ``--share-cap``, each account behind a
   proxy of its own; each account's average over ``--share-seconds`` while all six run.
   Target: the largest share within 1.2x the smallest. Each upload sends one part at a
   time. (Until issue 14 item 1, parts were read into a worker's 3 shared part buffers,
   and three of the six uploads waited for a buffer whatever the budget said; parts are
   now sent from the file and hold no buffer.)

moto keeps objects in memory: the cap run holds about ``cap x (seconds + 10)`` bytes, the
shares run ``share-cap x (share-seconds + 15)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    MIB,
    VOD2S3,
    create_account,
    make_source,
    moto_client,
    process,
    run_command,
)
from cryptography.fernet import Fernet  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.helpers import free_port, moto_server_process, wait_for_http  # noqa: E402

from vod2s3.bandwidth import parse_rate  # noqa: E402
from vod2s3.client import Vod2s3Client  # noqa: E402

WARM_UP = 5.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def received(proxy: FaultProxy) -> int:
    arrivals = proxy.body_bytes()
    return arrivals[-1][1] if arrivals else 0


def average(proxy: FaultProxy, began: float, ended: float) -> float:
    def at(moment: float) -> int:
        before = [total for when, total in proxy.body_bytes() if when <= moment]
        return before[-1] if before else 0

    return (at(ended) - at(began)) / (ended - began)


class Service:
    """moto, the API and the database of one scenario; accounts behind proxies of their own."""

    def __init__(self, work: Path, stack: ExitStack, worker_env: dict[str, str]) -> None:
        self.work = work
        self.stack = stack
        self.storage = work / "storage"
        self.endpoint = stack.enter_context(moto_server_process(work / "moto.log"))
        moto_client(self.endpoint).create_bucket(Bucket="bench")
        self.env = dict(
            os.environ,
            VOD2S3_DATABASE_URL=f"sqlite:///{work / 'db.sqlite'}",
            VOD2S3_STORAGE_ROOT=str(self.storage),
            VOD2S3_MASTER_KEY=Fernet.generate_key().decode(),
            VOD2S3_POLL_INTERVAL="0.2",
            **worker_env,
        )
        run_command([VOD2S3, "db", "upgrade"], self.env)
        port = free_port()
        stack.enter_context(
            process([VOD2S3, "api", "--port", str(port)], self.env, work / "api.log")
        )
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        self.url = f"http://127.0.0.1:{port}/stable/"

    def account(self, cdn: int, receive_buffer: int = 0) -> tuple[Vod2s3Client, FaultProxy]:
        proxy = self.stack.enter_context(FaultProxy(self.endpoint, receive_buffer=receive_buffer))
        made = create_account(self.env, cdn, f"user{cdn}", proxy.url)
        return Vod2s3Client(self.url, cdn, made.api_key, made.secret), proxy

    def upload(self, api: Vod2s3Client, cdn: int, name: str, size: int) -> int:
        path = f"sestore1/user{cdn}/{name}"
        make_source(self.storage / path, size)
        return int(api.upload(path, "bench", "private")["id"])

    def worker(self) -> None:
        self.stack.enter_context(process([VOD2S3, "worker"], self.env, self.work / "worker.log"))


def cap_accuracy(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cap = parse_rate(args.cap) or 0
    with ExitStack() as stack:
        service = Service(work, stack, {"VOD2S3_MAX_BANDWIDTH": args.cap})
        api, proxy = service.account(1)
        service.upload(api, 1, "big.mp4", int(cap * (args.seconds + WARM_UP + 5)))
        service.worker()
        while received(proxy) == 0:
            time.sleep(0.05)
        began = time.monotonic() + WARM_UP
        ended = began + args.seconds
        time.sleep(ended - time.monotonic() + 0.5)
        rate = average(proxy, began, ended)
    return {
        "cap_bytes_per_second": cap,
        "seconds": args.seconds,
        "average_bytes_per_second": round(rate),
        "error_percent": round(100 * (rate - cap) / cap, 2),
        "within_5_percent": abs(rate - cap) <= 0.05 * cap,
    }


def shares(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cap = parse_rate(args.share_cap) or 0
    each = int(cap / 3 * (args.share_seconds + WARM_UP + 10))
    with ExitStack() as stack:
        worker_env = {
            "VOD2S3_MAX_BANDWIDTH": args.share_cap,
            "VOD2S3_WORKER_CONCURRENCY": "6",
            "VOD2S3_PARTS_IN_FLIGHT": "1",
        }
        service = Service(work, stack, worker_env)
        proxies: dict[int, FaultProxy] = {}
        for cdn, uploads in ((1, 1), (2, 2), (3, 3)):
            api, proxies[cdn] = service.account(cdn)
            for number in range(uploads):
                # Each account's files add up to the same bytes: all six run to the end.
                service.upload(api, cdn, f"f{number}.mp4", each // uploads + MIB)
        service.worker()
        while any(received(p) == 0 for p in proxies.values()):
            time.sleep(0.05)
        began = time.monotonic() + WARM_UP
        ended = began + args.share_seconds
        time.sleep(ended - time.monotonic() + 0.5)
        rates = {cdn: average(p, began, ended) for cdn, p in proxies.items()}
    ratio = max(rates.values()) / min(rates.values())
    return {
        "cap_bytes_per_second": cap,
        "seconds": args.share_seconds,
        "uploads_per_account": {"1": 1, "2": 2, "3": 3},
        "bytes_per_second_per_account": {str(k): round(v) for k, v in rates.items()},
        "total_bytes_per_second": round(sum(rates.values())),
        "largest_over_smallest": round(ratio, 3),
        "within_1_2": ratio <= 1.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", default="10M")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--share-cap", default="6M")
    parser.add_argument("--share-seconds", type=float, default=30.0)
    parser.add_argument("--only", choices=("cap", "shares"), default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        work = Path(folder)
        if args.only in (None, "cap"):
            log("cap accuracy ...")
            (work / "cap").mkdir()
            results["cap"] = cap_accuracy(args, work / "cap")
            log(json.dumps(results["cap"]))
        if args.only in (None, "shares"):
            log("shares ...")
            (work / "shares").mkdir()
            results["shares"] = shares(args, work / "shares")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
