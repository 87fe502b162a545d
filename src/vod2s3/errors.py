"""One error hierarchy for the whole service.

Every error a client can cause or see is a :class:`Vod2s3Error`; the API turns it into the
failure envelope with its ``http_status``, ``message`` and ``api_code``. Anything else reaching
the API edge is a bug and is answered with a generic 500 message (never a traceback).

``api_code`` is the envelope's ``code``: ScaleEngine's four-digit code where its published table
has one (0000-0006, 1000), and vod2s3's own in 2001-2099 for the rest. docs/api.md lists them;
a code, once given a meaning, keeps it.
"""

from __future__ import annotations

# Every code a failure envelope may carry, and what it means (docs/api.md has this table).
API_CODES = {
    "0000": "Unrecognized API command",
    "0001": "CDN authorization failed: unknown api_key, a key of another cdn, or a wrong signature",
    "0002": "Timestamp outside valid range",
    "0004": "Unexpected error",
    "0005": "Unauthorized access to API: the account is disabled",
    "0006": "One or more required fields are missing",
    "1000": "Servers busy, try again in a few minutes: a rate limit, or the database or a "
    "storage volume is unavailable",
    "2001": "A field's value is not accepted",
    "2002": "The body is not a request object (JSON, form data)",
    "2003": "Content-Type not accepted",
    "2004": "The body is larger than the limit",
    "2005": "The body did not arrive in time",
    "2006": "Method not allowed",
    "2007": "No such endpoint",
    "2008": "No such upload",
    "2009": "The upload's state does not allow the command",
    "2010": "The source file cannot be used (path, missing, not a regular file, hard link)",
    "2011": "The account has as many uploads queued or running as it may",
    "2012": "Not allowed for this account (bucket, no AWS credentials yet)",
}


class Vod2s3Error(Exception):
    """Base of every error the service raises on purpose."""

    http_status: int = 500
    api_code: str = "0004"  # ScaleEngine: Unexpected error
    # Set once the caller is authenticated: that account's choice of HTTP status for its
    # failures ("200" or "native"); None follows the service's setting.
    failure_status: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(Vod2s3Error):
    http_status = 400
    api_code = "2001"  # a field's value is not accepted


class UnknownCommand(BadRequest):
    api_code = "0000"  # ScaleEngine: Unrecognized API command


class MissingField(BadRequest):
    api_code = "0006"  # ScaleEngine: One or more required fields are missing


class MalformedRequest(BadRequest):
    api_code = "2002"  # the body is not a request object (JSON, form)


class Unauthorized(Vod2s3Error):
    http_status = 401
    # ScaleEngine: CDN authorization failed. Also for a wrong signature (its 0003): one code
    # for an unknown key, another account's key and a wrong signature, so that the answer
    # does not tell which keys exist.
    api_code = "0001"


class ClockSkew(Unauthorized):
    api_code = "0002"  # ScaleEngine: Timestamp outside valid range


class Forbidden(Vod2s3Error):
    http_status = 403
    api_code = "2012"  # not allowed for this account (a bucket, no AWS credentials yet)


class DisabledAccount(Forbidden):
    api_code = "0005"  # ScaleEngine: Unauthorized access to API


class NotFound(Vod2s3Error):
    http_status = 404
    api_code = "2008"  # no such upload, or no such account (operator commands)


class NoSuchEndpoint(NotFound):
    api_code = "2007"


class MethodNotAllowed(Vod2s3Error):
    http_status = 405
    api_code = "2006"


class RequestTimeout(Vod2s3Error):
    http_status = 408
    api_code = "2005"


class Conflict(Vod2s3Error):
    http_status = 409
    api_code = "2009"  # the upload's state does not allow the command


class PayloadTooLarge(Vod2s3Error):
    http_status = 413
    api_code = "2004"


class UnsupportedMediaType(Vod2s3Error):
    http_status = 415
    api_code = "2003"


class RateLimited(Vod2s3Error):
    http_status = 429
    api_code = "1000"  # ScaleEngine: Servers busy, try again in a few minutes

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(RateLimited):
    api_code = "2011"  # the account has as many uploads queued or running as it may


class DatabaseUnavailable(Vod2s3Error):
    http_status = 503
    api_code = "1000"


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
        # A storage volume that does not answer is the service's trouble, not the file's.
        self.api_code = "1000" if http_status == 503 else "2010"
