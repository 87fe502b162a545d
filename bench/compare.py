"""Compare vod2s3 with aws-cli, rclone and boto3 uploading the same files to the same local
S3 endpoint (moto's server), plus that endpoint's own ceiling (one raw PUT with curl).

Every measurement (tool, dataset, run) gets a fresh moto server, because moto keeps every
object in memory and gets slower as it fills. See bench/README.md for what each column means.

    .venv/bin/python bench/compare.py [--datasets 1g,4g,200x5m]
        [--tools vod2s3,awscli,rclone,boto3,ceiling] [--runs 3] [--workdir /tmp/vod2s3-bench]
        [--vod2s3-env VOD2S3_PART_SIZE=33554432 ...]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

import httpx
from common import (
    CLK_TCK,
    REPO,
    BenchError,
    free_port,
    git_state,
    host_cpu,
    host_process_busy,
    log,
    self_cpu,
    wait_for_quiet,
)

from vod2s3.client import ClientError, Vod2s3Client
from vod2s3.jsonenc import php_json_encode

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000

BUCKET = "vod2s3-bench"
VOLUME = "sestore1"
STORAGE_USER = "bench"
CDN = 1
ALL_TOOLS = ("vod2s3", "awscli", "rclone", "boto3", "ceiling")
BLOCK = 16 * MiB  # the random block every file is made of
STRIDE = MiB  # a distinct header every MiB, so no two parts of any size >= 1 MiB are equal
SINGLE_POLL = 0.1  # seconds between aws.status polls for one upload
LIST_POLL = 0.2  # ... and for many
CALIBRATION_POLLS = 50

# The boto3 peer: a fresh interpreter, as a customer's script would be. No pairs: one
# ListObjectsV2, to measure the fixed cost of starting it.
BOTO3_SCRIPT = """\
import sys
import boto3
from boto3.s3.transfer import TransferConfig
endpoint, bucket, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
s3 = boto3.client("s3", endpoint_url=endpoint)
config = TransferConfig(multipart_chunksize=16 * 1024 * 1024, max_concurrency=8)
for path, key in zip(pairs[0::2], pairs[1::2]):
    s3.upload_file(path, bucket, key, Config=config)
if not pairs:
    s3.list_objects_v2(Bucket=bucket)
"""


# -- processes --------------------------------------------------------------------------

# Every process group this script started and has not yet seen end; killed at exit.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_all_live() -> None:
    for pgid, proc in list(_LIVE.items()):
        _kill_group(pgid)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        _LIVE.pop(pgid, None)


def _on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the finally blocks, which stop the servers


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """utime and stime of a live process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    return sum(proc_cpu_split(pid))


def proc_status_kib(pid: int, name: str) -> int:
    """A 'kB' line of /proc/<pid>/status, such as VmHWM (peak RSS) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {name} in /proc/{pid}/status")


def proc_children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return children


def processes_under(root: Path) -> list[int]:
    """Processes whose working directory is inside root: ours, as every process this script
    starts runs in its measurement's folder. None should be left at the end."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == str(root) or cwd.startswith(str(root) + "/"):
                found.append(int(entry.name))
    return found


class Service:
    """A long-running subprocess in its own process group, output to a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path, log_path: Path):
        self.args = list(args)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                self.args,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise
        _LIVE[self.popen.pid] = self.popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 10.0) -> None:
        try:
            if self.popen.poll() is None:
                _kill_group(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    log(f"  {Path(self.args[0]).name} (pid {self.pid}) ignored SIGTERM: killing")
            _kill_group(self.pid, signal.SIGKILL)  # the leader if still there, and stragglers
            self.popen.wait(timeout=10)
        finally:
            _LIVE.pop(self.pid, None)
            self._log.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# Starts the measured command and reports its rusage. Why a separate, small process: on Linux
# a child's ru_maxrss starts from the high-water mark of the address space it was forked (or
# vforked) from, so a command spawned straight from this script (~100 MiB of boto3, moto and
# vod2s3 imports) would never show less than this script's own RSS. Spawned from a bare
# interpreter (-I -S, a few MiB) the floor is that interpreter's RSS instead: see
# "rss_floor_kib" in the results.
RUNNER = """\
import os, sys, time
result, log, args = sys.argv[1], sys.argv[2], sys.argv[3:]
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
actions = [
    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
    (os.POSIX_SPAWN_DUP2, fd, 1),
    (os.POSIX_SPAWN_DUP2, fd, 2),
]
start = time.perf_counter()
pid = os.posix_spawnp(args[0], args, os.environ, file_actions=actions)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
with open(result, "w") as out:
    out.write(f"{wall} {ru.ru_utime} {ru.ru_stime} {ru.ru_maxrss} {code}")
"""


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    maxrss_kib: int
    returncode: int


def run_measured(
    args: Sequence[str], env: dict[str, str], cwd: Path, log_path: Path, timeout: float
) -> Measured:
    """Run a command to its end, through RUNNER; its wall time and the rusage os.wait4 gives
    for it. That rusage covers the process and any descendants it waited for; ru_maxrss is
    the largest of their peaks (KiB on Linux)."""
    result = log_path.with_suffix(".rusage")
    result.unlink(missing_ok=True)
    runner = [sys.executable, "-I", "-S", "-c", RUNNER, str(result), str(log_path), *args]
    proc = subprocess.Popen(
        runner,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    _LIVE[proc.pid] = proc
    try:
        _, runner_err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{Path(args[0]).name} timed out after {timeout:.0f} s") from None
    finally:
        _kill_group(proc.pid)  # on a timeout, and anything it left behind in its group
        if proc.returncode is None:
            proc.wait()
        _LIVE.pop(proc.pid, None)
    if proc.returncode != 0 or not result.exists():
        raise BenchError(f"could not run {args[0]}: {runner_err.decode(errors='replace')}")
    wall, user, system, maxrss, code = result.read_text().split()
    if int(code) != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise BenchError(f"{Path(args[0]).name} exited with {code}:\n{tail}")
    return Measured(
        wall_s=float(wall),
        cpu_s=float(user) + float(system),
        user_s=float(user),
        sys_s=float(system),
        maxrss_kib=int(maxrss),
        returncode=int(code),
    )


class Window:
    """The measured interval: moto's CPU, this script's own CPU, and the machine's, so that
    CPU spent by anything else (another job on the host) shows up as 'host_other_cpu_s'."""

    def __init__(self, moto: Moto) -> None:
        self._moto = moto
        self._start = (moto.cpu(), self_cpu())
        self._host = host_cpu()

    def close(self, sample: Sample, client_cpu: float) -> None:
        moto0, self0 = self._start
        host = host_cpu()
        sample.moto_cpu_s = self._moto.cpu() - moto0
        bench = self_cpu() - self0
        sample.extra["bench_cpu_s"] = round(bench, 3)
        for kind in ("softirq", "steal", "iowait"):
            sample.extra[f"host_{kind}_s"] = round(host[kind] - self._host[kind], 3)
        other = host_process_busy(self._host, host) - sample.moto_cpu_s - client_cpu - bench
        sample.host_other_cpu_s = round(max(other, 0.0), 3)


def run_checked(args: Sequence[str], env: dict[str, str], cwd: Path) -> str:
    """A setup command; its stdout, or BenchError with its output."""
    done = subprocess.run(
        list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(args[:3])} … exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def tool_version(args: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    except OSError as error:
        return f"unavailable: {error}"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


# -- datasets ---------------------------------------------------------------------------

_UNITS = {"k": KiB, "m": MiB, "g": GiB}


@dataclass(frozen=True)
class Dataset:
    name: str
    count: int
    size: int  # bytes per file

    @classmethod
    def parse(cls, spec: str) -> Dataset:
        match = re.fullmatch(r"(?:(\d+)x)?(\d+)([kmg])", spec.strip().lower())
        if not match:
            raise argparse.ArgumentTypeError(
                f"dataset {spec!r}: write SIZE or COUNTxSIZE with k/m/g (binary), e.g. 1g, 200x5m"
            )
        count = int(match.group(1) or 1)
        size = int(match.group(2)) * _UNITS[match.group(3)]
        if count < 1 or size < 1:
            raise argparse.ArgumentTypeError(f"dataset {spec!r} is empty")
        return cls(spec.strip().lower(), count, size)

    @property
    def total(self) -> int:
        return self.count * self.size

    @property
    def many(self) -> bool:
        return self.count > 1

    @property
    def names(self) -> list[str]:
        if not self.many:
            return [f"{self.name}.mp4"]
        width = len(str(self.count - 1))
        return [f"f{i:0{width}d}.mp4" for i in range(self.count)]

    def directory(self, workdir: Path) -> Path:
        return workdir / "storage" / VOLUME / STORAGE_USER / self.name

    def files(self, workdir: Path) -> list[Path]:
        return [self.directory(workdir) / name for name in self.names]

    @property
    def prefix(self) -> str:
        """Objects land at <prefix><name>, whatever the tool."""
        return f"bench/{self.name}/"

    @property
    def keys(self) -> list[str]:
        return [self.prefix + name for name in self.names]

    @property
    def source_paths(self) -> list[str]:
        """The files as vod2s3's aws.upload names them."""
        return [f"{VOLUME}/{STORAGE_USER}/{self.name}/{name}" for name in self.names]


def write_file(path: Path, size: int, tag: str, base: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    buf = bytearray(BLOCK)
    with tmp.open("wb") as out:
        offset = 0
        while offset < size:
            n = min(BLOCK, size - offset)
            buf[:] = base
            for inner in range(0, n, STRIDE):
                header = f"<{tag}@{offset + inner:#014x}>".encode()
                buf[inner : inner + len(header)] = header
            out.write(memoryview(buf)[:n])
            offset += n
    os.replace(tmp, path)


def prepare(dataset: Dataset, workdir: Path) -> None:
    directory = dataset.directory(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    expected = set(dataset.names)
    for stray in directory.iterdir():
        if stray.name not in expected:  # aws s3 cp --recursive and rclone copy take it all
            stray.unlink()
    missing = [
        p for p in dataset.files(workdir) if not p.exists() or p.stat().st_size != dataset.size
    ]
    if not missing:
        return
    log(f"creating {len(missing)} file(s) of {dataset.size / MiB:g} MiB for {dataset.name}")
    base = os.urandom(BLOCK)
    for path in missing:
        write_file(path, dataset.size, f"{dataset.name}/{path.name}", base)


def warm(dataset: Dataset, workdir: Path) -> None:
    """Read the files once so every tool starts with them in the page cache."""
    buf = bytearray(8 * MiB)
    for path in dataset.files(workdir):
        with path.open("rb", buffering=0) as src:
            while src.readinto(buf):
                pass


# -- the endpoint -----------------------------------------------------------------------


class Moto:
    def __init__(self, rundir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = Service(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            dict(os.environ),
            rundir,
            rundir / "moto.log",
        )
        self._s3: S3Client | None = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.service.alive():
                raise BenchError(f"moto's server exited:\n{self.service.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/moto-api/")
                conn.getresponse().read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"moto's server did not answer within {timeout:.0f} s"
                    ) from None
                time.sleep(0.1)
            finally:
                conn.close()

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            self._s3 = boto3.client(
                "s3",
                endpoint_url=self.url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
                config=Config(retries={"total_max_attempts": 3, "mode": "standard"}),
            )
        return self._s3

    def cpu(self) -> float:
        return proc_cpu_seconds(self.service.pid)

    def verify(self, dataset: Dataset) -> int:
        """Every object there with the file's size; returns how many multipart uploads were
        left incomplete (should be 0)."""
        for key in dataset.keys:
            try:
                head = self.s3.head_object(Bucket=BUCKET, Key=key)
            except Exception as error:
                raise BenchError(f"object {key} is not in the bucket: {error}") from None
            if head["ContentLength"] != dataset.size:
                raise BenchError(
                    f"object {key} has {head['ContentLength']} bytes, the file {dataset.size}"
                )
        listing = self.s3.list_multipart_uploads(Bucket=BUCKET)
        return len(listing.get("Uploads", []))

    def __enter__(self) -> Moto:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.service.stop()


# vod2s3's uploader alone: the worker's s3.upload() with the service's settings (from the
# environment, as `vod2s3 serve` reads them) and its concurrency, but no API, no database,
# no worker loop. The difference to "vod2s3" is what the service around it costs.
UPLOADER_SCRIPT = """\
import os, sys
from concurrent.futures import ThreadPoolExecutor
from vod2s3.config import Settings
from vod2s3.s3 import ObjectSpec, S3Target, UploadTuning, make_client, upload
from vod2s3.s3.sending import Sender
from vod2s3.worker.job import connection_rules, per_upload_limit
endpoint, bucket, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
settings = Settings.from_env(os.environ)
target = S3Target("testing", "testing", "us-east-1", endpoint)
client = make_client(
    target,
    payload_signing=settings.payload_signing,
    max_pool_connections=max(10, settings.s3_max_connections + settings.worker_concurrency),
)
tuning = UploadTuning(settings.multipart_threshold, settings.part_size, per_upload_limit(settings))
sender = Sender(connection_rules(settings))
def send(path, key):
    fd = os.open(path, os.O_RDONLY)
    try:
        spec = ObjectSpec(bucket, key, "private", {}, "video/mp4")
        upload(client, target, fd, os.fstat(fd).st_size, spec, tuning, sender=sender)
    finally:
        os.close(fd)
with ThreadPoolExecutor(settings.worker_concurrency) as pool:
    for done in [pool.submit(send, p, k) for p, k in zip(pairs[0::2], pairs[1::2])]:
        done.result()
"""

# awscrt's S3 client: the native (C) transfer client behind aws-cli's and s3transfer's CRT
# mode, with the same part size, threshold and per-part CRC32C as vod2s3. It signs with
# UNSIGNED-PAYLOAD. A reference for what a C sender costs, not a tool customers run.
CRT_SCRIPT = """\
import os, sys
from urllib.parse import urlsplit
from awscrt.auth import AwsCredentialsProvider
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
from awscrt.s3 import (S3ChecksumAlgorithm, S3ChecksumConfig, S3ChecksumLocation, S3Client,
    S3RequestTlsMode, S3RequestType)
endpoint, bucket, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
loops = EventLoopGroup(2)
client = S3Client(
    bootstrap=ClientBootstrap(loops, DefaultHostResolver(loops)),
    region="us-east-1",
    credential_provider=AwsCredentialsProvider.new_static("testing", "testing"),
    part_size=16 * 1024 * 1024,
    multipart_upload_threshold=16 * 1024 * 1024,
    tls_mode=S3RequestTlsMode.DISABLED,
    memory_limit=1024 * 1024 * 1024,
)
checksum = S3ChecksumConfig(
    algorithm=S3ChecksumAlgorithm.CRC32C, location=S3ChecksumLocation.HEADER
)
host = urlsplit(endpoint).netloc
requests = []
for path, key in zip(pairs[0::2], pairs[1::2]):
    headers = HttpHeaders([("Host", host), ("Content-Length", str(os.path.getsize(path))),
                           ("Content-Type", "video/mp4")])
    requests.append(client.make_request(
        type=S3RequestType.PUT_OBJECT, request=HttpRequest("PUT", f"/{bucket}/{key}", headers),
        send_filepath=path, checksum_config=checksum))
for request in requests:
    request.finished_future.result()
"""


# -- vod2s3's client --------------------------------------------------------------------


@dataclass
class KeepAliveClient(Vod2s3Client):
    """Vod2s3Client over one kept-alive connection, signing exactly as it does. The stock
    client sends every call with httpx.post, which builds a new httpx.Client (and an SSL
    context, even for http://) each time: about 20 ms of CPU per call on these machines,
    spent in this script on the same two cores as the server under test."""

    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=self.timeout)

    def call(self, command: str, **extra: Any) -> dict[str, Any]:
        body = php_json_encode(self.build_request(command, **extra))
        try:
            response = self._http.post(self.url, data={"json": body})
            envelope: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ClientError(f"{self.url}: {error}") from error
        if envelope.get("status") != "success":
            raise ClientError(str(envelope.get("message")), response.status_code, envelope)
        return envelope

    def close(self) -> None:
        self._http.close()


# -- measurements -----------------------------------------------------------------------


@dataclass
class Sample:
    tool: str
    dataset: str
    run: int
    bytes: int
    files: int
    ok: bool = False
    error: str = ""
    wall_s: float | None = None
    client_cpu_s: float | None = None  # user+sys of the uploading process
    client_user_s: float | None = None
    client_sys_s: float | None = None
    client_peak_rss_kib: int | None = None
    moto_cpu_s: float | None = None  # moto's utime+stime over the same window
    moto_peak_rss_kib: int | None = None
    host_other_cpu_s: float | None = None  # the machine's busy CPU not ours: noise
    orphan_multipart_uploads: int | None = None
    started: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    workdir: Path
    rundir: Path
    timeout: float
    aws_bin: str
    vod2s3_bin: str
    vod2s3_env: dict[str, str]
    rclone_args: list[str]
    rclone_config: Path
    wait_idle: float = 0.0

    def settle(self, sample: Sample) -> None:
        """Just before a measured window: give another job on the machine time to finish."""
        if self.wait_idle > 0:
            sample.extra["waited_for_quiet_s"] = round(wait_for_quiet(self.wait_idle), 1)

    def cli_env(self, *, rclone: bool = False) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "RCLONE_", "BOTO_")) or k == "AWS_CA_BUNDLE"
        }
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        )
        if rclone:
            env.pop("AWS_CA_BUNDLE", None)  # rclone refuses to start with it set
        return env

    def rclone_flags(self, url: str) -> list[str]:
        """An S3 remote made on the fly (`:s3:bucket/key`), no rclone.conf involved."""
        flags = {
            "--config": str(self.rclone_config),
            "--s3-provider": "Other",
            "--s3-endpoint": url,
            "--s3-access-key-id": "testing",
            "--s3-secret-access-key": "testing",
            "--s3-region": "us-east-1",
            "--s3-force-path-style": "true",
        }
        return [f"{name}={value}" for name, value in flags.items()] + self.rclone_args


Tool = Callable[[Context, Dataset, Moto, Path, Sample], None]


def _cli_tool(
    ctx: Context, args: list[str], env: dict[str, str], cwd: Path, moto: Moto, sample: Sample
) -> None:
    ctx.settle(sample)
    window = Window(moto)
    measured = run_measured(args, env, cwd, cwd / "tool.log", ctx.timeout)
    window.close(sample, measured.cpu_s)
    sample.wall_s = measured.wall_s
    sample.client_cpu_s = measured.cpu_s
    sample.client_user_s = measured.user_s
    sample.client_sys_s = measured.sys_s
    sample.client_peak_rss_kib = measured.maxrss_kib
    sample.extra["command"] = args[:4] + (["…"] if len(args) > 4 else [])


def tool_awscli(ctx: Context, ds: Dataset, moto: Moto, rundir: Path, sample: Sample) -> None:
    common = ["--endpoint-url", moto.url, "--no-progress"]
    if ds.many:
        source, target = str(ds.directory(ctx.workdir)), f"s3://{BUCKET}/{ds.prefix}"
        args = [ctx.aws_bin, "s3", "cp", source, target, "--recursive", *common]
    else:
        source, target = str(ds.files(ctx.workdir)[0]), f"s3://{BUCKET}/{ds.keys[0]}"
        args = [ctx.aws_bin, "s3", "cp", source, target, *common]
    _cli_tool(ctx, args, ctx.cli_env(), rundir, moto, sample)


def tool_rclone(ctx: Context, ds: Dataset, moto: Moto, rundir: Path, sample: Sample) -> None:
    if ds.many:
        source, target = str(ds.directory(ctx.workdir)), f":s3:{BUCKET}/{ds.prefix.rstrip('/')}"
        args = ["rclone", "copy", source, target, *ctx.rclone_flags(moto.url)]
    else:
        source, target = str(ds.files(ctx.workdir)[0]), f":s3:{BUCKET}/{ds.keys[0]}"
        args = ["rclone", "copyto", source, target, *ctx.rclone_flags(moto.url)]
    _cli_tool(ctx, args, ctx.cli_env(rclone=True), rundir, moto, sample)


def file_key_pairs(ctx: Context, ds: Dataset) -> list[str]:
    """The dataset as the arguments the script tools take: path, key, path, key, ..."""
    return [str(x) for pair in zip(ds.files(ctx.workdir), ds.keys, strict=True) for x in pair]


def tool_boto3(ctx: Context, ds: Dataset, moto: Moto, rundir: Path, sample: Sample) -> None:
    pairs = file_key_pairs(ctx, ds)
    args = [sys.executable, "-c", BOTO3_SCRIPT, moto.url, BUCKET, *pairs]
    _cli_tool(ctx, args, ctx.cli_env(), rundir, moto, sample)
    sample.extra["command"] = ["python", "-c", "<boto3 upload_file, 16 MiB parts, 8 threads>"]


def tool_uploader(ctx: Context, ds: Dataset, moto: Moto, rundir: Path, sample: Sample) -> None:
    pairs = file_key_pairs(ctx, ds)
    env = {**ctx.cli_env(), **ctx.vod2s3_env}
    _cli_tool(
        ctx,
        [sys.executable, "-c", UPLOADER_SCRIPT, moto.url, BUCKET, *pairs],
        env,
        rundir,
        moto,
        sample,
    )
    sample.extra["command"] = ["python", "-c", "<vod2s3.s3.upload(), the service's settings>"]
    sample.extra["env"] = ctx.vod2s3_env


def tool_crt(ctx: Context, ds: Dataset, moto: Moto, rundir: Path, sample: Sample) -> None:
    pairs = file_key_pairs(ctx, ds)
    args = [sys.executable, "-c", CRT_SCRIPT, moto.url, BUCKET, *pairs]
    _cli_tool(ctx, args, ctx.cli_env(), rundir, moto, sample)
    sample.extra["command"] = ["python", "-c", "<awscrt S3Client, 16 MiB parts, CRC32C>"]


def tool_ceiling(ctx: Context, ds: Dataset, moto: Moto, rundir: Path, sample: Sample) -> None:
    """Raw unsigned PUTs, one after another over one connection: what moto ingests when
    the client costs next to nothing."""
    args = ["curl", "-sS", "--fail", "-H", "Expect:"]
    for path, key in zip(ds.files(ctx.workdir), ds.keys, strict=True):
        args += ["-T", str(path), f"{moto.url}/{BUCKET}/{key}"]
    _cli_tool(ctx, args, ctx.cli_env(), rundir, moto, sample)


def tool_vod2s3(ctx: Context, ds: Dataset, moto: Moto, rundir: Path, sample: Sample) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env.update(
        VOD2S3_DATABASE_URL=f"sqlite:///{rundir / 'db.sqlite'}",
        VOD2S3_STORAGE_ROOT=str(ctx.workdir / "storage"),
        VOD2S3_MASTER_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        # The bench polls status faster than a customer should; it is not the abuse the
        # per-account rate limit is for.
        VOD2S3_RATE_LIMIT="0",
        VOD2S3_ADDRESS_RATE_LIMIT="0",
    )
    env.update(ctx.vod2s3_env)
    vod = ctx.vod2s3_bin
    run_checked([vod, "db", "upgrade"], env, rundir)
    create = [vod, "accounts", "create", "--cdn", str(CDN), "--storage-user", STORAGE_USER]
    issued = json.loads(run_checked([*create, "--json"], env, rundir))
    run_checked(
        [
            *(vod, "accounts", "set-aws", "--cdn", str(CDN), "--access-key-id", "testing"),
            *("--secret-access-key", "testing", "--region", "us-east-1"),
            *("--endpoint-url", moto.url),
        ],
        env,
        rundir,
    )
    port = free_port()
    with Service([vod, "serve", "--port", str(port)], env, rundir, rundir / "serve.log") as serve:
        api = KeepAliveClient(
            url=f"http://127.0.0.1:{port}/stable/",
            cdn=CDN,
            api_key=issued["api_key"],
            secret=issued["secret"],
        )

        def check_alive() -> None:
            if not serve.alive():
                raise BenchError(f"vod2s3 serve exited:\n{serve.log_tail()}")

        deadline = time.monotonic() + 60
        while True:
            check_alive()
            try:
                api.status(limit=1)
                break
            except ClientError:
                if time.monotonic() > deadline:
                    raise BenchError(f"vod2s3 serve did not answer:\n{serve.log_tail()}") from None
                time.sleep(0.1)
        if children := proc_children(serve.pid):
            log(f"  note: vod2s3 serve has child processes {children}: their CPU is not counted")

        ctx.settle(sample)
        # What one status poll costs the server, to size the measuring's own share.
        before = proc_cpu_seconds(serve.pid)
        for _ in range(CALIBRATION_POLLS):
            api.status(limit=1, state="completed")
        poll_cpu = (proc_cpu_seconds(serve.pid) - before) / CALIBRATION_POLLS

        polls = 0
        first_active: float | None = None
        window = Window(moto)
        user0, sys0 = proc_cpu_split(serve.pid)
        start = time.perf_counter()
        ids = [
            int(api.upload(path, BUCKET, "private", destination_path=key)["id"])
            for path, key in zip(ds.source_paths, ds.keys, strict=True)
        ]
        queued_s = time.perf_counter() - start
        deadline = time.monotonic() + ctx.timeout
        while True:
            polls += 1
            if not ds.many:
                record = api.get(ids[0])
                if record["state"] != "queued" and first_active is None:
                    first_active = time.perf_counter() - start
                if record["state"] == "completed":
                    break
                if record["state"] in ("failed", "cancelled"):
                    raise BenchError(
                        f"vod2s3 upload {ids[0]} {record['state']}: {record['message']} "
                        f"({record['error_code']})"
                    )
                interval = SINGLE_POLL
            else:
                # Cheap polls: a row at offset N-1 among the completed means all N are; the
                # full list is fetched once, after the window.
                if api.status(limit=1, offset=len(ids) - 1, state="completed"):
                    break
                polls += 2
                for state in ("failed", "cancelled"):
                    if bad := api.status(limit=1, state=state):
                        raise BenchError(
                            f"vod2s3 upload {bad[0]['id']} {state}: {bad[0]['message']} "
                            f"({bad[0]['error_code']})"
                        )
                interval = LIST_POLL
            check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"vod2s3 did not finish within {ctx.timeout:.0f} s")
            time.sleep(interval)
        sample.wall_s = time.perf_counter() - start
        user1, sys1 = proc_cpu_split(serve.pid)
        sample.client_user_s, sample.client_sys_s = user1 - user0, sys1 - sys0
        sample.client_cpu_s = sample.client_user_s + sample.client_sys_s
        window.close(sample, sample.client_cpu_s)
        sample.client_peak_rss_kib = proc_status_kib(serve.pid, "VmHWM")

        records: list[dict[str, Any]] = []
        while len(records) < len(ids):
            page = api.status(limit=1000, offset=len(records))
            if not page:
                break
            records += page
        if len(records) != len(ids):
            raise BenchError(f"vod2s3 lists {len(records)} uploads, not {len(ids)}")
        for rec in records:
            if rec["state"] != "completed" or rec["bytes_total"] != ds.size:
                raise BenchError(
                    f"vod2s3 record {rec['id']}: {rec['state']}, {rec['bytes_total']} B"
                )
        sample.extra.update(
            end_rss_kib=proc_status_kib(serve.pid, "VmRSS"),
            status_requests=polls,
            poll_cpu_est_s=round(poll_cpu * polls, 4),
            upload_calls_s=round(queued_s, 4),
            first_not_queued_s=None if first_active is None else round(first_active, 4),
            attempts_max=max(int(r["attempts"]) for r in records),
            checksum=records[0].get("checksum"),
            env=ctx.vod2s3_env,
        )
        api.close()


TOOLS: dict[str, Tool] = {
    "vod2s3": tool_vod2s3,
    "awscli": tool_awscli,
    "rclone": tool_rclone,
    "boto3": tool_boto3,
    "ceiling": tool_ceiling,
    "uploader": tool_uploader,
    "crt": tool_crt,
}


def measure(ctx: Context, tool: str, ds: Dataset, run: int) -> Sample:
    sample = Sample(
        tool=tool,
        dataset=ds.name,
        run=run,
        bytes=ds.total,
        files=ds.count,
        started=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    rundir = ctx.rundir / f"{ds.name}-r{run}-{tool}"
    rundir.mkdir(parents=True)
    try:
        warm(ds, ctx.workdir)
        with Moto(rundir) as moto:
            moto.wait_ready()
            moto.s3.create_bucket(Bucket=BUCKET)
            TOOLS[tool](ctx, ds, moto, rundir, sample)
            sample.moto_peak_rss_kib = proc_status_kib(moto.service.pid, "VmHWM")
            sample.orphan_multipart_uploads = moto.verify(ds)
        sample.ok = True
    except BenchError as error:
        sample.error = str(error)
    except Exception as error:  # a long run should survive one odd failure; it is recorded
        sample.error = f"{type(error).__name__}: {error}"
    return sample


def fixed_costs(ctx: Context, tools: Sequence[str]) -> dict[str, dict[str, float]]:
    """The cost of starting each command-line peer once (interpreter, imports, one request):
    it is inside their figures and outside vod2s3's (a service already running)."""
    commands: dict[str, tuple[list[str], bool]] = {}
    rundir = ctx.rundir / "fixed-cost"
    rundir.mkdir(parents=True)
    costs: dict[str, dict[str, float]] = {}
    with Moto(rundir) as moto:
        moto.wait_ready()
        moto.s3.create_bucket(Bucket=BUCKET)
        commands = {
            "awscli": (
                [ctx.aws_bin, "s3", "ls", f"s3://{BUCKET}/", "--endpoint-url", moto.url],
                False,
            ),
            "rclone": (["rclone", "lsf", f":s3:{BUCKET}", *ctx.rclone_flags(moto.url)], True),
            "boto3": ([sys.executable, "-c", BOTO3_SCRIPT, moto.url, BUCKET], False),
            # No files: the interpreter, the imports and the client, no request.
            "uploader": ([sys.executable, "-c", UPLOADER_SCRIPT, moto.url, BUCKET], False),
            "crt": ([sys.executable, "-c", CRT_SCRIPT, moto.url, BUCKET], False),
        }
        for tool in tools:
            if tool not in commands:
                continue
            args, is_rclone = commands[tool]
            try:
                got = run_measured(
                    args, ctx.cli_env(rclone=is_rclone), rundir, rundir / f"{tool}.log", 120
                )
            except BenchError as error:
                log(f"fixed cost of {tool}: {error}")
                continue
            costs[tool] = {
                "wall_s": round(got.wall_s, 3),
                "cpu_s": round(got.cpu_s, 3),
                "peak_rss_mib": round(got.maxrss_kib / KiB, 1),
            }
    return costs


# -- summary ----------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(
    samples: Sequence[Sample], datasets: Sequence[Dataset], tools: Sequence[str]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        by_tool = {
            tool: [s for s in samples if s.dataset == ds.name and s.tool == tool and s.ok]
            for tool in tools
        }
        gib = ds.total / GiB
        ceiling_wall = _median([s.wall_s for s in by_tool.get("ceiling", [])])
        vod_by_run = {s.run: s for s in by_tool.get("vod2s3", [])}
        for tool in tools:
            ok = by_tool[tool]
            failed = sum(1 for s in samples if s.dataset == ds.name and s.tool == tool and not s.ok)
            wall = _median([s.wall_s for s in ok])
            cpu = _median([s.client_cpu_s for s in ok])
            rss = _median([s.client_peak_rss_kib for s in ok])
            moto_cpu = _median([s.moto_cpu_s for s in ok])
            wall_ratio = cpu_ratio = None
            if tool != "vod2s3" and vod_by_run:
                pairs = [(s, vod_by_run[s.run]) for s in ok if s.run in vod_by_run]
                wall_ratio = _median(
                    [s.wall_s / v.wall_s for s, v in pairs if s.wall_s and v.wall_s]
                )
                if tool != "ceiling":
                    cpu_ratio = _median(
                        [
                            s.client_cpu_s / v.client_cpu_s
                            for s, v in pairs
                            if s.client_cpu_s is not None and v.client_cpu_s
                        ]
                    )
            client = tool != "ceiling"
            rows.append(
                {
                    "dataset": ds.name,
                    "tool": tool,
                    "runs_ok": len(ok),
                    "runs_failed": failed,
                    "wall_s": wall,
                    "mb_per_s": ds.total / MB / wall if wall else None,
                    "pct_of_ceiling": 100 * ceiling_wall / wall if wall and ceiling_wall else None,
                    "client_cpu_s_per_gib": cpu / gib if cpu is not None and client else None,
                    "peak_rss_mib": rss / KiB if rss is not None and client else None,
                    "moto_cpu_s_per_gib": moto_cpu / gib if moto_cpu is not None else None,
                    "wall_vs_vod2s3": wall_ratio,
                    "cpu_vs_vod2s3": cpu_ratio,
                }
            )
    return rows


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| dataset | tool | runs | wall s | MB/s | % of ceiling | client CPU-s/GiB "
        "| peak RSS MiB | moto CPU-s/GiB | wall ÷ vod2s3 | CPU ÷ vod2s3 |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        runs = str(r["runs_ok"]) + (f" ({r['runs_failed']} failed)" if r["runs_failed"] else "")
        lines.append(
            f"| {r['dataset']} | {r['tool']} | {runs} | {_fmt(r['wall_s'], 2)} "
            f"| {_fmt(r['mb_per_s'], 1)} | {_fmt(r['pct_of_ceiling'], 0)} "
            f"| {_fmt(r['client_cpu_s_per_gib'], 2)} | {_fmt(r['peak_rss_mib'], 0)} "
            f"| {_fmt(r['moto_cpu_s_per_gib'], 2)} | {_fmt(r['wall_vs_vod2s3'], 2)} "
            f"| {_fmt(r['cpu_vs_vod2s3'], 2)} |"
        )
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------


def resolve_aws(given: str | None) -> str:
    """The real awscli entry point, not pyenv's shim: the shim is a bash script that runs
    pyenv (more processes) before exec'ing it, which would blur the rusage."""
    if given:
        return given
    if shutil.which("pyenv"):
        done = subprocess.run(
            ["pyenv", "which", "aws"], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    found = shutil.which("aws")
    if not found:
        raise SystemExit("aws (awscli) is not on PATH; pass --aws-bin")
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="1g,4g,200x5m", help="e.g. 1g,4g,200x5m,64m,20x5m")
    parser.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        help=f"comma-separated, from {','.join(TOOLS)} (default {','.join(ALL_TOOLS)})",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vod2s3-bench"))
    parser.add_argument(
        "--vod2s3-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for vod2s3 serve (repeatable)",
    )
    parser.add_argument(
        "--rclone-arg", action="append", default=[], help="extra rclone flag (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    parser.add_argument("--aws-bin", default=None, help="awscli entry point (default: resolved)")
    parser.add_argument(
        "--vod2s3-bin", default=str(Path(sys.executable).parent / "vod2s3"), help="vod2s3 script"
    )
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=20.0,
        metavar="S",
        help="before each measurement wait up to S seconds for other processes to go quiet",
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    parser.add_argument(
        "--no-fixed-cost", action="store_true", help="skip measuring the peers' start-up cost"
    )
    args = parser.parse_args(argv)
    try:
        args.dataset_list = [Dataset.parse(d) for d in args.datasets.split(",") if d.strip()]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if len({d.name for d in args.dataset_list}) != len(args.dataset_list):
        parser.error("a dataset is listed twice")
    args.tool_list = [t.strip() for t in args.tools.split(",") if t.strip()]
    for tool in args.tool_list:
        if tool not in TOOLS:
            parser.error(f"unknown tool {tool!r}: choose from {', '.join(TOOLS)}")
    extra: dict[str, str] = {}
    for item in args.vod2s3_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--vod2s3-env wants KEY=VALUE, got {item!r}")
        extra[key] = value
    args.vod2s3_env_map = extra
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def tool_order(tools: Sequence[str], run: int) -> list[str]:
    """Rotate the order from run to run so no tool always goes first."""
    shift = (run - 1) % len(tools)
    return list(tools[shift:]) + list(tools[:shift])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    atexit.register(_kill_all_live)
    signal.signal(signal.SIGTERM, _on_stop_signal)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir: Path = args.workdir.resolve()
    rundir = workdir / "runs" / stamp
    rundir.mkdir(parents=True)
    rclone_config = workdir / "rclone-empty.conf"
    rclone_config.touch()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    results_path: Path = args.results_dir / f"compare-{stamp}.json"

    ctx = Context(
        workdir=workdir,
        rundir=rundir,
        timeout=args.timeout,
        aws_bin=resolve_aws(args.aws_bin) if "awscli" in args.tool_list else "",
        vod2s3_bin=args.vod2s3_bin,
        vod2s3_env=args.vod2s3_env_map,
        rclone_args=args.rclone_arg,
        rclone_config=rclone_config,
        wait_idle=args.wait_idle,
    )
    import boto3
    import botocore
    import moto

    meta: dict[str, Any] = {
        "started": stamp,
        "argv": sys.argv,
        "datasets": [asdict(d) for d in args.dataset_list],
        "tools": args.tool_list,
        "runs": args.runs,
        "workdir": str(workdir),
        "vod2s3_env": ctx.vod2s3_env,
        "rclone_args": ctx.rclone_args,
        "git": git_state(),
        "host": {
            "cpus": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB, 1),
            "platform": platform.platform(),
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
            "python": platform.python_version(),
        },
        "versions": {
            "moto": moto.__version__,
            "boto3 (bench, boto3 tool)": boto3.__version__,
            "botocore (bench, boto3 tool)": botocore.__version__,
            "awscli": tool_version([ctx.aws_bin, "--version"]) if ctx.aws_bin else "",
            "aws_bin": ctx.aws_bin,
            "rclone": tool_version(["rclone", "version"]),
            "curl": tool_version(["curl", "--version"]),
        },
    }
    samples: list[Sample] = []
    total = len(args.dataset_list) * args.runs * len(args.tool_list)
    interrupted = False

    def save(rows: list[dict[str, Any]] | None = None) -> None:
        data = {"meta": meta, "samples": [asdict(s) for s in samples], "summary": rows}
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, results_path)

    try:
        floor = run_measured(["true"], dict(os.environ), rundir, rundir / "floor.log", 60)
        meta["rss_floor_kib"] = floor.maxrss_kib
        for ds in args.dataset_list:
            prepare(ds, workdir)
        if not args.no_fixed_cost and {"awscli", "rclone", "boto3", "uploader", "crt"} & set(
            args.tool_list
        ):
            log("measuring the peers' start-up cost")
            meta["fixed_cost"] = fixed_costs(ctx, args.tool_list)
        done = 0
        for ds in args.dataset_list:
            for run in range(1, args.runs + 1):
                for tool in tool_order(args.tool_list, run):
                    done += 1
                    sample = measure(ctx, tool, ds, run)
                    samples.append(sample)
                    save()
                    log(f"[{done}/{total}] {progress_line(sample)}")
                    if not sample.ok and args.fail_fast:
                        raise BenchError(f"{tool} {ds.name} run {run} failed")
    except BenchError as error:
        log(f"stopped: {error}")
    except KeyboardInterrupt:
        log("interrupted: the table covers the measurements done so far")
        interrupted = True
    finally:
        _kill_all_live()
        if stray := processes_under(rundir):
            log(f"WARNING: processes left running in {rundir}: {stray}; killing them")
            for pid in stray:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        rows = summarize(samples, args.dataset_list, args.tool_list)
        save(rows)

    print(markdown(rows))
    if costs := meta.get("fixed_cost"):
        print()
        print("Fixed cost of one invocation (start-up, imports, one request), inside each peer's")
        print(
            "figures above and outside vod2s3's: "
            + "; ".join(
                f"{tool} {c['wall_s']:.2f} s wall, {c['cpu_s']:.2f} CPU-s, "
                f"{c['peak_rss_mib']:.0f} MiB"
                for tool, c in costs.items()
            )
        )
    noisy = [s for s in samples if (s.host_other_cpu_s or 0) > 0.05 * (s.wall_s or 0)]
    if noisy:
        print()
        worst = max(noisy, key=lambda s: s.host_other_cpu_s or 0)
        print(
            f"Warning: other processes on this machine used CPU during {len(noisy)} of "
            f"{len(samples)} measurements (worst: {worst.host_other_cpu_s:.2f} CPU-s during "
            f"{worst.tool} {worst.dataset} run {worst.run}); see host_other_cpu_s."
        )
    print()
    print(f"raw samples: {results_path}")
    if interrupted:
        return 130
    failures = [s for s in samples if not s.ok]
    return 1 if failures or len(samples) < total else 0


def progress_line(s: Sample) -> str:
    where = f"{s.tool} {s.dataset} run {s.run}"
    if not s.ok:
        return f"{where}: FAILED: {s.error}"
    parts = [f"{s.wall_s:.2f} s", f"{s.bytes / MB / s.wall_s:.1f} MB/s"] if s.wall_s else []
    if s.client_cpu_s is not None:
        parts.append(f"client {s.client_cpu_s:.2f} CPU-s")
    if s.client_peak_rss_kib is not None:
        parts.append(f"peak RSS {s.client_peak_rss_kib / KiB:.0f} MiB")
    if s.moto_cpu_s is not None:
        parts.append(f"moto {s.moto_cpu_s:.2f} CPU-s")
    if s.host_other_cpu_s and s.wall_s and s.host_other_cpu_s > 0.05 * s.wall_s:
        parts.append(f"OTHER PROCESSES {s.host_other_cpu_s:.2f} CPU-s")
    if s.orphan_multipart_uploads:
        parts.append(f"{s.orphan_multipart_uploads} INCOMPLETE MULTIPART UPLOADS LEFT")
    return f"{where}: " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
