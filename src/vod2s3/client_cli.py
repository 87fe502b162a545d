"""`vod2s3 client …`, also installed as `vod2s3-client`: the customer's side of the API from
the command line. Like everything it imports, it stays free of the server's modules and
their dependencies, so the light `vod2s3-client` distribution (client/) can ship it."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from vod2s3 import __version__
from vod2s3.client import ClientError, Vod2s3Client
from vod2s3.client_table import StatusRow, status_lines, terminal_width

FINAL_STATES = ("completed", "failed", "cancelled")


def _connection_options(func: Any) -> Any:
    options = [
        click.option(
            "--url", envvar="VOD2S3_URL", required=True, help="e.g. http://127.0.0.1:8080/stable/"
        ),
        click.option("--cdn", envvar="VOD2S3_CDN", type=int, required=True),
        click.option("--api-key", envvar="VOD2S3_API_KEY", required=True),
        click.option("--secret", envvar="VOD2S3_SECRET", required=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group()
@click.version_option(__version__)
def client() -> None:
    """The customer's side: queue uploads and read their status."""


def _client(url: str, cdn: int, api_key: str, secret: str) -> Vod2s3Client:
    return Vod2s3Client(url=url, cdn=cdn, api_key=api_key, secret=secret)


def _fail(error: ClientError) -> None:
    click.echo(f"error: {error.message}", err=True)
    sys.exit(1)


def _key_values(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for item in value:
        if "=" not in item or not item.split("=", 1)[0]:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. --metadata title=Holiday)")
    return value


@client.command("upload")
@click.argument("path")
@click.option("--bucket", required=True)
@click.option("--acl", type=click.Choice(["private", "public-read"]), required=True)
@click.option("--destination-path", default=None)
@click.option(
    "--metadata", "metadata", multiple=True, callback=_key_values, help="KEY=VALUE, may repeat."
)
@click.option("--callback", default=None)
# The S3 options beyond the original API. The server checks their values and says which
# are accepted; the client stays free of the server's modules.
@click.option("--content-type", default=None, help="Default: from the file's extension.")
@click.option("--cache-control", default=None)
@click.option("--storage-class", default=None, help="e.g. STANDARD_IA, GLACIER_IR.")
@click.option("--sse", "server_side_encryption", default=None, help="AES256 or aws:kms.")
@click.option("--sse-kms-key-id", default=None, help="With --sse aws:kms.")
@click.option("--request-payer", default=None, help="requester, for Requester Pays buckets.")
@click.option("--wait", is_flag=True, help="Follow the upload until it ends.")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def upload(
    path: str,
    bucket: str,
    acl: str,
    destination_path: str | None,
    metadata: tuple[str, ...],
    callback: str | None,
    content_type: str | None,
    cache_control: str | None,
    storage_class: str | None,
    server_side_encryption: str | None,
    sse_kms_key_id: str | None,
    request_payer: str | None,
    wait: bool,
    as_json: bool,
    url: str,
    cdn: int,
    api_key: str,
    secret: str,
) -> None:
    """Queue PATH (sestoreN/user/file) for upload to BUCKET."""
    api = _client(url, cdn, api_key, secret)
    meta = dict(item.split("=", 1) for item in metadata)
    try:
        record = api.upload(
            path,
            bucket,
            acl,
            destination_path=destination_path,
            metadata=meta or None,
            callback=callback,
            content_type=content_type,
            cache_control=cache_control,
            storage_class=storage_class,
            server_side_encryption=server_side_encryption,
            sse_kms_key_id=sse_kms_key_id,
            request_payer=request_payer,
        )
        if not as_json:
            click.echo(
                f"queued upload {record['id']}: {path} -> s3://{bucket}/{record['destination_path']}"
            )
        if wait:
            record = api.wait(record["id"]) if as_json else _follow(api, record)
    except ClientError as error:
        _fail(error)
        return
    if as_json:
        click.echo(json.dumps(record))
    elif wait:
        click.echo(f"{record['state']}: {record['message']}")
    if wait and record["state"] != "completed":
        sys.exit(2)


def _follow(api: Vod2s3Client, record: dict[str, Any]) -> dict[str, Any]:
    # Imported only here: rich costs start-up time every other command does not need.
    from vod2s3.client_bar import upload_progress

    with upload_progress() as bar:
        task = bar.add_task(
            f"upload {record['id']} {record['state']}", total=record["bytes_total"] or None
        )
        while record["state"] not in FINAL_STATES:
            time.sleep(0.5)
            record = api.get(record["id"])
            bar.update(
                task,
                completed=record["bytes_uploaded"],
                total=record["bytes_total"] or None,
                description=f"upload {record['id']} {record['state']}",
            )
        bar.update(task, completed=record["bytes_uploaded"])
    return record


@client.command("status")
@click.option("--limit", type=int, default=None)
@click.option("--offset", type=int, default=None)
@click.option("--id", "upload_id", type=int, default=None)
@click.option("--state", default=None)
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def status(
    limit: int | None,
    offset: int | None,
    upload_id: int | None,
    state: str | None,
    as_json: bool,
    url: str,
    cdn: int,
    api_key: str,
    secret: str,
) -> None:
    """Show the latest uploads, or one with --id."""
    api = _client(url, cdn, api_key, secret)
    try:
        records = (
            [api.get(upload_id)] if upload_id is not None else api.status(limit, offset, state)
        )
    except ClientError as error:
        _fail(error)
        return
    if as_json:
        click.echo(json.dumps(records[0] if upload_id is not None else records))
        return
    if not records:
        click.echo("no uploads")
        return
    rows = [StatusRow.from_record(record) for record in records]
    click.echo("\n".join(status_lines(rows, terminal_width())))


@client.command("cancel")
@click.argument("upload_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def cancel(upload_id: int, as_json: bool, url: str, cdn: int, api_key: str, secret: str) -> None:
    """Stop a queued or running upload."""
    _change(lambda api: api.cancel(upload_id), as_json, url, cdn, api_key, secret)


@client.command("retry")
@click.argument("upload_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def retry(upload_id: int, as_json: bool, url: str, cdn: int, api_key: str, secret: str) -> None:
    """Queue a failed or cancelled upload again."""
    _change(lambda api: api.retry(upload_id), as_json, url, cdn, api_key, secret)


def _change(action: Any, as_json: bool, url: str, cdn: int, api_key: str, secret: str) -> None:
    try:
        record = action(_client(url, cdn, api_key, secret))
    except ClientError as error:
        _fail(error)
        return
    if as_json:
        click.echo(json.dumps(record))
    else:
        click.echo(f"upload {record['id']}: {record['state']} ({record['message']})")
