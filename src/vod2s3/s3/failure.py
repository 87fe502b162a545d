"""The one exception the uploader raises, already sorted into retryable or permanent."""

from __future__ import annotations

from vod2s3.errors import Vod2s3Error


class S3Failure(Vod2s3Error):
    """An upload failed.

    ``http_status`` is the status of S3's response (0 when there was none, e.g. a dropped
    connection): the worker stores it as the record's ``status``. It is not the API's status;
    the API never sees this exception. ``code`` is S3's error code or one of ours
    ("ConnectionError", "Timeout", "SourceChanged", "Stopped", ...). ``message`` is for the
    customer.
    """

    def __init__(self, *, retryable: bool, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.http_status = http_status
        self.code = code

    def __repr__(self) -> str:
        return (
            f"S3Failure(retryable={self.retryable}, http_status={self.http_status}, "
            f"code={self.code!r}, message={self.message!r})"
        )


def source_changed() -> S3Failure:
    return S3Failure(
        retryable=True,
        http_status=0,
        code="SourceChanged",
        message="The source file changed while it was being uploaded; the upload will start over",
    )


def stopped() -> S3Failure:
    return S3Failure(
        retryable=True,
        http_status=0,
        code="Stopped",
        message="The upload was stopped before it finished",
    )
