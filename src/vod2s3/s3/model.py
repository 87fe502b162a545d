"""The uploader's value types: where to write, as whom, what, how, and what came back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass(frozen=True)
class S3Target:
    """Where to write and as whom. ``endpoint_url`` "" means AWS itself."""

    access_key_id: str
    # Kept out of repr so a logged target or a traceback never shows the secret.
    secret_access_key: str = field(repr=False)
    region: str
    endpoint_url: str = ""
    # "auto": path-style for a custom endpoint (S3-compatible stores are usually reached by
    # address), virtual-hosted on AWS; or "path", "virtual".
    addressing_style: str = "auto"
    ca_bundle: str = ""  # a PEM file to trust for an https endpoint with a private CA
    payload_signing: str = ""  # "auto", "on", "off"; "" follows the service's setting


@dataclass(frozen=True)
class ObjectSpec:
    """What to write. Empty strings mean "do not send this option"."""

    bucket: str
    key: str
    acl: str
    metadata: Mapping[str, str]
    content_type: str
    cache_control: str = ""
    storage_class: str = ""
    server_side_encryption: str = ""
    sse_kms_key_id: str = ""
    request_payer: str = ""


@dataclass(frozen=True)
class UploadTuning:
    """How to send: one PutObject below the threshold, else parts sent in parallel."""

    multipart_threshold: int = 16 * MIB
    part_size: int = 16 * MIB
    parts_in_flight: int = 4
    # The check every body carries (vod2s3.s3.integrity): "crc32c", "md5" or "sha256".
    integrity: str = "crc32c"

    def __post_init__(self) -> None:
        if self.parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")
        if self.part_size < 1:
            raise ValueError("part_size must be positive")
        if self.integrity not in ("crc32c", "md5", "sha256"):
            raise ValueError(f"integrity must be crc32c, md5 or sha256, not {self.integrity!r}")


@dataclass(frozen=True)
class UploadOutcome:
    """What S3 said: the record's ``results``, ``status`` and final checksum."""

    results: dict[str, str]
    s3_status: int
    checksum: str
