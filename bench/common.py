"""What the benchmark scripts share: logging, ports, the git state, and reading the
machine's CPU from /proc to tell a quiet machine from a busy one, percentiles, and a server
subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
import httpx

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


class BenchError(Exception):
    """A measurement could not be made, the tool failed or timed out, or its result is not right."""


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process (all its threads), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (0 for none)."""
    if not values:
        return 0.0
    rank = max(1, min(len(values), round(q / 100 * len(values) + 0.5)))
    return values[rank - 1]


class Server:
    """A server subprocess in its own process group, output to a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path, log_path: Path):
        self.args = list(args)
        self.log_path = log_path
        self.port = int(self.args[self.args.index("--port") + 1])
        self._log: IO[bytes] = log_path.open("wb")
        self.popen = subprocess.Popen(
            self.args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"{self.args[1]} exited:\n{tail}")
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.args[1]} did not answer within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log(f"  {self.args[1]} (pid {self.pid}) ignored SIGTERM: killing")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        finally:
            self._log.close()


MIB = 1024 * 1024
# The vod2s3 command of the interpreter running the benchmark (its virtualenv's).
VOD2S3 = str(Path(sys.executable).parent / "vod2s3")


@dataclass(frozen=True)
class Account:
    cdn: int
    api_key: str
    secret: str


def moto_client(url: str) -> Any:
    """A boto3 S3 client of a benchmark's own moto server (any credentials will do)."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def make_source(path: Path, size: int) -> None:
    """A file of ``size`` random bytes at ``path``, kept if one of that size is there."""
    if path.exists() and path.stat().st_size == size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(16 * MIB)
    with path.open("wb") as handle:
        written = 0
        while written < size:
            # A varying prefix so that no two parts are the same bytes.
            chunk = written.to_bytes(8, "big") + block[8 : min(len(block), size - written)]
            handle.write(chunk)
            written += len(chunk)


def run_command(cmd: list[str], env: dict[str, str]) -> str:
    """``cmd``'s standard output; its failure raises."""
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


def create_account(env: dict[str, str], cdn: int, storage_user: str, endpoint_url: str) -> Account:
    """An account made with the CLI, its bucket credentials ``bench``/``bench`` at
    ``endpoint_url``; its API key and secret."""
    made = json.loads(
        run_command([VOD2S3, "accounts", "create", "--cdn", str(cdn), "--storage-user",
                     storage_user, "--json"], env)
    )  # fmt: skip
    run_command([VOD2S3, "accounts", "set-aws", "--cdn", str(cdn), "--access-key-id", "bench",
                 "--secret-access-key", "bench", "--endpoint-url", endpoint_url], env)  # fmt: skip
    return Account(cdn, str(made["api_key"]), str(made["secret"]))


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` running in its own process group for the ``with`` block, output appended to
    ``log_path``; SIGTERM to the group at the end, SIGKILL after 10 s."""
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@dataclass(frozen=True)
class Ran:
    """How a command run with a time limit ended: ``returncode`` None if it was killed at
    the limit; ``peak_rss_kib`` the process's VmHWM as last read before it ended (read every
    50 ms; its children are not counted). Not wait4's ru_maxrss: a child forked from a large
    interpreter starts with the interpreter's RSS in it."""

    wall_s: float
    returncode: int | None
    peak_rss_kib: int


def run_limited(cmd: list[str], env: dict[str, str], log_path: Path, limit: float) -> Ran:
    """Run ``cmd`` (own process group, output to ``log_path``) for at most ``limit`` seconds;
    its group is killed at the limit. Timed from start to exit."""
    with log_path.open("ab") as out:
        began = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    peak = 0
    try:
        while time.monotonic() - began < limit:
            peak = max(peak, peak_rss_kib(proc.pid) or 0)
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return Ran(time.monotonic() - began, proc.returncode, peak)
            time.sleep(0.05)
        wall = time.monotonic() - began
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.returncode = os.waitstatus_to_exitcode(os.waitpid(proc.pid, 0)[1])
        return Ran(wall, None, peak)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its group


def status_number(pid: int, field: str) -> int | None:
    """A number field of a live process's /proc/<pid>/status (``VmRSS`` and ``VmHWM`` in
    KiB, ``Threads``); None once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def peak_rss_kib(pid: int) -> int | None:
    """A live process's peak resident set (VmHWM), or None once it is gone."""
    return status_number(pid, "VmHWM")
