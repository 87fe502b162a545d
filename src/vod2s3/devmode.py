"""`vod2s3 serve --dev`: a complete local loop with no AWS account — a local S3-compatible
endpoint (moto's server) on loopback, a demo account, a bucket and a sample video file."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import sys
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vod2s3.accounts import AccountStore
from vod2s3.config import Settings
from vod2s3.errors import ConfigurationError, Conflict
from vod2s3.runtime import Runtime

# The demo account uses the key and secret of the original aws.status documentation page,
# so that its PHP example runs unchanged against a dev server except for the URL.
DEMO_CDN = 158
DEMO_STORAGE_USER = "jb"
DEMO_API_KEY = "APX4GKLM0RKQLSP2FBO1ROPKSSW47DZE"
DEMO_SECRET = "8fc8c48da81e6a2a06a9556379bf798af508dc0792497c678b4c3532ba8b637f"  # noqa: S105 - public demo value
DEMO_BUCKET = "vod2s3-demo"
SAMPLE_PATH = "sestore1/jb/sample.mp4"
SAMPLE_SIZE = 24 * 1024 * 1024  # above the multipart threshold, so parts go in parallel
# Everything dev mode makes lives here, in the folder it is started from: its own SQLite
# database, master key and storage. The demo account, whose secret is published, can then
# never end up in a database a real `serve` or `api` uses.
DEV_FOLDER = ".vod2s3-dev"


def dev_settings(settings: Settings, folder: Path) -> Settings:
    """``settings`` with the database, master key and storage of dev mode's own folder."""
    home = folder.resolve() / DEV_FOLDER
    home.mkdir(mode=0o700, exist_ok=True)
    return replace(
        settings,
        database_url=f"sqlite:///{home / 'vod2s3.db'}",
        storage_root=home / "storage",
        master_key="",
    )


def require_loopback(host: str) -> None:
    """Dev mode serves a published secret: never beyond this machine."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(
            f"--dev listens on loopback only (127.0.0.1 or ::1), not {host}: its demo "
            "account's secret is public"
        )


def refuse_demo_account(accounts: AccountStore) -> None:
    """Outside dev mode, an enabled account with the published demo key is a hole."""
    for account in accounts.all():
        if account.api_key == DEMO_API_KEY and not account.disabled:
            raise ConfigurationError(
                f"Account cdn {account.cdn} uses the demo API key published in the README and "
                "the original docs: anyone can sign its requests. Disable it "
                f"(`vod2s3 accounts disable --cdn {account.cdn}`) before serving; dev mode "
                f"keeps its own database in {DEV_FOLDER}/"
            )


@dataclass
class LocalS3:
    endpoint: str
    server: Any

    def stop(self) -> None:
        self.server.stop()


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_local_s3() -> LocalS3:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise ConfigurationError(
            "Dev mode needs moto's server: pip install 'vod2s3[local-s3]'"
        ) from None
    port = _free_port()
    # Loopback only: moto's own default is every interface.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return LocalS3(endpoint=f"http://127.0.0.1:{port}", server=server)


def write_sample(storage_root: Path) -> Path:
    """A sample 'video' of deterministic bytes behind an MP4 file-type box."""
    path = storage_root / SAMPLE_PATH
    if path.exists() and path.stat().st_size == SAMPLE_SIZE:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    block = hashlib.sha256(b"vod2s3 sample").digest() * 2048  # 64 KiB
    with path.open("wb") as handle:
        handle.write(header)
        written = len(header)
        while written < SAMPLE_SIZE:
            chunk = block[: SAMPLE_SIZE - written]
            handle.write(chunk)
            written += len(chunk)
    return path


def prepare(runtime: Runtime, endpoint: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",  # noqa: S106 - moto accepts any credentials
    ).create_bucket(Bucket=DEMO_BUCKET)
    accounts = runtime.accounts
    with contextlib.suppress(Conflict):  # made by an earlier dev run
        accounts.create(DEMO_CDN, DEMO_STORAGE_USER, api_key=DEMO_API_KEY, secret=DEMO_SECRET)
    accounts.set_aws(
        DEMO_CDN, "demo", "demo", "us-east-1", endpoint_url=endpoint, buckets=[DEMO_BUCKET]
    )
    (runtime.settings.storage_root / "sestore2").mkdir(parents=True, exist_ok=True)
    write_sample(runtime.settings.storage_root)


def command_name() -> str:
    """How the user can run this program again: as typed if it was a path (`.venv/bin/vod2s3`
    under `make dev`), else the bare name found on PATH."""
    typed = sys.argv[0] if sys.argv else ""
    return typed if os.sep in typed else "vod2s3"


def banner(api_url: str, endpoint: str, runtime: Runtime) -> str:
    storage = runtime.settings.storage_root.resolve()
    vod2s3 = command_name()
    return f"""
vod2s3 is running in development mode.

  API            {api_url}
  local S3       {endpoint}  (moto; bucket '{DEMO_BUCKET}', kept in memory)
  storage        {storage}
  demo account   cdn {DEMO_CDN}, storage user '{DEMO_STORAGE_USER}',
                 api_key {DEMO_API_KEY}
                 secret  {DEMO_SECRET}
                 (the key and secret of the original aws.status docs: dev mode only)

Queue the sample file and watch it complete, from another terminal in this folder:

  export VOD2S3_URL={api_url} VOD2S3_CDN={DEMO_CDN} \\
         VOD2S3_API_KEY={DEMO_API_KEY} VOD2S3_SECRET={DEMO_SECRET}
  {vod2s3} client upload {SAMPLE_PATH} --bucket {DEMO_BUCKET} --acl private --wait
  {vod2s3} client status

Press Ctrl+C to stop.
"""
