"""GET /dashboard: the read-only operator page, server-rendered, no JavaScript.

Off (the 404 envelope of any unknown path) unless ``VOD2S3_OPERATOR_TOKEN`` is set. The token
comes as ``Authorization: Bearer <token>`` or, for a browser, ``?token=<token>``; a missing or
wrong one gets the 401 envelope. Every value on the page goes through :func:`html.escape`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from vod2s3.api.context import Services
from vod2s3.api.envelope import failure
from vod2s3.clock import format_timestamp
from vod2s3.errors import NotFound, Unauthorized, Vod2s3Error
from vod2s3.metrics import UPLOAD_STATES
from vod2s3.records import progress_percent
from vod2s3.store.dashboard import Snapshot

REFRESH_SECONDS = 5
UNAUTHORIZED_MESSAGE = (
    "Operator token required: send 'Authorization: Bearer <token>' or open /dashboard?token=<token>"
)
_HEADERS = {
    "Cache-Control": "no-store",
    # The token may be in the page's URL: never send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


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
        return HTMLResponse(render(snapshot), headers=_HEADERS)

    return dashboard


# -- rendering ----------------------------------------------------------------------------


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def human_bytes(count: float) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _elapsed(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else (now - since).total_seconds()


def callback_host(url: str) -> str:
    """Where a callback goes, without its path and query (they may carry the customer's
    tokens) or any user info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _table(
    caption_id: str, headers: Iterable[str], rows: list[str], empty: str, columns: int
) -> str:
    head = "".join(f"<th scope=col>{_e(h)}</th>" for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{columns}" class=empty>{_e(empty)}</td></tr>'
    return f'<table id="{caption_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _depth(snapshot: Snapshot) -> str:
    states = [*UPLOAD_STATES, *sorted(set(snapshot.depth) - set(UPLOAD_STATES))]
    cells = "".join(
        f'<div class="tile state-{_e(state)}" id="depth-{_e(state)}">'
        f"<span class=label>{_e(state)}</span>"
        f'<span class=count data-state="{_e(state)}">{snapshot.depth.get(state, 0)}</span></div>'
        for state in states
    )
    section = (
        f'<section><h2>Queue depth by state</h2><div class=tiles id="queue-depth">{cells}</div>'
    )
    return f"{section}</section>"


def _in_flight(snapshot: Snapshot) -> str:
    rows = []
    for row in snapshot.in_flight:
        done, total = int(row.bytes_uploaded), int(row.bytes_total)
        percent = progress_percent("uploading", done, total)
        seconds = _elapsed(snapshot.taken, row.started)
        rate = human_bytes(done / seconds) + "/s" if seconds > 0 else "-"
        rows.append(
            f'<tr id="upload-{int(row.id)}" class=in-flight>'
            f"<td>{int(row.id)}</td><td>{_e(row.cdn_id)}</td>"
            f"<td class=path>{_e(row.path)}</td>"
            f"<td class=path>s3://{_e(row.bucket)}/{_e(row.destination_path)}</td>"
            f'<td class=progress><progress id="progress-{int(row.id)}" value="{done}" '
            f'max="{max(total, 1)}">{percent}%</progress> '
            f"<span class=percent>{percent}%</span></td>"
            f"<td>{_e(human_bytes(done))} of {_e(human_bytes(total))}</td>"
            f"<td class=rate>{_e(rate)}</td>"
            f"<td>{_e(human_seconds(seconds))}</td>"
            f"<td>{int(row.attempts)}</td><td class=owner>{_e(row.lease_owner)}</td></tr>"
        )
    headers = (
        "Id", "CDN", "Source", "Destination", "Progress", "Bytes", "Throughput", "Running for",
        "Attempt", "Worker",
    )  # fmt: skip
    table = _table("in-flight", headers, rows, "No upload is running.", len(headers))
    return f"<section><h2>Uploads in flight ({len(snapshot.in_flight)})</h2>{table}</section>"


def _failures(snapshot: Snapshot) -> str:
    rows = [
        f'<tr id="failed-{int(row.id)}"><td>{int(row.id)}</td><td>{_e(row.cdn_id)}</td>'
        f"<td>{_e(format_timestamp(row.finished))}</td><td>{_e(row.error_code)}</td>"
        f"<td>{int(row.status) or ''}</td><td class=message>{_e(row.message)}</td>"
        f"<td>{int(row.attempts)}</td><td class=path>{_e(row.path)}</td></tr>"
        for row in snapshot.failures
    ]
    headers = ("Id", "CDN", "Failed at (UTC)", "Error", "HTTP", "Message", "Attempts", "Source")
    table = _table("failures", headers, rows, "No failed upload.", len(headers))
    return f"<section><h2>Recent failures</h2>{table}</section>"


def _callback_failures(snapshot: Snapshot) -> str:
    rows = [
        f'<tr id="callback-{int(row.id)}"><td>{int(row.id)}</td><td>{_e(row.cdn_id)}</td>'
        f"<td>{_e(format_timestamp(row.updated))}</td><td>{_e(row.state)}</td>"
        f"<td>{_e(callback_host(row.url))}</td><td>{int(row.callback_attempts)}</td>"
        f"<td>{int(row.callback_status) or ''}</td>"
        f"<td class=message>{_e(row.callback_error)}</td></tr>"
        for row in snapshot.callback_failures
    ]
    headers = ("Upload", "CDN", "Given up at (UTC)", "Upload state", "Callback to", "Attempts",
               "HTTP", "Error")  # fmt: skip
    table = _table("callback-failures", headers, rows, "No failed callback.", len(headers))
    return f"<section><h2>Callback failures</h2>{table}</section>"


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f4f6f9 }
h1 { font-size: 1.5em; margin: 0 0 .2em } h2 { font-size: 1.15em; margin: 1.4em 0 .5em }
.meta { color: #5b6475 }
.tiles { display: flex; gap: .8em; flex-wrap: wrap }
.tile { background: #fff; border-radius: 8px; padding: .7em 1.2em; min-width: 7em;
        box-shadow: 0 1px 3px rgba(0,0,0,.12); border-top: 4px solid #8a94a6 }
.tile .label { display: block; color: #5b6475; text-transform: uppercase; font-size: .8em }
.tile .count { font-size: 1.9em; font-weight: 600 }
.state-queued { border-color: #d99a1e } .state-uploading { border-color: #2f6fdf }
.state-completed { border-color: #2c9c5a } .state-failed { border-color: #d2433b }
.state-cancelled { border-color: #8a94a6 }
table { border-collapse: collapse; width: 100%; background: #fff;
        box-shadow: 0 1px 3px rgba(0,0,0,.12) }
th, td { text-align: left; padding: .45em .6em; border-bottom: 1px solid #e3e7ee;
         vertical-align: top }
th { background: #e9edf3; font-weight: 600 }
td.empty { color: #5b6475; font-style: italic }
td.path, td.message { word-break: break-all } td.message { color: #a1302a }
progress { width: 9em; height: 1.1em; vertical-align: middle }
td.progress { white-space: nowrap }
"""


def render(snapshot: Snapshot) -> str:
    taken = format_timestamp(snapshot.taken)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="referrer" content="no-referrer">'
        "<title>vod2s3 operator dashboard</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>vod2s3 operator dashboard</h1>"
        f'<p class=meta>As of <time id="taken">{_e(taken)}</time> UTC; this page reloads every '
        f"{REFRESH_SECONDS} s. Read-only.</p>"
        f"{_depth(snapshot)}{_in_flight(snapshot)}{_failures(snapshot)}"
        f"{_callback_failures(snapshot)}</body></html>\n"
    )
