"""S3 stores for the store suite: moto's server, and a real Ceph RADOS Gateway (Debian's
radosgw 16) over http and https, started once per session by ../shared/tools/ceph-rgw."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.helpers import missing_requirement

TOOLS = Path(__file__).resolve().parents[3] / "shared" / "tools" / "ceph-rgw"
STORES = ("moto", "rgw-http", "rgw-https")


@dataclass(frozen=True)
class Store:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    ca_bundle: str = ""  # for an https endpoint with a self-signed certificate

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            verify=self.ca_bundle or None,
            config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"vod2s3-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The RGW's settings (RGW_ENDPOINT, RGW_SSL_ENDPOINT, RGW_CA_BUNDLE, keys)."""
    start = TOOLS / "start-rgw.sh"
    if not start.is_file():
        missing_requirement(f"{start} is not here (shared/ beside the repository)")
    folder = tmp_path_factory.mktemp("rgw")
    done = subprocess.run(
        ["bash", str(start), "-d", str(folder)], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        missing_requirement(f"Ceph RGW did not start: {done.stderr.strip()[-800:]}")
    try:
        settings = dict(
            line.split("=", 1) for line in (folder / "env").read_text().split() if "=" in line
        )
        yield settings
    finally:
        subprocess.run(
            ["bash", str(TOOLS / "stop-rgw.sh"), "-d", str(folder), "--purge"],
            capture_output=True,
            timeout=120,
        )


def rgw_store(rgw: dict[str, str], https: bool) -> Store:
    return Store(
        "rgw-https" if https else "rgw-http",
        rgw["RGW_SSL_ENDPOINT"] if https else rgw["RGW_ENDPOINT"],
        rgw["RGW_ACCESS_KEY"],
        rgw["RGW_SECRET_KEY"],
        rgw["RGW_CA_BUNDLE"] if https else "",
    )


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, s3_endpoint: str) -> Store:
    if request.param == "moto":
        return Store("moto", s3_endpoint, "testing", "testing")
    return rgw_store(request.getfixturevalue("rgw"), https=request.param == "rgw-https")


@pytest.fixture
def rgw_http(rgw: dict[str, str]) -> Store:
    """RGW over plain http: the one store whose bodies a loopback proxy can see and that
    verifies checks (moto's server verifies none)."""
    return rgw_store(rgw, https=False)
