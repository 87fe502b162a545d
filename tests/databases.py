"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database on 127.0.0.1:5432.

PostgreSQL must be reachable when CI=true; elsewhere its tests skip with a message saying
how to enable them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import missing_requirement

# Parameters for a test run on both databases (PostgreSQL's marked as such).
KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
ADMIN_URL = os.environ.get("VOD2S3_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
HOW_TO_ENABLE = (
    "PostgreSQL is not reachable at 127.0.0.1:5432: start the machine's PostgreSQL server "
    "(the tests never start, stop or restart it themselves) or point VOD2S3_TEST_POSTGRES "
    "at an admin URL to run the PostgreSQL tests"
)


def _admin_connection() -> object:
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        missing_requirement(f"{HOW_TO_ENABLE}: {error}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database; dropped afterwards. Yields its postgresql:// URL."""
    admin = _admin_connection()
    name = f"vod2s3_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'vod2s3.db'}"
    else:
        with postgres_database() as url:
            yield url
