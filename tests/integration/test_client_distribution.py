"""The light client's distribution (client/pyproject.toml), installed as a customer would,
into a fresh virtualenv that holds only it and the dependencies it declares: its command
works against a running API, and none of the server's dependencies is there to import.

Offline: the wheel is built without build isolation or an index, and the dependencies are
copied, with their own dependencies, from the environment running the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.distribution import build_wheel, checked, declared_dependencies, install_fresh
from tests.integration.test_client_cli import client_env
from tests.service import RunningService
from tests.unit.test_packaging import SERVER_ONLY


@pytest.mark.wheel
def test_the_client_distribution_runs_without_the_server(
    service: RunningService, bucket: str, tmp_path: Path
) -> None:
    issued = service.add_account(158, "jb")
    service.client(issued).upload(
        service.write_source("sestore1/jb/a.mp4", b"v"), bucket, "private"
    )
    wheel = build_wheel(tmp_path, "client", ("client", "src"), "vod2s3_client")
    names = {canonicalize_name(r.name) for r in declared_dependencies(wheel)}
    assert names == {"click", "httpx", "rich"}

    venv = tmp_path / "venv"
    python = str(install_fresh(wheel, venv))

    # Nothing of this checkout or of the test's environment: only the fresh venv.
    env = {k: v for k, v in client_env(service, issued).items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    client = str(venv / "bin" / "vod2s3-client")
    assert "upload" in checked([client, "--help"], env)
    listed = json.loads(checked([client, "status", "--json"], env))
    assert [record["path"] for record in listed] == ["sestore1/jb/a.mp4"]
    assert "sestore1/jb/a.mp4" in checked([client, "status"], env)

    absent = checked(
        [
            python,
            "-c",
            "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])",
            *SERVER_ONLY,
            "vod2s3.cli",
        ],
        env,
    )
    assert absent.strip() == "[]"
