"""The worker's cap as a timetable, in the style of rclone's --bwlimit; local wall-clock
times are given, so no test depends on the host's zone."""

from __future__ import annotations

from datetime import datetime

import pytest

from vod2s3.bandwidth import TIMETABLE_FORM, Timetable, parse_timetable
from vod2s3.config import Settings
from vod2s3.errors import BadRequest, ConfigurationError

M = 1024**2
MONDAY = datetime(2026, 12, 7)  # a Monday, 00:00


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MONDAY.replace(day=MONDAY.day + day, hour=hour, minute=minute)


def test_a_single_rate_holds_around_the_clock() -> None:
    table = parse_timetable("20M")

    assert [table.cap_at(at(d, h)) for d in (0, 3, 6) for h in (0, 12, 23)] == [20 * M] * 9
    assert parse_timetable("off").is_off
    assert Timetable.constant(None).cap_at(at(0, 5)) is None


def test_each_entry_holds_until_the_next_and_the_last_until_the_first() -> None:
    table = parse_timetable("08:00,50M 19:00,10M 23:30,off")

    assert table.cap_at(at(0, 7, 59)) is None  # 23:30's entry, from the day before
    assert table.cap_at(at(0, 8, 0)) == 50 * M
    assert table.cap_at(at(0, 18, 59)) == 50 * M
    assert table.cap_at(at(0, 19, 0)) == 10 * M
    assert table.cap_at(at(0, 23, 29)) == 10 * M
    assert table.cap_at(at(0, 23, 30)) is None
    assert table.cap_at(at(4, 12)) == 50 * M  # every day alike


def test_semicolons_separate_entries_as_spaces_do() -> None:
    assert parse_timetable("08:00,1M;12:00,2M") == parse_timetable("08:00,1M 12:00,2M")


def test_weekday_entries_hold_through_the_week_and_wrap_to_the_first() -> None:
    table = parse_timetable("Mon-08:00,50M Fri-18:00,10M sat-00:00,off")

    assert table.weekly
    assert table.cap_at(at(0, 7)) is None  # Saturday's entry, from the week before
    assert table.cap_at(at(0, 8)) == 50 * M
    assert table.cap_at(at(3, 23)) == 50 * M  # Thursday
    assert table.cap_at(at(4, 17, 59)) == 50 * M
    assert table.cap_at(at(4, 18)) == 10 * M
    assert table.cap_at(at(5, 0)) is None
    assert table.cap_at(at(6, 23, 59)) is None
    assert parse_timetable("Monday-08:00,1M Sunday-08:00,2M").cap_at(at(6, 9)) == 2 * M


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("08:00,50M 07:00,10M", "'07:00,10M' comes out of order"),
        ("08:00,50M 08:00,10M", "'08:00,10M' comes twice"),
        ("Tue-08:00,50M Mon-09:00,10M", "'Mon-09:00,10M' comes out of order"),
        ("Mon-08:00,50M 09:00,10M", "give every entry a weekday or none"),
        ("08:00,10M:1M", "upload:download pairs are not accepted"),
        ("10M:1M", "upload:download pairs are not accepted"),
        ("24:00,10M", "no such time of day"),
        ("08:60,10M", "no such time of day"),
        ("Xyz-08:00,10M", "names no weekday"),
        ("08:00 10M", "is not an entry"),
        ("08:00,fast", "'fast' is not a rate"),
        ("fast", "'fast' is not a rate"),
        ("   ", "is empty"),
    ],
)
def test_a_bad_timetable_is_refused_with_the_accepted_form(text: str, says: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_timetable(text)

    message = refused.value.message
    assert message.startswith("VOD2S3_MAX_BANDWIDTH")
    assert says in message
    assert message.endswith(TIMETABLE_FORM)


def test_the_setting_is_read_at_start_up_and_refused_with_the_accepted_form() -> None:
    assert Settings.from_env({}).max_bandwidth.is_off
    assert Settings.from_env({"VOD2S3_MAX_BANDWIDTH": "off"}).max_bandwidth.is_off
    read = Settings.from_env({"VOD2S3_MAX_BANDWIDTH": "08:00,50M 19:00,10M 23:30,off"})
    assert read.max_bandwidth == parse_timetable("08:00,50M 19:00,10M 23:30,off")

    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"VOD2S3_MAX_BANDWIDTH": "19:00,10M 08:00,50M"})
    assert "'08:00,50M' comes out of order" in refused.value.message
    assert refused.value.message.endswith(TIMETABLE_FORM)


@pytest.mark.parametrize(
    "text",
    ["off", "20M", "512k", "08:00,50M 19:00,10M 23:30,off", "Mon-08:00,50M Sat-00:00,off"],
)
def test_a_timetable_is_written_back_in_the_form_it_was_given(text: str) -> None:
    assert str(parse_timetable(text)) == text
