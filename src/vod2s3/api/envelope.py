"""The response envelope every answer uses."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse

from vod2s3.errors import RateLimited, Vod2s3Error

INTERNAL_ERROR_MESSAGE = (
    "Internal error: the request could not be handled. It has been logged; try again later"
)


def _body(
    status: str, message: str, started: float, data: Any, code: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status}
    if code is not None:
        body["code"] = code
    return body | {
        "message": message,
        # Milliseconds, no finer: microseconds would let a caller time the server's paths
        # (a known key's signature check against an unknown key's) from the answer itself.
        "handle_time": round(time.perf_counter() - started, 3),
        "data": data,
    }


def success(message: str, data: Any, started: float) -> JSONResponse:
    return JSONResponse(_body("success", message, started, data), status_code=200)


def native_status(error: Vod2s3Error) -> int:
    """The HTTP status that fits the error (what the metrics count, whatever was sent)."""
    return error.http_status if 400 <= error.http_status <= 599 else 500


def failure(error: Vod2s3Error, started: float, as_200: bool = False) -> JSONResponse:
    """The failure envelope, with ScaleEngine's (or vod2s3's own) ``code``. ``as_200``
    sends it with HTTP 200 (VOD2S3_FAILURE_HTTP_STATUS=200, or the account's choice), for
    clients whose libraries read the body of a successful answer only; the envelope and
    Retry-After are the same."""
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    status = native_status(error)
    internal = status == 500
    message = INTERNAL_ERROR_MESSAGE if internal else error.message
    code = Vod2s3Error.api_code if internal else error.api_code
    return JSONResponse(
        _body("failure", message, started, None, code),
        status_code=200 if as_200 else status,
        headers=headers,
    )
