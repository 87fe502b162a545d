"""The retry decision is a pure function."""

from __future__ import annotations

import random

from vod2s3.worker.retry import RetryPolicy, decide

POLICY = RetryPolicy(max_attempts=4, base_delay=2.0, max_delay=30.0)


def test_permanent_failures_are_never_retried() -> None:
    assert decide(POLICY, attempts=1, retryable=False).retry is False


def test_transient_failures_retry_until_attempts_run_out() -> None:
    assert decide(POLICY, attempts=1, retryable=True).retry is True
    assert decide(POLICY, attempts=3, retryable=True).retry is True
    assert decide(POLICY, attempts=4, retryable=True).retry is False


def test_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    rand = random.Random(7)
    for attempts, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0)]:
        delays = [decide(POLICY, attempts, True, rand).delay.total_seconds() for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert len(set(delays)) > 100  # jittered, not one fixed value
    capped = RetryPolicy(max_attempts=50, base_delay=2.0, max_delay=30.0)
    assert decide(capped, 20, True, rand).delay.total_seconds() <= 30.0
