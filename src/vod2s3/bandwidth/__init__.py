"""The uplink budget: what a worker process may send per second, in all and per account
(docs/operator-guide.md, "Uplink budget")."""

from vod2s3.bandwidth.rates import RATE_FORM, format_rate, parse_rate
from vod2s3.bandwidth.timetable import TIMETABLE_FORM, Timetable, parse_timetable

__all__ = [
    "RATE_FORM",
    "TIMETABLE_FORM",
    "Timetable",
    "format_rate",
    "parse_rate",
    "parse_timetable",
]
