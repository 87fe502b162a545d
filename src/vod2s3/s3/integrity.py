"""The check that covers every byte sent, and that the store must verify.

Three checks, because stores differ in which they verify (docs/compatibility.md):

- ``crc32c``: a flexible checksum (``x-amz-checksum-crc32c``) on every PutObject and
  UploadPart, a composite one on the multipart upload. Cheapest (CRC instruction). AWS and
  moto verify it; Ceph RGW 16, older MinIO and several vendors accept it and ignore it.
- ``md5``: ``Content-MD5`` on every PutObject and UploadPart. Nearly every store verifies it.
- ``sha256``: the SigV4 signature covers a SHA-256 of each body (payload signing). Stores
  that check SigV4 fully verify it; the dearest in CPU.

The record's ``checksum`` is the object's final checksum in the chosen check's terms
(``CRC32C:…``, ``MD5:…``, ``SHA256:…``; composite multipart values end in ``-N``), and its
``integrity`` says which check it was and whether the store was seen to verify it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from vod2s3.s3 import checksum as crc
from vod2s3.s3.results import final_checksum as reported_or_computed

Mode = Literal["crc32c", "md5", "sha256"]
MODES: Final[tuple[Mode, ...]] = ("crc32c", "md5", "sha256")  # cheapest first
ALGORITHMS: Final[dict[Mode, str]] = {"crc32c": "CRC32C", "md5": "MD5", "sha256": "SHA256"}


def part_check(mode: Mode, data: bytes) -> str:
    """The check value of one body, as it is kept in the part journal. CRC32C values stay
    bare (as every journal before other modes holds them); others carry their mode."""
    return blocks_check(mode, [data])


def blocks_check(mode: Mode, blocks: Iterable[bytes]) -> str:
    """:func:`part_check` of the body made of ``blocks`` in order, without ever holding the
    whole body: a part is checked block by block as it is read from the file."""
    check = RunningCheck(mode)
    for block in blocks:
        check.update(block)
    return check.value()


class RunningCheck:
    """The check value of bytes seen a block at a time."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self._crc = 0
        # MD5 here is S3's integrity check (Content-MD5), not a security measure.
        self._hash = None if mode == "crc32c" else hashlib.new(mode, usedforsecurity=False)

    def update(self, block: bytes) -> None:
        if self._hash is None:
            self._crc = crc.running(block, self._crc)
        else:
            self._hash.update(block)

    def value(self) -> str:
        if self._hash is None:
            return crc.encoded(self._crc)
        return f"{self.mode}:{base64.b64encode(self._hash.digest()).decode('ascii')}"


def _digest(mode: Mode, data: bytes) -> str:
    """``data``'s MD5 or SHA-256 in base64, without the mode's prefix."""
    check = RunningCheck(mode)
    check.update(data)
    return _bare(check.value())


def mode_of(part_value: str) -> Mode:
    """The mode a journaled part value was made with."""
    prefix, _, _ = part_value.partition(":")
    return prefix if prefix in ("md5", "sha256") else "crc32c"  # type: ignore[return-value]


def _bare(part_value: str) -> str:
    return part_value.partition(":")[2] if ":" in part_value else part_value


def body_params(mode: Mode, part_value: str) -> dict[str, Any]:
    """What PutObject or UploadPart sends for the check (sha256: the signature does it)."""
    if mode == "crc32c":
        return {"ChecksumAlgorithm": crc.ALGORITHM, "ChecksumCRC32C": part_value}
    if mode == "md5":
        return {"ContentMD5": _bare(part_value)}
    return {}


def create_params(mode: Mode) -> dict[str, Any]:
    """What CreateMultipartUpload sends: only the flexible checksum is declared there."""
    if mode == "crc32c":
        return {"ChecksumAlgorithm": crc.ALGORITHM, "ChecksumType": "COMPOSITE"}
    return {}


def completed_part(mode: Mode, number: int, etag: str, part_value: str) -> dict[str, Any]:
    part: dict[str, Any] = {"PartNumber": number, "ETag": etag}
    if mode == "crc32c":
        part["ChecksumCRC32C"] = part_value
    return part


def composite(mode: Mode, part_values: Sequence[str]) -> str:
    """The multipart object's checksum: the check over the parts' raw checks, "-N" (S3's
    composite form; for MD5 the same as S3's multipart ETag, in base64)."""
    if mode == "crc32c":
        return crc.composite(list(part_values))
    raw = b"".join(base64.b64decode(_bare(value)) for value in part_values)
    return f"{_digest(mode, raw)}-{len(part_values)}"


def final_checksum(
    mode: Mode, response: Mapping[str, Any], computed: str, *, parts: int = 0
) -> str:
    """The record's ``checksum``: for crc32c S3's own value when it reports one (see
    :func:`vod2s3.s3.results.final_checksum`); otherwise what we computed and the store
    checked body by body."""
    if mode == "crc32c":
        return reported_or_computed(response, computed, parts=parts)
    return f"{ALGORITHMS[mode]}:{_bare(computed)}"
