"""The dashboard's page: server-rendered HTML, no JavaScript. Every value goes through
:func:`html.escape`; the customer's text (paths, messages, callback errors) is never markup.

The buttons are plain forms that POST to /dashboard/uploads/{id}/{cancel|retry}
(api/dashboard_actions.py) with the CSRF token and, when the page's URL carries it, the
operator token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from html import escape
from urllib.parse import urlsplit

from vod2s3.bandwidth.report import uplink_by_account
from vod2s3.clock import format_timestamp
from vod2s3.metrics import UPLOAD_STATES
from vod2s3.records import progress_percent
from vod2s3.store.dashboard import THROUGHPUT_WINDOW, Snapshot

REFRESH_SECONDS = 5


@dataclass(frozen=True)
class FormKeys:
    """What each button's form sends: the operator token ("" when the page was fetched with
    the Authorization header) and the CSRF token."""

    token: str
    csrf: str


NO_FORMS = FormKeys("", "")


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


def _in_flight(snapshot: Snapshot, form: FormKeys) -> str:
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
            f"<td>{int(row.attempts)}</td><td class=owner>{_e(row.lease_owner)}</td>"
            f"<td>{_button(form, int(row.id), 'cancel', 'Cancel')}</td></tr>"
        )
    headers = (
        "Id", "CDN", "Source", "Destination", "Progress", "Bytes", "Throughput", "Running for",
        "Attempt", "Worker", "",
    )  # fmt: skip
    table = _table("in-flight", headers, rows, "No upload is running.", len(headers))
    return f"<section><h2>Uploads in flight ({len(snapshot.in_flight)})</h2>{table}</section>"


def _button(form: FormKeys, upload_id: int, action: str, label: str) -> str:
    if not form.csrf:
        return ""
    token = f'<input type=hidden name=token value="{_e(form.token)}">' if form.token else ""
    return (
        f'<form method=post action="/dashboard/uploads/{upload_id}/{action}" '
        f'class=action id="{action}-{upload_id}">{token}'
        f'<input type=hidden name=csrf value="{_e(form.csrf)}">'
        f"<button type=submit class={action}>{_e(label)}</button></form>"
    )


def _banner(snapshot: Snapshot) -> str:
    waits = [wait for wait in snapshot.coverage.volumes if not wait.covered]
    if not waits:
        return ""
    items = "".join(
        f"<li><b>{_e(wait.volume)}</b>: {wait.queued} queued, the oldest for "
        f"{_e(human_seconds(wait.oldest_queued_seconds))}; start "
        f"<code>vod2s3 worker --volumes {_e(wait.volume)}</code></li>"
        for wait in waits
    )
    return (
        '<div class=banner id="uncovered" role=alert><b>No live worker serves these '
        f"volumes: their uploads wait.</b><ul>{items}</ul></div>"
    )


def _queued(snapshot: Snapshot, form: FormKeys) -> str:
    rows = []
    for row in snapshot.queued:
        upload_id = int(row.id)
        due = _elapsed(snapshot.taken, row.next_attempt_at)
        rows.append(
            f'<tr id="queued-{upload_id}"><td>{upload_id}</td><td>{_e(row.cdn_id)}</td>'
            f"<td>{_e(row.volume)}</td><td class=path>{_e(row.path)}</td>"
            f"<td class=path>s3://{_e(row.bucket)}/{_e(row.destination_path)}</td>"
            f"<td class=age>{_e(human_seconds(_elapsed(snapshot.taken, row.created)))}</td>"
            f"<td>{'now' if due >= 0 else 'in ' + _e(human_seconds(-due))}</td>"
            f"<td>{int(row.attempts)}</td><td class=note>{_e(row.message)}</td>"
            f"<td>{_button(form, upload_id, 'cancel', 'Cancel')}</td></tr>"
        )
    headers = ("Id", "CDN", "Volume", "Source", "Destination", "Queued for", "Due",
               "Attempts", "Message", "")  # fmt: skip
    table = _table("queued", headers, rows, "Nothing is queued.", len(headers))
    total = snapshot.depth.get("queued", 0)
    shown = f"the {len(rows)} due first of {total}" if total > len(rows) else str(total)
    return f"<section><h2>Queued uploads ({shown})</h2>{table}</section>"


def _callbacks_failing(snapshot: Snapshot) -> str:
    rows = [
        f'<tr id="failing-{int(row.upload_id)}"><td>{int(row.upload_id)}</td>'
        f"<td>{_e(row.cdn_id)}</td><td>{_e(callback_host(row.url))}</td>"
        f"<td>{int(row.attempts)}</td><td>{int(row.last_status) or ''}</td>"
        f"<td class=message>{_e(row.last_error)}</td>"
        f"<td>{_e(format_timestamp(row.next_attempt_at))}</td></tr>"
        for row in snapshot.callbacks_failing
    ]
    headers = ("Upload", "CDN", "Callback to", "Attempts", "HTTP", "Last error",
               "Next attempt (UTC)")  # fmt: skip
    table = _table("callbacks-failing", headers, rows, "No callback is failing.", len(headers))
    return f"<section><h2>Callbacks failing now</h2>{table}</section>"


def human_rate(rate: float | None, none: str = "no cap") -> str:
    return none if rate is None else human_bytes(rate) + "/s"


def _workers(snapshot: Snapshot) -> str:
    coverage = snapshot.coverage
    rows = [
        f'<tr id="worker-{int(w.id)}"><td>{int(w.id)}</td><td>{_e(w.host)}</td>'
        f"<td>{int(w.pid)}</td><td>{_e(', '.join(w.volumes) or 'all')}</td>"
        f"<td>{_e(w.version)}</td><td>{_e(format_timestamp(w.last_heartbeat))}</td>"
        f"<td>{snapshot.uploads_held.get(int(w.id), 0)}</td>"
        f"<td class=rate>{_e(human_rate(w.sending.sent_per_second))}</td>"
        f"<td class=cap>{_e(human_rate(w.sending.cap))}</td></tr>"
        for w in coverage.live_workers
    ]
    headers = ("Id", "Host", "PID", "Volumes", "Version", "Last heartbeat (UTC)", "Uploads held",
               "Sending", "Cap in force")  # fmt: skip
    workers = _table("workers", headers, rows, "No worker is running.", len(headers))
    volume_rows = [
        f'<tr id="volume-{_e(w.volume)}" class="{"covered" if w.covered else "uncovered"}">'
        f"<td>{_e(w.volume)}</td><td>{w.queued}</td>"
        f"<td>{_e(human_seconds(w.oldest_queued_seconds))}</td><td>{w.live_workers}</td></tr>"
        for w in coverage.volumes
    ]
    volume_headers = ("Volume", "Queued", "Oldest queued for", "Live workers serving it")
    volumes = _table("volumes", volume_headers, volume_rows, "No volume has queued uploads.", 4)
    return (
        f"<section><h2>Live workers ({len(coverage.live_workers)})</h2>{workers}</section>"
        f"<section><h2>Volumes with queued uploads</h2>{volumes}</section>"
    )


def _uplink(snapshot: Snapshot) -> str:
    """Per account, what the live workers send now and the caps in force, as their last
    heartbeats reported (workers hold the rates; the database only relays them)."""
    rows = [
        f'<tr id="uplink-{account.cdn}"><td>{account.cdn}</td>'
        f"<td class=rate>{_e(human_rate(account.sent_per_second))}</td>"
        f"<td class=cap>{_e(human_rate(account.cap))}</td>"
        f"<td class=share>{_e(human_rate(account.share, 'no limit'))}</td>"
        f"<td>{account.workers}</td></tr>"
        for account in uplink_by_account(snapshot.coverage.live_workers)
    ]
    headers = ("CDN", "Sending", "Own cap (per worker)", "Allowed now (all workers)", "Workers")
    table = _table("uplink", headers, rows, "No account is sending.", len(headers))
    return f"<section><h2>Uplink per account</h2>{table}</section>"


def _throughput(snapshot: Snapshot) -> str:
    window = THROUGHPUT_WINDOW.total_seconds()
    rows = [
        f'<tr id="throughput-{_e(row.cdn_id)}"><td>{_e(row.cdn_id)}</td>'
        f"<td>{int(row.uploads)}</td><td>{_e(human_bytes(int(row.bytes or 0)))}</td>"
        f"<td class=rate>{_e(human_bytes(int(row.bytes or 0) / window))}/s</td></tr>"
        for row in snapshot.throughput
    ]
    headers = ("CDN", "Uploads completed", "Bytes", "Average rate")
    table = _table("throughput", headers, rows, "Nothing completed in the last hour.", 4)
    return f"<section><h2>Throughput per account, last hour</h2>{table}</section>"


def _failures(snapshot: Snapshot, form: FormKeys) -> str:
    rows = [
        f'<tr id="failed-{int(row.id)}"><td>{int(row.id)}</td><td>{_e(row.cdn_id)}</td>'
        f"<td>{_e(format_timestamp(row.finished))}</td><td>{_e(row.error_code)}</td>"
        f"<td>{int(row.status) or ''}</td><td class=message>{_e(row.message)}</td>"
        f"<td>{int(row.attempts)}</td><td class=path>{_e(row.path)}</td>"
        f"<td>{_button(form, int(row.id), 'retry', 'Retry')}</td></tr>"
        for row in snapshot.failures
    ]
    headers = ("Id", "CDN", "Failed at (UTC)", "Error", "HTTP", "Message", "Attempts", "Source",
               "")  # fmt: skip
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
    table = _table("callback-failures", headers, rows, "No callback given up.", len(headers))
    return f"<section><h2>Callbacks given up</h2>{table}</section>"


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
td.note { color: #5b6475 } form.action { margin: 0 }
button { font: inherit; padding: .15em .7em; border-radius: 4px; border: 1px solid #8a94a6;
         background: #fff; cursor: pointer }
button.cancel { border-color: #d2433b; color: #a1302a } button.retry { border-color: #2f6fdf }
.banner { background: #fde8e7; border: 1px solid #d2433b; border-radius: 8px;
          padding: .6em 1em; margin: 1em 0 } .banner ul { margin: .3em 0 0 }
.notice { background: #e6f4ea; border: 1px solid #2c9c5a; border-radius: 8px;
          padding: .5em 1em; margin: 1em 0 }
tr.uncovered td { color: #a1302a; font-weight: 600 }
td.progress { white-space: nowrap }
"""


def render(snapshot: Snapshot, form: FormKeys = NO_FORMS, notice: str = "") -> str:
    taken = format_timestamp(snapshot.taken)
    said = f'<p class=notice id="notice" role=status>{_e(notice)}</p>' if notice else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="referrer" content="no-referrer">'
        "<title>vod2s3 operator dashboard</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>vod2s3 operator dashboard</h1>"
        f'<p class=meta>As of <time id="taken">{_e(taken)}</time> UTC; this page reloads every '
        f"{REFRESH_SECONDS} s.</p>{said}{_banner(snapshot)}"
        f"{_depth(snapshot)}{_in_flight(snapshot, form)}{_queued(snapshot, form)}"
        f"{_workers(snapshot)}{_uplink(snapshot)}{_throughput(snapshot)}{_failures(snapshot, form)}"
        f"{_callbacks_failing(snapshot)}{_callback_failures(snapshot)}</body></html>\n"
    )
