"""Cutting a file into multipart-upload parts within S3's limits."""

from __future__ import annotations

from dataclasses import dataclass

from vod2s3.s3.failure import AttemptFailure
from vod2s3.s3.model import MIB

MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
MAX_PUT_SIZE = 5 * 1024 * MIB


@dataclass(frozen=True)
class Part:
    number: int
    offset: int
    length: int


def part_size_for(size: int, minimum: int) -> int:
    """At least ``minimum`` (and S3's 5 MiB), grown in whole MiB so there are <= 10,000 parts.

    No separate object-size cap: S3's limit is what 10,000 parts of 5 GiB hold (48.8 TiB on
    AWS today; older pages say 5 TiB), and S3 itself answers EntityTooLarge beyond its own.
    """
    part_size = max(minimum, MIN_PART_SIZE)
    if part_size * MAX_PARTS < size:
        needed = -(-size // MAX_PARTS)
        part_size = -(-needed // MIB) * MIB
    if part_size > MAX_PART_SIZE:
        raise AttemptFailure(
            retryable=False,
            s3_status=0,
            code="EntityTooLarge",
            message=f"The file is {size} bytes; one S3 object holds at most "
            f"{MAX_PARTS} parts of {MAX_PART_SIZE} bytes",
        )
    return part_size


def plan_parts(size: int, part_size: int) -> list[Part]:
    return [
        Part(number=index + 1, offset=offset, length=min(part_size, size - offset))
        for index, offset in enumerate(range(0, size, part_size))
    ]
