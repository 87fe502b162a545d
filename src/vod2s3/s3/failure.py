"""The one exception the uploader raises, already sorted into retryable or permanent."""

from __future__ import annotations


class AttemptFailure(Exception):
    """One attempt at an upload failed.

    ``s3_status`` is the HTTP status of S3's response (0 when there was none, e.g. a dropped
    connection): the worker stores it as the record's ``status``. The API never sees this
    exception, so it is no API error and has no API status. ``code`` is S3's error code or
    one of ours ("ConnectionError", "Timeout", "SourceChanged", "Stopped", ...).
    ``message`` is for the customer.
    """

    def __init__(self, *, retryable: bool, s3_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.s3_status = s3_status
        self.code = code

    def __repr__(self) -> str:
        return (
            f"AttemptFailure(retryable={self.retryable}, s3_status={self.s3_status}, "
            f"code={self.code!r}, message={self.message!r})"
        )


def source_changed() -> AttemptFailure:
    return AttemptFailure(
        retryable=True,
        s3_status=0,
        code="SourceChanged",
        message="The source file changed while it was being uploaded; the upload will start over",
    )


def stopped() -> AttemptFailure:
    return AttemptFailure(
        retryable=True,
        s3_status=0,
        code="Stopped",
        message="The upload was stopped before it finished",
    )
