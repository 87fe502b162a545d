"""deploy/systemd's units pass `systemd-analyze verify` (Debian's systemd), in a root of
their own: the units installed where systemd looks, with systemd's own units beside them and
a stand-in for the vod2s3 they start (verify checks that ExecStart's binary exists)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import missing_requirement
from vod2s3.config import Settings

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
WORKER_INSTANCE = r"vod2s3-worker@sestore1\x2csestore2.service"  # systemd-escape's


def service_section(name: str) -> configparser.SectionProxy:
    # strict=False: a unit may repeat a key (SystemCallFilter=, ReadOnlyPaths=).
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser["Service"]


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing_requirement("systemd-analyze is not installed (Debian: apt install systemd)")
    return subprocess.run(
        [
            analyze,
            "verify",
            "--man=no",
            f"--root={root}",
            *(f"/etc/systemd/system/{u}" for u in units),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root holding the units, systemd's own units and the ExecStart binary."""
    shutil.copytree(SYSTEM_UNITS, tmp_path / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    installed = tmp_path / "etc" / "systemd" / "system"
    installed.mkdir(parents=True)
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, installed)
        binary = tmp_path / service_section(unit.name)["ExecStart"].split()[0].lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return tmp_path


def test_the_units_verify_cleanly(root: Path) -> None:
    done = verify(root, "vod2s3-api.service", WORKER_INSTANCE)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # not even a warning (an unknown key, say)


def test_verify_would_catch_a_mistake(root: Path) -> None:
    unit = root / "etc" / "systemd" / "system" / "vod2s3-api.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    done = verify(root, "vod2s3-api.service")
    assert "Unknown key 'NoNewPrivilege'" in done.stderr


def test_the_worker_template_runs_the_volumes_of_its_instance() -> None:
    assert service_section("vod2s3-worker@.service")["ExecStart"].endswith(
        "vod2s3 worker --volumes %I"
    )


@pytest.mark.parametrize("unit", ["vod2s3-api.service", "vod2s3-worker@.service"])
def test_hardening_and_graceful_stop(unit: str) -> None:
    service = service_section(unit)
    assert service["User"] == "vod2s3"
    assert service["EnvironmentFile"] == "/etc/vod2s3/vod2s3.env"
    assert service["StateDirectory"] == "vod2s3"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["ReadOnlyPaths"]  # the storage
    assert "ReadWritePaths" not in service  # only the state directory is written
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"


def test_a_stopping_worker_has_time_to_finish_its_part() -> None:
    """SIGTERM lets the part being sent finish (at most the S3 connect and read timeouts)
    and the callbacks in delivery end (their timeout): systemd must not kill it sooner."""
    defaults = Settings()
    stop = int(service_section("vod2s3-worker@.service")["TimeoutStopSec"])
    assert stop >= defaults.s3_connect_timeout + defaults.s3_read_timeout
    assert stop >= defaults.callback_timeout + 5
