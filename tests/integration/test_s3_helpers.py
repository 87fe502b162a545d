"""The uploader's pure pieces: part plans, object URLs, metadata encoding, checksums."""

from __future__ import annotations

import base64

import pytest

from vod2s3.headers import decode_value, encode_value
from vod2s3.s3 import AttemptFailure, S3Target, UploadTuning, make_client, object_url
from vod2s3.s3.checksum import checksum, composite
from vod2s3.s3.parts import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, part_size_for, plan_parts
from vod2s3.s3.results import final_checksum

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB


# --- parts ----------------------------------------------------------------------------------


def test_plan_covers_the_file_exactly_with_a_short_last_part() -> None:
    parts = plan_parts(17 * MIB + 5, 5 * MIB)

    assert [p.number for p in parts] == [1, 2, 3, 4]
    assert [p.offset for p in parts] == [0, 5 * MIB, 10 * MIB, 15 * MIB]
    assert [p.length for p in parts] == [5 * MIB, 5 * MIB, 5 * MIB, 2 * MIB + 5]


def test_plan_of_an_exact_multiple_has_no_empty_part() -> None:
    assert [p.length for p in plan_parts(10 * MIB, 5 * MIB)] == [5 * MIB, 5 * MIB]


def test_part_size_keeps_the_configured_minimum_when_parts_fit() -> None:
    assert part_size_for(1 * GIB, 16 * MIB) == 16 * MIB


def test_part_size_is_never_below_s3s_minimum() -> None:
    assert part_size_for(100 * MIB, 1 * MIB) == MIN_PART_SIZE


@pytest.mark.parametrize("size", [200 * GIB, 5 * TIB, 5 * TIB + 1, 48 * TIB])
def test_part_size_grows_to_stay_within_ten_thousand_parts(size: int) -> None:
    part_size = part_size_for(size, 16 * MIB)

    assert part_size % MIB == 0
    assert part_size <= MAX_PART_SIZE
    assert len(range(0, size, part_size)) <= MAX_PARTS


def test_file_beyond_ten_thousand_largest_parts_is_refused_permanently() -> None:
    with pytest.raises(AttemptFailure) as failure:
        part_size_for(MAX_PARTS * MAX_PART_SIZE + 1, 16 * MIB)

    assert failure.value.code == "EntityTooLarge"
    assert failure.value.retryable is False


def test_tuning_refuses_no_parts_in_flight() -> None:
    with pytest.raises(ValueError, match="parts_in_flight"):
        UploadTuning(parts_in_flight=0)


# --- object URLs ----------------------------------------------------------------------------


def test_aws_url_is_virtual_hosted_with_the_key_encoded() -> None:
    target = S3Target("k", "s", "eu-west-1")

    url = object_url(target, "videos", "a b/é+c~d.mp4")

    assert url == "https://videos.s3.eu-west-1.amazonaws.com/a%20b/%C3%A9%2Bc~d.mp4"


def test_us_east_1_uses_the_regional_form() -> None:
    url = object_url(S3Target("k", "s", "us-east-1"), "videos", "clip.mp4")

    assert url == "https://videos.s3.us-east-1.amazonaws.com/clip.mp4"


def test_custom_endpoint_url_is_path_style() -> None:
    target = S3Target("k", "s", "us-east-1", "http://127.0.0.1:9000/")

    assert object_url(target, "videos", "dir/clip 1.mp4") == (
        "http://127.0.0.1:9000/videos/dir/clip%201.mp4"
    )


def test_target_repr_hides_the_secret() -> None:
    assert "top-secret" not in repr(S3Target("AKIA", "top-secret", "us-east-1"))


# --- metadata -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["plain", "Season 1 / Episode 2", "", "a=b?c"])
def test_plain_ascii_values_are_sent_unchanged(value: str) -> None:
    assert encode_value(value) == value


@pytest.mark.parametrize(
    "value",
    ["Café", "東京の夜", "line\nbreak", " padded ", "=?UTF-8?B?abc?=", "ü" * 500],
)
def test_other_values_are_rfc2047_encoded_and_decode_back(value: str) -> None:
    encoded = encode_value(value)

    assert encoded.startswith("=?UTF-8?B?")
    assert encoded.endswith("?=")
    assert encoded.isascii()
    assert decode_value(encoded) == value


def test_plain_values_decode_to_themselves() -> None:
    assert decode_value("plain ascii") == "plain ascii"


# --- checksums ------------------------------------------------------------------------------


def reference_crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) bit by bit, straight from its definition: slow, but independent
    of the library the service uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def test_checksum_is_crc32c_as_base64_of_the_big_endian_value() -> None:
    assert reference_crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert checksum(b"123456789") == b64(0xE3069283)
    sample = bytes(range(256)) * 3
    assert checksum(sample) == b64(reference_crc32c(sample))


def test_composite_is_the_crc_of_the_part_crcs() -> None:
    parts = [b"a" * 10, b"b" * 20, b"c"]
    raw = b"".join(reference_crc32c(p).to_bytes(4, "big") for p in parts)

    assert composite([checksum(p) for p in parts]) == f"{b64(reference_crc32c(raw))}-3"


def test_final_checksum_prefers_what_s3_reports() -> None:
    assert final_checksum({"ChecksumCRC32": "s3says=="}, "ours") == "CRC32:s3says=="
    assert final_checksum({"ChecksumCRC32C": "c=="}, "ours") == "CRC32C:c=="


def test_final_checksum_falls_back_to_ours_when_s3_reports_none() -> None:
    assert final_checksum({}, "ours==") == "CRC32C:ours=="
    assert final_checksum({}, "ours==-3", parts=3) == "CRC32C:ours==-3"


def test_final_composite_checksum_always_ends_with_the_part_count() -> None:
    assert final_checksum({"ChecksumCRC32": "abc=="}, "x", parts=4) == "CRC32:abc==-4"
    assert final_checksum({"ChecksumCRC32": "abc==-4"}, "x", parts=4) == "CRC32:abc==-4"
    full = {"ChecksumCRC32": "abc==", "ChecksumType": "FULL_OBJECT"}
    assert final_checksum(full, "x", parts=4) == "CRC32:abc=="


@pytest.mark.parametrize(
    ("endpoint", "style", "expected"),
    [
        ("http://127.0.0.1:9", "auto", "path"),
        ("", "auto", "auto"),
        ("http://127.0.0.1:9", "virtual", "virtual"),
        ("", "path", "path"),
    ],
)
def test_addressing_style_per_account(endpoint: str, style: str, expected: str) -> None:
    client = make_client(S3Target("k", "s", "us-east-1", endpoint, addressing_style=style))
    assert client.meta.config.s3["addressing_style"] == expected
