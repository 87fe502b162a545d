"""How much a worker killed mid-upload costs: bytes sent again after a SIGKILL.

Runs moto's server, a counting reverse proxy in front of it (tests/faultproxy.py), the vod2s3
API and a worker as separate processes; kills the worker with SIGKILL once the record shows
``--kill-at`` of the file confirmed; starts a second worker, which takes the upload over when
the first one's lease expires; and reports the UploadPart bytes the second worker sent for
parts the first had already sent, against the bound (parts in flight + 1) x part size.

    .venv/bin/python bench/resume.py [--size-mib 1024] [--kill-at 0.5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import MIB, VOD2S3, create_account, make_source, moto_client, run_command  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.helpers import free_port, moto_server_process, wait_for_http  # noqa: E402

from vod2s3.client import Vod2s3Client  # noqa: E402


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = args.size_mib * MIB
    storage = work / "storage"
    make_source(storage / "sestore1" / "bench" / "big.mp4", size)
    env = dict(
        os.environ,
        VOD2S3_DATABASE_URL=f"sqlite:///{work / 'db.sqlite'}",
        VOD2S3_STORAGE_ROOT=str(storage),
        VOD2S3_MASTER_KEY=Fernet.generate_key().decode(),
        VOD2S3_LEASE_SECONDS=str(args.lease),
        VOD2S3_POLL_INTERVAL="0.2",
        VOD2S3_RETRY_BASE_DELAY="0",
    )
    part_size = int(env.get("VOD2S3_PART_SIZE", str(16 * MIB)))
    in_flight = int(env.get("VOD2S3_PARTS_IN_FLIGHT", "3"))
    api_proc = worker = None
    with moto_server_process(work / "moto.log") as endpoint, FaultProxy(endpoint) as proxy:
        moto_client(endpoint).create_bucket(Bucket="bench")
        run_command([VOD2S3, "db", "upgrade"], env)
        account = create_account(env, 1, "bench", proxy.url)
        port = free_port()
        try:
            api_proc = start([VOD2S3, "api", "--port", str(port)], env, work / "api.log")
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            api = Vod2s3Client(
                f"http://127.0.0.1:{port}/stable/", 1, account.api_key, account.secret
            )
            worker = start([VOD2S3, "worker"], env, work / "worker1.log")
            upload_id = api.upload("sestore1/bench/big.mp4", "bench", "private")["id"]
            while api.get(upload_id)["bytes_uploaded"] < size * args.kill_at:
                time.sleep(0.05)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            killed_at = time.monotonic()
            confirmed = api.get(upload_id)["bytes_uploaded"]
            time.sleep(1.0)  # requests still on the wire count as the first worker's
            first = proxy.seen
            worker = start([VOD2S3, "worker"], env, work / "worker2.log")
            while (record := api.get(upload_id))["state"] not in ("completed", "failed"):
                time.sleep(0.2)
            finished = time.monotonic()
        finally:
            stop(worker)
            stop(api_proc)
        second = proxy.seen[len(first) :]
    sent_before = {s.part_number for s in first if s.operation == "UploadPart"}
    resent = [s for s in second if s.operation == "UploadPart" and s.part_number in sent_before]
    resent_bytes = sum(s.body_bytes for s in resent)
    return {
        "size_bytes": size,
        "part_size": part_size,
        "parts_in_flight": in_flight,
        "state": record["state"],
        "attempts": record["attempts"],
        "confirmed_at_kill_bytes": confirmed,
        "parts_sent_by_first_worker": len(sent_before),
        "parts_resent": sorted(s.part_number for s in resent if s.part_number is not None),
        "resent_bytes": resent_bytes,
        "bound_bytes": (in_flight + 1) * part_size,
        "within_bound": resent_bytes <= (in_flight + 1) * part_size,
        "takeover_to_completed_s": round(finished - killed_at, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction confirmed")
    parser.add_argument("--lease", type=int, default=10, help="VOD2S3_LEASE_SECONDS")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = measure(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="vod2s3-resume-") as tmp:
            result = measure(args, Path(tmp))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
