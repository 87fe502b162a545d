"""vod2s3 and its peers on an emulated long, lossy link (issue 14's benchmark).

Runs inside the network namespace of ``../shared/tools/wan/wan.sh`` (create it first with
``wan.sh ns-up``); this script sets each condition with ``wan.sh up`` and stops shaping at
the end. Every process it starts (moto, nginx, iperf3, vod2s3's API and worker, the peers)
runs in the namespace, on its own loopback:

    ip netns exec s3wan .venv/bin/python bench/wan.py --conditions B --datasets 1g \\
        --tools iperf64,iperf1,before,after,awscli,boto3,s5cmd,rclone \\
        --before-src /work/wan-before --after-src /work/wan-after \\
        --peers-venv /work/peers-venv --out /tmp/wan.json

- Conditions (300 Mbit/s bottleneck, 1,875,000-byte buffer): A 80 ms RTT, no loss; B 80 ms,
  0.1 % loss; C 150 ms, 0.1 % loss. Datasets: ``1g`` (one 1 GiB file), ``20x50m``.
- The S3 endpoint is nginx on 127.0.0.1:9000 (the shaped port) with keep-alive, in front of a
  fresh moto server (unshaped port) for every measurement.
- ``before`` / ``after``: ``vod2s3 api`` and ``vod2s3 worker`` from the source tree given by
  ``--before-src`` / ``--after-src`` (its ``src`` on PYTHONPATH, this venv's dependencies),
  at their defaults; ``--variant LABEL=TREE:KEY=VALUE,...`` adds a tuned one. Timed from the
  first ``aws.upload`` to the poll that sees every upload completed.
- Peers from ``--peers-venv``, at their defaults: ``aws s3 cp``, boto3 ``upload_file`` (one
  file after another), ``s5cmd cp``, ``rclone copyto`` / ``copy``; iperf3 with 64 and 1
  streams for the link.
- Each transfer gets ``--limit`` seconds. One that does not finish is reported as such, with
  the rate the endpoint's side of its connections received (``ss`` counters).
- ``ss -tni`` is sampled every 0.5 s: the connections to :9000 (or :5201) with bytes in
  flight or not yet sent ("busy"), and the bytes the endpoint's sockets received.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    MIB,
    VOD2S3,
    create_account,
    log,
    make_source,
    moto_client,
    peak_rss_kib,
    process,
    run_command,
    run_limited,
)
from cryptography.fernet import Fernet  # noqa: E402
from tests.helpers import free_port, moto_server_process, wait_for_http  # noqa: E402

from vod2s3.client import Vod2s3Client  # noqa: E402

WAN_DIR = ROOT.parent / "shared" / "tools" / "wan"
NAMESPACE = "s3wan"
S3_PORT = 9000
IPERF_PORT = 5201
ENDPOINT = f"http://127.0.0.1:{S3_PORT}"
BUCKET = "bench"
RATE_MBIT = 300
BUFFER_BYTES = 1_875_000
SAMPLE_EVERY = 0.5
IPERF_SECONDS = 20
IPERF_OMIT = 2


@dataclass(frozen=True)
class Condition:
    rtt_ms: int
    loss_percent: float


CONDITIONS = {"A": Condition(80, 0.0), "B": Condition(80, 0.1), "C": Condition(150, 0.1)}


@dataclass(frozen=True)
class Dataset:
    name: str
    count: int
    size: int

    @property
    def total(self) -> int:
        return self.count * self.size

    def files(self, storage: Path) -> list[Path]:
        folder = storage / "sestore1" / "bench" / self.name
        if self.count == 1:
            return [folder / "big.mp4"]
        return [folder / f"f{n:02d}.mp4" for n in range(self.count)]


DATASETS = {
    "1g": Dataset("1g", 1, 1024 * MIB),
    "20x50m": Dataset("20x50m", 20, 50 * MIB),
    "64m": Dataset("64m", 1, 64 * MIB),  # smoke tests
    "4x8m": Dataset("4x8m", 4, 8 * MIB),
}


@dataclass(frozen=True)
class Vod2s3Variant:
    label: str
    tree: str  # "before" or "after"
    env: dict[str, str]


@dataclass
class Result:
    condition: str
    dataset: str
    tool: str
    finished: bool = False
    error: str = ""
    wall_s: float | None = None
    bytes: int = 0
    mb_per_s: float | None = None  # bytes / wall, 10^6 bytes per second
    received_mb_per_s: float | None = None  # what the endpoint's sockets received / window
    busy_max: int = 0
    busy_median: float = 0.0
    connections_max: int = 0
    peak_rss_mib: float | None = None
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- the link ----------------------------------------------------------------------------


def wan(*args: str) -> None:
    """wan.sh with ``args`` (it enters the namespace itself)."""
    subprocess.run([str(WAN_DIR / "wan.sh"), *args], check=True, capture_output=True)


def shape(condition: Condition) -> None:
    loss = f"{condition.loss_percent:g}"
    wan("up", str(condition.rtt_ms), loss, str(RATE_MBIT), str(BUFFER_BYTES))


def in_namespace() -> bool:
    done = subprocess.run(["ip", "netns", "identify"], capture_output=True, text=True)
    return done.stdout.strip() == NAMESPACE


# -- ss sampling --------------------------------------------------------------------------

FIELD = re.compile(r"\b(bytes_received|unacked|notsent):(\d+)")


@dataclass
class Snapshot:
    busy: int  # client connections with unacknowledged or unsent bytes
    established: int  # client connections established
    received: dict[tuple[str, str], int]  # endpoint's sockets: bytes received


def parse_ss(text: str, port: int) -> Snapshot:
    """``ss -tniH`` output (a line per socket, then its indented details)."""
    busy = established = 0
    received: dict[tuple[str, str], int] = {}
    head: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            head = line.split()
            continue
        if len(head) < 5:
            continue
        state, local, peer = head[0], head[3], head[4]
        values = {name: int(v) for name, v in FIELD.findall(line)}
        if peer.endswith(f":{port}"):
            established += state == "ESTAB"
            busy += values.get("unacked", 0) > 0 or values.get("notsent", 0) > 0
        elif local.endswith(f":{port}"):
            received[(local, peer)] = values.get("bytes_received", 0)
    return Snapshot(busy, established, received)


class Sampler:
    """Samples ``ss -tni`` for one port in a thread, for the ``with`` block."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.busy: list[int] = []
        self.established: list[int] = []
        self.received: dict[tuple[str, str], int] = {}
        self.timeline: list[tuple[float, int]] = []  # (monotonic, bytes received so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        spec = f"( sport = :{self.port} or dport = :{self.port} )"
        while not self._stop.wait(SAMPLE_EVERY):
            done = subprocess.run(["ss", "-tniH", spec], capture_output=True, text=True)
            snap = parse_ss(done.stdout, self.port)
            for key, value in snap.received.items():
                self.received[key] = max(value, self.received.get(key, 0))
            self.busy.append(snap.busy)
            self.established.append(snap.established)
            self.timeline.append((time.monotonic(), sum(self.received.values())))

    def fill(self, result: Result, began: float, ended: float) -> None:
        """The busy connections while anything was busy, and the received rate."""
        active = [b for b in self.busy if b > 0]
        result.busy_max = max(self.busy, default=0)
        result.busy_median = statistics.median(active) if active else 0.0
        result.connections_max = max(self.established, default=0)
        got = sum(self.received.values())
        result.extra["endpoint_received_bytes"] = got
        if ended > began:
            result.received_mb_per_s = round(got / (ended - began) / 1e6, 2)


# -- the endpoint ----------------------------------------------------------------------------


@contextmanager
def endpoint(rundir: Path, stack: ExitStack) -> Iterator[str]:
    """A fresh moto (unshaped port) behind nginx on 127.0.0.1:9000 (the README's nginx.conf,
    pointed at this moto and this run's folder); yields moto's own URL."""
    moto_url = stack.enter_context(moto_server_process(rundir / "moto.log"))
    nginx_dir = rundir / "nginx"
    nginx_dir.mkdir(parents=True, exist_ok=True)
    conf = (WAN_DIR / "nginx.conf").read_text()
    conf = conf.replace("/tmp/vod2s3-wan/nginx", str(nginx_dir))
    conf = conf.replace("http://127.0.0.1:9001", moto_url)
    (nginx_dir / "nginx.conf").write_text(conf)
    nginx = ["nginx", "-c", str(nginx_dir / "nginx.conf")]
    stack.enter_context(process(nginx, dict(os.environ), rundir / "nginx.out"))
    wait_for_http(f"{ENDPOINT}/moto-api/")
    moto_client(moto_url).create_bucket(Bucket=BUCKET)
    yield moto_url


def stored_bytes(moto_url: str) -> tuple[int, int]:
    """(objects, bytes) in the bucket, asked of moto directly."""
    listing = moto_client(moto_url).list_objects_v2(Bucket=BUCKET, MaxKeys=1000).get("Contents", [])
    return len(listing), sum(int(item["Size"]) for item in listing)


def settle(result: Result, ds: Dataset, moto_url: str, ran_to_end: bool) -> None:
    objects, size = stored_bytes(moto_url)
    result.extra["objects"] = objects
    result.finished = ran_to_end and objects == ds.count and size == ds.total
    if ran_to_end and not result.finished and not result.error:
        result.error = f"bucket holds {objects} objects, {size} bytes"
    if result.finished and result.wall_s:
        result.mb_per_s = round(ds.total / result.wall_s / 1e6, 2)


# -- peers ------------------------------------------------------------------------------------

BOTO3_SCRIPT = """\
import sys
import boto3
endpoint, bucket, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
s3 = boto3.client("s3", endpoint_url=endpoint)
for path, key in zip(pairs[0::2], pairs[1::2]):
    s3.upload_file(path, bucket, key)
"""


def peer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env


def peer_command(tool: str, ds: Dataset, storage: Path, venv: Path, rundir: Path) -> list[str]:
    files = ds.files(storage)
    folder, prefix = files[0].parent, f"{ds.name}/"
    single = ds.count == 1
    key = f"{prefix}{files[0].name}"
    if tool == "awscli":
        where = [str(files[0]), f"s3://{BUCKET}/{key}"] if single else [
            str(folder), f"s3://{BUCKET}/{prefix}", "--recursive"]  # fmt: skip
        return [str(venv / "aws"), "s3", "cp", *where, "--endpoint-url", ENDPOINT, "--no-progress"]
    if tool == "boto3":
        pairs = [str(x) for f in files for x in (f, f"{prefix}{f.name}")]
        return [str(venv / "python"), "-c", BOTO3_SCRIPT, ENDPOINT, BUCKET, *pairs]
    if tool == "s5cmd":
        where = [str(files[0]), f"s3://{BUCKET}/{key}"] if single else [
            f"{folder}/*", f"s3://{BUCKET}/{prefix}"]  # fmt: skip
        return [str(venv / "s5cmd"), "--endpoint-url", ENDPOINT, "cp", *where]
    if tool == "rclone":
        (rundir / "rclone.conf").touch()
        flags = [f"--config={rundir / 'rclone.conf'}", "--s3-provider=Other",
                 f"--s3-endpoint={ENDPOINT}", "--s3-access-key-id=bench",
                 "--s3-secret-access-key=bench", "--s3-region=us-east-1",
                 "--s3-force-path-style=true"]  # fmt: skip
        if single:
            return [str(venv / "rclone"), "copyto", str(files[0]), f":s3:{BUCKET}/{key}", *flags]
        return [str(venv / "rclone"), "copy", str(folder), f":s3:{BUCKET}/{ds.name}", *flags]
    raise ValueError(tool)


def measure_peer(
    tool: str, cond: str, ds: Dataset, args: argparse.Namespace, rundir: Path
) -> Result:
    result = Result(cond, ds.name, tool)
    cmd = peer_command(tool, ds, args.workdir / "storage", args.peers_venv / "bin", rundir)
    result.command = " ".join(cmd if tool != "boto3" else [*cmd[:2], "<upload_file loop>"])
    with ExitStack() as stack:
        moto_url = stack.enter_context(endpoint(rundir, stack))
        with Sampler(S3_PORT) as sampler:
            began = time.monotonic()
            ran = run_limited(cmd, peer_env(), rundir / "tool.log", args.limit)
        sampler.fill(result, began, began + ran.wall_s)
        result.wall_s = round(ran.wall_s, 2)
        result.peak_rss_mib = round(ran.peak_rss_kib / 1024, 1)
        if ran.returncode is None:
            result.error = f"not finished after {args.limit:.0f} s"
        elif ran.returncode != 0:
            result.error = f"exit {ran.returncode}: {tail(rundir / 'tool.log')}"
        settle(result, ds, moto_url, ran.returncode == 0)
    return result


def tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- iperf3 ------------------------------------------------------------------------------


def measure_iperf(streams: int, cond: str, args: argparse.Namespace, rundir: Path) -> Result:
    result = Result(cond, "link", f"iperf3 -P {streams}")
    cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(IPERF_PORT), "-P", str(streams),
           "-t", str(IPERF_SECONDS), "-O", str(IPERF_OMIT), "-J"]  # fmt: skip
    result.command = " ".join(cmd)
    server = ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)]
    with process(server, dict(os.environ), rundir / "iperf3-server.log"):
        time.sleep(0.5)
        with Sampler(IPERF_PORT) as sampler:
            began = time.monotonic()
            ran = run_limited(cmd, dict(os.environ), rundir / "iperf3.json", IPERF_SECONDS + 30)
        sampler.fill(result, began, began + ran.wall_s)
    result.wall_s = round(ran.wall_s, 2)
    try:
        end = json.loads((rundir / "iperf3.json").read_text())["end"]
        result.mb_per_s = round(end["sum_received"]["bits_per_second"] / 8e6, 2)
        result.extra["retransmits"] = end["sum_sent"].get("retransmits")
        result.finished = True
    except (ValueError, KeyError) as error:
        result.error = f"iperf3: {error!r} {tail(rundir / 'iperf3.json')}"
    return result


# -- vod2s3 ------------------------------------------------------------------------------------


def vod2s3_env(work: Path, storage: Path, src: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOD2S3_", "AWS_"))}
    env.update(
        PYTHONPATH=str(src / "src"),
        VOD2S3_DATABASE_URL=f"sqlite:///{work / 'db.sqlite'}",
        VOD2S3_STORAGE_ROOT=str(storage),
        VOD2S3_MASTER_KEY=Fernet.generate_key().decode(),
        VOD2S3_POLL_INTERVAL="0.2",
        **extra,
    )
    return env


def vod2s3_account(env: dict[str, str], url: str) -> Vod2s3Client:
    made = create_account(env, 1, "bench", ENDPOINT)
    return Vod2s3Client(url, made.cdn, made.api_key, made.secret)


def wait_uploads(api: Vod2s3Client, ids: set[int], deadline: float) -> dict[int, dict[str, Any]]:
    """Poll aws.status until every upload in ``ids`` has ended or ``deadline`` passes."""
    while True:
        rows = {int(r["id"]): r for r in api.status(limit=1000) if int(r["id"]) in ids}
        ended = [r for r in rows.values() if r["state"] in ("completed", "failed", "cancelled")]
        if len(ended) == len(ids) or time.monotonic() >= deadline:
            return rows
        time.sleep(0.5)


def measure_vod2s3(
    variant: Vod2s3Variant, cond: str, ds: Dataset, args: argparse.Namespace, rundir: Path
) -> Result:
    result = Result(cond, ds.name, f"vod2s3 {variant.label}")
    src: Path = args.before_src if variant.tree == "before" else args.after_src
    result.extra.update(tree=str(src), commit=commit_of(src), env=variant.env)
    storage = args.workdir / "storage"
    env = vod2s3_env(rundir, storage, src, variant.env)
    result.command = " ".join([f"{k}={v}" for k, v in variant.env.items()] + ["vod2s3 worker"])
    with ExitStack() as stack:
        moto_url = stack.enter_context(endpoint(rundir, stack))
        run_command([VOD2S3, "db", "upgrade"], env)
        port = free_port()
        stack.enter_context(process([VOD2S3, "api", "--port", str(port)], env, rundir / "api.log"))
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        api = stack.enter_context(vod2s3_account(env, f"http://127.0.0.1:{port}/stable/"))
        worker = stack.enter_context(process([VOD2S3, "worker"], env, rundir / "worker.log"))
        time.sleep(3.0)  # the worker's start-up, outside the window
        with Sampler(S3_PORT) as sampler:
            began = time.monotonic()
            ids = {int(api.upload(str(f.relative_to(storage)), BUCKET, "private")["id"])
                   for f in ds.files(storage)}  # fmt: skip
            rows = wait_uploads(api, ids, began + args.limit)
            ended = time.monotonic()
        sampler.fill(result, began, ended)
        rss = peak_rss_kib(worker.pid)
        result.peak_rss_mib = round(rss / 1024, 1) if rss is not None else None
        states = [str(r["state"]) for r in rows.values()]
        result.extra["states"] = {s: states.count(s) for s in sorted(set(states))}
        result.extra["confirmed_bytes"] = sum(int(r.get("bytes_uploaded") or 0)
                                              for r in rows.values())  # fmt: skip
        result.wall_s = round(ended - began, 2)
        done = states.count("completed") == len(ids)
        if not done:
            result.error = f"not finished after {args.limit:.0f} s: {result.extra['states']}"
        settle(result, ds, moto_url, done)
    return result


def commit_of(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"],
                          capture_output=True, text=True)  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return done.stdout.strip() + (" (dirty)" if dirty else "")


# -- versions, the run, the table ----------------------------------------------------------------


def versions(venv: Path) -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else ""

    boto = [str(venv / "python"), "-c", "import boto3, s3transfer; print(boto3.__version__, "
            "s3transfer.__version__)"]  # fmt: skip
    return {
        "awscli": first_line([str(venv / "aws"), "--version"]),
        "boto3 s3transfer": first_line(boto),
        "s5cmd": first_line([str(venv / "s5cmd"), "version"]),
        "rclone": first_line([str(venv / "rclone"), "version"]),
        "iperf3": first_line(["iperf3", "--version"]),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "kernel": os.uname().release,
    }


def parse_variant(spec: str) -> Vod2s3Variant:
    """``LABEL=TREE:KEY=VALUE,KEY=VALUE`` (TREE: before or after)."""
    label, rest = spec.split("=", 1)
    tree, _, pairs = rest.partition(":")
    if tree not in ("before", "after"):
        raise argparse.ArgumentTypeError(f"{spec}: the tree is 'before' or 'after'")
    env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    return Vod2s3Variant(label, tree, env)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditions", default="B", help="comma-separated: A, B, C")
    parser.add_argument("--datasets", default="1g", help="comma-separated: 1g, 20x50m")
    parser.add_argument(
        "--tools",
        default="iperf64,iperf1,before,after,awscli,boto3,s5cmd,rclone",
        help="iperf64, iperf1, before, after, awscli, boto3, s5cmd, rclone, variant labels",
    )
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    parser.add_argument("--before-src", type=Path, default=ROOT)
    parser.add_argument("--after-src", type=Path, default=None)
    parser.add_argument("--peers-venv", type=Path, default=Path("/work/peers-venv"))
    parser.add_argument("--limit", type=float, default=180.0, help="seconds per transfer")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vod2s3-wan/work"))
    parser.add_argument("--out", type=Path, required=True, help="JSON results (appended to)")
    parser.add_argument("--keep-shaping", action="store_true", help="no 'wan.sh down' at the end")
    return parser.parse_args(argv)


def warm(ds: Dataset, storage: Path) -> None:
    """Read the files once, so that every tool starts with them in the page cache."""
    for path in ds.files(storage):
        with path.open("rb") as handle:
            while handle.read(16 * MIB):
                pass


def measure(tool: str, cond: str, ds: Dataset, args: argparse.Namespace, run: Path) -> Result:
    warm(ds, args.workdir / "storage")
    variants = {v.label: v for v in args.variant}
    variants.setdefault("before", Vod2s3Variant("before", "before", {}))
    variants.setdefault("after", Vod2s3Variant("after", "after", {}))
    if tool in ("iperf64", "iperf1"):
        return measure_iperf(int(tool.removeprefix("iperf")), cond, args, run)
    if tool in variants:
        return measure_vod2s3(variants[tool], cond, ds, args, run)
    return measure_peer(tool, cond, ds, args, run)


def link_percent(results: list[dict[str, Any]]) -> None:
    """Each result's share of the 64-stream link measured in the same condition."""
    links = {r["condition"]: r["mb_per_s"] for r in results if r["tool"] == "iperf3 -P 64"}
    for r in results:
        link = links.get(r["condition"])
        rate = r["mb_per_s"] if r["finished"] else r["received_mb_per_s"]
        r["percent_of_link"] = round(100 * rate / link, 1) if link and rate else None


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| cond | dataset | tool | wall s | MB/s | % of link | busy max / median | peak RSS MiB |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        if r["finished"]:
            wall, rate = f"{r['wall_s']:.1f}", f"{r['mb_per_s']:.1f}"
        else:
            wall = f"> {r['wall_s']:.0f} (not finished)"
            rate = f"({r['received_mb_per_s']} reached)"
        pct = "" if r.get("percent_of_link") is None else f"{r['percent_of_link']:.0f}"
        rss = "" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
        busy = f"{r['busy_max']} / {r['busy_median']:g}"
        lines.append(f"| {r['condition']} | {r['dataset']} | {r['tool']} | {wall} | {rate} | "
                     f"{pct} | {busy} | {rss} |")  # fmt: skip
    return "\n".join(lines)


def run_one(
    tool: str, cond: str, ds: Dataset, args: argparse.Namespace, stamp: str
) -> dict[str, Any]:
    """One measurement as a JSON row; a failure is recorded in it, and the run goes on."""
    run = args.workdir / "runs" / stamp / f"{cond}-{ds.name}-{tool}"
    run.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        result = measure(tool, cond, ds, args, run)
    except Exception as error:
        result = Result(cond, ds.name, tool, error=f"{type(error).__name__}: {error}")
    row = asdict(result) | {"started": started, "rundir": str(run)}
    shown = ("condition", "dataset", "tool", "finished", "wall_s", "mb_per_s",
             "received_mb_per_s", "busy_max", "busy_median", "peak_rss_mib", "error")  # fmt: skip
    log(json.dumps({k: row[k] for k in shown}))
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not in_namespace():
        sys.exit(f"run inside the namespace: ip netns exec {NAMESPACE} {' '.join(sys.argv)}")
    tools = args.tools.split(",")
    if "after" in tools and args.after_src is None:
        sys.exit("--after-src is required for 'after'")
    datasets = [DATASETS[name] for name in args.datasets.split(",")]
    for ds in datasets:
        for path in ds.files(args.workdir / "storage"):
            make_source(path, ds.size)
    saved: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    saved.setdefault("results", [])
    saved["versions"] = versions(args.peers_venv / "bin")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        for cond in args.conditions.split(","):
            shape(CONDITIONS[cond])
            log(f"condition {cond}: {CONDITIONS[cond]}")
            for ds in datasets:
                for tool in tools:
                    if tool.startswith("iperf") and ds is not datasets[0]:
                        continue
                    saved["results"].append(run_one(tool, cond, ds, args, stamp))
                    link_percent(saved["results"])
                    args.out.write_text(json.dumps(saved, indent=2))
    finally:
        if not args.keep_shaping:
            wan("down")
    print(markdown(saved["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
