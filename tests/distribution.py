"""Building this checkout's distributions into wheels and installing them as a user would,
into a fresh virtualenv outside the checkout: offline, without build isolation or an index,
the dependencies copied, with their own, from the environment running the tests."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]


def checked(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(work: Path, project: str, copied: tuple[str, ...], name: str) -> Path:
    """The wheel of the project in ``project`` (a folder of the checkout, "." for the
    server), built from a copy of ``copied`` (the build writes next to its sources, and the
    checkout stays as it is)."""
    sources = work / "sources"
    for entry in copied:
        origin = REPO / entry
        if origin.is_dir():
            shutil.copytree(
                origin,
                sources / entry,
                ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"),
            )
        else:
            (sources / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, sources / entry)
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
            str(sources / project),
        ]
    )
    (wheel,) = wheels.glob(f"{name}-*.whl")
    return wheel


def declared_dependencies(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        fields = email.message_from_bytes(archive.read(name))
    return [Requirement(text) for text in fields.get_all("Requires-Dist") or []]


def with_their_dependencies(wanted: list[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions these requirements need, transitively, with the extras
    they ask for (psycopg[binary] brings psycopg-binary), not the optional ones."""
    found: dict[str, metadata.Distribution] = {}
    followed: set[tuple[str, str]] = set()
    pending = [(requirement, "") for requirement in wanted]
    while pending:
        requirement, extra = pending.pop()  # extra: the requirer's extra that asks for it
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in found:
            found[name] = metadata.distribution(name)
        for asked in ("", *sorted(requirement.extras)):
            if (name, asked) not in followed:
                followed.add((name, asked))
                pending.extend((Requirement(text), asked) for text in found[name].requires or [])
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


def install_fresh(wheel: Path, venv: Path) -> Path:
    """A new virtualenv holding only ``wheel`` and what it declares; returns its python."""
    checked([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    checked([*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    copy_into(venv, with_their_dependencies(declared_dependencies(wheel)))
    return python
