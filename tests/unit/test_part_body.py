"""PartBody: a part's bytes as a stream that urllib3 sends in large writes."""

from __future__ import annotations

import functools
import hashlib
import io
import os

import pytest
from botocore.utils import determine_content_length

from vod2s3.s3.body import SEND_BLOCK, PartBody

DATA = os.urandom(3 * SEND_BLOCK + 12345)


def test_a_small_read_returns_a_whole_send_block() -> None:
    body = PartBody(DATA)

    first = body.read(16 * 1024)  # what urllib3 asks for

    assert bytes(first) == DATA[:SEND_BLOCK]
    assert body.tell() == SEND_BLOCK
    assert body.read(0) == b""
    assert body.tell() == SEND_BLOCK


def test_reads_in_any_sizes_give_back_exactly_the_bytes() -> None:
    body = PartBody(DATA)
    pieces = [bytes(body.read(size)) for size in (1, SEND_BLOCK * 2, 10)]

    assert b"".join([*pieces, bytes(body.read())]) == DATA
    assert bytes(body.read(16 * 1024)) == b""
    assert not body.read()


def test_readinto_fills_no_more_than_the_buffer() -> None:
    body = PartBody(DATA)
    buffer = bytearray(1000)

    assert body.readinto(buffer) == 1000
    assert bytes(buffer) == DATA[:1000]
    assert body.tell() == 1000
    body.seek(-10, io.SEEK_END)
    assert body.readinto(buffer) == 10
    assert bytes(buffer[:10]) == DATA[-10:]


def test_seek_and_tell_follow_io_conventions() -> None:
    body = PartBody(DATA)

    assert body.seek(0, io.SEEK_END) == len(DATA)
    assert body.seek(-5, io.SEEK_CUR) == len(DATA) - 5
    assert body.seek(7) == 7
    assert bytes(body.read(1))[:1] == DATA[7:8]
    with pytest.raises(ValueError, match="negative"):
        body.seek(-1)
    with pytest.raises(ValueError, match="whence"):
        body.seek(0, 3)


def test_botocore_measures_the_remaining_length() -> None:
    body = PartBody(DATA)

    assert determine_content_length(body) == len(DATA)
    body.read(100)
    assert determine_content_length(body) == len(DATA) - SEND_BLOCK
    assert body.tell() == SEND_BLOCK  # measuring moved nothing


def test_payload_hash_read_the_way_botocore_signs_is_the_bytes_hash() -> None:
    """botocore's signer hashes a seekable body in 1 MiB reads until b"" and seeks back."""
    body = PartBody(DATA)
    digest = hashlib.sha256()

    for chunk in iter(functools.partial(body.read, 1024 * 1024), b""):
        digest.update(chunk)
    body.seek(0)

    assert digest.hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert bytes(body.read()) == DATA


def test_each_chunk_pays_the_throttle_before_it_is_handed_over() -> None:
    """The uplink budget's hook: read() and readinto() call it with each chunk's length,
    before the chunk goes; nothing is paid for an empty read."""
    paid: list[int] = []
    body = PartBody(DATA, throttle=paid.append)

    first = body.read(16 * 1024)
    buffer = bytearray(1000)
    filled = body.readinto(buffer)
    body.read()
    body.read()
    body.readinto(buffer)

    assert paid == [len(first), filled, len(DATA) - len(first) - filled]
    assert sum(paid) == len(DATA)
