"""A legitimate customer's latency while others flood the API with unauthenticated work.

Issue 12's probe: 16 clients, each sending 4 requests a second, each request a 60 KB body
of 1,000 lists nested 30 deep under an unknown API key. Meanwhile one real customer asks
``aws.status`` ten times a second. The figure is the customer's median latency under
attack, next to the same customer's on an idle server, and the API process's CPU.

    .venv/bin/python bench/attack.py                        # this checkout
    .venv/bin/python bench/attack.py --src /tmp/old/src     # another checkout's code

Attackers come through a trusted proxy (127.0.0.1, as nginx in front would be) with a
distinct ``X-Forwarded-For`` address each; the customer comes without one. A server that
does not know ``VOD2S3_TRUSTED_PROXIES`` takes them all as one address (127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO, Server, free_port, log, percentile, proc_cpu
from cryptography.fernet import Fernet

from vod2s3.client import Vod2s3Client
from vod2s3.config import Settings
from vod2s3.runtime import Runtime
from vod2s3.store import migrate


def attack_body(lists: int, depth: int) -> bytes:
    nested = "[" * (depth - 1) + "1" + "]" * (depth - 1)
    junk = "[" + ",".join([nested] * lists) + "]"
    request = (
        '{"api_key":"0000000000000000","cdn":1,"command":"aws.status",'
        f'"timestamp":{int(time.time())},"x":{junk},"signature":"AAAA"}}'
    )
    return request.encode()


def crafted_bodies() -> dict[str, str]:
    """Bodies an attacker could build within the 64 KiB limit, each aimed at one costly
    step (parsing, the value walk, string encoders, the signature scanner)."""

    def request(extra: str) -> str:
        return (
            '{"api_key":"0000000000000000","cdn":1,"command":"aws.status",'
            f'"timestamp":{int(time.time())},"x":{extra},"signature":"AAAA"}}'
        )

    nested = "[" * 29 + "1" + "]" * 29
    keys = ",".join(f'"k{i}":"{"/" * 100}"' for i in range(490))
    return {
        "1,000 lists nested 30 deep": request("[" + ",".join([nested] * 1000) + "]"),
        "30 lists nested 30 deep": request("[" + ",".join([nested] * 30) + "]"),
        "30,000 x é": request(json.dumps("é" * 30000, ensure_ascii=False)),
        "60,000 x /": request(json.dumps("/" * 60000)),
        "60,000 x DEL": request(json.dumps("\x7f" * 60000, ensure_ascii=False)),
        "490 keys of 100 x /": request("{" + keys + "}"),
        "60,000 spaces": request('"x"' + " " * 60000),
    }


def body_costs(repeat: int) -> dict[str, dict[str, object]]:
    """In this process: parsing and checking a wrong signature (one secret), per body."""
    from vod2s3.api.body import parse_request_object
    from vod2s3.api.signature import verify_signature
    from vod2s3.errors import BadRequest

    costs: dict[str, dict[str, object]] = {}
    for name, raw in crafted_bodies().items():
        outcome = "checked"
        started = 0.0
        for run in range(repeat + 1):
            if run == 1:  # the first run warms caches up and is not counted
                started = time.perf_counter()
            try:
                obj = parse_request_object(raw)
            except BadRequest:
                outcome = "refused"
                continue
            verify_signature(["s" * 64], raw, obj, "AAAA")
        elapsed = (time.perf_counter() - started) / repeat
        costs[name] = {"bytes": len(raw.encode()), "ms": round(elapsed * 1000, 2), outcome: True}
    return costs


def http_request(port: int, body: bytes, forwarded_for: str) -> bytes:
    head = (
        f"POST /stable/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Forwarded-For: {forwarded_for}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class AttackCounts:
    sent: int = 0
    answered: int = 0
    statuses: dict[int, int] | None = None


async def one_attacker(
    port: int, request: bytes, rate: float, stop: asyncio.Event, counts: AttackCounts
) -> None:
    """Open loop: a request every 1/rate s, each on its own connection, not waiting for the
    previous answer (as the probe's clients did)."""
    assert counts.statuses is not None
    statuses = counts.statuses

    async def send() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 60)
            writer.close()
            status = int(status_line.split()[1]) if status_line else 0
        except (OSError, TimeoutError, IndexError, ValueError):
            status = 0
        counts.answered += 1
        statuses[status] = statuses.get(status, 0) + 1

    pending: set[asyncio.Task[None]] = set()
    next_at = time.monotonic()
    while not stop.is_set():
        task = asyncio.create_task(send())
        pending.add(task)
        task.add_done_callback(pending.discard)
        counts.sent += 1
        next_at += 1.0 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*pending)


def run_attack(
    port: int, clients: int, rate: float, body: bytes, stop: threading.Event
) -> AttackCounts:
    counts = AttackCounts(statuses={})

    async def main() -> None:
        stopping = asyncio.Event()
        attackers = [
            one_attacker(
                port, http_request(port, body, f"198.51.100.{n + 1}"), rate, stopping, counts
            )
            for n in range(clients)
        ]
        tasks = [asyncio.create_task(a) for a in attackers]
        await asyncio.to_thread(stop.wait)
        stopping.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    return counts


def latencies(client: Vod2s3Client, seconds: float, interval: float) -> list[float]:
    """Milliseconds per aws.status, one request every ``interval`` s for ``seconds`` s."""
    samples: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        client.status()
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(percentile(ordered, 95), 1),
        "max_ms": round(ordered[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="vod2s3 code to run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=4.0, help="requests/s per attacker")
    parser.add_argument("--lists", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--bodies",
        action="store_true",
        help="instead: time parsing and a wrong signature for crafted bodies, in-process "
        "(the code of this checkout, or of --src put first on PYTHONPATH)",
    )
    args = parser.parse_args()
    if args.bodies:
        print(json.dumps(body_costs(repeat=20), indent=2))
        return

    workdir = Path(tempfile.mkdtemp(prefix="vod2s3-attack-"))
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'vod2s3.db'}",
        storage_root=workdir / "storage",
        master_key=Fernet.generate_key().decode(),
    )
    settings.storage_root.mkdir()
    runtime = Runtime.open(settings)
    migrate.upgrade(runtime.engine)
    issued = runtime.accounts.create(158, "jb")
    runtime.close()

    env = dict(
        os.environ,
        PYTHONPATH=str(args.src.resolve()),
        VOD2S3_DATABASE_URL=settings.database_url,
        VOD2S3_STORAGE_ROOT=str(settings.storage_root),
        VOD2S3_MASTER_KEY=settings.master_key,
        VOD2S3_TRUSTED_PROXIES="127.0.0.1/32",
        VOD2S3_RATE_LIMIT="0",  # the customer's own pace is not what is measured
    )
    port = free_port()
    server = Server(
        [
            sys.executable,
            "-c",
            "from vod2s3.cli import main; main()",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
        workdir,
        workdir / "api.log",
    )
    body = attack_body(args.lists, args.depth)
    log(f"attack body: {len(body)} bytes; server log: {workdir / 'api.log'}")
    try:
        server.wait_ready()
        url = f"http://127.0.0.1:{port}/stable/"
        with Vod2s3Client(url, issued.cdn, issued.api_key, issued.secret) as client:
            latencies(client, 2.0, 0.1)  # warm up
            idle = latencies(client, args.seconds / 3, 0.1)
            stop = threading.Event()
            result: list[AttackCounts] = []
            attack = threading.Thread(
                target=lambda: result.append(run_attack(port, args.clients, args.rate, body, stop))
            )
            cpu_before = proc_cpu(server.pid) or 0.0
            attack.start()
            time.sleep(1.0)  # let the attack reach its pace
            attacked = latencies(client, args.seconds, 0.1)
            stop.set()
            attack.join()
            cpu = (proc_cpu(server.pid) or 0.0) - cpu_before
    finally:
        server.stop()
    counts = result[0]
    report = {
        "src": str(args.src),
        "attack": {
            "clients": args.clients,
            "rate_per_client": args.rate,
            "body_bytes": len(body),
            "sent": counts.sent,
            "answers_by_status": counts.statuses,
        },
        "idle": summary(idle),
        "under_attack": summary(attacked),
        "api_cpu_per_attack_request_ms": round(cpu * 1000 / max(1, counts.sent), 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
