"""`vod2s3 uploads`: the operator's tools for uploads across every account — list, show,
cancel, retry, purge.

Cancel and retry are the customer's own (aws.cancel, aws.retry: RecordStore.cancel and
retry), done on the upload's account's behalf.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

import click

from vod2s3.cli import _print, _require_schema, _runtime, friendly_errors
from vod2s3.clock import format_timestamp
from vod2s3.durations import BadDuration, parse_duration
from vod2s3.errors import NotFound
from vod2s3.operator_actions import Action, act
from vod2s3.records import record_view
from vod2s3.runtime import Runtime
from vod2s3.store.overview import DeliveryRow, UploadDetail, UploadFilters
from vod2s3.store.retention import DEFAULT_BATCH
from vod2s3.store.schema import UPLOAD_STATES

TABLE_WIDTH = 100  # columns the listing fits in (less on a narrower terminal)


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    """An option's ``90s``, ``45m``, ``2h``, ``30d`` as a timedelta."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except BadDuration as error:
        raise click.BadParameter(str(error)) from None


def _states(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """Every --state given, each one state or a comma-separated list of them."""
    states = [s.strip().lower() for value in values for s in value.split(",") if s.strip()]
    unknown = [state for state in states if state not in UPLOAD_STATES]
    if unknown or (values and not states):
        raise click.BadParameter(
            f"{', '.join(map(repr, unknown)) or repr(','.join(values))} is not a state: "
            f"choose from {', '.join(UPLOAD_STATES)}"
        )
    return tuple(dict.fromkeys(states))


def _opened() -> Runtime:
    runtime = _runtime()
    _require_schema(runtime)
    return runtime


def _delivery_view(row: DeliveryRow) -> dict[str, Any]:
    return {
        "delivery_id": row.delivery_id,
        "url": row.url,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt": format_timestamp(row.next_attempt_at),
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created": format_timestamp(row.created),
        "updated": format_timestamp(row.updated),
    }


def operator_view(detail: UploadDetail) -> dict[str, Any]:
    """The record exactly as the customer's aws.status shows it, then the operator's
    fields."""
    job = detail.job
    return {
        **record_view(detail.record),
        "account_id": job.account_id,
        "volume": job.volume,
        "next_attempt": format_timestamp(job.next_attempt_at),
        "lease_owner": job.lease_owner,
        "lease_expires": format_timestamp(job.lease_expires) or None,
        "worker_id": job.worker_id,
        "multipart_upload_id": job.multipart_upload_id,
    }


@click.group()
def uploads() -> None:
    """Uploads of every account: list, show, cancel, retry, purge."""


@uploads.command("list")
@click.option("--cdn", type=int, default=None, help="Only this account's uploads.")
@click.option(
    "--state",
    "states",
    multiple=True,
    callback=_states,
    metavar="STATE[,STATE…]",
    help=f"Only uploads in these states ({', '.join(UPLOAD_STATES)}): repeat the option "
    "or separate them by commas.",
)
@click.option("--volume", default=None, help="Only uploads from this volume (sestore1, …).")
@click.option("--bucket", default=None, help="Only uploads into this bucket.")
@click.option(
    "--older-than",
    callback=_duration,
    metavar="DURATION",
    help="Only uploads created at least this long ago: 90s, 45m, 2h, 30d.",
)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Uploads shown."
)
@click.option(
    "--before",
    type=click.IntRange(min=1),
    default=None,
    help="The next page: only uploads older than this id (the listing says which).",
)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def uploads_list(
    cdn: int | None,
    states: tuple[str, ...],
    volume: str | None,
    bucket: str | None,
    older_than: timedelta | None,
    limit: int,
    before: int | None,
    as_json: bool,
) -> None:
    """Uploads newest first, across accounts, filtered."""
    runtime = _opened()
    if cdn is not None:
        runtime.accounts.get(cdn)  # an unknown cdn says so, rather than listing nothing
    filters = UploadFilters(
        cdn=cdn,
        states=states,
        volume=volume,
        bucket=bucket,
        older_than=older_than,
        before_id=before,
    )
    page = runtime.overview.page(filters, limit)
    next_before = page.uploads[-1].record.id if page.more else None
    if as_json:
        views = [operator_view(detail) for detail in page.uploads]
        click.echo(json.dumps({"uploads": views, "more": page.more, "next_before": next_before}))
        return
    _print_table(page.uploads)
    if next_before is not None:
        click.echo(f"More uploads match: add --before {next_before} for the next {limit}.")


def _print_table(details: list[UploadDetail]) -> None:
    if not details:
        click.echo("No uploads match.")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.width = min(console.width, TABLE_WIDTH) if console.is_terminal else TABLE_WIDTH
    table = Table(box=None, pad_edge=False)
    for name in ("id", "cdn", "state", "volume", "bucket", "destination", "created", "error"):
        # One line per upload: long names are cut with an ellipsis (`uploads show` has all).
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for detail in details:
        record = detail.record
        table.add_row(
            str(record.id),
            str(record.cdn_id),
            record.state,
            detail.job.volume,
            record.bucket,
            record.destination_path,
            format_timestamp(record.created),
            record.error_code,
        )
    console.print(table)


@uploads.command("show")
@click.argument("upload_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def uploads_show(upload_id: int, as_json: bool) -> None:
    """One upload: its record as the customer sees it, where it is in the queue, and its
    callback deliveries."""
    detail = _opened().overview.show(upload_id)
    if detail is None:
        raise NotFound(f"No upload with id {upload_id}")
    view = operator_view(detail)
    deliveries = [_delivery_view(row) for row in detail.deliveries]
    lines = [f"{name}: {_shown(value)}" for name, value in view.items()]
    for number, delivery in enumerate(deliveries, 1):
        lines.append(f"callback delivery {number}:")
        lines.extend(f"  {name}: {_shown(value)}" for name, value in delivery.items())
    _print({**view, "callback_deliveries": deliveries}, as_json, "\n".join(lines))


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@uploads.command("cancel")
@click.argument("upload_ids", metavar="ID...", type=int, nargs=-1, required=True)
@friendly_errors
def uploads_cancel(upload_ids: tuple[int, ...]) -> None:
    """Cancel queued or running uploads, as their customer's aws.cancel would (the callback
    is sent; a worker's sweep aborts the multipart upload). Exit status 1 if any was not
    cancelled."""
    _each(upload_ids, "cancel")


@uploads.command("retry")
@click.argument("upload_ids", metavar="ID...", type=int, nargs=-1, required=True)
@friendly_errors
def uploads_retry(upload_ids: tuple[int, ...]) -> None:
    """Queue failed or cancelled uploads again under their ids, as their customer's
    aws.retry would. Exit status 1 if any was not queued."""
    _each(upload_ids, "retry")


def _each(upload_ids: tuple[int, ...], action: Action) -> None:
    """The action on each upload, on its account's behalf (operator_actions.py, as the
    dashboard's buttons); one line per id."""
    runtime = _opened()
    outcomes = [act(runtime.uploads, runtime.metrics, action, each) for each in upload_ids]
    for outcome in outcomes:
        click.echo(outcome.describe())
    if not all(outcome.changed for outcome in outcomes):
        sys.exit(1)


@uploads.command("purge")
@click.option(
    "--finished-before",
    "age",
    callback=_duration,
    required=True,
    metavar="DURATION",
    help="Delete uploads that finished at least this long ago: 90s, 45m, 2h, 30d.",
)
@click.option("--dry-run", is_flag=True, help="Only say how many would be deleted.")
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Uploads deleted per transaction.",
)
@friendly_errors
def uploads_purge(age: timedelta, dry_run: bool, yes: bool, batch_size: int) -> None:
    """Delete finished uploads (completed, failed, cancelled) and their callback deliveries.
    Kept whatever their age: uploads whose callback is still being delivered, and cancelled
    ones whose multipart upload a worker has not aborted yet."""
    finished = _opened().finished_uploads
    count = finished.count(age)
    if dry_run:
        click.echo(f"would delete {count} uploads finished more than {_age(age)} ago")
        return
    if count and not yes:
        click.confirm(
            f"Delete {count} uploads finished more than {_age(age)} ago, and their callback "
            "deliveries? Customers asking aws.status for them will no longer find them",
            abort=True,
            err=True,
        )
    deleted = finished.purge(age, batch_size)
    click.echo(f"deleted {deleted} uploads finished more than {_age(age)} ago")


def _age(age: timedelta) -> str:
    """As the operator would write it back: 30d, 2h, 45m, 90s."""
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
