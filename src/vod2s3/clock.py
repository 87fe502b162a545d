"""Time, injected wherever behaviour depends on it, so tests never sleep through schedules."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, UTC, naive (as the database stores it)."""
        ...

    def unix(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)

    def unix(self) -> float:
        return time.time()


def format_timestamp(value: datetime | None) -> str:
    """The original API's date format: ``YYYY-MM-DD HH:MM:SS`` in UTC; "" for none."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
