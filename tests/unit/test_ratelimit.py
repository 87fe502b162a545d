"""The per-account token bucket, with a hand-moved clock."""

from __future__ import annotations

import pytest

from vod2s3.api.ratelimit import RateLimiter
from vod2s3.errors import RateLimited


class Now:
    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def test_burst_then_refill_at_the_rate() -> None:
    now = Now()
    limiter = RateLimiter(rate=2.0, burst=3, now=now)
    for _ in range(3):
        limiter.check(1)
    with pytest.raises(RateLimited) as limited:
        limiter.check(1)
    assert limited.value.retry_after == 1
    assert limited.value.http_status == 429
    now.value += 0.5  # one token back
    limiter.check(1)
    with pytest.raises(RateLimited):
        limiter.check(1)


def test_accounts_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, now=Now())
    limiter.check(1)
    limiter.check(2)
    with pytest.raises(RateLimited):
        limiter.check(1)


def test_zero_rate_means_no_limit() -> None:
    limiter = RateLimiter(rate=0.0, burst=1, now=Now())
    for _ in range(1000):
        limiter.check(1)
