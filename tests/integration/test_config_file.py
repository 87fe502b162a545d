"""The configuration file (VOD2S3_CONFIG) and `vod2s3 config show`, through the command as a
subprocess: every setting from the file, the environment over it, paths relative to the
file, and every bad key or value refused with its name and what it accepts."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.integration.test_cli import Cli
from vod2s3.config_file import SETTING_NAMES

MASTER_KEY = Fernet.generate_key().decode()
PASSWORD = "Pa55w0rd-in-the-file"

# A value other than the default for every setting, as an operator would write it in TOML.
EVERY_SETTING: dict[str, Any] = {
    "address_rate_burst": 7,
    "address_rate_limit": 2.5,
    "allow_hard_links": True,
    "body_timeout": 12.5,
    "callback_allow": ["10.0.0.0/8"],
    "callback_timeout": 3.5,
    "connections_per_address": 9,
    "database_url": "sqlite:///state/vod2s3.db",
    "failure_http_status": 200,
    "header_timeout": 4.5,
    "integrity": "md5",
    "lease_seconds": 30,
    "log_format": "json",
    "log_level": "warning",
    "master_key": MASTER_KEY,
    "max_attempts": 3,
    "max_bandwidth": "08:00,50M 19:00,10M 23:30,off",
    "max_body_bytes": 2048,
    "max_connections": 100,
    "max_queued_per_account": 50,
    "metrics_token": "metrics-token-0123456789",
    "multipart_threshold": 8 * 1024 * 1024,
    "operator_token": "operator-token-0123456789",
    "part_size": 6 * 1024 * 1024,
    "parts_in_flight": 2,
    "parts_in_memory": 4,
    "payload_signing": "on",
    "poll_interval": 0.25,
    "rate_burst": 5,
    "rate_limit": 1.5,
    "retention_days": 30,
    "retry_base_delay": 0.5,
    "retry_max_delay": 60.0,
    "s3_connect_timeout": 2.0,
    "s3_max_connections": 16,
    "s3_max_connections_per_upload": 8,
    "s3_read_timeout": 20.0,
    "stall_seconds": 12.5,
    "storage_root": "videos",
    "timestamp_window": 120,
    "trusted_proxies": ["127.0.0.1", "::1"],
    "worker_concurrency": 2,
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, for these plain ASCII values
    return repr(value)


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key} = {toml_value(v)}\n" for key, v in settings.items()))
    return path


@pytest.fixture
def bare(tmp_path: Path) -> Cli:
    """`vod2s3` in tmp_path with no VOD2S3_ variable at all: the file alone configures it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    return Cli(env, tmp_path / "unused.db", tmp_path)


def show(cli: Cli, config: Path, **env: str) -> dict[str, Any]:
    done = cli.run("config", "show", "--json", env={"VOD2S3_CONFIG": str(config), **env})
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_every_setting_comes_from_the_file_and_paths_are_relative_to_it(bare: Cli) -> None:
    # master_key_file and master_key are refused together: the next test has the file.
    assert set(EVERY_SETTING) | {"master_key_file"} == set(SETTING_NAMES), (
        "a new setting: add it here"
    )
    folder = bare.tmp / "etc" / "vod2s3"
    config = write_config(folder / "vod2s3.toml", EVERY_SETTING)

    shown = show(bare, config)

    assert shown["file"] == str(config)
    settings = shown["settings"]
    assert {name: s["source"] for name, s in settings.items()} == {
        **dict.fromkeys(SETTING_NAMES, "file"),
        "master_key_file": "default",
    }
    expected = {
        **EVERY_SETTING,
        # Relative to the file, not to the working directory (bare.tmp).
        "database_url": f"sqlite:///{folder}/state/vod2s3.db",
        "storage_root": str(folder / "videos"),
        "callback_allow": ["10.0.0.0/8"],
        "trusted_proxies": ["127.0.0.1/32", "::1/128"],
        "failure_http_status": "200",
        "master_key": "***",
        "metrics_token": "***",
        "operator_token": "***",
    }
    assert {name: s["value"] for name, s in settings.items()} == {
        **expected,
        "master_key_file": None,
    }
    assert not any("resolves_to" in s for s in settings.values())


def test_the_master_key_file_is_relative_to_the_config_file(bare: Cli) -> None:
    folder = bare.tmp / "etc" / "vod2s3"
    config = write_config(folder / "vod2s3.toml", {"master_key_file": "keys/master-key"})

    shown = show(bare, config)["settings"]["master_key_file"]

    assert shown == {"value": str(folder / "keys" / "master-key"), "source": "file"}


def test_the_environment_overrides_the_file(bare: Cli) -> None:
    config = write_config(bare.tmp / "vod2s3.toml", {"timestamp_window": 120, "rate_burst": 5})

    settings = show(bare, config, VOD2S3_TIMESTAMP_WINDOW="60", VOD2S3_RATE_BURST=" ")["settings"]

    assert settings["timestamp_window"] == {"value": 60, "source": "environment"}
    # An empty variable is as if it were not set, as it always was.
    assert settings["rate_burst"] == {"value": 5, "source": "file"}
    assert settings["lease_seconds"] == {"value": 60, "source": "default"}


def test_the_service_uses_the_file_from_any_directory(bare: Cli) -> None:
    folder = bare.tmp / "etc"
    config = write_config(
        folder / "vod2s3.toml",
        {"database_url": "sqlite:///vod2s3.db", "storage_root": "storage"},
    )
    elsewhere = bare.tmp / "elsewhere"
    elsewhere.mkdir()
    env = {"VOD2S3_CONFIG": str(config)}

    Cli(bare.env, bare.db_path, elsewhere).run("db", "upgrade", env=env)

    assert (folder / "vod2s3.db").is_file()
    assert (folder / "vod2s3.master-key").is_file()  # beside the database, as always
    assert not list(elsewhere.iterdir())
    assert "(head)" in bare.run("db", "current", env=env).stdout


def test_config_show_masks_secrets(bare: Cli) -> None:
    config = write_config(
        bare.tmp / "vod2s3.toml",
        {
            "database_url": f"postgresql://vod2s3:{PASSWORD}@db.internal/vod2s3",
            "master_key": MASTER_KEY,
            "operator_token": "operator-token-0123456789",
        },
    )
    for args in (("config", "show"), ("config", "show", "--json")):
        done = bare.run(*args, env={"VOD2S3_CONFIG": str(config)})
        for secret in (PASSWORD, MASTER_KEY, "operator-token-0123456789"):
            assert secret not in done.stdout
        assert "postgresql://vod2s3:***@db.internal/vod2s3" in done.stdout


def test_defaults_say_where_they_resolve(bare: Cli) -> None:
    done = bare.run("config", "show")
    assert "configuration file: none" in done.stdout
    assert f"database_url is relative to the working directory: {bare.tmp}/vod2s3.db" in (
        done.stdout
    )
    settings = json.loads(bare.run("config", "show", "--json").stdout)["settings"]
    assert settings["storage_root"] == {
        "value": "storage",
        "source": "default",
        "resolves_to": str(bare.tmp / "storage"),
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('timestamp_window = "soon"', ["timestamp_window in ", "must be a whole number"]),
        ("timestamp_window = 0", ["timestamp_window in ", "must be at least 1"]),
        ("poll_interval = true", ["poll_interval in ", "must be a number"]),
        ('integrity = "crc64"', ["integrity in ", "must be one of auto, crc32c, md5, sha256"]),
        ('log_level = "loud"', ["log_level in ", "debug, info, warning, error, critical"]),
        ('trusted_proxies = ["nginx"]', ["trusted_proxies in ", "not a network such as"]),
        ("trusted_proxies = [1]", ["trusted_proxies in ", "must be an array of strings"]),
        ("timestamp_window = [1]", ["timestamp_window in ", "not a TOML list"]),
        ('operator_token = "short"', ["operator_token in ", "at least 16 characters"]),
        ('master_key = "not-a-key"', ["master_key in ", "Fernet.generate_key"]),
        ("timestamp_windw = 5", ["unknown setting 'timestamp_windw'", "'timestamp_window'?"]),
        ("VOD2S3_RATE_BURST = 5", ["unknown setting 'VOD2S3_RATE_BURST'", "'rate_burst'"]),
        ("[vod2s3]\nrate_burst = 5", ["[vod2s3] is a table", "at the top of the file"]),
        ("rate_burst = ", ["is not valid TOML", "line 1"]),
    ],
)
def test_a_bad_file_is_refused_with_the_key_and_what_it_accepts(
    bare: Cli, content: str, expected: list[str]
) -> None:
    config = bare.tmp / "vod2s3.toml"
    config.write_text(content + "\n")

    done = bare.run("config", "show", check=False, env={"VOD2S3_CONFIG": str(config)})

    assert done.returncode == 1
    assert str(config) in done.stderr
    for part in expected:
        assert part in done.stderr
    assert "Traceback" not in done.stderr
    # Named as the file's key, not as the environment variable it stands for.
    assert set(re.findall(r"VOD2S3_[A-Z][A-Z_]*", done.stderr)) <= {"VOD2S3_RATE_BURST"}


def test_a_bad_environment_value_is_still_named_as_the_variable(bare: Cli) -> None:
    config = write_config(bare.tmp / "vod2s3.toml", {"timestamp_window": 120})
    done = bare.run(
        "config",
        "show",
        check=False,
        env={"VOD2S3_CONFIG": str(config), "VOD2S3_TIMESTAMP_WINDOW": "soon"},
    )
    assert done.returncode == 1
    assert "VOD2S3_TIMESTAMP_WINDOW must be a whole number, got 'soon'" in done.stderr


def test_a_missing_file_is_said(bare: Cli) -> None:
    missing = bare.tmp / "etc" / "vod2s3.toml"
    done = bare.run("db", "current", check=False, env={"VOD2S3_CONFIG": str(missing)})
    assert done.returncode == 1
    assert f"VOD2S3_CONFIG names {missing}, which cannot be read" in done.stderr
