"""Turn anything the uploader can hit into an :class:`AttemptFailure`: retryable or not, and why.

A pure mapping, so the worker's retry policy and the customer's message are decided in one
place. Messages quote S3's own code and message (never request headers, which carry signatures)
and say what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from vod2s3.s3.failure import AttemptFailure

log = logging.getLogger(__name__)

_RETRY = "; the upload will be retried"

# Codes worth another attempt. Besides these, every 5xx and 429 is retried; the rest (4xx:
# credentials, permissions, bucket, options) would fail the same way again, so are permanent.
__RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "ServiceUnavailable",
        # Bytes damaged or cut short on the wire: sending them again fixes it.
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "IncompleteBody",
        # The multipart upload vanished (a lifecycle rule, another client): a new one will do.
        "NoSuchUpload",
        "OperationAborted",
    }
)

_CONNECTION_ERRORS = (
    BotoConnectionError,  # refused, unknown host, TLS handshake, proxy
    HTTPClientError,  # dropped connection, broken response stream
    IncompleteReadError,
)


def classify(
    exc: BaseException, *, bucket: str = "", options: Mapping[str, str] | None = None
) -> AttemptFailure:
    """Map ``exc`` to an :class:`AttemptFailure`. ``bucket`` and ``options`` (the object
    options that were sent, by field name) only make the message more precise."""
    if isinstance(exc, AttemptFailure):
        return exc
    # Raised by a body as it was read to be sent (a changed source, s3/body.py), and
    # wrapped by botocore as if the connection had failed.
    inner = exc.kwargs.get("error") if isinstance(exc, HTTPClientError) else None
    if isinstance(inner, AttemptFailure):
        return inner
    if isinstance(exc, ClientError):
        return _from_client_error(exc, bucket, options or {})
    if isinstance(exc, BotoCoreError):
        return _from_botocore_error(exc)
    if isinstance(exc, OSError):
        return AttemptFailure(
            retryable=False,
            s3_status=0,
            code="SourceUnreadable",
            message=f"The source file could not be read ({exc.strerror or exc}). "
            "Check that it exists and that the worker may read it",
        )
    return AttemptFailure(
        retryable=False,
        s3_status=0,
        code="UploaderError",
        message=f"Unexpected error while uploading ({type(exc).__name__}: {exc}); "
        "this is a bug in vod2s3, please report it",
    )


def _from_botocore_error(exc: BotoCoreError) -> AttemptFailure:
    # Timeouts first: ConnectTimeoutError is also an EndpointConnectionError.
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return AttemptFailure(
            retryable=True,
            s3_status=0,
            code="Timeout",
            message=f"S3 did not answer in time ({exc}){_RETRY}",
        )
    if isinstance(exc, _CONNECTION_ERRORS):
        return AttemptFailure(
            retryable=True,
            s3_status=0,
            code="ConnectionError",
            message=f"The connection to S3 failed ({exc}){_RETRY}",
        )
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AttemptFailure(
            retryable=False,
            s3_status=0,
            code="NoCredentials",
            message="The account has no complete AWS credentials. "
            "Set them with 'vod2s3 accounts set-aws'",
        )
    if isinstance(exc, ParamValidationError):
        return AttemptFailure(
            retryable=False,
            s3_status=0,
            code="ParamValidation",
            message=f"The upload's options are not valid for S3 ({exc})",
        )
    # The rest are configuration problems (missing dependency, unknown region...): trying
    # again would fail the same way.
    return AttemptFailure(
        retryable=False,
        s3_status=0,
        code=type(exc).__name__,
        message=f"The S3 client could not send the upload ({exc})",
    )


def _from_client_error(exc: ClientError, bucket: str, options: Mapping[str, str]) -> AttemptFailure:
    # Stores such as Ceph RGW often send an empty <Message>: what they did send is kept
    # for the operator (no credentials are in a response).
    log.debug("S3 error response: %r", exc.response)
    error: Mapping[str, Any] = exc.response.get("Error", {})
    meta: Mapping[str, Any] = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "Unknown")
    status = int(meta.get("HTTPStatusCode") or 0)
    s3_message = str(error.get("Message") or "")
    detail = f"{code}: {s3_message}" if s3_message else code
    bucket = str(error.get("BucketName") or bucket)
    retryable = code in __RETRYABLE_CODES or status >= 500 or status == 429
    describe = _DESCRIBE.get(code) or _describe_by_family(code, retryable)
    return AttemptFailure(
        retryable=retryable,
        s3_status=status,
        code=code,
        message=describe(_Context(bucket, detail, status, error, options)),
    )


class _Context:
    """What a message template may use."""

    def __init__(
        self,
        bucket: str,
        detail: str,
        status: int,
        error: Mapping[str, Any],
        options: Mapping[str, str],
    ) -> None:
        self.the_bucket = f"bucket '{bucket}'" if bucket else "the bucket"
        self.subject = self.the_bucket[0].upper() + self.the_bucket[1:]
        self.detail = detail
        self.status = status
        self.error = error
        self.options = options
        self.said_why = bool(error.get("Message"))


_Describe = Callable[[_Context], str]


def _access_denied(c: _Context) -> str:
    return (
        f"S3 refused access to {c.the_bucket} ({c.detail}). Check that the account's AWS "
        "credentials may s3:PutObject on this bucket (and s3:PutObjectAcl for acl 'public-read')"
    )


def _invalid_key_id(c: _Context) -> str:
    return (
        f"S3 does not know the account's AWS access key id ({c.detail}). "
        "Check the access key id set for the account"
    )


def _bad_signature(c: _Context) -> str:
    return (
        f"S3 rejected the request signature ({c.detail}). "
        "Check the secret access key set for the account"
    )


def _expired_token(c: _Context) -> str:
    return f"The account's AWS credentials have expired ({c.detail}). Set new ones for the account"


def _no_such_bucket(c: _Context) -> str:
    return (
        f"{c.subject} does not exist ({c.detail}). "
        "Check the bucket name and the account's region and endpoint"
    )


def _invalid_bucket_name(c: _Context) -> str:
    return f"{c.subject} has a name S3 does not accept ({c.detail})"


def _acl_not_supported(c: _Context) -> str:
    # We only ever send an ACL for 'public-read' ('private' is S3's default and sent as nothing).
    return (
        f"{c.subject} has ACLs disabled (Object Ownership: Bucket owner enforced), so acl "
        "'public-read' cannot be applied. Upload with acl 'private' and grant read access with a "
        "bucket policy, or set the bucket's Object Ownership to 'Bucket owner preferred'"
    )


def _wrong_region(c: _Context) -> str:
    region = c.error.get("Region")
    where = f" ('{region}')" if region else ""
    return (
        f"{c.subject} is in another region than the account's ({c.detail}). "
        f"Set the account's AWS region to the bucket's region{where}"
    )


def _kms(c: _Context) -> str:
    return (
        f"S3 could not encrypt with the KMS key ({c.detail}). Check sse_kms_key_id and that the "
        "account's credentials may use the key (kms:GenerateDataKey, kms:Decrypt)"
    )


def _too_large(c: _Context) -> str:
    return f"The file is larger than S3 accepts for one object ({c.detail})"


def _skewed(c: _Context) -> str:
    return f"This server's clock is too far from S3's ({c.detail}). Synchronise it (NTP){_RETRY}"


def _slow_down(c: _Context) -> str:
    return f"S3 asked to slow down ({c.detail}){_RETRY}"


def _request_timeout(c: _Context) -> str:
    return f"S3 gave up waiting for the data ({c.detail}){_RETRY}"


def _damaged(c: _Context) -> str:
    return f"S3 received damaged or incomplete data ({c.detail}){_RETRY}"


def _upload_vanished(c: _Context) -> str:
    return (
        f"The multipart upload disappeared from S3 before it finished ({c.detail}), "
        "e.g. removed by a lifecycle rule; the upload will start over"
    )


def _temporary(c: _Context) -> str:
    return f"S3 had a temporary problem (HTTP {c.status}, {c.detail}){_RETRY}"


def _rejected(c: _Context) -> str:
    why = "" if c.said_why else " without saying why"
    if not c.options:
        return (
            f"S3 rejected the upload (HTTP {c.status}, {c.detail}){why}; no object options "
            "were sent beyond bucket, key and metadata"
        )
    sent = ", ".join(f"{name}={value}" for name, value in c.options.items())
    return (
        f"S3 rejected the upload (HTTP {c.status}, {c.detail}){why}. Options sent: {sent}; "
        "check that the store offers each of them"
    )


_DESCRIBE: dict[str, _Describe] = {
    "AccessDenied": _access_denied,
    "AllAccessDisabled": _access_denied,
    "InvalidAccessKeyId": _invalid_key_id,
    "SignatureDoesNotMatch": _bad_signature,
    "ExpiredToken": _expired_token,
    "TokenRefreshRequired": _expired_token,
    "NoSuchBucket": _no_such_bucket,
    "InvalidBucketName": _invalid_bucket_name,
    "AccessControlListNotSupported": _acl_not_supported,
    "PermanentRedirect": _wrong_region,
    "AuthorizationHeaderMalformed": _wrong_region,
    "IllegalLocationConstraintException": _wrong_region,
    "EntityTooLarge": _too_large,
    "RequestTimeTooSkewed": _skewed,
    "SlowDown": _slow_down,
    "Throttling": _slow_down,
    "ThrottlingException": _slow_down,
    "RequestTimeout": _request_timeout,
    "BadDigest": _damaged,
    "XAmzContentSHA256Mismatch": _damaged,
    "IncompleteBody": _damaged,
    "NoSuchUpload": _upload_vanished,
}


def _describe_by_family(code: str, retryable: bool) -> _Describe:
    if code.startswith("KMS."):
        return _kms
    return _temporary if retryable else _rejected
