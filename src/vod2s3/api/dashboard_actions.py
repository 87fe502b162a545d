"""POST /dashboard/uploads/{id}/{cancel|retry}: the dashboard's buttons.

Three checks before anything changes, each answered with the failure envelope:
- the operator token (401), from the form's hidden field or ``Authorization: Bearer``;
- a CSRF token (403) the page put in the form: an HMAC, keyed by the operator token, of an
  expiry an hour ahead. Only a page served to someone holding the token carries a valid
  one; another site's form cannot make it;
- the browser's own word on where the form came from (403): ``Sec-Fetch-Site`` other than
  same-origin, or an ``Origin`` other than this one, is refused.

A browser then gets 303 to the dashboard with a notice of what happened (the token back in
the URL it came with); a script sending ``Accept: application/json`` gets the outcome.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from vod2s3.api.context import Services
from vod2s3.api.dashboard import (
    UNAUTHORIZED_MESSAGE,
    csrf_valid,
    presented_token,
    token_matches,
)
from vod2s3.api.envelope import failure
from vod2s3.errors import BadRequest, Forbidden, NotFound, Unauthorized, Vod2s3Error
from vod2s3.operator_actions import ACTIONS, ActionOutcome, act

_MAX_FORM = 4096
CSRF_MESSAGE = (
    "This form is out of date or did not come from the dashboard: reload the dashboard "
    "and press the button again"
)


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":  # no-referrer pages send "null"
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _notice(outcome: ActionOutcome) -> str:
    result = "missing" if not outcome.found else "done" if outcome.changed else "unchanged"
    return f"{outcome.action}-{outcome.upload_id}-{result}"


def make_dashboard_action(services: Services, not_found_message: str) -> Any:
    async def dashboard_action(request: Request) -> Response:
        started = time.perf_counter()
        expected = services.settings.operator_token
        if not expected or services.dashboard is None:
            return failure(NotFound(not_found_message), started)
        body = await request.body()
        if len(body) > _MAX_FORM:
            return failure(BadRequest("The form is too large"), started)
        form = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        presented = form.get("token") or presented_token(request)
        if not token_matches(presented, expected):
            return failure(Unauthorized(UNAUTHORIZED_MESSAGE), started)
        if not csrf_valid(expected, form.get("csrf", "")) or not _same_origin(request):
            return failure(Forbidden(CSRF_MESSAGE), started)
        action = request.path_params["action"]
        upload_id = request.path_params["upload_id"]
        if action not in ACTIONS:
            return failure(NotFound(not_found_message), started)
        try:
            outcome = await run_in_threadpool(
                act, services.uploads, services.metrics, action, upload_id
            )
        except Vod2s3Error as error:  # the database is unavailable: the 503 envelope
            return failure(error, started)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(
                {
                    "id": outcome.upload_id,
                    "action": outcome.action,
                    "found": outcome.found,
                    "changed": outcome.changed,
                    "state": outcome.state,
                    "message": outcome.describe(),
                }
            )
        query = {"notice": _notice(outcome)}
        if form.get("token"):
            query["token"] = presented
        return RedirectResponse(f"/dashboard?{urlencode(query)}", status_code=303)

    return dashboard_action
