"""The light client's distribution (client/pyproject.toml), installed as a customer would,
into a fresh virtualenv that holds only it and the dependencies it declares: its command
works against a running API, and none of the server's dependencies is there to import.

Offline: the wheel is built without build isolation or an index, and the dependencies are
copied, with their own dependencies, from the environment running the tests."""

from __future__ import annotations

import email
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.integration.test_client_cli import client_env
from tests.service import RunningService
from tests.unit.test_packaging import SERVER_ONLY

REPO = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]


def checked(command: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(work: Path) -> Path:
    """The client's wheel, built from a copy of client/ and src/ (the build writes next to
    its sources, and the checkout stays as it is)."""
    shutil.copytree(REPO / "client", work / "client")
    shutil.copytree(
        REPO / "src", work / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    wheels = work / "wheels"
    checked(
        [
            *PIP,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(wheels),
            str(work / "client"),
        ]
    )
    (wheel,) = wheels.glob("vod2s3_client-*.whl")
    return wheel


def declared_dependencies(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        fields = email.message_from_bytes(archive.read(name))
    return [Requirement(text) for text in fields.get_all("Requires-Dist") or []]


def with_their_dependencies(wanted: list[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions these requirements need, transitively (no extras)."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(wanted)
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = metadata.distribution(name)
        pending.extend(Requirement(text) for text in found[name].requires or [])
    return list(found.values())


def copy_into(venv: Path, distributions: list[metadata.Distribution]) -> None:
    """Each distribution's files under site-packages (its scripts are not needed)."""
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    for distribution in distributions:
        for file in distribution.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(distribution.locate_file(file))), target)


def test_the_client_distribution_runs_without_the_server(
    service: RunningService, bucket: str, tmp_path: Path
) -> None:
    issued = service.add_account(158, "jb")
    service.client(issued).upload(
        service.write_source("sestore1/jb/a.mp4", b"v"), bucket, "private"
    )
    wheel = build_wheel(tmp_path)
    names = {canonicalize_name(r.name) for r in declared_dependencies(wheel)}
    assert names == {"click", "httpx", "rich"}

    venv = tmp_path / "venv"
    checked([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    checked(
        [
            *PIP,
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    copy_into(venv, with_their_dependencies(declared_dependencies(wheel)))

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
