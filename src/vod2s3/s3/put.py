"""A small file in one PutObject."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vod2s3.s3.integrity import Mode, body_params
from vod2s3.s3.model import ObjectSpec
from vod2s3.s3.params import object_params
from vod2s3.s3.source import SourceFile
from vod2s3.s3.streamed import streamed_body

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client


def put_object(
    client: S3Client,
    spec: ObjectSpec,
    source: SourceFile,
    size: int,
    mode: Mode = "crc32c",
    throttle: Callable[[int], None] | None = None,
) -> tuple[Mapping[str, Any], str]:
    """S3's answer and the check value we sent (the store refuses the object if the bytes
    do not match it)."""
    value, body = streamed_body(source, 0, size, mode, throttle)
    response = client.put_object(**object_params(spec), Body=body, **body_params(mode, value))
    return response, value
