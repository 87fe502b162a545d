"""The per-account token bucket, on a FakeClock moved by hand: no test sleeps."""

from __future__ import annotations

import pytest

from tests.helpers import FakeClock
from vod2s3.api.ratelimit import AddressLimiter, RateLimiter, TokenBuckets
from vod2s3.errors import RateLimited


def test_burst_then_refill_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, now=clock.unix)
    for _ in range(3):
        limiter.check(1)
    with pytest.raises(RateLimited) as limited:
        limiter.check(1)
    assert limited.value.retry_after == 1
    assert limited.value.http_status == 429
    clock.advance(0.25)  # half a token: not yet
    with pytest.raises(RateLimited):
        limiter.check(1)
    clock.advance(0.25)  # one token back
    limiter.check(1)
    with pytest.raises(RateLimited):
        limiter.check(1)


def test_refill_stops_at_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, now=clock.unix)
    limiter.check(1)
    clock.advance(3600)  # an idle hour earns a burst, not 7200 requests
    for _ in range(3):
        limiter.check(1)
    with pytest.raises(RateLimited):
        limiter.check(1)


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0.25, burst=1, now=clock.unix)
    limiter.check(1)
    clock.advance(1.0)  # a quarter of a token: three quarters to go, at 0.25 per second
    with pytest.raises(RateLimited) as limited:
        limiter.check(1)
    assert limited.value.retry_after == 3
    assert "retry after 3 s" in limited.value.message
    clock.advance(3.0)
    limiter.check(1)


def test_a_clock_stepping_back_takes_no_tokens_away() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2, now=clock.unix)
    limiter.check(1)  # one token left
    clock.advance(-3600)  # the wall clock is set back an hour
    limiter.check(1)
    with pytest.raises(RateLimited):
        limiter.check(1)
    clock.advance(1.0)  # and refills from there at the rate
    limiter.check(1)


def test_accounts_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, now=FakeClock().unix)
    limiter.check(1)
    limiter.check(2)
    with pytest.raises(RateLimited):
        limiter.check(1)


def test_zero_rate_means_no_limit() -> None:
    limiter = RateLimiter(rate=0.0, burst=1, now=FakeClock().unix)
    for _ in range(1000):
        limiter.check(1)


def test_replays_of_a_signature_spend_their_own_bucket_not_the_owners() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2, now=clock.unix, replay_window=600)
    limiter.check(1, "captured")  # counted once, from the owner's bucket
    limiter.check(1, "captured")  # replays: from the replays' bucket
    limiter.check(1, "captured")
    with pytest.raises(RateLimited):
        limiter.check(1, "captured")  # a flood of one request is still limited
    limiter.check(1, "the owner's next request")  # the owner's second token is still there
    with pytest.raises(RateLimited):
        limiter.check(1, "another")
    clock.advance(601)  # past the window a replay would fail its timestamp check anyway
    limiter.check(1, "captured")  # so it is counted as new again, from the owner's bucket
    limiter.check(1, "captured")  # (and then as a replay)


def test_the_memory_of_signatures_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1e9, burst=10**9, now=clock.unix, remembered=100)
    for n in range(1000):
        limiter.check(1, f"sig-{n}")
    assert len(limiter._counted) <= 100


def test_token_buckets_forget_only_full_buckets_when_memory_is_full() -> None:
    buckets: TokenBuckets[str] = TokenBuckets(rate=1.0, burst=2, remembered=3)
    buckets.take("busy", 0.0)
    buckets.take("busy", 0.0)  # empty now
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    # A second later "a" and "b" are full again and "busy" has one token: a fourth key
    # makes room by forgetting the full buckets only. "busy" keeps its state (a forgotten
    # bucket would come back full, with two tokens).
    assert buckets.take("c", 1.0) == 0.0
    assert buckets.take("busy", 1.0) == 0.0
    assert buckets.take("busy", 1.0) == pytest.approx(1.0)


def test_address_limiter_keeps_addresses_apart() -> None:
    clock = FakeClock()
    limiter = AddressLimiter(rate=1.0, burst=1, now=clock.unix)
    limiter.check("198.51.100.7")
    with pytest.raises(RateLimited, match="from your address") as limited:
        limiter.check("198.51.100.7")
    assert limited.value.retry_after == 1
    limiter.check("198.51.100.8")
    AddressLimiter(rate=0.0, burst=1, now=clock.unix).check("x")  # 0: off
