"""The operator's command line (SPEC §7), run as real subprocesses of the installed script."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, wait_for_http
from tests.service import RunningService
from vod2s3.client import ClientError, Vod2s3Client
from vod2s3.config import Settings
from vod2s3.runtime import Runtime

VOD2S3 = str(Path(sys.executable).parent / "vod2s3")
AWS_SECRET = "aws-secret-Zq7xW1pLm3"  # a value that must never be stored in plain text


@dataclass
class Cli:
    env: dict[str, str]
    db_path: Path
    tmp: Path
    api_url: str = ""

    def run(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`vod2s3 ARGS` in the test's folder; ``stdin`` is typed in, ``env`` is added to
        the environment."""
        done = subprocess.run(
            [VOD2S3, *args],
            env={**self.env, **(env or {})},
            cwd=self.tmp,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"{args} exited {done.returncode}: {done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    db_path = tmp_path / "db.sqlite"
    env["VOD2S3_DATABASE_URL"] = f"sqlite:///{db_path}"
    env["VOD2S3_STORAGE_ROOT"] = str(tmp_path / "storage")
    (tmp_path / "storage" / "sestore1" / "jb").mkdir(parents=True)
    return Cli(env, db_path, tmp_path)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def api_server(cli: Cli) -> Iterator[subprocess.Popen[bytes]]:
    """`vod2s3 api` on a free port, after `db upgrade`; its /stable/ URL is in `cli.api_url`."""
    cli.run("db", "upgrade")
    port = free_port()
    log = (cli.tmp / "api.log").open("wb")
    proc = subprocess.Popen(
        [VOD2S3, "api", "--port", str(port)],
        env=cli.env,
        cwd=cli.tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=20, proc=proc)
        cli.api_url = f"http://127.0.0.1:{port}/stable/"
        yield proc
    finally:
        _stop(proc)
        log.close()


def _status_error(client: Vod2s3Client) -> ClientError:
    with pytest.raises(ClientError) as caught:
        client.call("aws.status")
    return caught.value


def test_accounts_lifecycle(cli: Cli) -> None:
    upgraded = cli.run("db", "upgrade")
    assert "revision" in upgraded.stdout

    key_file = cli.db_path.with_name("db.master-key")
    assert key_file.is_file(), list(cli.tmp.iterdir())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    created = cli.json("accounts", "create", "--cdn", "158", "--storage-user", "jb", "--json")
    assert set(created) == {"cdn", "storage_user", "api_key", "secret"}
    assert created["cdn"] == 158
    assert created["storage_user"] == "jb"
    assert len(created["api_key"]) >= 16
    assert len(created["secret"]) >= 32

    again = cli.run("accounts", "create", "--cdn", "158", "--storage-user", "jb", check=False)
    assert again.returncode == 1
    assert again.stdout == ""
    assert "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "158" in again.stderr

    cli.run(
        "accounts",
        "set-aws",
        "--cdn",
        "158",
        "--access-key-id",
        "AKIAEXAMPLE",
        "--secret-access-key",
        AWS_SECRET,
        "--region",
        "eu-west-1",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--buckets",
        "b1,b2",
    )

    listing = cli.run("accounts", "list", "--json")
    assert created["secret"] not in listing.stdout
    assert AWS_SECRET not in listing.stdout
    [account] = json.loads(listing.stdout)
    assert account["cdn"] == 158
    assert account["storage_user"] == "jb"
    assert account["api_key"] == created["api_key"]
    assert account["buckets"] == ["b1", "b2"]
    assert account["aws_region"] == "eu-west-1"
    assert account["disabled"] is False
    assert not any("secret" in key and "key_id" not in key for key in account), account

    text_listing = cli.run("accounts", "list")
    assert created["secret"] not in text_listing.stdout
    assert AWS_SECRET not in text_listing.stdout

    rotated = cli.json("accounts", "rotate-secret", "--cdn", "158", "--json", "--yes")
    assert len(rotated["secret"]) >= 32
    assert rotated["secret"] != created["secret"]
    assert rotated["cdn"] == 158


def test_secrets_rotate_disable_and_stay_encrypted(
    cli: Cli, api_server: subprocess.Popen[bytes]
) -> None:
    created = cli.json("accounts", "create", "--cdn", "158", "--storage-user", "jb", "--json")
    cli.run(
        "accounts",
        "set-aws",
        "--cdn",
        "158",
        "--access-key-id",
        "AKIAEXAMPLE",
        "--secret-access-key",
        AWS_SECRET,
    )
    first = created["secret"]
    second = cli.json("accounts", "rotate-secret", "--cdn", "158", "--json", "--yes")["secret"]

    def client(secret: str) -> Vod2s3Client:
        return Vod2s3Client(cli.api_url, 158, created["api_key"], secret, timeout=10)

    # Both secrets work during the grace period.
    assert client(first).call("aws.status")["status"] == "success"
    assert client(second).call("aws.status")["status"] == "success"

    rotated = cli.run("accounts", "rotate-secret", "--cdn", "158", "--grace-hours", "0", "--yes")
    third = rotated.stdout.split("new secret for cdn 158: ", 1)[1].split()[0]
    assert len(third) == 64
    assert client(third).call("aws.status")["status"] == "success"
    assert _status_error(client(second)).http_status == 401
    assert _status_error(client(first)).http_status == 401

    # A legacy client's account: its failures come with HTTP 200, its body says failure.
    cli.run("accounts", "set", "--cdn", "158", "--failure-status", "200", "--integrity", "md5")
    listed = cli.json("accounts", "list", "--json")[0]
    assert (listed["failure_status"], listed["integrity"]) == ("200", "md5")
    cli.run("accounts", "disable", "--cdn", "158")
    legacy = _status_error(client(third))
    assert (legacy.http_status, legacy.response["code"]) == (200, "0005"), legacy.message
    cli.run("accounts", "set", "--cdn", "158", "--failure-status", "default")
    disabled = _status_error(client(third))
    assert disabled.http_status == 403, disabled.message
    listed = cli.json("accounts", "list", "--json")
    assert listed[0]["disabled"] is True

    stored = b"".join(
        path.read_bytes()
        for path in cli.tmp.iterdir()
        if path.name.startswith("db.sqlite")  # the database and any -wal / -journal file
    )
    for secret in (first, second, third, AWS_SECRET):
        assert secret.encode() not in stored, "a secret is stored in plain text"
    assert created["api_key"].encode() in stored  # the check does read the real file

    assert _stop(api_server) == 0  # SIGTERM: a clean stop
    api_log = (cli.tmp / "api.log").read_text()
    for secret in (first, second, third, AWS_SECRET):
        assert secret not in api_log, "a secret was logged"


def test_api_without_schema_says_to_run_db_upgrade(cli: Cli) -> None:
    done = cli.run("api", "--port", str(free_port()), check=False)
    assert done.returncode == 1
    assert "db upgrade" in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_without_schema_says_to_run_db_upgrade(cli: Cli) -> None:
    done = cli.run("worker", check=False)
    assert done.returncode == 1
    assert "db upgrade" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_worker_stops_cleanly_on_signal(cli: Cli, sig: int) -> None:
    cli.run("db", "upgrade")
    log_path = cli.tmp / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [VOD2S3, "worker", "--concurrency", "1"],
            env={**cli.env, "VOD2S3_LOG_LEVEL": "INFO"},
            cwd=cli.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while "started" not in log_path.read_text():  # imported, database open, polling
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        started = time.monotonic()
        code = _stop(proc, sig, timeout=10)
    output = log_path.read_text()
    assert code == 0, output
    assert time.monotonic() - started < 10
    assert "Traceback" not in output
    assert "stopped" in output


@pytest.mark.parametrize(
    "args",
    [
        ("accounts", "create", "--cdn", "158", "--storage-user", "jb"),
        ("accounts", "list", "--json"),
        ("accounts", "rotate-secret", "--cdn", "158", "--yes"),
    ],
)
def test_accounts_before_db_upgrade_say_to_run_it(cli: Cli, args: tuple[str, ...]) -> None:
    done = cli.run(*args, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "db upgrade" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_unreachable_database_is_one_line_not_a_traceback(cli: Cli) -> None:
    from cryptography.fernet import Fernet

    cli.env["VOD2S3_DATABASE_URL"] = (
        f"postgresql://vod2s3:Pa55w0rdXyz@127.0.0.1:{free_port()}/vod2s3"
    )
    cli.env["VOD2S3_MASTER_KEY"] = Fernet.generate_key().decode()
    for args in (("db", "upgrade"), ("accounts", "list"), ("worker",)):
        done = cli.run(*args, check=False)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert "database" in done.stderr
        assert "Pa55w0rdXyz" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_client_upload_refuses_metadata_without_a_value(cli: Cli) -> None:
    done = cli.run(
        "client",
        "upload",
        "sestore1/jb/a.mp4",
        "--bucket",
        "videos",
        "--acl",
        "private",
        "--metadata",
        "title",
        "--url",
        f"http://127.0.0.1:{free_port()}/stable/",
        "--cdn",
        "158",
        "--api-key",
        "key",
        "--secret",
        "secret",
        check=False,
    )
    assert done.returncode == 2
    assert "KEY=VALUE" in done.stderr


@pytest.mark.parametrize("command", ["serve", "api"])
def test_port_in_use_is_one_line_before_starting(cli: Cli, command: str) -> None:
    import socket

    cli.run("db", "upgrade")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli.run(command, "--port", str(port), check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "--port" in done.stderr


def test_client_upload_sends_the_s3_options(
    service: RunningService, bucket: str, s3_client: Any
) -> None:
    issued = service.add_account(158, "jb")
    path = service.write_source("sestore1/jb/clip.mp4", b"video bytes")
    done = subprocess.run(
        [
            VOD2S3,
            "client",
            "upload",
            path,
            "--bucket",
            bucket,
            "--acl",
            "private",
            "--content-type",
            "video/x-test",
            "--cache-control",
            "max-age=60",
            "--storage-class",
            "STANDARD_IA",
            "--sse",
            "AES256",
            "--request-payer",
            "requester",
            "--url",
            service.url,
            "--cdn",
            "158",
            "--api-key",
            issued.api_key,
            "--secret",
            issued.secret,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "queued"
    service.drain()
    head = s3_client.head_object(Bucket=bucket, Key="clip.mp4")
    assert (head["ContentType"], head["CacheControl"]) == ("video/x-test", "max-age=60")
    assert (head["StorageClass"], head["ServerSideEncryption"]) == ("STANDARD_IA", "AES256")


def test_endpoint_options_are_checked_and_listed(cli: Cli, tmp_path: Path) -> None:
    cli.run("db", "upgrade")
    cli.run("accounts", "create", "--cdn", "158", "--storage-user", "jb")
    relative = cli.run("accounts", "set", "--cdn", "158", "--ca-bundle", "ca.pem", check=False)
    assert relative.returncode == 1
    assert "absolute path" in relative.stderr
    no_pem = tmp_path / "not-a-cert.txt"
    no_pem.write_text("hello")
    refused = cli.run("accounts", "set", "--cdn", "158", "--ca-bundle", str(no_pem), check=False)
    assert "holds no PEM certificate" in refused.stderr
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    cli.run(
        "accounts",
        "set",
        "--cdn",
        "158",
        "--ca-bundle",
        str(pem),
        "--addressing-style",
        "virtual",
        "--payload-signing",
        "on",
    )
    listed = cli.json("accounts", "list", "--json")[0]
    assert (listed["ca_bundle"], listed["addressing_style"], listed["payload_signing"]) == (
        str(pem),
        "virtual",
        "on",
    )
    cli.run("accounts", "set", "--cdn", "158", "--ca-bundle", "", "--addressing-style", "default")
    listed = cli.json("accounts", "list", "--json")[0]
    assert (listed["ca_bundle"], listed["addressing_style"]) == (None, None)


def test_a_master_key_file_others_can_read_is_refused_with_the_chmod(cli: Cli) -> None:
    cli.run("db", "upgrade")
    key_file = cli.db_path.with_name("db.master-key")
    key_file.chmod(0o644)

    done = cli.run("accounts", "list", check=False)

    assert done.returncode == 1
    assert f"chmod 600 {key_file}" in done.stderr
    assert "Traceback" not in done.stderr
    key_file.chmod(0o600)
    assert cli.run("accounts", "list").returncode == 0


@pytest.mark.parametrize("hours", ["-5", "100000", "nan"])
def test_rotate_secret_refuses_a_grace_period_that_is_a_mistake(cli: Cli, hours: str) -> None:
    cli.run("db", "upgrade")
    cli.run("accounts", "create", "--cdn", "158", "--storage-user", "jb")
    done = cli.run(
        "accounts", "rotate-secret", "--cdn", "158", "--grace-hours", hours, "--yes", check=False
    )
    assert done.returncode == 2, done.stderr
    assert "--grace-hours" in done.stderr
    assert "new secret" not in done.stdout


def test_rotate_secret_asks_first_unless_told_yes(cli: Cli) -> None:
    cli.run("db", "upgrade")
    cli.run("accounts", "create", "--cdn", "158", "--storage-user", "jb")
    declined = cli.run("accounts", "rotate-secret", "--cdn", "158", stdin="n\n", check=False)
    assert declined.returncode == 1
    assert "Issue a new secret for cdn 158?" in declined.stderr
    assert "new secret" not in declined.stdout
    accepted = cli.run("accounts", "rotate-secret", "--cdn", "158", stdin="y\n")
    assert "new secret for cdn 158" in accepted.stdout


def test_the_aws_secret_comes_from_stdin_a_file_or_the_environment(
    cli: Cli, tmp_path: Path
) -> None:
    cli.run("db", "upgrade")
    cli.run("accounts", "create", "--cdn", "158", "--storage-user", "jb")
    base = ("accounts", "set-aws", "--cdn", "158", "--access-key-id", "AKIAEXAMPLE")

    def stored_secret() -> str:
        runtime = Runtime.open(Settings.from_env(cli.env))
        try:
            return runtime.accounts.get(158).aws_secret_access_key(runtime.box)
        finally:
            runtime.close()

    cli.run(*base, "--secret-access-key", "-", stdin="from-stdin\n")
    assert stored_secret() == "from-stdin"
    secret_file = tmp_path / "aws-secret"
    secret_file.write_text("from-file\n")
    cli.run(*base, "--secret-access-key-file", str(secret_file))
    assert stored_secret() == "from-file"
    cli.run(*base, env={"VOD2S3_AWS_SECRET_ACCESS_KEY": "from-env"})
    assert stored_secret() == "from-env"
    missing = cli.run("accounts", "set-aws", "--cdn", "158", "--access-key-id", "AKIA", check=False)
    assert missing.returncode == 2
    assert "VOD2S3_AWS_SECRET_ACCESS_KEY" in missing.stderr


def test_workers_list_shows_running_workers_and_with_all_the_stopped_ones(cli: Cli) -> None:
    cli.run("db", "upgrade")
    proc = subprocess.Popen(
        [VOD2S3, "worker", "--volumes", "sestore1"],
        env=cli.env,
        cwd=cli.tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (running := cli.json("workers", "list", "--json")):
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (worker,) = running
        assert (worker["pid"], worker["volumes"], worker["uploads_held"]) == (
            proc.pid,
            ["sestore1"],
            0,
        )
        assert worker["stopped"] is None
        assert str(proc.pid) in cli.run("workers", "list").stdout  # the table
    finally:
        assert _stop(proc) == 0
    assert cli.json("workers", "list", "--json") == []
    (stopped,) = cli.json("workers", "list", "--all", "--json")
    assert (stopped["pid"], stopped["stop_reason"]) == (proc.pid, "stopped")


def test_version_is_the_installed_packages(cli: Cli) -> None:
    from importlib import metadata

    import vod2s3

    # One source: the metadata pip wrote is built from vod2s3.__version__ (pyproject.toml).
    assert metadata.version("vod2s3") == vod2s3.__version__
    assert cli.run("--version").stdout.strip() == f"vod2s3, version {vod2s3.__version__}"


def test_db_current_and_history(cli: Cli) -> None:
    from vod2s3.store import migrate
    from vod2s3.store.db import make_engine

    head = migrate.head_revision()
    previous = migrate.history()[1].id
    empty = cli.run("db", "current", "--check", check=False)
    assert empty.returncode == 1
    assert "no schema yet" in empty.stdout
    assert "vod2s3 db upgrade" in empty.stdout

    engine = make_engine(cli.env["VOD2S3_DATABASE_URL"])
    migrate.upgrade(engine, previous)
    engine.dispose()
    behind = cli.run("db", "current", "--check", check=False)
    assert behind.returncode == 1
    assert f"at revision {previous}, head is {head}" in behind.stdout
    listed = cli.json("db", "history", "--json")
    assert [r["revision"] for r in listed] == sorted((r["revision"] for r in listed), reverse=True)
    assert [r["revision"] for r in listed if r["current"]] == [previous]
    assert all(r["summary"] for r in listed)
    assert f"* {previous}  " in cli.run("db", "history").stdout

    cli.run("db", "upgrade")
    assert cli.json("db", "current", "--json") == {"revision": head, "head": head, "at_head": True}
    assert (
        cli.run("db", "current", "--check").stdout.strip() == f"database at revision {head} (head)"
    )
