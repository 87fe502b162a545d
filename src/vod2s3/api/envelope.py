"""The response envelope every answer uses."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse

from vod2s3.errors import RateLimited, Vod2s3Error

INTERNAL_ERROR_MESSAGE = (
    "Internal error: the request could not be handled. It has been logged; try again later"
)


def _body(status: str, message: str, started: float, data: Any) -> dict[str, Any]:
    return {
        "status": status,
        "message": message,
        # Milliseconds, no finer: microseconds would let a caller time the server's paths
        # (a known key's signature check against an unknown key's) from the answer itself.
        "handle_time": round(time.perf_counter() - started, 3),
        "data": data,
    }


def success(message: str, data: Any, started: float) -> JSONResponse:
    return JSONResponse(_body("success", message, started, data), status_code=200)


def failure(error: Vod2s3Error, started: float) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    status = error.http_status if 400 <= error.http_status <= 599 else 500
    message = error.message if status != 500 else INTERNAL_ERROR_MESSAGE
    return JSONResponse(
        _body("failure", message, started, None), status_code=status, headers=headers
    )
