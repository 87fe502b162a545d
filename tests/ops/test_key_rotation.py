"""`vod2s3 keys rotate` and `keys retire` as subprocesses while `vod2s3 api` and `vod2s3
worker` run, started with the old key file: the customer's signed requests still
authenticate and the worker still decrypts the AWS secret, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.databases import KINDS, database_url
from tests.helpers import free_port, wait_for_http
from tests.service import VOD2S3, stop_gracefully, wait_until
from vod2s3.client import Vod2s3Client


def vod2s3(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOD2S3, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def ok(env: dict[str, str], *args: str) -> str:
    done = vod2s3(env, *args)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


@contextmanager
def server(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([VOD2S3, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop_gracefully(proc)


def key_file_lines(key_file: Path) -> list[str]:
    return key_file.read_text().split()


@pytest.mark.parametrize("kind", KINDS)
def test_rotate_and_retire_while_the_api_and_a_worker_run(
    kind: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3_client: Any
) -> None:
    key_file = tmp_path / "master-key"
    first_key = Fernet.generate_key().decode()
    key_file.write_text(first_key + "\n")
    key_file.chmod(0o600)
    (tmp_path / "storage" / "sestore1" / "jb").mkdir(parents=True)
    with database_url(kind, tmp_path) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
        env |= {
            "VOD2S3_DATABASE_URL": url,
            "VOD2S3_MASTER_KEY_FILE": str(key_file),
            "VOD2S3_STORAGE_ROOT": str(tmp_path / "storage"),
            "VOD2S3_POLL_INTERVAL": "0.05",
            "VOD2S3_INTEGRITY": "crc32c",
        }
        ok(env, "db", "upgrade")
        issued = json.loads(
            ok(env, "accounts", "create", "--cdn", "158", "--storage-user", "jb", "--json")
        )
        ok(
            {**env, "VOD2S3_AWS_SECRET_ACCESS_KEY": "testing"},
            "accounts",
            "set-aws",
            "--cdn",
            "158",
            "--access-key-id",
            "testing",
            "--endpoint-url",
            s3_endpoint,
        )
        port = free_port()
        log = tmp_path / "servers.log"
        with (
            server(env, log, "api", "--port", str(port)) as api_proc,
            server(env, log, "worker") as worker,
        ):
            wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=api_proc)
            api = Vod2s3Client(
                f"http://127.0.0.1:{port}/stable/", 158, issued["api_key"], issued["secret"]
            )

            def upload_completes(name: str) -> None:
                path = tmp_path / "storage" / "sestore1" / "jb" / name
                path.write_bytes(b"video " + name.encode())
                upload_id = api.upload(f"sestore1/jb/{name}", bucket, "private")["id"]
                wait_until(worker, log, lambda: api.get(upload_id)["state"] == "completed")

            upload_completes("before.mp4")

            rotated = ok(env, "keys", "rotate")
            assert "2 keys" in rotated
            assert "2 stored secrets re-encrypted" in rotated  # the API secret and AWS's
            keys_now = key_file_lines(key_file)
            assert keys_now[1] == first_key
            assert oct(key_file.stat().st_mode & 0o777) == "0o600"
            # Both processes read the key file before the rotation: the new secrets are
            # encrypted with a key they learn by rereading it.
            upload_completes("rotated.mp4")

            retired = ok(env, "keys", "retire")
            assert "1 older keys dropped" in retired
            assert key_file_lines(key_file) == keys_now[:1]
            upload_completes("retired.mp4")
            assert "0 stored secrets need an older key" in ok(env, "keys", "status")

        assert api_proc.returncode == 0, log.read_text()[-3000:]
        assert worker.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    names = {item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert names == {"before.mp4", "rotated.mp4", "retired.mp4"}


def test_retire_before_the_reencryption_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env["VOD2S3_DATABASE_URL"] = f"sqlite:///{tmp_path / 'vod2s3.db'}"
    key_file = tmp_path / "vod2s3.master-key"
    ok(env, "db", "upgrade")
    ok(env, "accounts", "create", "--cdn", "158", "--storage-user", "jb")

    assert "2 keys" in ok(env, "keys", "rotate", "--add-only")
    two_keys = key_file.read_text()
    early = vod2s3(env, "keys", "retire")
    assert early.returncode == 1
    assert "1 stored secrets (accounts cdn 158) are still encrypted with an older key" in (
        early.stderr
    )
    assert "vod2s3 keys reencrypt" in early.stderr
    assert "Traceback" not in early.stderr
    assert key_file.read_text() == two_keys  # nothing dropped

    assert "1 stored secrets re-encrypted" in ok(env, "keys", "reencrypt")
    assert "1 older keys dropped" in ok(env, "keys", "retire")
    assert "holds one key: nothing to retire" in ok(env, "keys", "retire")
    assert ok(env, "accounts", "list", "--json")  # the account still reads


def test_keys_from_the_environment_cannot_be_rotated(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env["VOD2S3_DATABASE_URL"] = f"sqlite:///{tmp_path / 'vod2s3.db'}"
    env["VOD2S3_MASTER_KEY"] = Fernet.generate_key().decode()
    ok(env, "db", "upgrade")
    refused = vod2s3(env, "keys", "rotate")
    assert refused.returncode == 1
    assert "VOD2S3_MASTER_KEY, which running processes cannot reread" in refused.stderr
    assert "VOD2S3_MASTER_KEY_FILE" in refused.stderr

    both = vod2s3({**env, "VOD2S3_MASTER_KEY_FILE": str(tmp_path / "k")}, "keys", "rotate")
    assert both.returncode == 1
    assert "not both" in both.stderr
    missing = vod2s3(
        {**env, "VOD2S3_MASTER_KEY": "", "VOD2S3_MASTER_KEY_FILE": str(tmp_path / "k")},
        "keys",
        "status",
    )
    assert missing.returncode == 1
    assert f"The master key file {tmp_path / 'k'} does not exist" in missing.stderr
    assert not (tmp_path / "k").exists()  # a named key file is never made up
