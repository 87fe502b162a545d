"""A part (or a small file) checked in one pass over the file, then sent from the file in a
second: memory per request is one block, whatever the part size."""

from __future__ import annotations

from typing import IO

from vod2s3.s3.body import SEND_BLOCK, Throttle, part_body
from vod2s3.s3.integrity import Mode, blocks_check
from vod2s3.s3.source import SourceFile


def streamed_body(
    source: SourceFile,
    offset: int,
    length: int,
    mode: Mode,
    throttle: Throttle | None = None,
) -> tuple[str, IO[bytes]]:
    """The check value of ``[offset, offset + length)`` (as the journal keeps it) and a body
    that sends those bytes. The second read comes from the page cache the first one filled.

    sha256 has no header the store checks against our value: the store checks the signer's
    hash of the body instead, so the body compares the signer's pass with ours
    (s3/body.py)."""
    value = blocks_check(mode, source.blocks(offset, length, SEND_BLOCK))
    expected = (mode, value) if mode == "sha256" else None
    return value, part_body(source, offset, length, throttle, expected)
