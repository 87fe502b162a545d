"""/healthz says the process is up; /readyz says the database answers."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.service import make_settings, running_service
from vod2s3.jsonenc import php_json_encode


def test_healthz_and_readyz_when_all_is_well(tmp_path: Path, s3_endpoint: str) -> None:
    with running_service(make_settings(tmp_path), s3_endpoint) as service:
        assert httpx.get(f"{service.base_url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{service.base_url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}


def test_readyz_is_503_when_the_database_is_gone(tmp_path: Path, s3_endpoint: str) -> None:
    with running_service(make_settings(tmp_path), s3_endpoint) as service:
        api = service.client(service.add_account(158, "jb"))
        assert api.status() == []  # the request below is good: only the database will be gone
        database = tmp_path / "vod2s3.db"
        service.runtime.engine.dispose()
        # A folder where the database file was: SQLite can no longer open it.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        os.mkdir(database)

        ready = httpx.get(f"{service.base_url}/readyz")
        # Complete and signed, so it gets as far as looking up its API key in the database.
        signed = api.build_request("aws.status")
        status = httpx.post(service.url, data={"json": php_json_encode(signed)})
        healthy = httpx.get(f"{service.base_url}/healthz")

    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "failure"
    assert "database is unavailable" in body["message"]
    assert healthy.status_code == 200
    assert status.status_code == 503
    answer = status.json()
    assert answer["status"] == "failure"
    assert "database is unavailable" in answer["message"]
