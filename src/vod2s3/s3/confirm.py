"""What the store really did with an object it has just accepted.

S3's answer to PutObject or CompleteMultipartUpload is the record's ``results``. Some stores
answer short: Ceph RGW 16 sends an empty ``<ETag>`` after a multipart upload, and an RGW
without SSE configured stores an object unencrypted over https and says nothing. A record
never says more than what happened, so:

- an empty ETag (or a missing VersionId, or missing SSE fields) is filled from a HeadObject
  of the version just written;
- encryption or a storage class that was asked for and is confirmed neither by the answer
  nor by HeadObject fails the upload with its own code (``EncryptionNotApplied``,
  ``StorageClassNotApplied``), after the version just written is deleted: an object that is
  not what the customer asked for is not left behind as if it were.

On AWS, which always answers with the ETag and echoes SSE, nothing here costs a request
unless a storage class other than STANDARD was asked for (PutObject's answer never states
the class).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vod2s3.s3.failure import AttemptFailure
from vod2s3.s3.model import ObjectSpec
from vod2s3.s3.params import payer_params

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# Filled from HeadObject when the answer left them out.
_FILLED = ("ETag", "VersionId", "ServerSideEncryption", "SSEKMSKeyId")
STANDARD = "STANDARD"


def confirmed(client: S3Client, spec: ObjectSpec, response: Mapping[str, Any]) -> dict[str, Any]:
    """``response`` with what HeadObject adds where it fell short; raises
    :class:`AttemptFailure` (not retryable) when an encryption or storage class asked for
    did not happen."""
    answer = dict(response)
    sse_unconfirmed = bool(spec.server_side_encryption) and not answer.get("ServerSideEncryption")
    class_asked = spec.storage_class not in ("", STANDARD)
    if answer.get("ETag") and not sse_unconfirmed and not class_asked:
        return answer
    head, refused = _head(client, spec, answer)
    for name in _FILLED:
        if not answer.get(name) and head.get(name):
            answer[name] = head[name]
    why = f" (HeadObject was refused: {refused})" if refused else ""
    if spec.server_side_encryption and answer.get("ServerSideEncryption") != (
        spec.server_side_encryption
    ):
        stated = answer.get("ServerSideEncryption") or "none"
        removed = _remove(client, spec, answer)
        raise AttemptFailure(
            retryable=False,
            s3_status=0,
            code="EncryptionNotApplied",
            message=(
                f"server_side_encryption {spec.server_side_encryption} was asked for, but the "
                f"store did not confirm it (it states: {stated}){why}; {removed}. Enable "
                "that encryption on the store, or upload without server_side_encryption"
            ),
        )
    if class_asked and head.get("StorageClass", STANDARD if not refused else "") != (
        spec.storage_class
    ):
        stated = head.get("StorageClass", STANDARD) if not refused else "unknown"
        removed = _remove(client, spec, answer)
        raise AttemptFailure(
            retryable=False,
            s3_status=0,
            code="StorageClassNotApplied",
            message=(
                f"storage_class {spec.storage_class} was asked for, but the store keeps the "
                f"object as {stated}{why}; {removed}. Use a storage class the store offers"
            ),
        )
    return answer


def _target(spec: ObjectSpec, answer: Mapping[str, Any]) -> dict[str, Any]:
    """Bucket, key, the version just written, and the requester-pays acknowledgement."""
    return {"Bucket": spec.bucket, "Key": spec.key, **_version(answer), **payer_params(spec)}


def _version(answer: Mapping[str, Any]) -> dict[str, Any]:
    # "null" is a real version id on AWS (objects written while versioning is suspended);
    # asking for it is as exact as asking without one.
    version = answer.get("VersionId")
    return {"VersionId": str(version)} if version else {}


def _head(
    client: S3Client, spec: ObjectSpec, answer: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """HeadObject of the version just written, or ({}, why it was refused)."""
    try:
        head = client.head_object(**_target(spec, answer))
    except ClientError as error:
        # Credentials that may write but not read: nothing to add, and the record keeps
        # only what the upload's own answer said.
        code = error.response.get("Error", {}).get("Code") or "error"
        return {}, str(code)
    except BotoCoreError as error:
        return {}, type(error).__name__
    return dict(head), ""


def _remove(client: S3Client, spec: ObjectSpec, answer: Mapping[str, Any]) -> str:
    """Delete the version just written; what became of it, for the message."""
    try:
        client.delete_object(**_target(spec, answer))
    except (ClientError, BotoCoreError) as error:
        log.warning("could not delete s3://%s/%s: %s", spec.bucket, spec.key, error)
        return f"the object could not be deleted ({error}): delete s3://{spec.bucket}/{spec.key}"
    return "the object was deleted again"
