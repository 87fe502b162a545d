"""CRC32C in S3's form (base64 of the big-endian value): the cheapest check a body can carry,
verified by AWS S3 and not by every store (s3/integrity.py).

CRC32C because awscrt computes it with the CPU's CRC instruction: 0.08 CPU-s/GiB on these
machines against 0.47 for zlib's CRC32 and 0.7 for SHA-256 (docs/benchmarks.md). Composite
multipart checksums (one CRC32C per part, S3 checks each) need no combining step, unlike
CRC64NVME's full-object form.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Final

from awscrt.checksums import crc32c

ALGORITHM: Final = "CRC32C"  # sent as ChecksumCRC32C on PutObject, UploadPart and Complete


def checksum(data: bytes) -> str:
    return encoded(crc32c(data))


def running(data: bytes, previous: int) -> int:
    """The CRC32C of the bytes so far and ``data`` after them (``previous`` 0 to begin)."""
    return int(crc32c(data, previous))


def encoded(value: int) -> str:
    """A CRC32C value in S3's form."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def composite(part_checksums: Sequence[str]) -> str:
    """S3's composite multipart checksum: the checksum of the parts' raw checksums, "-N"."""
    raw = b"".join(base64.b64decode(value) for value in part_checksums)
    return f"{checksum(raw)}-{len(part_checksums)}"
