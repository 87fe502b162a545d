"""A small file in one PutObject."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vod2s3.s3.body import part_body
from vod2s3.s3.integrity import Mode, body_params, part_check
from vod2s3.s3.model import ObjectSpec
from vod2s3.s3.params import object_params
from vod2s3.s3.source import SourceFile

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
    body = source.read(0, size)
    value = part_check(mode, body)
    response = client.put_object(
        **object_params(spec), Body=part_body(body, throttle), **body_params(mode, value)
    )
    return response, value
