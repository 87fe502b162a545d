"""deploy/compose.yaml, as compose reads it (`docker-compose config`: the schema checked,
anchors and defaults resolved): PostgreSQL, the migration, one API, a worker per volume,
the storage mounted read-only and every secret from a file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import missing_requirement

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
VOD2S3_SECRETS = {
    "VOD2S3_DATABASE_URL_FILE": "database_url",
    "VOD2S3_MASTER_KEY_FILE": "master_key",
}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = shutil.which("docker-compose")
    if compose is None:
        missing_requirement("docker-compose is not installed: apt-get install docker-compose")
    done = subprocess.run(
        [compose, "--file", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert set(config["secrets"]) == {"postgres_password", *VOD2S3_SECRETS.values()}
    assert all(set(secret) == {"file"} for secret in config["secrets"].values())
    services: dict[str, Any] = config["services"]
    return services


def _vod2s3(services: dict[str, Any]) -> dict[str, Any]:
    return {name: spec for name, spec in services.items() if name != "postgres"}


def test_one_api_and_one_worker_per_volume_after_the_migration(services: dict[str, Any]) -> None:
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["api"]["command"][0] == "api"
    workers = {name: spec for name, spec in services.items() if name.startswith("worker-")}
    assert workers
    for name, spec in workers.items():
        volume = name.removeprefix("worker-")
        assert spec["command"][:3] == ["worker", "--volumes", volume]
        # Each worker sees its own volume only, and its health check asks its own port.
        assert [mount.split(":")[1] for mount in spec["volumes"]] == [f"/srv/storage/{volume}"]
        port = spec["command"][spec["command"].index("--metrics-port") + 1]
        assert spec["environment"]["HEALTHCHECK_URL"] == f"http://127.0.0.1:{port}/healthz"
    for name in ("api", *workers):
        wanted = {"migrate": {"condition": "service_completed_successfully"}}
        assert services[name]["depends_on"] == wanted, name


def test_the_storage_is_mounted_read_only(services: dict[str, Any]) -> None:
    for name, spec in _vod2s3(services).items():
        for mount in spec.get("volumes", []):
            assert mount.endswith(":ro"), f"{name} mounts {mount} writable"


def test_secrets_come_from_files_never_from_the_environment(services: dict[str, Any]) -> None:
    for name, spec in _vod2s3(services).items():
        environment = spec["environment"]
        mounted = {secret["source"] for secret in spec["secrets"]}
        for variable, secret in VOD2S3_SECRETS.items():
            assert environment[variable] == f"/run/secrets/{secret}", name
            assert secret in mounted, name
            assert variable.removesuffix("_FILE") not in environment, name
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
