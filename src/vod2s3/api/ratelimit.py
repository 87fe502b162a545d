"""Per-account request rate limit: a token bucket per account, in this API process.

Each API process limits on its own, so N processes allow up to N times the rate: the limit
is about keeping one account from monopolising a process, not an exact quota.

A replay of a signed request this process has already counted takes its token from a
second bucket of the account, kept for replays: whoever captured an account's request
cannot spend the account's budget with it, and a flood of one request is still limited.
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

    def __init__(
        self,
        rate: float,
        burst: int,
        now: Callable[[], float],
        replay_window: float = 600.0,
        remembered: int = 100_000,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._now = now
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()
        # Signatures counted, and when: a signature can be replayed for at most the whole
        # timestamp window on either side of its timestamp.
        self._replay_window = replay_window
        self._remembered = remembered
        self._counted: dict[tuple[int, str], float] = {}
        self._replays: dict[int, _Bucket] = {}

    def check(self, account_id: int, signature: str = "") -> None:
        """Take a token for ``account_id`` or raise :class:`RateLimited`; a ``signature``
        already counted within the replay window takes it from the replays' bucket."""
        if self._rate <= 0:
            return
        with self._lock:
            now = self._now()
            replay = bool(signature) and self._seen(account_id, signature, now)
            buckets = self._replays if replay else self._buckets
            bucket = buckets.get(account_id)
            if bucket is None:
                bucket = buckets[account_id] = _Bucket(self._burst, now)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                if signature and not replay:
                    self._count(account_id, signature, now)
                return
            wait = math.ceil((1.0 - bucket.tokens) / self._rate)
        raise RateLimited(
            f"Too many requests for this account: at most {self._rate:g} per second "
            f"(bursts of {self._burst:g}); retry after {wait} s",
            retry_after=wait,
        )

    def _seen(self, account_id: int, signature: str, now: float) -> bool:
        counted = self._counted.get((account_id, signature))
        return counted is not None and now - counted <= self._replay_window

    def _count(self, account_id: int, signature: str, now: float) -> None:
        if len(self._counted) >= self._remembered:
            # Forget what no replay can reach any more; if that is not enough, everything:
            # the worst a full memory costs is one token per replay again.
            self._counted = {
                key: when
                for key, when in self._counted.items()
                if now - when <= self._replay_window
            }
            if len(self._counted) >= self._remembered:
                self._counted.clear()
        self._counted[(account_id, signature)] = now
