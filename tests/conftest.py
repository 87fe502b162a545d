"""Fixtures shared by every suite: a real moto S3 server over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.databases import KINDS, database_url
from tests.helpers import moto_server_process
from tests.netguard import network_guard  # noqa: F401  (a fixture for any test module)
from tests.service import RunningService, make_settings, running_service

# boto3 must never find real credentials or config on a developer's machine.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One HTTP client per test module: the API's keep-alive connections are reused."""
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with moto_server_process(log) as endpoint:
        yield endpoint


@pytest.fixture
def s3_endpoint(moto_endpoint: str) -> str:
    """The moto endpoint, emptied before the test."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return moto_endpoint


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    s3_client.create_bucket(Bucket="videos")
    return "videos"


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    (root / "sestore1" / "jb").mkdir(parents=True)
    (root / "sestore2").mkdir()
    return root


@pytest.fixture
def service(tmp_path: Path, s3_endpoint: str) -> Iterator[RunningService]:
    """A running API on 127.0.0.1 with a fresh SQLite database; S3 is the moto server."""
    with running_service(make_settings(tmp_path), s3_endpoint) as running:
        yield running


@pytest.fixture(params=KINDS)
def service_on_each_database(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
) -> Iterator[RunningService]:
    """The running API on SQLite, then on a fresh PostgreSQL database."""
    with (
        database_url(str(request.param), tmp_path) as url,
        running_service(make_settings(tmp_path, database_url=url), s3_endpoint) as running,
    ):
        yield running
