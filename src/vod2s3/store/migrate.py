"""Schema creation and migration through Alembic, without an alembic.ini."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

# A package location, not a path: the migrations are found wherever vod2s3 is installed.
SCRIPT_LOCATION = "vod2s3.store:migrations"


def alembic_config(engine: Engine) -> Config:
    config = _scripts_config()
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def _scripts_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_scripts_config())


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(conn, "OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                if sqlite:
                    _refuse_broken_references(conn)
        finally:
            if sqlite:
                _sqlite_foreign_keys(conn, "ON")


def _sqlite_foreign_keys(conn: Connection, state: str) -> None:
    """SQLite rebuilds a table to alter it (copy, drop, rename): with foreign keys enforced,
    dropping `accounts` fails as soon as an upload refers to it, so a populated database
    could not be upgraded. The pragma is ignored inside a transaction: it goes to the
    driver's connection directly, before SQLAlchemy begins one."""
    conn.connection.dbapi_connection.execute(f"PRAGMA foreign_keys={state}")  # type: ignore[union-attr]


def _refuse_broken_references(conn: Connection) -> None:
    """What enforcement would have caught while it was off: nothing is committed if a
    migration left a row pointing nowhere."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"a migration left rows referring to missing rows: {broken[:5]}")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return _scripts().get_current_head()


@dataclass(frozen=True)
class Revision:
    id: str
    summary: str  # the first paragraph of the migration's docstring, on one line


def history() -> list[Revision]:
    """Every revision this version of vod2s3 knows, newest first."""
    return [
        Revision(script.revision, " ".join((script.doc or "").split()))
        for script in _scripts().walk_revisions()
    ]
