"""What a loop that polls the database says when the database goes away and comes back.

Every loop that reaches the database on its own schedule (the worker's claim loop, its
heartbeat and its cancel sweep, the callback deliverer, the queue depth read at each
metrics scrape) reports each round to an :class:`OutageLog` of its own. The loops retry
every second or faster, so logging each failure grew a worker's log by tens of kilobytes
of tracebacks during an 8 s restart and never said when the database was back. Instead:

- an expected outage (the server restarting, refusing connections, a broken connection,
  SQLite's file locked or unreadable) gives one WARNING when it starts, with the error's
  first line, and one INFO when a round succeeds again, with how long and how many rounds
  it lasted. The traceback goes to DEBUG only: it is the driver's, and says nothing new;
- any other error is a bug or a misconfiguration, so its traceback is logged at ERROR,
  but at most once a minute for the same kind of error, with the count of repeats left
  out: once a second for hours would bury everything else, and once for ever would let a
  rotated log hide that it is still happening.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import exc

from vod2s3.errors import DatabaseUnavailable
from vod2s3.store.db import is_unavailable

REPEAT_TRACEBACK_SECONDS = 60.0  # the least time between two tracebacks of one error kind
_SUMMARY_CHARS = 200


def is_outage(error: BaseException) -> bool:
    """Is ``error`` the database being unavailable (expected now and then), not a bug?"""
    if isinstance(error, DatabaseUnavailable):
        return True
    return isinstance(error, exc.DBAPIError) and is_unavailable(error)


def summary(error: BaseException) -> str:
    """One line naming the driver's error: ``OperationalError: connection failed: …``."""
    cause: BaseException = error
    # DatabaseUnavailable's own message is generic; the driver's error says what happened.
    if isinstance(cause, DatabaseUnavailable) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, exc.DBAPIError) and cause.orig is not None:
        cause = cause.orig
    lines = str(cause).strip().splitlines()
    first = lines[0].strip() if lines else "no message"
    if len(first) > _SUMMARY_CHARS:
        first = first[: _SUMMARY_CHARS - 1] + "…"
    return f"{type(cause).__name__}: {first}"


class OutageLog:
    """One loop's account of its failures: call :meth:`failed` with each round's error and
    :meth:`succeeded` after each round that reached the database. ``retry_every`` is the
    seconds between rounds; None when something else sets the pace (a metrics scrape).
    Thread-safe."""

    def __init__(self, loop: str, logger: logging.Logger, retry_every: float | None) -> None:
        self._loop = loop
        self._log = logger
        self._retrying = (
            "trying again when next asked"
            if retry_every is None
            else f"retrying every {retry_every:g} s"
        )
        self._guard = threading.Lock()
        self._down_since: float | None = None  # time.monotonic() of the first failed round
        self._failed_rounds = 0
        self._last_traceback: dict[str, float] = {}  # error kind -> when last logged
        self._repeats: dict[str, int] = {}  # error kind -> failures not logged since

    def failed(self, error: BaseException) -> None:
        if is_outage(error):
            self._outage_round(error)
        else:
            self._unexpected(error)

    def succeeded(self) -> None:
        with self._guard:
            if self._down_since is None:
                return
            lasted = time.monotonic() - self._down_since
            failed_rounds = self._failed_rounds
            self._down_since, self._failed_rounds = None, 0
        self._log.info(
            "%s: database available again after %.1f s (%d attempts failed)",
            self._loop,
            lasted,
            failed_rounds,
            extra={"event": "database_available"},
        )

    def _outage_round(self, error: BaseException) -> None:
        with self._guard:
            starting = self._down_since is None
            if starting:
                self._down_since = time.monotonic()
            self._failed_rounds += 1
        if starting:
            self._log.warning(
                "%s: database unavailable (%s); %s",
                self._loop,
                summary(error),
                self._retrying,
                extra={"event": "database_unavailable"},
            )
        self._log.debug("%s: database unavailable", self._loop, exc_info=error)

    def _unexpected(self, error: BaseException) -> None:
        kind = type(error).__qualname__
        now = time.monotonic()
        with self._guard:
            last = self._last_traceback.get(kind)
            if last is not None and now - last < REPEAT_TRACEBACK_SECONDS:
                self._repeats[kind] = self._repeats.get(kind, 0) + 1
                return
            self._last_traceback[kind] = now
            repeats = self._repeats.pop(kind, 0)
        again = f" ({repeats} more since the last report)" if repeats else ""
        self._log.error(
            "%s: unexpected error (%s)%s; %s",
            self._loop,
            summary(error),
            again,
            self._retrying,
            exc_info=error,
        )
