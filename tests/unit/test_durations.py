"""The one parser of the operator's durations (`uploads list --older-than`, `uploads purge
--finished-before`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vod2s3.durations import BadDuration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("45m", timedelta(minutes=45)),
        ("2h", timedelta(hours=2)),
        ("30d", timedelta(days=30)),
        (" 7D ", timedelta(days=7)),
        ("0s", timedelta(0)),
        ("36500d", timedelta(days=36_500)),
    ],
)
def test_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("3x", "'3x' is not a duration: give a whole number and a unit (s, m, h or d)"),
        ("30", "such as 90s, 45m, 2h or 30d"),
        ("-2h", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("2h30m", "is not a duration"),
        ("", "is not a duration"),
        ("36501d", "is longer than 36500 days"),
        ("9" * 30 + "d", "is longer than 36500 days"),
    ],
)
def test_anything_else_says_what_a_duration_looks_like(text: str, says: str) -> None:
    with pytest.raises(BadDuration) as caught:
        parse_duration(text)
    assert says in str(caught.value)
