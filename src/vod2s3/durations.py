"""Durations as operators type them: ``90s``, ``45m``, ``2h``, ``30d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DURATION = re.compile(r"(\d+)([smhd])")
EXAMPLES = "90s, 45m, 2h or 30d"
# Longer is a typing mistake, and "now minus" it would fall off the calendar's start.
LONGEST = timedelta(days=36_500)


class BadDuration(ValueError):
    """Text that is not a duration; the message says what one looks like."""


def parse_duration(text: str) -> timedelta:
    """A whole number followed by one unit: s (seconds), m (minutes), h (hours), d (days)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise BadDuration(
            f"{text!r} is not a duration: give a whole number and a unit (s, m, h or d), "
            f"such as {EXAMPLES}"
        )
    amount, unit = match.groups()
    try:
        duration = timedelta(**{_UNITS[unit]: int(amount)})
    except OverflowError:
        duration = LONGEST + LONGEST
    if duration > LONGEST:
        raise BadDuration(f"{text!r} is longer than {LONGEST.days} days: check the unit")
    return duration
