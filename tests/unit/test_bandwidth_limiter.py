"""The token bucket and its blocking Limiter, on an injected clock whose sleep moves time."""

from __future__ import annotations

import pytest

from vod2s3.bandwidth.bucket import SLICE, Limiter, TokenBucket, capacity_for

M = 1024**2


class Ticking:
    """A monotonic clock that only moves when the limiter sleeps (or the test says)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_full_bucket_lets_its_capacity_go_at_once_then_the_rate() -> None:
    clock = Ticking()
    bucket = TokenBucket(10 * M, clock)
    capacity = capacity_for(10 * M)

    assert bucket.take(int(capacity)) == 0.0
    assert bucket.take(M) == pytest.approx(0.1)  # 1 MiB at 10 MiB/s


def test_throttled_bytes_never_exceed_capacity_plus_rate_times_time() -> None:
    clock = Ticking()
    rate = 2 * M
    limiter = Limiter(rate, clock, clock.sleep)
    start, sent = clock(), 0
    for _ in range(40):
        limiter.throttle(M)  # chunks as PartBody hands them over
        sent += M
        assert sent <= capacity_for(rate) + rate * (clock() - start) + 1
    # ... and no slower than the rate either, over the whole run.
    assert sent / (clock() - start) == pytest.approx(rate, rel=0.02)


def test_a_large_chunk_is_paid_in_slices() -> None:
    clock = Ticking()
    limiter = Limiter(M, clock, clock.sleep)
    limiter.throttle(capacity_for(M).__int__())  # empty the bucket
    clock.slept.clear()

    limiter.throttle(M)

    assert len(clock.slept) == M // SLICE
    assert sum(clock.slept) == pytest.approx(1.0)


def test_a_lowered_rate_applies_from_the_next_slice() -> None:
    clock = Ticking()
    limiter = Limiter(4 * M, clock, clock.sleep)
    limiter.throttle(int(capacity_for(4 * M)))
    limiter.throttle(4 * M)
    fast = clock()
    limiter.set_rate(M)
    limiter.throttle(M)

    assert clock() - fast == pytest.approx(1.0, rel=0.05)


def test_off_never_waits_and_a_cap_set_later_starts_empty() -> None:
    clock = Ticking()
    limiter = Limiter(None, clock, clock.sleep)
    limiter.throttle(100 * M)
    assert clock.slept == []

    limiter.set_rate(M)
    limiter.throttle(M)
    assert sum(clock.slept) == pytest.approx(1.0)
