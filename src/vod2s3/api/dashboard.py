"""GET /dashboard: the read-only operator page, server-rendered, no JavaScript.

Off (the 404 envelope of any unknown path) unless ``VOD2S3_OPERATOR_TOKEN`` is set. The token
comes as ``Authorization: Bearer <token>`` or, for a browser, ``?token=<token>``; a missing or
wrong one gets the 401 envelope. Every value on the page goes through :func:`html.escape`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from vod2s3.api.context import Services
from vod2s3.api.dashboard_page import FormKeys, render
from vod2s3.api.envelope import failure
from vod2s3.errors import NotFound, Unauthorized, Vod2s3Error

UNAUTHORIZED_MESSAGE = (
    "Operator token required: send 'Authorization: Bearer <token>' or open /dashboard?token=<token>"
)
_HEADERS = {
    "Cache-Control": "no-store",
    # The token may be in the page's URL: never send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


CSRF_LIFETIME = 3600  # seconds; the page reloads every few seconds with a fresh one
_NOTICE = re.compile(r"^(cancel|retry)-(\d{1,18})-(done|unchanged|missing)$")


def csrf_token(operator_token: str, now: float | None = None) -> str:
    """An HMAC, keyed by the operator token, of an expiry an hour ahead: only a page served
    to someone holding the token carries a valid one."""
    expires = int((time.time() if now is None else now) + CSRF_LIFETIME)
    return f"{expires}.{_mac(operator_token, expires)}"


def csrf_valid(operator_token: str, presented: str, now: float | None = None) -> bool:
    expires_text, _, mac = presented.partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac, _mac(operator_token, expires))


def _mac(operator_token: str, expires: int) -> str:
    message = f"vod2s3 dashboard form until {expires}".encode()
    return hmac.new(operator_token.encode(), message, hashlib.sha256).hexdigest()


def notice_text(notice: str) -> str:
    """The line shown after a button, from the redirect's ``notice`` (anything else: none)."""
    matched = _NOTICE.match(notice)
    if matched is None:
        return ""
    action, upload_id, result = matched.groups()
    if result == "missing":
        return f"Upload {upload_id} no longer exists."
    if result == "unchanged":
        return f"Upload {upload_id} was not changed: its state does not allow {action}."
    return f"Upload {upload_id}: {'cancelled' if action == 'cancel' else 'queued again'}."


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def presented_token(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query_params.get("token", "")


def token_matches(presented: str, expected: str) -> bool:
    """Constant time in both values (their digests have the same length)."""
    return bool(presented) and hmac.compare_digest(_digest(presented), _digest(expected))


def make_dashboard(services: Services, not_found_message: str) -> Any:
    async def dashboard(request: Request) -> Response:
        started = time.perf_counter()
        expected = services.settings.operator_token
        if not expected or services.dashboard is None:
            return failure(NotFound(not_found_message), started)
        if not token_matches(presented_token(request), expected):
            response = failure(Unauthorized(UNAUTHORIZED_MESSAGE), started)
            response.headers["WWW-Authenticate"] = 'Bearer realm="vod2s3 dashboard"'
            return response
        try:
            snapshot = await run_in_threadpool(services.dashboard.snapshot)
        except Vod2s3Error as error:  # the database is unavailable: the 503 envelope
            return failure(error, started)
        # The buttons' forms carry the token only when the page's own URL does (a browser);
        # a page fetched with the Authorization header never shows it.
        in_url = request.query_params.get("token", "")
        form = FormKeys(in_url if in_url == presented_token(request) else "", csrf_token(expected))
        notice = notice_text(request.query_params.get("notice", ""))
        return HTMLResponse(render(snapshot, form, notice), headers=_HEADERS)

    return dashboard
