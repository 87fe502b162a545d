"""Secrets read from files (`VOD2S3_*_FILE`), as a container receives them from compose's
`secrets:`; through the CLI as a subprocess, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.databases import KINDS, database_url
from tests.integration.test_cli import Cli, cli  # noqa: F401  (the `cli` fixture)
from vod2s3.config import Settings
from vod2s3.runtime import Runtime


def _secret_file(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    # A trailing newline, as `echo` and editors leave it: it is not part of the secret.
    path.write_text(value + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_database_url_and_master_key_come_from_files(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
    kind: str,
) -> None:
    key = Fernet.generate_key().decode()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    with database_url(kind, tmp_path) as url:
        del cli.env["VOD2S3_DATABASE_URL"]
        cli.env["VOD2S3_DATABASE_URL_FILE"] = str(_secret_file(secrets, "database_url", url))
        key_file = _secret_file(secrets, "master_key", key)
        key_file.chmod(0o600)  # a master key file others may read is refused (crypto.py)
        cli.env["VOD2S3_MASTER_KEY_FILE"] = str(key_file)

        cli.run("db", "upgrade")
        cli.run("accounts", "create", "--cdn", "7", "--storage-user", "jb")
        cli.run(
            "accounts", "set-aws", "--cdn", "7", "--access-key-id", "AKIDEXAMPLE",
            "--secret-access-key", "s3cr3t-from-a-file-key", "--buckets", "videos",
        )  # fmt: skip

        # The key from the file is the one that encrypted the stored secret: the same key
        # given directly decrypts it, and no key was generated beside a SQLite file.
        runtime = Runtime.open(
            Settings.from_env({"VOD2S3_DATABASE_URL": url, "VOD2S3_MASTER_KEY": key})
        )
        try:
            stored = runtime.accounts.get(7).aws_secret_access_key(runtime.box)
        finally:
            runtime.close()
        assert stored == "s3cr3t-from-a-file-key"
        assert not list(tmp_path.glob("*.master-key"))


def test_a_secret_given_twice_is_refused(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    key = Fernet.generate_key().decode()
    done = cli.run(
        "db",
        "upgrade",
        env={
            "VOD2S3_MASTER_KEY": key,
            "VOD2S3_MASTER_KEY_FILE": str(_secret_file(tmp_path, "master_key", key)),
        },
        check=False,
    )
    assert done.returncode == 1
    assert "Set VOD2S3_MASTER_KEY or VOD2S3_MASTER_KEY_FILE, not both" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_secret_file_is_named(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    missing = tmp_path / "no-such-secret"
    given = {"VOD2S3_DATABASE_URL": "", "VOD2S3_DATABASE_URL_FILE": str(missing)}
    done = cli.run("db", "upgrade", env=given, check=False)
    assert done.returncode == 1
    assert f"VOD2S3_DATABASE_URL_FILE: cannot read {missing}" in done.stderr
    assert "No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_empty_secret_file_is_refused(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    empty = _secret_file(tmp_path, "operator_token", "")
    done = cli.run("db", "upgrade", env={"VOD2S3_OPERATOR_TOKEN_FILE": str(empty)}, check=False)
    assert done.returncode == 1
    assert f"VOD2S3_OPERATOR_TOKEN_FILE: {empty} is empty" in done.stderr
    assert "Traceback" not in done.stderr
