"""The one retry decision: retry a failed attempt, after how long, or give up. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 300.0


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: timedelta = timedelta(0)


def decide(
    policy: RetryPolicy, attempts: int, retryable: bool, rand: random.Random | None = None
) -> Decision:
    """After the ``attempts``-th attempt failed: retry only transient failures, while attempts
    remain, after an exponential delay with full jitter (so many uploads that failed together
    do not all come back at the same moment)."""
    if not retryable or attempts >= policy.max_attempts:
        return Decision(retry=False)
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** max(0, attempts - 1))
    jitter = (rand or random).uniform(ceiling / 2, ceiling)
    return Decision(retry=True, delay=timedelta(seconds=jitter))
