"""Per-account request rate limit: a token bucket per account, in this API process.

Each API process limits on its own, so N processes allow up to N times the rate: the limit
is about keeping one account from monopolising a process, not an exact quota.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from vod2s3.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``now`` gives seconds: the service passes its Clock's ``unix`` (tests, a FakeClock's).
    It is wall-clock time, so a step back is taken as no time passing, not as negative
    refill."""

    def __init__(self, rate: float, burst: int, now: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._now = now
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, account_id: int) -> None:
        """Take a token for ``account_id`` or raise :class:`RateLimited`."""
        if self._rate <= 0:
            return
        with self._lock:
            now = self._now()
            bucket = self._buckets.get(account_id)
            if bucket is None:
                bucket = self._buckets[account_id] = _Bucket(self._burst, now)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = math.ceil((1.0 - bucket.tokens) / self._rate)
        raise RateLimited(
            f"Too many requests for this account: at most {self._rate:g} per second "
            f"(bursts of {self._burst:g}); retry after {wait} s",
            retry_after=wait,
        )
