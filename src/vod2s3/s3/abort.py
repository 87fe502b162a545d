"""Getting rid of a failed multipart upload, so its parts stop costing the customer money."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from vod2s3.s3.classify import classify
from vod2s3.s3.model import ObjectSpec
from vod2s3.s3.params import payer_params

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_ROUNDS = 3
_PAUSE_SECONDS = 0.5


def abort_upload(client: S3Client, spec: ObjectSpec, upload_id: str) -> None:
    """Abort and confirm; never raises, as the failure that led here is the one to report.

    S3 documents that a part still being stored when the abort arrives can survive it (a part
    whose response we timed out on may still be in progress there), so the abort is repeated
    while ListParts shows parts. The bucket lifecycle rule AbortIncompleteMultipartUpload is
    the safety net for what this cannot reach.
    """
    where = f"s3://{spec.bucket}/{spec.key} (upload id {upload_id})"
    for round_number in range(1, _ROUNDS + 1):
        try:
            client.abort_multipart_upload(
                Bucket=spec.bucket, Key=spec.key, UploadId=upload_id, **payer_params(spec)
            )
        except Exception as exc:
            if _is_gone(exc):
                return
            failure = classify(exc, bucket=spec.bucket)
            if not failure.retryable:
                log.warning("Could not abort multipart upload %s: %s", where, failure.message)
                return
        else:
            if not _parts_remain(client, spec, upload_id):
                return
        if round_number < _ROUNDS:
            time.sleep(_PAUSE_SECONDS * round_number)
    log.warning("Multipart upload %s may still hold parts after %d aborts", where, _ROUNDS)


def _parts_remain(client: S3Client, spec: ObjectSpec, upload_id: str) -> bool:
    try:
        listed = client.list_parts(
            Bucket=spec.bucket, Key=spec.key, UploadId=upload_id, MaxParts=1, **payer_params(spec)
        )
    except Exception:
        # NoSuchUpload is the expected answer. Anything else (e.g. no s3:ListMultipartUploadParts
        # permission) leaves us unable to check an abort that S3 did accept.
        return False
    return bool(listed.get("Parts"))


def _is_gone(exc: Exception) -> bool:
    return (
        isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "NoSuchUpload"
    )


def abort_strays(client: S3Client, spec: ObjectSpec, keep: str | None) -> None:
    """Abort every multipart upload in progress for ``spec``'s key except ``keep``.

    For an upload that a dead worker may have left between creating a multipart upload and
    recording its id: nobody can resume such an upload, and it would cost the customer
    money until a lifecycle rule removed it. Keyed on the object, not on a time, because
    S3-compatible servers do not all report a true initiation time. Never raises: without
    s3:ListBucketMultipartUploads, the lifecycle rule stays the safety net.
    """
    params: dict[str, str] = {"Bucket": spec.bucket, "Prefix": spec.key}
    try:
        while True:
            page = client.list_multipart_uploads(**params, **payer_params(spec))  # type: ignore[arg-type]
            for stray in page.get("Uploads", []):
                if stray.get("Key") == spec.key and stray.get("UploadId") != keep:
                    abort_upload(client, spec, stray["UploadId"])
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page.get("NextKeyMarker", "")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
    except Exception as exc:
        failure = classify(exc, bucket=spec.bucket)
        log.warning(
            "Could not look for stray multipart uploads of %s: %s", spec.key, failure.message
        )
