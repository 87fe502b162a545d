"""What the benchmark scripts share: logging, ports, the git state, and reading the
machine's CPU from /proc to tell a quiet machine from a busy one."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": str(bool(git("status", "--porcelain")))}


def host_cpu() -> dict[str, float]:
    """The whole machine's CPU time by kind (all cores), from /proc/stat."""
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    return {name: int(v) / CLK_TCK for name, v in zip(HOST_FIELDS, values, strict=True)}


def host_process_busy(before: dict[str, float], after: dict[str, float]) -> float:
    """CPU the machine's processes used between two host_cpu() readings. Interrupt and
    softirq time (much of it loopback TCP for our own traffic) and steal are left out."""
    return sum(after[k] - before[k] for k in ("user", "nice", "system"))


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most max_wait seconds) until the machine's processes use less than
    threshold cores over half a second; returns the seconds waited."""
    start = time.monotonic()
    while max_wait > 0:
        before, self0 = host_cpu(), self_cpu()
        time.sleep(0.5)
        busy = host_process_busy(before, host_cpu()) - (self_cpu() - self0)
        if busy / 0.5 < threshold or time.monotonic() - start >= max_wait:
            break
    return time.monotonic() - start
