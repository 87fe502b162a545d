"""The object's public URL, as the AWS SDKs report it in Location / ObjectURL."""

from __future__ import annotations

from urllib.parse import quote

from vod2s3.s3.model import S3Target


def object_url(target: S3Target, bucket: str, key: str) -> str:
    """Virtual-hosted style on AWS; path style under a custom endpoint."""
    quoted_key = quote(key, safe="/~")
    if target.endpoint_url:
        return f"{target.endpoint_url.rstrip('/')}/{bucket}/{quoted_key}"
    suffix = "amazonaws.com.cn" if target.region.startswith("cn-") else "amazonaws.com"
    return f"https://{bucket}.s3.{target.region}.{suffix}/{quoted_key}"
