"""The uplink budget through the real surface: `vod2s3 worker` subprocesses sending to moto
through the fault proxy, which notes when each piece of every request body arrives; the
operator's `accounts set` as a subprocess; the dashboard and the worker's /metrics over HTTP.

The measured bound is an upper bound only. Over any window of ``t`` seconds a capped sender
may deliver ``rate * t`` plus :data:`ALLOWANCE`: the limiter's burst (a tenth of a second at
the rate, at least 128 KiB), one 1 MiB chunk (a body hands over a chunk whole once it is
paid for), another in the sockets between the worker and the proxy, and 64 KiB of slack for
the proxy's read pieces.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faultproxy import FaultProxy
from tests.helpers import BytesSource, free_port
from tests.integration.test_cli import VOD2S3, Cli, cli  # noqa: F401  (the cli fixture)
from tests.service import (
    RunningService,
    make_settings,
    running_service,
    wait_until,
    worker_env,
    worker_process,
)
from vod2s3.bandwidth.bucket import capacity_for
from vod2s3.client import Vod2s3Client
from vod2s3.config import MiB
from vod2s3.s3 import S3Target, make_client
from vod2s3.s3.body import SEND_BLOCK, part_body

TOKEN = "operator-token-for-the-bandwidth-tests-0123"
CDN = 158
PATH = "sestore1/jb/budget/video.mp4"


def allowance(rate: float) -> float:
    return capacity_for(rate) + 2 * SEND_BLOCK + 64 * 1024


@dataclass
class Setup:
    service: RunningService
    api: Vod2s3Client
    proxy: FaultProxy
    bucket: str
    env: dict[str, str]
    log: Path

    def upload(self, size: int) -> int:
        self.service.write_source(PATH, os.urandom(size))
        return int(self.api.upload(PATH, self.bucket, "private")["id"])

    def operator(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`vod2s3 ARGS` on the service's database, as the operator types it."""
        return subprocess.run(
            [VOD2S3, *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )

    def received(self) -> int:
        """Request body bytes the proxy has received so far."""
        arrivals = self.proxy.body_bytes()
        return arrivals[-1][1] if arrivals else 0

    def dashboard(self) -> str:
        url = f"{self.service.base_url}/dashboard"
        response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        response.raise_for_status()
        return response.text


@pytest.fixture
def setup(tmp_path: Path, s3_endpoint: str, bucket: str) -> Iterator[Setup]:
    settings = make_settings(tmp_path, operator_token=TOKEN)
    with running_service(settings, s3_endpoint) as service, FaultProxy(s3_endpoint) as proxy:
        issued = service.add_account(CDN, "jb")
        service.runtime.accounts.set_aws(
            CDN, "testing", "testing", "us-east-1", endpoint_url=proxy.url
        )
        # A heartbeat every 2 s: the dashboard hears of the rates soon.
        env = worker_env(service, VOD2S3_LEASE_SECONDS="6")
        yield Setup(service, service.client(issued), proxy, bucket, env, tmp_path / "worker.log")


def most_over(arrivals: list[tuple[float, int]], rate: float) -> float:
    """The most bytes any window of the arrivals carried beyond ``rate`` times its length."""
    worst = 0.0
    for i, (began, before) in enumerate(arrivals):
        for ended, total in arrivals[i:]:
            worst = max(worst, (total - before) - rate * (ended - began))
    return worst


def sent_between(arrivals: list[tuple[float, int]], began: float, ended: float) -> int:
    inside = [total for at, total in arrivals if at <= ended]
    before = [total for at, total in arrivals if at <= began]
    return (inside[-1] if inside else 0) - (before[-1] if before else 0)


def test_a_capped_worker_never_sends_more_than_its_cap(setup: Setup) -> None:
    cap = 2 * MiB
    size = 12 * MiB
    upload_id = setup.upload(size)
    env = {**setup.env, "VOD2S3_MAX_BANDWIDTH": "2M"}
    with worker_process(env, setup.log) as proc:
        wait_until(proc, setup.log, lambda: setup.api.get(upload_id)["state"] == "completed")
        # The dashboard shows the worker's cap in force, from its heartbeat.
        wait_until(proc, setup.log, lambda: "2.0 MiB/s" in setup.dashboard())

    arrivals = setup.proxy.body_bytes()
    assert arrivals[-1][1] >= size
    assert most_over(arrivals, cap) <= allowance(cap)


def test_an_accounts_cap_changes_the_rate_of_a_running_upload(setup: Setup) -> None:
    fast, slow = 2 * MiB, 256 * 1024
    window = 3.0
    first = setup.operator("accounts", "set", "--cdn", str(CDN), "--max-bandwidth", "2M")
    assert first.returncode == 0, first.stderr
    setup.upload(40 * MiB)  # 20 s at the first cap: still running when the cap changes
    port = free_port()
    with worker_process(setup.env, setup.log, "--metrics-port", str(port)) as proc:
        wait_until(proc, setup.log, lambda: setup.received() >= 4 * MiB)
        changed = setup.operator("accounts", "set", "--cdn", str(CDN), "--max-bandwidth", "256k")
        changed_at = time.monotonic()
        assert changed.returncode == 0, changed.stderr
        assert "max bandwidth 256k" in changed.stdout

        def slowed() -> bool:
            now = time.monotonic()
            if now - changed_at < window:
                return False
            sent = sent_between(setup.proxy.body_bytes(), now - window, now)
            return sent <= slow * window + allowance(slow)

        wait_until(proc, setup.log, slowed)
        # The account cache's 5 s, the budget's 1 s refresh, the window, and slack.
        assert time.monotonic() - changed_at <= 5 + 1 + window + 4
        wait_until(proc, setup.log, lambda: 'id="uplink-158"' in setup.dashboard())
        uplink = setup.dashboard().split('id="uplink-158"', 1)[1].split("</tr>", 1)[0]
        assert "256.0 KiB/s" in uplink  # its own cap and its share of a worker without one
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text

    arrivals = setup.proxy.body_bytes()
    before = [(at, total) for at, total in arrivals if at <= changed_at]
    # It did run at the first cap (and no faster), so the drop is the new cap's doing.
    assert before[-1][1] - before[0][1] > slow * (before[-1][0] - before[0][0]) + allowance(slow)
    assert most_over(before, fast) <= allowance(fast)
    assert 'vod2s3_bandwidth_cap_bytes_per_second{cdn="158",scope="account"} 262144.0' in metrics
    assert 'vod2s3_account_sent_bytes_total{cdn="158"}' in metrics


def test_a_signed_body_is_paid_for_once(s3_endpoint: str, bucket: str) -> None:
    """A signed body is read to be hashed, then to be sent: only the sending is paid."""
    for signing in ("on", "off"):
        target = S3Target(
            access_key_id="testing",
            secret_access_key="testing",
            region="us-east-1",
            endpoint_url=s3_endpoint,
            addressing_style="path",
            ca_bundle="",
            payload_signing=signing,
        )
        client: Any = make_client(target, payload_signing=signing)
        paid: list[int] = []
        data = os.urandom(3 * SEND_BLOCK + 5)

        body = part_body(BytesSource(data), 0, len(data), paid.append)
        client.put_object(Bucket=bucket, Key="signed", Body=body)

        assert sum(paid) == len(data), signing


# -- bad values, refused with the accepted form ------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("fast", "'fast' is not a rate"),
        ("08:00,50M 07:00,10M", "'07:00,10M' comes out of order"),
        ("08:00,50M 08:00,10M", "'08:00,10M' comes twice"),
    ],
)
def test_a_bad_max_bandwidth_stops_the_worker_at_start_up(
    cli: Cli,  # noqa: F811
    value: str,
    says: str,
) -> None:
    cli.run("db", "upgrade")
    done = cli.run("worker", check=False, env={"VOD2S3_MAX_BANDWIDTH": value})

    assert done.returncode != 0
    assert says in done.stderr
    assert '"08:00,50M 19:00,10M 23:30,off"' in done.stderr  # the accepted form
    assert "Traceback" not in done.stderr


def test_accounts_set_max_bandwidth(cli: Cli) -> None:  # noqa: F811
    cli.run("db", "upgrade")
    cli.run("accounts", "create", "--cdn", "158", "--storage-user", "jb")

    saved = cli.run("accounts", "set", "--cdn", "158", "--max-bandwidth", "20M")
    assert "account cdn 158: max bandwidth 20M" in saved.stdout
    assert cli.json("accounts", "list", "--json")[0]["max_bandwidth"] == "20M"
    assert "20M" in cli.run("accounts", "list").stdout

    refused = cli.run(
        "accounts", "set", "--cdn", "158", "--max-bandwidth", "20 MB/s", "--storage-user", "x",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: --max-bandwidth: '20 MB/s' is not a rate; give ")
    assert "512k = 512 KiB/s" in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = cli.json("accounts", "list", "--json")[0]
    assert (listed["max_bandwidth"], listed["storage_user"]) == ("20M", "jb")  # nothing changed

    cli.run("accounts", "set", "--cdn", "158", "--max-bandwidth", "off")
    assert cli.json("accounts", "list", "--json")[0]["max_bandwidth"] == "off"
