"""PartBody: a part's bytes read from the file block by block as urllib3 sends them."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import os
from collections.abc import Iterator

import pytest
from botocore.utils import determine_content_length

from tests.helpers import BytesSource
from vod2s3.s3 import checksum as crc
from vod2s3.s3.body import SEND_BLOCK, PartBody, signing_began, signing_ended
from vod2s3.s3.failure import AttemptFailure
from vod2s3.s3.integrity import MODES, Mode, blocks_check, part_check

DATA = os.urandom(3 * SEND_BLOCK + 12345)
# The part is a range in the middle of a larger file.
BEFORE, AFTER = os.urandom(777), os.urandom(555)
FILE = BEFORE + DATA + AFTER


def body(throttle: list[int] | None = None, expected: tuple[Mode, str] | None = None) -> PartBody:
    paid = None if throttle is None else throttle.append
    return PartBody(BytesSource(FILE), len(BEFORE), len(DATA), paid, expected)


@pytest.fixture
def signer_reading() -> Iterator[None]:
    """As botocore's signer hashes a body: the flag s3/client.py sets around it."""
    signing_began()
    try:
        yield
    finally:
        signing_ended()


def test_a_small_read_returns_a_whole_send_block() -> None:
    part = body()

    first = part.read(16 * 1024)  # what urllib3 asks for

    assert bytes(first) == DATA[:SEND_BLOCK]
    assert part.tell() == SEND_BLOCK
    assert part.read(0) == b""
    assert part.tell() == SEND_BLOCK


def test_reads_in_any_sizes_give_back_exactly_the_bytes_of_the_range() -> None:
    part = body()
    pieces = [bytes(part.read(size)) for size in (1, SEND_BLOCK * 2, 10)]

    assert b"".join([*pieces, bytes(part.read())]) == DATA
    assert bytes(part.read(16 * 1024)) == b""
    assert not part.read()


def test_a_request_in_flight_holds_one_block_not_the_part() -> None:
    source = BytesSource(FILE)
    part = PartBody(source, len(BEFORE), len(DATA))

    chunk = part.read(16 * 1024)

    assert len(chunk) == SEND_BLOCK
    assert source.bytes_read == SEND_BLOCK  # nothing read ahead


def test_readinto_fills_no_more_than_the_buffer() -> None:
    part = body()
    buffer = bytearray(1000)

    assert part.readinto(buffer) == 1000
    assert bytes(buffer) == DATA[:1000]
    assert part.tell() == 1000
    part.seek(-10, io.SEEK_END)
    assert part.readinto(buffer) == 10
    assert bytes(buffer[:10]) == DATA[-10:]
    assert part.readinto(buffer) == 0  # the range ends where the part does, not the file


def test_seek_and_tell_follow_io_conventions() -> None:
    part = body()

    assert part.seek(0, io.SEEK_END) == len(DATA)
    assert part.seek(-5, io.SEEK_CUR) == len(DATA) - 5
    assert part.seek(7) == 7
    assert bytes(part.read(1))[:1] == DATA[7:8]
    with pytest.raises(ValueError, match="negative"):
        part.seek(-1)
    with pytest.raises(ValueError, match="whence"):
        part.seek(0, 3)


def test_a_resend_after_seeking_to_zero_sends_the_same_bytes() -> None:
    part = body()
    first = b"".join(bytes(c) for c in iter(functools.partial(part.read, SEND_BLOCK), b""))

    part.seek(0)
    second = b"".join(bytes(c) for c in iter(functools.partial(part.read, SEND_BLOCK), b""))

    assert first == second == DATA


def test_botocore_measures_the_remaining_length() -> None:
    part = body()

    assert determine_content_length(part) == len(DATA)
    part.read(100)
    assert determine_content_length(part) == len(DATA) - SEND_BLOCK
    assert part.tell() == SEND_BLOCK  # measuring moved nothing


def test_payload_hash_read_the_way_botocore_signs_is_the_bytes_hash(signer_reading: None) -> None:
    """botocore's signer hashes a seekable body in 1 MiB reads until b"" and seeks back."""
    part = body()
    digest = hashlib.sha256()

    for chunk in iter(functools.partial(part.read, 1024 * 1024), b""):
        digest.update(chunk)
    part.seek(0)

    assert digest.hexdigest() == hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize("mode", MODES)
def test_the_check_of_the_blocks_is_the_check_of_the_whole_buffer(mode: Mode) -> None:
    """The journal's values must not change: a part checked block by block has the value a
    part read whole had."""
    blocks = [DATA[i : i + SEND_BLOCK] for i in range(0, len(DATA), SEND_BLOCK)]
    whole = {
        "crc32c": crc.checksum(DATA),
        "md5": "md5:"
        + base64.b64encode(hashlib.md5(DATA, usedforsecurity=False).digest()).decode(),
        "sha256": "sha256:" + base64.b64encode(hashlib.sha256(DATA).digest()).decode(),
    }[mode]

    assert blocks_check(mode, blocks) == part_check(mode, DATA) == whole
    assert len(blocks) == 4


def test_each_chunk_pays_the_throttle_before_it_is_handed_over() -> None:
    """The uplink budget's hook: read() and readinto() call it with each chunk's length,
    before the chunk goes; nothing is paid for an empty read."""
    paid: list[int] = []
    part = body(paid)

    first = part.read(16 * 1024)
    buffer = bytearray(1000)
    filled = part.readinto(buffer)
    part.read()
    part.read()
    part.readinto(buffer)

    assert paid == [len(first), filled, len(DATA) - len(first) - filled]
    assert sum(paid) == len(DATA)


def test_the_signers_reads_are_not_paid_and_the_send_is_paid_once() -> None:
    paid: list[int] = []
    part = body(paid)

    signing_began()
    try:
        for _ in iter(functools.partial(part.read, 1024 * 1024), b""):
            pass
        part.seek(0)
    finally:
        signing_ended()
    assert paid == []
    for _ in iter(functools.partial(part.read, 16 * 1024), b""):
        pass

    assert sum(paid) == len(DATA)


def test_the_signers_pass_must_match_the_sha256_check_pass(signer_reading: None) -> None:
    """sha256 has no header for the store to check our value: the signer's hash is what it
    checks. Bytes the signer reads that differ from the checked ones end the request."""
    value = part_check("sha256", DATA)
    good = body(expected=("sha256", value))
    for _ in iter(functools.partial(good.read, SEND_BLOCK), b""):
        pass

    changed = PartBody(
        BytesSource(DATA[:-1] + bytes([DATA[-1] ^ 1])), 0, len(DATA), None, ("sha256", value)
    )
    with pytest.raises(AttemptFailure) as failure:
        for _ in iter(functools.partial(changed.read, SEND_BLOCK), b""):
            pass
    assert failure.value.code == "SourceChanged"
