"""Backups of the database and their restore (docs/deployment.md "Backups and restore").

SQLite: SQLite's online backup API, consistent while the service writes. PostgreSQL:
pg_dump's custom format, restored by pg_restore. A backup holds the stored secrets
encrypted with the master key, never the key itself: it is kept apart, so that a copy of
the backup alone discloses no secret."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, make_url, select

from vod2s3.errors import ConfigurationError, Conflict
from vod2s3.store import migrate
from vod2s3.store.db import transaction
from vod2s3.store.records import counts_by_state
from vod2s3.store.schema import accounts

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"


@dataclass(frozen=True)
class Contents:
    revision: str | None
    accounts: int
    uploads_by_state: dict[str, int]

    def describe(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.uploads_by_state.items()))
        return (
            f"schema revision {self.revision or 'none'}, {self.accounts} accounts, "
            f"{sum(self.uploads_by_state.values())} uploads ({states or 'none'})"
        )


def contents(engine: Engine) -> Contents:
    with transaction(engine) as conn:
        count = conn.execute(select(func.count()).select_from(accounts)).scalar_one()
        states = counts_by_state(conn)
    return Contents(migrate.current_revision(engine), int(count), states)


def sqlite_file_contents(path: Path) -> Contents:
    """What a SQLite backup holds, read without changing it (make_engine would switch it
    to WAL)."""
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        return contents(engine)
    finally:
        engine.dispose()


@contextmanager
def _written_whole(target: Path) -> Iterator[Path]:
    """A private temporary file beside ``target``, renamed to it once complete: a backup
    cut short never passes for a whole one."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def refuse_existing(target: Path, what: str, option: str) -> None:
    if target.exists():
        raise Conflict(f"{target} exists already: choose a new {what}, or give {option}")


def backup_sqlite(database: Path, target: Path) -> None:
    if not database.is_file():
        raise ConfigurationError(f"The SQLite database {database} does not exist")
    with _written_whole(target) as temporary:
        source = sqlite3.connect(database, timeout=30)
        copy = sqlite3.connect(temporary)
        try:
            source.backup(copy)
            # One self-contained file, whatever the source's journal mode (WAL).
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
            source.close()


def restore_sqlite(backup: Path, database: Path, replace: bool) -> None:
    """The backup copied to ``database``; an existing database is replaced only when
    ``replace`` (every vod2s3 process on it must be stopped first)."""
    if not replace:
        refuse_existing(database, "VOD2S3_DATABASE_URL", "--replace (with every vod2s3 stopped)")
    with _written_whole(database) as temporary:
        source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        copy = sqlite3.connect(temporary)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    # The replaced database's write-ahead log would otherwise be replayed onto the copy.
    for leftover in ("-wal", "-shm"):
        database.with_name(database.name + leftover).unlink(missing_ok=True)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """``url`` as pg_dump and pg_restore read it, and their environment: the password goes
    in PGPASSWORD, not on a command line that `ps` shows."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_pg_tool(tool: str, args: list[str], url: str) -> None:
    binary = shutil.which(tool)
    if binary is None:
        raise ConfigurationError(
            f"{tool} is not installed: install PostgreSQL's client tools (Debian: "
            f"`apt install postgresql-client`), of the server's major version or newer"
        )
    libpq_url, env = _libpq(url)
    done = subprocess.run(
        [binary, *args, f"--dbname={libpq_url}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = "\n".join(done.stderr.strip().splitlines()[:5]) or f"exit status {done.returncode}"
        raise ConfigurationError(f"{tool} failed: {reason}")


def backup_postgres(url: str, target: Path) -> None:
    with _written_whole(target) as temporary:
        _run_pg_tool("pg_dump", ["--format=custom", f"--file={temporary}"], url)


def restore_postgres(backup: Path, url: str, has_schema: bool, replace: bool) -> None:
    """pg_restore into the database of ``url``: an empty one, or one whose objects are
    dropped first when ``replace``."""
    if has_schema and not replace:
        raise Conflict(
            "The database of VOD2S3_DATABASE_URL has a vod2s3 schema already: restore into "
            "a new empty database (createdb), or give --replace (with every vod2s3 stopped)"
        )
    args = ["--no-owner", "--exit-on-error", "--single-transaction"]
    if replace:
        args += ["--clean", "--if-exists"]
    _run_pg_tool("pg_restore", [*args, str(backup)], url)


def backup_kind(backup: Path) -> str:
    """ "sqlite" or "postgresql": what made ``backup``."""
    try:
        with backup.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as error:
        raise ConfigurationError(f"Cannot read {backup}: {error.strerror}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    raise ConfigurationError(
        f"{backup} is not a vod2s3 backup: neither a SQLite database nor a pg_dump "
        "custom-format archive (`vod2s3 backup --to FILE` makes one)"
    )
