"""Where a bucket is, as the store reports it, so that a wrong region is said before the
first byte is sent instead of as a failed upload."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client


def reported_region(client: S3Client, bucket: str) -> str | None:
    """The ``x-amz-bucket-region`` of a HeadBucket answer (AWS sends it with redirects and
    refusals too), or None where the store does not report it (Ceph RGW) or cannot be
    asked; the upload itself then says what is wrong."""
    headers: dict[str, Any]
    try:
        headers = client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
    except ClientError as error:
        headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except BotoCoreError:
        return None
    region = headers.get("x-amz-bucket-region")
    return str(region) if region else None
