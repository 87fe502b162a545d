"""Engine creation and translation of driver errors at the boundary."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite

from vod2s3.errors import DatabaseUnavailable

IDLE_IN_TRANSACTION_MS = 30_000


def dialect_insert(dialect: str) -> Callable[[Table], postgresql.Insert | sqlite.Insert]:
    """The dialect's own INSERT, which has ON CONFLICT (PostgreSQL and SQLite both spell it
    the same way; SQLAlchemy's generic insert has none). By name, so that statements built
    with it can be cached per dialect."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///…`` or ``postgresql://…`` with the settings each needs."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        _PROCESS_WRITE_LOCKS[engine] = threading.Lock()
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # psycopg 3 is the driver we ship; a bare postgresql:// URL would pick psycopg2.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        # A process frozen in the middle of a transaction (SIGSTOP, a VM stall) would keep
        # its row locks, and SKIP LOCKED claims would pass over its uploads for as long as
        # it stays frozen: the server ends such a transaction instead. Every transaction
        # of vod2s3 is a few statements long.
        connect_args={
            "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
        },
    )


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when transactions begin, so that BEGIN IMMEDIATE
    # below really takes the write lock at the start of every transaction.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL's usual setting: no fsync per commit, still consistent after a crash; a power cut
    # can lose the last commits, which for the part journal means re-sending a part.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Every transaction takes the write lock up front: SQLite then serialises writers
    # instead of failing one of them with "database is locked" at commit time.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


# Threads of one process queue for SQLite's write lock on a lock of their own first, which
# is handed over the moment it is free. SQLite's busy handler waits for a held lock by
# sleeping 1, 2, 5, 10, 15, 20, 25… ms between tries, so the API's and the worker's threads
# would otherwise doze while the lock sits free. Other processes sharing the file still
# meet the busy handler.
_PROCESS_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = (
    weakref.WeakKeyDictionary()
)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction; an unreachable database becomes :class:`DatabaseUnavailable`."""
    try:
        with _PROCESS_WRITE_LOCKS.get(engine) or nullcontext(), engine.begin() as conn:
            yield conn
    except exc.DBAPIError as error:
        if is_unavailable(error):
            raise DatabaseUnavailable(
                "The database is unavailable right now; try again in a few seconds"
            ) from error
        raise


_UNAVAILABLE_SIGNS = (
    "connect",
    "connection",
    "server closed",
    "terminating",
    "shutting down",
    "database is locked",
    "unable to open database",
    "disk i/o error",
)


def is_unavailable(error: exc.DBAPIError) -> bool:
    """Is the driver's error the database being out of reach (restarting, refusing
    connections, a broken connection, SQLite's file locked), rather than a statement's
    fault?"""
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    text = str(error.orig).lower()
    return any(sign in text for sign in _UNAVAILABLE_SIGNS)
