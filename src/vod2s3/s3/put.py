"""A small file in one PutObject."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vod2s3.s3.body import part_body
from vod2s3.s3.checksum import ALGORITHM, checksum
from vod2s3.s3.model import ObjectSpec
from vod2s3.s3.params import object_params
from vod2s3.s3.source import SourceFile

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client


def put_object(
    client: S3Client, spec: ObjectSpec, source: SourceFile, size: int
) -> tuple[Mapping[str, Any], str]:
    """S3's answer and the checksum we sent (S3 refuses the object if the bytes do not match)."""
    body = source.read(0, size)
    value = checksum(body)
    response = client.put_object(
        **object_params(spec),
        Body=part_body(body),
        ChecksumAlgorithm=ALGORITHM,
        ChecksumCRC32C=value,
    )
    return response, value
