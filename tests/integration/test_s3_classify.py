"""classify(): every failure the uploader can meet, sorted into retryable or permanent."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
    UnknownServiceError,
)

from vod2s3.s3 import AttemptFailure, classify


def client_error(code: str, status: int, message: str = "", **extra: Any) -> ClientError:
    error = {"Code": code, "Message": message, **extra}
    response: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("AllAccessDisabled", 403),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
        ("ExpiredToken", 400),
        ("NoSuchBucket", 404),
        ("InvalidBucketName", 400),
        ("InvalidArgument", 400),
        ("InvalidRequest", 400),
        ("InvalidStorageClass", 400),
        ("EntityTooLarge", 400),
        ("KMS.NotFoundException", 400),
        ("KMS.DisabledException", 400),
        ("PermanentRedirect", 301),
        ("AuthorizationHeaderMalformed", 400),
        ("MethodNotAllowed", 405),
        ("SomethingNew", 400),
    ],
)
def test_client_mistakes_are_permanent(code: str, status: int) -> None:
    failure = classify(client_error(code, status, "S3 says no"))

    assert failure.retryable is False
    assert failure.code == code
    assert failure.s3_status == status
    assert f"{code}: S3 says no" in failure.message


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("RequestTimeout", 400),
        ("RequestTimeTooSkewed", 403),
        ("SlowDown", 503),
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("BadDigest", 400),
        ("XAmzContentSHA256Mismatch", 400),
        ("IncompleteBody", 400),
        ("NoSuchUpload", 404),
        ("OperationAborted", 409),
        ("SomethingNew", 502),
        ("500", 500),
        ("TooManyRequests", 429),
    ],
)
def test_passing_troubles_are_retryable(code: str, status: int) -> None:
    failure = classify(client_error(code, status, "try later"))

    assert failure.retryable is True
    assert failure.code == code
    assert failure.s3_status == status
    assert code in failure.message


def test_access_denied_names_the_bucket_and_the_permission() -> None:
    failure = classify(client_error("AccessDenied", 403, "Access Denied"), bucket="videos")

    assert failure.message.startswith(
        "S3 refused access to bucket 'videos' (AccessDenied: Access Denied). Check that the "
        "account's AWS credentials may s3:PutObject on this bucket"
    )


def test_missing_bucket_names_the_bucket_s3_reported() -> None:
    error = client_error(
        "NoSuchBucket", 404, "The specified bucket does not exist", BucketName="nope"
    )

    assert classify(error).message.startswith(
        "Bucket 'nope' does not exist (NoSuchBucket: The specified bucket does not exist)"
    )


def test_acls_disabled_says_what_to_do_instead() -> None:
    error = client_error("AccessControlListNotSupported", 400, "The bucket does not allow ACLs")

    failure = classify(error, bucket="B")

    assert failure.retryable is False
    assert failure.code == "AccessControlListNotSupported"
    assert failure.s3_status == 400
    assert failure.message == (
        "Bucket 'B' has ACLs disabled (Object Ownership: Bucket owner enforced), so acl "
        "'public-read' cannot be applied. Upload with acl 'private' and grant read access with a "
        "bucket policy, or set the bucket's Object Ownership to 'Bucket owner preferred'"
    )


def test_wrong_region_names_the_region_s3_expects() -> None:
    error = client_error("AuthorizationHeaderMalformed", 400, "wrong region", Region="eu-west-1")

    message = classify(error, bucket="videos").message

    assert message.startswith("Bucket 'videos' is in another region")
    assert "'eu-west-1'" in message


def test_signature_details_from_s3_are_not_repeated() -> None:
    # S3 returns the string it signed; it is no use to the customer and has no place in a record.
    error = client_error(
        "SignatureDoesNotMatch",
        403,
        "The request signature we calculated does not match the signature you provided.",
        StringToSign="AWS4-HMAC-SHA256\n20240101T000000Z\nscope\nhash",
        SignatureProvided="deadbeef",
    )

    failure = classify(error)

    assert "deadbeef" not in failure.message
    assert "AWS4-HMAC-SHA256" not in failure.message
    assert "secret access key" in failure.message


def test_messages_read_well_without_a_bucket_name() -> None:
    assert classify(client_error("NoSuchBucket", 404)).message.startswith(
        "The bucket does not exist (NoSuchBucket)"
    )


def test_error_without_code_or_status_is_still_classified() -> None:
    failure = classify(ClientError({}, "PutObject"))

    assert failure.code == "Unknown"
    assert failure.s3_status == 0
    assert failure.retryable is False


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "ConnectionError"),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:9"), "ConnectionError"),
        (ResponseStreamingError(error="reset"), "ConnectionError"),
        (SSLError(endpoint_url="https://s3.example.test", error="handshake"), "ConnectionError"),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), "Timeout"),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"), "Timeout"),
    ],
)
def test_network_trouble_is_retryable_without_a_status(exc: Exception, code: str) -> None:
    failure = classify(exc)

    assert failure.retryable is True
    assert failure.code == code
    assert failure.s3_status == 0
    assert "will be retried" in failure.message


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (NoCredentialsError(), "NoCredentials"),
        (ParamValidationError(report="Invalid type for parameter Key"), "ParamValidation"),
        (UnknownServiceError(service_name="s4", known_service_names="s3"), "UnknownServiceError"),
    ],
)
def test_client_side_configuration_problems_are_permanent(exc: Exception, code: str) -> None:
    failure = classify(exc)

    assert failure.retryable is False
    assert failure.code == code
    assert failure.s3_status == 0


def test_unreadable_source_is_permanent() -> None:
    failure = classify(OSError(errno.EIO, "Input/output error"))

    assert failure.retryable is False
    assert failure.code == "SourceUnreadable"
    assert "Input/output error" in failure.message


def test_unexpected_exception_is_reported_as_a_bug() -> None:
    failure = classify(ValueError("boom"))

    assert failure.retryable is False
    assert failure.code == "UploaderError"
    assert "ValueError: boom" in failure.message


def test_a_classified_failure_is_returned_as_it_is() -> None:
    already = AttemptFailure(retryable=True, s3_status=0, code="SourceChanged", message="changed")

    assert classify(already) is already
