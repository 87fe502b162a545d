"""The request parameters an ObjectSpec turns into, shared by PutObject and multipart."""

from __future__ import annotations

from typing import Any

from vod2s3.headers import encode_metadata
from vod2s3.s3.model import ObjectSpec


def object_params(spec: ObjectSpec) -> dict[str, Any]:
    """Parameters for PutObject / CreateMultipartUpload; empty options are left out."""
    params: dict[str, Any] = {
        "Bucket": spec.bucket,
        "Key": spec.key,
        "Metadata": encode_metadata(spec.metadata),
    }
    # 'private' is S3's default, and buckets with Object Ownership "bucket owner enforced"
    # (the default for new buckets) refuse any ACL header, so private is sent as no ACL.
    if spec.acl and spec.acl != "private":
        params["ACL"] = spec.acl
    optional = {
        "ContentType": spec.content_type,
        "CacheControl": spec.cache_control,
        "StorageClass": spec.storage_class,
        "ServerSideEncryption": spec.server_side_encryption,
        "SSEKMSKeyId": spec.sse_kms_key_id,
    }
    params.update({name: value for name, value in optional.items() if value})
    params.update(payer_params(spec))
    return params


def payer_params(spec: ObjectSpec) -> dict[str, Any]:
    """Requester-pays buckets want the acknowledgement on every request, parts included."""
    return {"RequestPayer": spec.request_payer} if spec.request_payer else {}


def sent_options(spec: ObjectSpec) -> dict[str, str]:
    """The object options this upload sends, by their API field names (for messages)."""
    options = {
        "acl": spec.acl if spec.acl != "private" else "",
        "content_type": spec.content_type,
        "cache_control": spec.cache_control,
        "storage_class": spec.storage_class,
        "server_side_encryption": spec.server_side_encryption,
        "sse_kms_key_id": spec.sse_kms_key_id,
        "request_payer": spec.request_payer,
    }
    return {name: value for name, value in options.items() if value}
