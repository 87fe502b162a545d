"""Where the queue reads the time: the database server's clock, never a worker's.

Leases, due times and the callback outbox's schedule are compared by SQL, against a "now"
that this module supplies. On PostgreSQL it is the server's own clock
(``statement_timestamp()`` in UTC), so workers and API processes on hosts whose clocks
disagree still agree on when a lease runs out. SQLite is one file on one host: every
process sharing it reads the same clock, so "now" is that clock, bound as a parameter
(SQLite has no date arithmetic on the text it stores).

Statements are built once per kind of time (their compiled forms are cached); each
execution binds the offsets it uses through :meth:`SqlTime.bind`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import ColumnElement, DateTime, Engine, Interval, bindparam, func, type_coerce

from vod2s3.clock import Clock

TimeKind = Literal["server", "process"]


class SqlTime(Protocol):
    @property
    def kind(self) -> TimeKind:
        """Statements are cached per kind: the SQL they contain differs."""
        ...

    def bind(self, **offsets: timedelta) -> dict[str, Any]:
        """The parameters one execution needs: "now", and now plus each named offset."""
        ...

    def local_now(self) -> datetime:
        """This process's reading, for what is only shown (never compared): log lines."""
        ...


_NOW = "sql_now"


def now_sql(kind: TimeKind) -> ColumnElement[datetime]:
    """ "Now" inside a statement of ``kind``."""
    if kind == "server":
        return type_coerce(func.timezone("UTC", func.statement_timestamp()), DateTime())
    return bindparam(_NOW, type_=DateTime())


def later_sql(kind: TimeKind, name: str) -> ColumnElement[datetime]:
    """Now plus the offset bound as ``name``."""
    if kind == "server":
        return now_sql(kind) + bindparam(name, type_=Interval())
    return bindparam(name, type_=DateTime())


class ServerTime:
    """PostgreSQL's clock: the only one every host sees alike."""

    kind: TimeKind = "server"

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def bind(self, **offsets: timedelta) -> dict[str, Any]:
        return dict(offsets)

    def local_now(self) -> datetime:
        return self._clock.now()


class ProcessTime:
    """This process's clock (injectable): SQLite's, and the tests' clock they move by hand."""

    kind: TimeKind = "process"

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def bind(self, **offsets: timedelta) -> dict[str, Any]:
        now = self._clock.now()
        return {_NOW: now, **{name: now + offset for name, offset in offsets.items()}}

    def local_now(self) -> datetime:
        return self._clock.now()


def sql_time_for(engine: Engine, clock: Clock) -> SqlTime:
    """The database server's clock where there can be several hosts (PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        return ServerTime(clock)
    return ProcessTime(clock)
