"""The service as an operator installs it (issue 16, item 1): `pip install` of the wheel
built from this checkout into a fresh virtualenv, then run from a folder outside the
checkout with a configuration file: `db upgrade`, `serve`, and a customer's upload that
completes on the S3 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

import vod2s3
from tests.distribution import REPO, build_wheel, checked, install_fresh
from tests.helpers import free_port, wait_for_http

# Read through importlib at run time, never from the source tree: the wheel must hold them.
PACKAGE_DATA = (
    "vod2s3/py.typed",
    "vod2s3/store/migrations/env.py",
    "vod2s3/store/migrations/script.py.mako",
    "vod2s3/store/migrations/versions/0001_initial.py",
)


@pytest.mark.wheel
def test_the_installed_wheel_runs_from_any_directory(
    tmp_path: Path, s3_endpoint: str, s3_client: Any, bucket: str
) -> None:
    wheel = build_wheel(
        tmp_path / "build", ".", ("pyproject.toml", "README.md", "LICENSE", "src"), "vod2s3"
    )
    assert wheel.name.startswith(f"vod2s3-{vod2s3.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        assert set(PACKAGE_DATA) <= set(archive.namelist())
    python = install_fresh(wheel, tmp_path / "venv")
    command = str(python.parent / "vod2s3")

    # Nothing of the checkout or of the test's environment: the venv and a config file.
    home = tmp_path / "srv"
    config = home / "etc" / "vod2s3.toml"
    config.parent.mkdir(parents=True)
    config.write_text('database_url = "sqlite:///state/vod2s3.db"\nstorage_root = "storage"\n')
    (home / "etc" / "state").mkdir()
    source = home / "etc" / "storage" / "sestore1" / "jb" / "a.mp4"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"video bytes " * 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOD2S3_", "PYTHON"))}
    env.update(PYTHONNOUSERSITE="1", VOD2S3_CONFIG=str(config), VOD2S3_POLL_INTERVAL="0.1")

    def run(*args: str, extra: dict[str, str] | None = None) -> str:
        return checked([command, *args], {**env, **(extra or {})}, cwd=home)

    imported = checked([str(python), "-c", "import vod2s3; print(vod2s3.__file__)"], env, home)
    assert Path(imported.strip()).is_relative_to(tmp_path / "venv")
    assert not Path(imported.strip()).is_relative_to(REPO)
    assert run("--version") == f"vod2s3, version {vod2s3.__version__}\n"

    assert "database at revision" in run("db", "upgrade")
    assert "(head)" in run("db", "current")
    issued = json.loads(run("accounts", "create", "--cdn", "158", "--storage-user", "jb", "--json"))
    run(
        "accounts", "set-aws", "--cdn", "158", "--access-key-id", "testing",
        "--endpoint-url", s3_endpoint, "--buckets", bucket,
        extra={"VOD2S3_AWS_SECRET_ACCESS_KEY": "testing"},
    )  # fmt: skip

    port = free_port()
    with (home / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [command, "serve", "--port", str(port)],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=server)
            customer = {
                "VOD2S3_URL": f"http://127.0.0.1:{port}/stable/",
                "VOD2S3_CDN": "158",
                "VOD2S3_API_KEY": issued["api_key"],
                "VOD2S3_SECRET": issued["secret"],
            }
            run("client", "upload", "sestore1/jb/a.mp4", "--bucket", bucket, "--acl",
                "private", "--wait", extra=customer)  # fmt: skip
            (record,) = json.loads(run("client", "status", "--json", extra=customer))
        finally:
            server.send_signal(signal.SIGTERM)
            stopped = server.wait(timeout=30)
    assert stopped == 0, (home / "serve.log").read_text()[-3000:]

    assert record["state"] == "completed"
    (stored,) = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert s3_client.get_object(Bucket=bucket, Key=stored["Key"])["Body"].read() == (
        source.read_bytes()
    )
    assert (home / "etc" / "state" / "vod2s3.db").is_file()  # relative to the config file
