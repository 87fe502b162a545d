"""Peak RSS of a worker process with many requests in flight, against moto on loopback.

    .venv/bin/python bench/memory.py [--size 400M] [--files 2] [--rate 128k]
                                     [--target 64] [--hold 15] [--timeout 120]
                                     [--workdir DIR] [--env NAME=VALUE ...]

One account, one worker (`vod2s3 worker`, default settings but 5 MiB parts, and any
``--env``), ``--files`` files of ``--size`` each (one upload each: one upload alone
sends at most VOD2S3_S3_MAX_CONNECTIONS_PER_UPLOAD, 32, parts at once). The account's
endpoint is tests/faultproxy.py in front of moto, reading every UploadPart body at
``--rate`` bytes a second: a slow link, so that every request stays in flight mid-body
(its sending thread blocked in a write, holding a block) and adding connections keeps
raising throughput, which is what makes the worker's limit grow. The run samples the
worker's VmRSS, and the UploadPart requests the proxy holds, every 0.5 s until
``--target`` have been in flight at once for ``--hold`` seconds (or ``--timeout``), then
reads the worker's peak RSS (VmHWM) and stops it. Target (issue 14): at least 64
requests in flight within 160 MiB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bandwidth import Service
from common import MIB, VOD2S3, log, process, status_number

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faultproxy import Rule  # noqa: E402

from vod2s3.bandwidth import parse_rate  # noqa: E402

SAMPLE = 0.5  # seconds between samples


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rate = parse_rate(args.rate) or 0
    size = parse_rate(args.size) or 0
    with ExitStack() as stack:
        env = {"VOD2S3_PART_SIZE": str(5 * MIB), **dict(item.split("=", 1) for item in args.env)}
        service = Service(work, stack, env)
        api, proxy = service.account(1, receive_buffer=64 * 1024)
        proxy.add_rule(Rule(operation="UploadPart", action="slow", rate=rate, times=-1))
        for number in range(args.files):
            service.upload(api, 1, f"big{number}.mp4", size)
        with process([VOD2S3, "worker"], service.env, work / "worker.log") as worker:
            began = time.monotonic()
            reached: float | None = None
            samples: list[tuple[float, int, int]] = []  # (seconds, in flight, RSS KiB)
            while time.monotonic() - began < args.timeout:
                time.sleep(SAMPLE)
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited ({worker.returncode}): see worker.log")
                now = time.monotonic() - began
                in_flight = proxy.in_flight_of("UploadPart")
                samples.append((now, in_flight, status_number(worker.pid, "VmRSS") or 0))
                if reached is None and in_flight >= args.target:
                    reached = now
                if reached is not None and now - reached >= args.hold:
                    break
            peak_kib = status_number(worker.pid, "VmHWM") or 0
            threads = status_number(worker.pid, "Threads") or 0
    held = [s for s in samples if reached is not None and s[0] >= reached]
    return {
        "file_bytes": size,
        "files": args.files,
        "settings": env,
        "part_bytes": 5 * MIB,
        "proxy_read_rate_bytes_per_second_per_request": rate,
        "target_in_flight": args.target,
        "seconds_to_target": None if reached is None else round(reached, 1),
        "most_in_flight": proxy.most_in_flight("UploadPart"),
        "in_flight_while_held": sorted({s[1] for s in held}),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "rss_mib_at_target": None if not held else round(held[0][2] / 1024, 1),
        "worker_threads_at_end": threads,
        "within_160_mib": peak_kib / 1024 < 160 and reached is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="400M")
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--rate", default="128k")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--target", type=int, default=64)
    parser.add_argument("--hold", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        log("memory ...")
        result = measure(args, Path(folder))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
