"""A cap on the bytes of part buffers held at once by every upload of a worker process."""

from __future__ import annotations

import threading
from collections.abc import Callable

from vod2s3.s3.failure import stopped

_WAIT_SLICE = 0.25  # seconds between checks of should_stop while waiting for room


class PartBudget:
    """Memory stays bounded by ``capacity`` bytes of buffers however many uploads run at once:
    an upload takes room for a part (or a small file) before reading it and gives it back
    when S3 has answered. Counting bytes, not parts, lets many small files go at once."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a part budget needs room for at least one byte")
        self.capacity = capacity
        self._used = 0
        self._room = threading.Condition()

    def take(self, size: int, should_stop: Callable[[], bool]) -> int:
        """Wait for room for ``size`` bytes; returns what to give back. A buffer larger than
        the whole budget still goes, alone."""
        size = max(1, min(size, self.capacity))
        with self._room:
            while self._used + size > self.capacity:
                self._room.wait(timeout=_WAIT_SLICE)
                if should_stop():
                    raise stopped()
            self._used += size
        return size

    def give_back(self, size: int) -> None:
        with self._room:
            self._used -= size
            self._room.notify_all()


def unlimited() -> PartBudget:
    """For callers that bound memory by parts_in_flight alone."""
    return PartBudget(1 << 62)
