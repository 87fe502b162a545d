"""Request rate limits, per API process: token buckets per account and per client address.

Each API process limits on its own, so N processes allow up to N times the rate: the limits
are about keeping one client from monopolising a process, not exact quotas.

The address limit comes first, before the body is read or any signature checked: it is what
stands between an unauthenticated flood and the CPU. The account limit comes after the
signature. A replay of a signed request this process has already counted takes its token
from a second bucket of the account, kept for replays: whoever captured an account's
request cannot spend the account's budget with it, and a flood of one request is still
limited.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from vod2s3.errors import RateLimited

K = TypeVar("K", bound=Hashable)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets(Generic[K]):
    """One token bucket per key, refilled at ``rate`` per second up to ``burst``. Not
    thread-safe: the limiters below hold their lock around it.

    At most ``remembered`` keys are kept: past that, buckets that have refilled completely
    are forgotten (a full bucket is what a new one would be), so a stream of new keys (an
    attacker's addresses) cannot grow memory without bound.
    """

    def __init__(self, rate: float, burst: int, remembered: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._remembered = remembered
        self._buckets: dict[K, _Bucket] = {}

    def take(self, key: K, now: float) -> float:
        """Take a token for ``key``: 0.0 if there was one, else the seconds until there is.
        ``now`` is wall-clock time, so a step back is taken as no time passing, not as
        negative refill."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._remembered:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket.tokens + max(0.0, now - bucket.updated) * self.rate < self.burst
        }
        if len(self._buckets) >= self._remembered:
            # Every key is busy: forgetting them all costs at most one burst each.
            self._buckets.clear()


class AddressLimiter:
    """Requests per client address (see :mod:`vod2s3.api.clientaddr`), before anything else
    is done with them. ``rate`` 0 turns it off."""

    def __init__(self, rate: float, burst: int, now: Callable[[], float]) -> None:
        self._buckets: TokenBuckets[str] = TokenBuckets(rate, burst)
        self._now = now
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        if self._buckets.rate <= 0:
            return
        with self._lock:
            wait = self._buckets.take(address, self._now())
        if wait:
            seconds = math.ceil(wait)
            raise RateLimited(
                f"Too many requests from your address: at most {self._buckets.rate:g} per "
                f"second (bursts of {self._buckets.burst:g}); retry after {seconds} s",
                retry_after=seconds,
            )


class RateLimiter:
    """Requests per account, once the signature is checked. ``now`` gives seconds: the
    service passes its Clock's ``unix`` (tests, a FakeClock's)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        now: Callable[[], float],
        replay_window: float = 600.0,
        remembered: int = 100_000,
    ) -> None:
        self._rate = rate
        self._accounts: TokenBuckets[int] = TokenBuckets(rate, burst)
        self._replays: TokenBuckets[int] = TokenBuckets(rate, burst)
        self._now = now
        self._lock = threading.Lock()
        # Signatures counted, and when: a signature can be replayed for at most the whole
        # timestamp window on either side of its timestamp.
        self._replay_window = replay_window
        self._remembered = remembered
        self._counted: dict[tuple[int, str], float] = {}

    def check(self, account_id: int, signature: str = "") -> None:
        """Take a token for ``account_id`` or raise :class:`RateLimited`; a ``signature``
        already counted within the replay window takes it from the replays' bucket."""
        if self._rate <= 0:
            return
        with self._lock:
            now = self._now()
            replay = bool(signature) and self._seen(account_id, signature, now)
            buckets = self._replays if replay else self._accounts
            wait = buckets.take(account_id, now)
            if not wait:
                if signature and not replay:
                    self._count(account_id, signature, now)
                return
        seconds = math.ceil(wait)
        raise RateLimited(
            f"Too many requests for this account: at most {self._rate:g} per second "
            f"(bursts of {self._accounts.burst:g}); retry after {seconds} s",
            retry_after=seconds,
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
