"""A token bucket: the pure core of every limiter here, on an injected clock.

Tokens are bytes. They accrue at ``rate`` per second up to ``capacity``; taking more than
there are leaves a debt that the taker waits out (``take`` says how long), so over any
window of ``t`` seconds no more than ``capacity + rate * t`` bytes are let through. The
rate may change at any moment (a timetable's next entry, a new fair share): what accrued
until then accrued at the old rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

# Bytes given leave in slices of at most this: a 1 MiB chunk does not pay for itself at
# once and go out in one burst, threads sending for the same account take turns, and a
# lowered rate applies from the next slice on.
SLICE: Final = 128 * 1024
# The burst allowed after a pause: a tenth of a second at the rate, at least one slice.
BURST_SECONDS: Final = 0.1


def capacity_for(rate: float) -> float:
    return max(float(SLICE), rate * BURST_SECONDS)


class TokenBucket:
    """Not thread-safe: :class:`Limiter` holds the lock."""

    def __init__(self, rate: float | None, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rate = rate
        # Full when capped from the start; empty when a cap comes later (set_rate): bytes
        # sent without a cap just before do not earn a burst.
        self._tokens = 0.0 if rate is None else capacity_for(rate)
        self._at = clock()

    @property
    def rate(self) -> float | None:
        return self._rate

    def set_rate(self, rate: float | None) -> None:
        self._refill()
        self._rate = rate
        if rate is None:
            self._tokens = 0.0
        else:
            self._tokens = min(self._tokens, capacity_for(rate))

    def take(self, count: int) -> float:
        """Take ``count`` bytes; the seconds to wait before they may go (0: now)."""
        if self._rate is None:
            return 0.0
        self._refill()
        self._tokens -= count
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def _refill(self) -> None:
        now = self._clock()
        if self._rate is not None:
            elapsed = max(0.0, now - self._at)
            self._tokens = min(capacity_for(self._rate), self._tokens + elapsed * self._rate)
        self._at = now


class Limiter:
    """A :class:`TokenBucket` that blocks: ``throttle(n)`` returns once ``n`` bytes may go.

    ``sleep`` is injected with the clock, so that tests run without waiting.
    """

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._bucket = TokenBucket(rate, clock)
        self._sleep = sleep
        self._lock = threading.Lock()

    @property
    def rate(self) -> float | None:
        return self._bucket.rate

    def set_rate(self, rate: float | None) -> None:
        with self._lock:
            if rate != self._bucket.rate:
                self._bucket.set_rate(rate)

    def throttle(self, count: int) -> None:
        while count > 0:
            piece = min(count, SLICE)
            with self._lock:
                wait = self._bucket.take(piece)
            if wait > 0:
                self._sleep(wait)
            count -= piece
