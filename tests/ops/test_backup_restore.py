"""`vod2s3 backup` of a running instance with an upload in flight, `vod2s3 restore` into a
fresh database, and the service on it: every record is there, and the upload that was
running resumes once its lease expires. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.databases import KINDS, database_url
from tests.faultproxy import FaultProxy, Rule
from tests.service import (
    VOD2S3,
    make_settings,
    running_service,
    wait_until,
    worker_env,
    worker_process,
)
from vod2s3.client import Vod2s3Client

LEASE = "5"  # seconds: the restored in-flight upload is claimed again this soon


def vod2s3(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOD2S3, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def records(api: Vod2s3Client) -> dict[int, dict[str, Any]]:
    return {record["id"]: record for record in api.status(limit=100)}


@pytest.mark.parametrize("kind", KINDS)
def test_a_backup_taken_while_uploading_restores_and_its_uploads_finish(
    kind: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3_client: Any
) -> None:
    (tmp_path / "restored").mkdir()
    backup = tmp_path / "vod2s3.backup"
    # The account's S3 endpoint, kept in the backup, is this proxy: it outlives both.
    with FaultProxy(s3_endpoint) as proxy:
        with (
            database_url(kind, tmp_path) as url,
            running_service(make_settings(tmp_path, database_url=url), proxy.url) as service,
        ):
            issued = service.add_account(158, "jb", buckets=[bucket])
            api = service.client(issued)
            small = service.write_source("sestore1/jb/small.mp4", b"small video")
            big = service.write_source("sestore1/jb/big.mp4", os.urandom(30 * 1024 * 1024))
            env = worker_env(service, VOD2S3_LEASE_SECONDS=LEASE)
            done_id = api.upload(small, bucket, "private")["id"]
            log = tmp_path / "worker.log"
            with worker_process(env, log) as worker:
                wait_until(worker, log, lambda: api.get(done_id)["state"] == "completed")
                proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=2.0, times=-1))
                running_id = api.upload(big, bucket, "private")["id"]
                queued_id = api.upload(small, bucket, "private", destination_path="again.mp4")["id"]
                wait_until(worker, log, lambda: api.get(running_id)["bytes_uploaded"] > 0)

                backed_up = vod2s3(env, "backup", "--to", str(backup))
                worker.kill()  # the host is lost with the upload half done
            before = records(api)

            assert backed_up.returncode == 0, backed_up.stderr
            assert "1 accounts" in backed_up.stdout
            assert "3 uploads (1 completed, 1 queued, 1 uploading)" in backed_up.stdout
            assert "separately" in backed_up.stdout
            assert service.runtime.settings.master_key not in backup.read_bytes().decode("latin-1")
            assert before[running_id]["state"] == "uploading"
            accounts_before = [a.public_view() for a in service.runtime.accounts.all()]

        with database_url(kind, tmp_path / "restored") as restored_url:
            env = {**env, "VOD2S3_DATABASE_URL": restored_url}
            restored = vod2s3(env, "restore", "--from", str(backup))
            assert restored.returncode == 0, restored.stderr
            assert "decrypts every stored secret" in restored.stdout
            assert "resume once their lease expires" in restored.stdout

            settings = make_settings(
                tmp_path / "restored",
                database_url=restored_url,
                storage_root=tmp_path / "storage",
                master_key=env["VOD2S3_MASTER_KEY"],
            )
            proxy.clear()  # no slowness after the restore
            with running_service(settings, proxy.url) as again:
                assert [a.public_view() for a in again.runtime.accounts.all()] == accounts_before
                api = again.client(issued)  # the customer's keys work on the restored database
                after = records(api)
                assert after.keys() == before.keys()
                for upload_id, record in before.items():
                    assert after[upload_id]["state"] == record["state"]
                    assert after[upload_id]["path"] == record["path"]
                log = tmp_path / "restored-worker.log"
                with worker_process(env, log) as worker:
                    wait_until(
                        worker,
                        log,
                        lambda: all(r["state"] == "completed" for r in records(api).values()),
                    )

    keys = {
        item["Key"]: item["Size"] for item in s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    }
    assert keys == {"small.mp4": 11, "big.mp4": 30 * 1024 * 1024, "again.mp4": 11}
    assert queued_id in after


def test_restore_refuses_an_existing_database_and_a_foreign_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env["VOD2S3_DATABASE_URL"] = f"sqlite:///{tmp_path / 'vod2s3.db'}"
    assert vod2s3(env, "db", "upgrade").returncode == 0
    backup = tmp_path / "backup.db"
    assert vod2s3(env, "backup", "--to", str(backup)).returncode == 0

    again = vod2s3(env, "backup", "--to", str(backup))
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert "--overwrite" in again.stderr

    over = vod2s3(env, "restore", "--from", str(backup))
    assert over.returncode == 1
    assert "exists already" in over.stderr
    assert "--replace" in over.stderr

    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello")
    refused = vod2s3(env, "restore", "--from", str(foreign))
    assert refused.returncode == 1
    assert "is not a vod2s3 backup" in refused.stderr

    elsewhere = {**env, "VOD2S3_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    keyless = vod2s3(elsewhere, "restore", "--from", str(backup))
    assert keyless.returncode == 1
    assert "no master key is here" in keyless.stderr
    assert not (tmp_path / "fresh.master-key").exists()  # never made up: it would read nothing
    for done in (again, over, refused, keyless):
        assert "Traceback" not in done.stderr


@pytest.mark.postgres
def test_backup_without_pg_dump_says_what_to_install(tmp_path: Path) -> None:
    from tests.databases import postgres_database

    with postgres_database() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
        env |= {"VOD2S3_DATABASE_URL": url, "VOD2S3_MASTER_KEY": make_settings(tmp_path).master_key}
        assert vod2s3(env, "db", "upgrade").returncode == 0
        # Only the vod2s3 script's own folder on PATH: no pg_dump there.
        env["PATH"] = str(Path(VOD2S3).parent)
        done = vod2s3(env, "backup", "--to", str(tmp_path / "x.dump"))
    assert done.returncode == 1
    assert "pg_dump is not installed" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.dump").exists()
