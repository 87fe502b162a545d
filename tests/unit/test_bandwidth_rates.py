"""Rates as operators write them: binary suffixes as rclone's --bwlimit, or off."""

from __future__ import annotations

import pytest

from vod2s3.bandwidth import RATE_FORM, format_rate, parse_rate
from vod2s3.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1000", 1000),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("20M", 20 * 1024**2),
        ("20m", 20 * 1024**2),
        ("1.5G", int(1.5 * 1024**3)),
        (" 2M ", 2 * 1024**2),
        ("off", None),
        ("OFF", None),
    ],
)
def test_rates_are_bytes_per_second_with_binary_suffixes(text: str, rate: int | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "10 M", "10MB", "-5M", "1e6", "0", "0k", "10T"])
def test_a_bad_rate_is_refused_with_the_accepted_form(text: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_rate(text, "--max-bandwidth")

    assert refused.value.message.startswith("--max-bandwidth: ")
    assert RATE_FORM in refused.value.message


@pytest.mark.parametrize("text", ["1000", "512k", "20M", "1.5G", "off", "1.25M"])
def test_a_rate_written_back_reads_the_same(text: str) -> None:
    rate = parse_rate(text)

    assert format_rate(rate) == text
    assert parse_rate(format_rate(rate)) == rate
