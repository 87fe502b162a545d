"""Turning S3's PutObject / CompleteMultipartUpload answer into the record's results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vod2s3.contract import RESULT_KEYS
from vod2s3.s3.checksum import ALGORITHM

# Copied from S3's answer as they are. VersionId included: moto answers "null" after a
# multipart upload to an unversioned bucket, but on AWS "null" is the real id of objects written
# while versioning is suspended, and telling the two apart would cost a GetBucketVersioning call
# (a permission customers may not grant). So "null" is passed through, never rewritten.
_FROM_RESPONSE = (
    "ETag",
    "Expiration",
    "RequestCharged",
    "SSEKMSKeyId",
    "ServerSideEncryption",
    "VersionId",
)

_CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def build_results(
    response: Mapping[str, Any], *, bucket: str, key: str, url: str
) -> dict[str, str]:
    """Exactly RESULT_KEYS, "" where S3 said nothing; Location is ours, not the server's."""
    results = dict.fromkeys(RESULT_KEYS, "")
    results.update({name: str(response.get(name) or "") for name in _FROM_RESPONSE})
    results.update(Bucket=bucket, Key=key, Location=url, ObjectURL=url)
    return results


def reported_checksum(response: Mapping[str, Any]) -> tuple[str, str]:
    """(algorithm, value) of the checksum S3 reported, or ("", "") when it reported none."""
    for algorithm in _CHECKSUM_ALGORITHMS:
        value = response.get(f"Checksum{algorithm}")
        if value:
            return algorithm, str(value)
    return "", ""


def response_status(response: Mapping[str, Any]) -> int:
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def final_checksum(response: Mapping[str, Any], computed: str, *, parts: int = 0) -> str:
    """The object's checksum as "ALGO:value"; ``parts`` > 0 for a composite multipart one.

    S3's own answer when it gives one. Some endpoints (moto, older S3-compatible servers)
    store or report none: then the value we computed over the bytes we sent, which is what
    S3 would report. A composite value always ends in "-N", whether or not the endpoint
    writes it so.
    """
    algorithm, value = reported_checksum(response)
    if not value:
        return f"{ALGORITHM}:{computed}"
    if parts and "-" not in value and response.get("ChecksumType") != "FULL_OBJECT":
        value = f"{value}-{parts}"
    return f"{algorithm}:{value}"
