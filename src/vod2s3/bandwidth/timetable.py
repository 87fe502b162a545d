"""A worker's cap as a time-of-day timetable, in the style of rclone's ``--bwlimit``.

``"08:00,50M 19:00,10M 23:30,off"``: from 08:00 50 MiB/s, from 19:00 10 MiB/s, from 23:30
no cap, and so on around the clock (before 08:00 the last entry, 23:30's, holds). Entries
may name a weekday, ``"Mon-08:00,50M Sat-00:00,off"``, and then each holds until the next
one in the week (Monday first), the last one until the first. A single rate without a time
(``"20M"``, ``"off"``) is a cap around the clock. Entries are separated by spaces or ``;``
and must be in order, each later than the one before: two entries for the same moment, or
one out of order, are refused rather than guessed at. Times are the host's local time.

Not accepted: rclone's ``upload:download`` pairs (vod2s3 only sends), and mixing entries
with and without a weekday (the order between them would be a guess).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from vod2s3.bandwidth.rates import RATE_FORM, format_rate, parse_rate
from vod2s3.errors import BadRequest

TIMETABLE_FORM: Final = (
    'a rate, or a timetable such as "08:00,50M 19:00,10M 23:30,off" or '
    '"Mon-08:00,50M Sat-00:00,off": entries HH:MM,RATE (or Ddd-HH:MM,RATE with a weekday '
    "Mon..Sun), in order, separated by spaces; RATE is " + RATE_FORM
)
WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MINUTES_PER_DAY: Final = 24 * 60
_ENTRY_RE: Final = re.compile(r"^(?:([A-Za-z]+)-)?(\d{1,2}):(\d{2}),(.+)$")


@dataclass(frozen=True)
class Slot:
    """From ``start`` (minutes since Monday 00:00 for a weekly timetable, since midnight
    for a daily one) the cap is ``rate`` bytes/s (None: no cap)."""

    start: int
    rate: int | None


@dataclass(frozen=True)
class Timetable:
    slots: tuple[Slot, ...]  # in order of start; never empty
    weekly: bool = False

    @classmethod
    def constant(cls, rate: int | None) -> Timetable:
        return cls((Slot(0, rate),))

    @property
    def is_off(self) -> bool:
        """No cap at any time."""
        return all(slot.rate is None for slot in self.slots)

    def __str__(self) -> str:
        """The timetable in the accepted form (what `config show` prints)."""
        if len(self.slots) == 1 and self.slots[0].start == 0 and not self.weekly:
            return format_rate(self.slots[0].rate)
        return " ".join(f"{self._when(slot.start)},{format_rate(slot.rate)}" for slot in self.slots)

    def _when(self, start: int) -> str:
        day, minute = divmod(start, _MINUTES_PER_DAY)
        clock = f"{minute // 60:02d}:{minute % 60:02d}"
        return f"{WEEKDAYS[day][:3].capitalize()}-{clock}" if self.weekly else clock

    def cap_at(self, when: datetime) -> int | None:
        """The cap in force at the local wall-clock time ``when`` (None: none)."""
        minute = when.hour * 60 + when.minute
        if self.weekly:
            minute += when.weekday() * _MINUTES_PER_DAY
        # Before the first entry of the day (week), the last one still holds.
        rate = self.slots[-1].rate
        for slot in self.slots:
            if slot.start > minute:
                break
            rate = slot.rate
        return rate


def parse_timetable(text: str, what: str = "VOD2S3_MAX_BANDWIDTH") -> Timetable:
    """A rate or a timetable; raises :class:`BadRequest` with the accepted form."""
    entries = text.replace(";", " ").split()
    if not entries:
        raise BadRequest(f"{what} is empty; give {TIMETABLE_FORM}")
    if len(entries) == 1 and "," not in entries[0]:
        if ":" in entries[0]:
            raise BadRequest(
                f"{what}: {entries[0]!r}: upload:download pairs are not accepted (vod2s3 "
                f"only sends); give {TIMETABLE_FORM}"
            )
        return Timetable.constant(_rate(entries[0], what))
    slots = [_slot(entry, what) for entry in entries]
    weekly = {day is not None for day, _ in slots}
    if len(weekly) > 1:
        raise BadRequest(
            f"{what}: give every entry a weekday or none (mixed in {text!r}); give {TIMETABLE_FORM}"
        )
    ordered = [slot for _, slot in slots]
    for before, after in itertools.pairwise(ordered):
        if after.start <= before.start:
            problem = "twice" if after.start == before.start else "out of order"
            raise BadRequest(
                f"{what}: {entries[ordered.index(after)]!r} comes {problem} (each entry must "
                f"start later than the one before); give {TIMETABLE_FORM}"
            )
    return Timetable(tuple(ordered), weekly=weekly == {True})


def _slot(entry: str, what: str) -> tuple[int | None, Slot]:
    match = _ENTRY_RE.match(entry)
    if match is None:
        raise BadRequest(f"{what}: {entry!r} is not an entry; give {TIMETABLE_FORM}")
    day_name, hours, minutes, rate = match.groups()
    if int(hours) > 23 or int(minutes) > 59:
        raise BadRequest(f"{what}: {entry!r} has no such time of day; give {TIMETABLE_FORM}")
    start = int(hours) * 60 + int(minutes)
    day = None
    if day_name is not None:
        day = _weekday(day_name)
        if day is None:
            raise BadRequest(f"{what}: {entry!r} names no weekday; give {TIMETABLE_FORM}")
        start += day * _MINUTES_PER_DAY
    return day, Slot(start, _rate(rate, what))


def _weekday(name: str) -> int | None:
    """0 for Mon or Monday (any case), ... 6 for Sun or Sunday."""
    lowered = name.lower()
    for number, day in enumerate(WEEKDAYS):
        if lowered in (day, day[:3]):
            return number
    return None


def _rate(text: str, what: str) -> int | None:
    if ":" in text:
        raise BadRequest(
            f"{what}: {text!r}: upload:download pairs are not accepted (vod2s3 only sends); "
            f"give {TIMETABLE_FORM}"
        )
    try:
        return parse_rate(text, what)
    except BadRequest:
        raise BadRequest(f"{what}: {text!r} is not a rate; give {TIMETABLE_FORM}") from None
