"""`vod2s3 serve --dev` as a newcomer runs it: a fresh folder, no settings, then the client CLI
from another "terminal" with the values the banner gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_http
from vod2s3 import devmode

VOD2S3 = str(Path(sys.executable).parent / "vod2s3")


def _newcomer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    # Output goes to a file, as under a process manager: the banner must still get there.
    env.pop("PYTHONUNBUFFERED", None)
    return env


@dataclass
class DevServer:
    proc: subprocess.Popen[bytes]
    url: str
    folder: Path
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def stop(self, sig: int, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _start(folder: Path) -> DevServer:
    port = free_port()
    out, err = folder / "serve.out", folder / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [VOD2S3, "serve", "--dev", "--port", str(port)],
            cwd=folder,
            env=_newcomer_env(),
            stdout=stdout,
            stderr=stderr,
        )
    server = DevServer(proc, f"http://127.0.0.1:{port}/stable/", folder, out, err)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
    except RuntimeError as error:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"{error}\n{server.output()}") from None
    return server


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    folder = tmp_path / "newcomer"
    folder.mkdir()
    server = _start(folder)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL)


def _client(server: DevServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = _newcomer_env()
    env.update(
        VOD2S3_URL=server.url,
        VOD2S3_CDN=str(devmode.DEMO_CDN),
        VOD2S3_API_KEY=devmode.DEMO_API_KEY,
        VOD2S3_SECRET=devmode.DEMO_SECRET,
    )
    return subprocess.run(
        [VOD2S3, "client", *args],
        cwd=server.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_mode_gives_a_complete_loop(dev_server: DevServer) -> None:
    banner = dev_server.stdout.read_text()
    assert dev_server.url in banner, dev_server.output()
    assert devmode.DEMO_API_KEY in banner
    assert devmode.DEMO_SECRET in banner
    assert "client upload" in banner
    assert devmode.SAMPLE_PATH in banner
    assert "Traceback" not in dev_server.output()
    # Everything lives in dev mode's own folder in the working folder: nothing else to set
    # up, and nothing in the files a plain `vod2s3 serve` here would use.
    home = dev_server.folder / devmode.DEV_FOLDER
    assert (home / "storage" / devmode.SAMPLE_PATH).is_file()
    assert (home / "vod2s3.db").is_file()
    assert not (dev_server.folder / "vod2s3.db").exists()
    assert not (dev_server.folder / "storage").exists()

    uploaded = _client(
        dev_server,
        "upload",
        devmode.SAMPLE_PATH,
        "--bucket",
        devmode.DEMO_BUCKET,
        "--acl",
        "private",
        "--wait",
        "--json",
    )
    assert uploaded.returncode == 0, uploaded.stderr + dev_server.output()
    record = json.loads(uploaded.stdout)
    assert record["state"] == "completed", record
    assert record["message"] == "Successfully Uploaded to AWS"
    assert record["status"] == 200
    assert record["bytes_uploaded"] == devmode.SAMPLE_SIZE
    assert record["results"]["Bucket"] == devmode.DEMO_BUCKET
    assert record["results"]["Key"] == "sample.mp4"

    listed = _client(dev_server, "status", "--json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [r["id"] for r in records] == [record["id"]]
    assert records[0]["state"] == "completed"

    one = _client(dev_server, "status", "--id", str(record["id"]), "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["id"] == record["id"]

    table = _client(dev_server, "status")
    assert table.returncode == 0, table.stderr
    assert "completed" in table.stdout

    started = time.monotonic()
    code = dev_server.stop(signal.SIGTERM)
    assert time.monotonic() - started < 20
    assert code == 0, dev_server.output()
    assert "Traceback" not in dev_server.output()
    assert "stopped" in dev_server.stderr.read_text()  # the worker stopped, not killed


def test_dev_mode_restarts_in_the_same_folder_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "again"
    folder.mkdir()
    for _ in range(2):  # the second run finds the demo account and sample already there
        server = _start(folder)
        listed = _client(server, "status", "--json")
        assert listed.returncode == 0, listed.stderr + server.output()
        assert json.loads(listed.stdout) == []
        started = time.monotonic()
        code = server.stop(signal.SIGINT)
        assert time.monotonic() - started < 20
        assert code == 0, server.output()
        assert "Traceback" not in server.output()
        assert "stopped" in server.stderr.read_text()


def test_the_default_database_has_no_demo_account_after_dev_mode_ran(tmp_path: Path) -> None:
    folder = tmp_path / "after-dev"
    folder.mkdir()
    server = _start(folder)
    assert server.stop(signal.SIGTERM) == 0, server.output()
    env = _newcomer_env()
    env["VOD2S3_STORAGE_ROOT"] = str(folder / "storage")
    (folder / "storage").mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VOD2S3, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=60
        )

    assert run("db", "upgrade").returncode == 0
    listed = run("accounts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_serving_refuses_an_enabled_account_with_the_published_demo_key(tmp_path: Path) -> None:
    from vod2s3.config import Settings
    from vod2s3.runtime import Runtime
    from vod2s3.store import migrate

    env = _newcomer_env()
    env["VOD2S3_DATABASE_URL"] = f"sqlite:///{tmp_path / 'prod.db'}"
    env["VOD2S3_STORAGE_ROOT"] = str(tmp_path)
    runtime = Runtime.open(Settings.from_env(env))
    migrate.upgrade(runtime.engine)
    runtime.accounts.create(
        devmode.DEMO_CDN, "jb", api_key=devmode.DEMO_API_KEY, secret=devmode.DEMO_SECRET
    )
    runtime.close()
    port = str(free_port())

    for command in ("api", "serve"):
        refused = subprocess.run(
            [VOD2S3, command, "--port", port], env=env, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 1, refused.stderr
        assert "vod2s3 accounts disable --cdn 158" in refused.stderr
        assert "Traceback" not in refused.stderr
    disabled = subprocess.run(
        [VOD2S3, "accounts", "disable", "--cdn", "158"], env=env, capture_output=True, timeout=60
    )
    assert disabled.returncode == 0
    proc = subprocess.Popen(
        [VOD2S3, "api", "--port", port],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_dev_mode_listens_on_loopback_only(tmp_path: Path) -> None:
    refused = subprocess.run(
        [VOD2S3, "serve", "--dev", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        env=_newcomer_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "--dev listens on loopback only" in refused.stderr
