"""One error hierarchy for the whole service.

Every error a client can cause or see is a :class:`Vod2s3Error`; the API turns it into the
failure envelope with its ``http_status`` and ``message``. Anything else reaching the API edge is
a bug and is answered with a generic 500 message (never a traceback).
"""

from __future__ import annotations


class Vod2s3Error(Exception):
    """Base of every error the service raises on purpose."""

    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(Vod2s3Error):
    http_status = 400


class Unauthorized(Vod2s3Error):
    http_status = 401


class Forbidden(Vod2s3Error):
    http_status = 403


class NotFound(Vod2s3Error):
    http_status = 404


class MethodNotAllowed(Vod2s3Error):
    http_status = 405


class RequestTimeout(Vod2s3Error):
    http_status = 408


class Conflict(Vod2s3Error):
    http_status = 409


class PayloadTooLarge(Vod2s3Error):
    http_status = 413


class UnsupportedMediaType(Vod2s3Error):
    http_status = 415


class RateLimited(Vod2s3Error):
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseUnavailable(Vod2s3Error):
    http_status = 503


class ConfigurationError(Vod2s3Error):
    """The operator's settings are wrong; raised at start-up or by operator commands."""

    http_status = 500


class SourceError(Vod2s3Error):
    """The source file cannot be used. ``code`` is the record's ``error_code``."""

    http_status = 400

    def __init__(self, message: str, code: str = "SourceInvalid", http_status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
