"""`vod2s3 backup` and `vod2s3 restore` (vod2s3/backup.py), with the master key question
answered in their output: the key is never in the backup, and must be kept apart."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import Engine

from vod2s3.backup import (
    Contents,
    backup_kind,
    backup_postgres,
    backup_sqlite,
    contents,
    refuse_existing,
    restore_postgres,
    restore_sqlite,
    sqlite_file_contents,
)
from vod2s3.cli import _settings, friendly_errors
from vod2s3.config import Settings
from vod2s3.crypto import SecretBox, load_master_key
from vod2s3.errors import ConfigurationError
from vod2s3.runtime import master_key_file
from vod2s3.store import migrate
from vod2s3.store.db import make_engine
from vod2s3.store.secrets import StoredSecrets


def _key_source(settings: Settings) -> str:
    if settings.master_key:
        return "VOD2S3_MASTER_KEY (the service's environment)"
    return f"the master key file {master_key_file(settings)}"


@click.command()
@click.option("--to", "target", required=True, type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace FILE if it exists.")
@friendly_errors
def backup(target: Path, overwrite: bool) -> None:
    """Back up the database to FILE while the service runs (SQLite: the online backup
    API; PostgreSQL: pg_dump's custom format). The master key is not in it."""
    settings = _settings()
    if not overwrite:
        refuse_existing(target, "--to file", "--overwrite")
    engine = make_engine(settings.database_url)
    try:
        sqlite_path = settings.sqlite_path
        if sqlite_path is not None:
            backup_sqlite(sqlite_path, target)
            held = sqlite_file_contents(target)
        else:
            _require_schema_of(engine)
            held = contents(engine)  # read just before the dump: uploads may move on
            backup_postgres(settings.database_url, target)
    finally:
        engine.dispose()
    click.echo(f"backup written to {target}: {held.describe()}")
    click.echo(
        "The account secrets in it are encrypted with the master key, and useless without "
        f"it: back up {_key_source(settings)} separately, never beside this file."
    )


def _require_schema_of(engine: Engine) -> None:
    if migrate.current_revision(engine) is None:
        raise ConfigurationError("The database has no schema yet: nothing to back up")


@click.command()
@click.option("--from", "source", required=True, type=click.Path(path_type=Path))
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the existing database of VOD2S3_DATABASE_URL (stop every vod2s3 first).",
)
@friendly_errors
def restore(source: Path, replace: bool) -> None:
    """Restore a backup of `vod2s3 backup` into the database of VOD2S3_DATABASE_URL (a
    fresh one unless --replace), then check that the master key here decrypts it."""
    settings = _settings()
    kind = backup_kind(source)
    sqlite_path = settings.sqlite_path
    wanted = "sqlite" if settings.is_sqlite else "postgresql"
    if kind != wanted or (settings.is_sqlite and sqlite_path is None):
        raise ConfigurationError(
            f"{source} is a {kind} backup, and VOD2S3_DATABASE_URL is not a {kind} database "
            "file: restore it into the kind of database it came from"
        )
    if sqlite_path is not None:
        restore_sqlite(source, sqlite_path, replace)
    engine = make_engine(settings.database_url)
    try:
        if sqlite_path is None:
            has_schema = migrate.current_revision(engine) is not None
            restore_postgres(source, settings.database_url, has_schema, replace)
        restored = contents(engine)
        click.echo(f"restored from {source}: {restored.describe()}")
        _check_master_key(settings, StoredSecrets(engine), restored)
    finally:
        engine.dispose()


def _check_master_key(settings: Settings, secrets: StoredSecrets, restored: Contents) -> None:
    """Say whether the key here reads the restored secrets; never make one up (a new key
    would read none of them)."""
    key_file = master_key_file(settings)
    if not settings.master_key and (key_file is None or not key_file.exists()):
        raise ConfigurationError(
            "The database is restored, but no master key is here to decrypt its secrets: "
            f"restore the backed-up key to {_key_source(settings)} (chmod 600), or set "
            "VOD2S3_MASTER_KEY to it, before starting vod2s3 (a new key would decrypt none "
            "of them)"
        )
    box = SecretBox(load_master_key(settings.master_key, key_file, create=False))
    unreadable = [secret for secret in secrets.all() if not _decrypts(box, secret.token)]
    if unreadable:
        raise ConfigurationError(
            f"The database is restored, but {len(unreadable)} of its secrets do not decrypt "
            f"with {_key_source(settings)}: it is not the key of the backed-up database. "
            "Put the backed-up key there before starting vod2s3"
        )
    click.echo(f"master key checked: {_key_source(settings)} decrypts every stored secret")
    if restored.uploads_by_state.get("uploading"):
        click.echo(
            "Uploads that were running at the backup resume once their lease expires "
            "(VOD2S3_LEASE_SECONDS after the backup): start the workers as usual."
        )


def _decrypts(box: SecretBox, token: str) -> bool:
    try:
        box.decrypt(token)
    except ConfigurationError:
        return False
    return True
