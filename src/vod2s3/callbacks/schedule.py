"""When to try a callback again. Pure."""

from __future__ import annotations

from datetime import timedelta

# Attempt 1 goes when the upload ends; then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h later:
# 8 attempts over about 27.5 hours, long enough to ride out a receiver's bad day.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1


def delay_after(attempts: int) -> timedelta | None:
    """The wait before the next attempt once ``attempts`` have failed; None to give up."""
    if attempts < 1 or attempts > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[attempts - 1]
