"""The server's command line: operator commands and the servers. The `vod2s3` command
(vod2s3.main) adds the customer's client and imports this module only when one of these
commands runs. The only module that reads the environment."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy.exc

from vod2s3 import __version__, config_file, installed_version
from vod2s3.accounts import AccountStore
from vod2s3.bandwidth import format_rate
from vod2s3.clock import format_timestamp
from vod2s3.config import Settings, masked_url
from vod2s3.errors import ConfigurationError, Vod2s3Error
from vod2s3.logs import setup_logging
from vod2s3.runtime import Runtime
from vod2s3.store import migrate

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("vod2s3")


def _settings() -> Settings:
    """From the environment, and the file VOD2S3_CONFIG names (vod2s3.config_file)."""
    return config_file.load(os.environ).settings


def _runtime() -> Runtime:
    return Runtime.open(_settings())


def friendly_errors(func: F) -> F:
    """Operator mistakes end with their message and exit status 1, not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Vod2s3Error as error:
            click.echo(f"error: {error.message}", err=True)
            sys.exit(1)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
            # Unreachable server, wrong credentials, unwritable file: the driver's own first
            # line says which (never the statement or its parameters).
            reason = (str(error.orig or error).strip().splitlines() or ["no reason given"])[0]
            click.echo(f"error: cannot use the database (VOD2S3_DATABASE_URL): {reason}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _setup_logging() -> None:
    """Text lines, or one JSON object per line with VOD2S3_LOG_FORMAT=json (vod2s3.logs)."""
    settings = _settings()
    setup_logging(settings.log_level, settings.log_format)


def _require_schema(runtime: Runtime) -> None:
    if migrate.current_revision(runtime.engine) is None:
        raise ConfigurationError("The database has no schema yet: run `vod2s3 db upgrade` first")


def _accounts() -> AccountStore:
    runtime = _runtime()
    _require_schema(runtime)
    return runtime.accounts


@click.group()
@click.version_option(installed_version(), prog_name="vod2s3")
def main() -> None:
    """vod2s3: copy video files from storage volumes into customers' S3 buckets."""


# -- db ---------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Create or migrate the schema to the latest version."""
    runtime = _runtime()
    migrate.upgrade(runtime.engine)
    click.echo(f"database at revision {migrate.current_revision(runtime.engine)}")


def _schema_revision() -> str | None:
    """The database's revision, without opening a Runtime: no master key is needed (or
    created beside a SQLite file) to ask."""
    from vod2s3.store.db import make_engine

    engine = make_engine(_settings().database_url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


@db.command("current")
@click.option("--json", "as_json", is_flag=True)
@click.option("--check", is_flag=True, help="Exit status 1 unless the database is at head.")
@friendly_errors
def db_current(as_json: bool, check: bool) -> None:
    """The database's schema revision, and whether it is the newest this version knows."""
    current = _schema_revision()
    head = migrate.head_revision()
    known = {revision.id for revision in migrate.history()}
    if as_json:
        click.echo(json.dumps({"revision": current, "head": head, "at_head": current == head}))
    elif current == head:
        click.echo(f"database at revision {current} (head)")
    elif current is None:
        click.echo(f"database has no schema yet (head is {head}): run `vod2s3 db upgrade`")
    elif current not in known:
        click.echo(
            f"database at revision {current}, which this version of vod2s3 ({__version__}) "
            f"does not know (its head is {head}): a newer version has migrated it"
        )
    else:
        click.echo(f"database at revision {current}, head is {head}: run `vod2s3 db upgrade`")
    if check and current != head:
        sys.exit(1)


@db.command("history")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def db_history(as_json: bool) -> None:
    """Every schema revision, newest first; the database's own is marked."""
    current = _schema_revision()
    revisions = migrate.history()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"revision": r.id, "summary": r.summary, "current": r.id == current}
                    for r in revisions
                ]
            )
        )
        return
    for revision in revisions:
        marker = "* " if revision.id == current else "  "
        click.echo(f"{marker}{revision.id}  {revision.summary}")
    if current is None:
        click.echo("(the database has no schema yet: run `vod2s3 db upgrade`)")
    elif current not in {revision.id for revision in revisions}:
        click.echo(f"(the database is at {current}, which a newer version of vod2s3 wrote)")


# -- config -----------------------------------------------------------------------------


@main.group()
def config() -> None:
    """The settings: the configuration file (VOD2S3_CONFIG) and the environment."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def config_show(as_json: bool) -> None:
    """The effective settings, where each came from (default, file, environment), and
    where relative paths resolve; secrets masked."""
    loaded = config_file.load(os.environ)
    values = loaded.settings.masked()
    relative = config_file.working_directory_paths(loaded.settings)
    if as_json:
        shown: dict[str, dict[str, object]] = {}
        for name in config_file.SETTING_NAMES:
            shown[name] = {
                "value": config_file.shown_value(values[name]),
                "source": loaded.sources[name],
            }
            if name in relative:
                shown[name]["resolves_to"] = str(relative[name])
        file = None if loaded.file is None else str(loaded.file)
        click.echo(json.dumps({"file": file, "settings": shown}))
        return
    if loaded.file is None:
        click.echo("configuration file: none (VOD2S3_CONFIG is not set)")
    else:
        click.echo(f"configuration file: {loaded.file}")
    width = max(len(name) for name in config_file.SETTING_NAMES)
    for name in config_file.SETTING_NAMES:
        value = config_file.shown_value(values[name])
        text = ",".join(value) if isinstance(value, list) else str(value)
        click.echo(f"{name:<{width}}  {loaded.sources[name]:<11}  {text}")
    for name, path in relative.items():
        click.echo(
            f"note: {name} is relative to the working directory: {path} from here. "
            "Make it absolute (or relative to the configuration file) for a service."
        )


# -- accounts ---------------------------------------------------------------------------


@main.group()
def accounts() -> None:
    """Customer accounts."""


@main.group()
def workers() -> None:
    """The workers that run, and ran."""


@workers.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also the workers that have stopped.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def workers_list(show_all: bool, as_json: bool) -> None:
    """Each worker: host, pid, volumes, version, started, last heartbeat, uploads held."""
    runtime = _runtime()
    _require_schema(runtime)
    held = runtime.workers.uploads_held()
    rows = runtime.workers.listed(include_stopped=show_all)
    if as_json:
        views = [
            {
                "id": row.id,
                "name": row.name,
                "host": row.host,
                "pid": row.pid,
                "volumes": list(row.volumes),  # [] serves every volume
                "version": row.version,
                "started": format_timestamp(row.started),
                "last_heartbeat": format_timestamp(row.last_heartbeat),
                "stopped": format_timestamp(row.stopped) or None,
                "stop_reason": row.stop_reason,
                "uploads_held": held.get(row.id, 0),
            }
            for row in rows
        ]
        click.echo(json.dumps(views))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "host", "pid", "volumes", "version", "last heartbeat", "held", "state")
    for row in rows:
        table.add_row(
            str(row.id),
            row.host,
            str(row.pid),
            ",".join(row.volumes) or "all",
            row.version,
            format_timestamp(row.last_heartbeat),
            str(held.get(row.id, 0)),
            f"stopped ({row.stop_reason})" if row.stopped else "running",
        )
    Console().print(table)


def _print(data: dict[str, Any] | list[Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


@accounts.command("create")
@click.option("--cdn", type=int, required=True, help="The customer's CDN id.")
@click.option("--storage-user", required=True, help="The customer's folder on each volume.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def accounts_create(cdn: int, storage_user: str, as_json: bool) -> None:
    """Create an account; prints its API key and secret (shown only this once)."""
    issued = _accounts().create(cdn, storage_user)
    data = {
        "cdn": issued.cdn,
        "storage_user": issued.storage_user,
        "api_key": issued.api_key,
        "secret": issued.secret,
    }
    _print(
        data,
        as_json,
        f"account cdn {issued.cdn} (storage user {issued.storage_user})\n"
        f"api_key: {issued.api_key}\nsecret:  {issued.secret}\n"
        "The secret is shown only now: give it to the customer.",
    )


def _aws_secret(given: str | None, from_file: str | None) -> str:
    """The AWS secret from --secret-access-key (``-``: standard input), from a file, or from
    VOD2S3_AWS_SECRET_ACCESS_KEY: a secret on the command line is seen in `ps` and kept in
    shell history."""
    if given is not None and from_file is not None:
        raise click.UsageError("give --secret-access-key or --secret-access-key-file, not both")
    if from_file is not None:
        try:
            return Path(from_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise click.BadParameter(
                f"{from_file}: {error.strerror}", param_hint="--secret-access-key-file"
            ) from None
    if given == "-":
        return sys.stdin.readline().strip()
    if given is None:
        raise click.UsageError(
            "the AWS secret is missing: --secret-access-key - (read from standard input), "
            "--secret-access-key-file PATH, or VOD2S3_AWS_SECRET_ACCESS_KEY"
        )
    return given


@accounts.command("set-aws")
@click.option("--cdn", type=int, required=True)
@click.option("--access-key-id", required=True)
@click.option(
    "--secret-access-key",
    envvar="VOD2S3_AWS_SECRET_ACCESS_KEY",
    default=None,
    help='"-" reads it from standard input; or use --secret-access-key-file, or the '
    "environment variable VOD2S3_AWS_SECRET_ACCESS_KEY (not the command line: `ps` shows it).",
)
@click.option("--secret-access-key-file", default=None, help="A file holding the secret.")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--endpoint-url", default="", help="For S3-compatible endpoints.")
@click.option("--buckets", default=None, help="Comma-separated buckets the account may use.")
@friendly_errors
def accounts_set_aws(
    cdn: int,
    access_key_id: str,
    secret_access_key: str | None,
    secret_access_key_file: str | None,
    region: str,
    endpoint_url: str,
    buckets: str | None,
) -> None:
    """Set the AWS credentials, region, endpoint and allowed buckets of an account."""
    secret = _aws_secret(secret_access_key, secret_access_key_file)
    bucket_list = _bucket_list(buckets)
    account = _accounts().set_aws(cdn, access_key_id, secret, region, endpoint_url, bucket_list)
    allowed = ", ".join(account.allowed_buckets) or "any"
    click.echo(f"account cdn {cdn}: AWS settings saved (region {region}, buckets: {allowed})")


def _bucket_list(buckets: str | None) -> list[str] | None:
    """--buckets: None when not given; "" is an empty list (any bucket)."""
    if buckets is None:
        return None
    return [bucket.strip() for bucket in buckets.split(",") if bucket.strip()]


# A grace period longer than this is a mistake (hours taken for days), not a plan.
MAX_GRACE_HOURS = 720.0


@accounts.command("rotate-secret")
@click.option("--cdn", type=int, required=True)
@click.option(
    "--grace-hours",
    type=float,
    default=24.0,
    show_default=True,
    help="How long the old secret keeps working.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--yes", is_flag=True, help="Do not ask before rotating.")
@friendly_errors
def accounts_rotate_secret(cdn: int, grace_hours: float, as_json: bool, yes: bool) -> None:
    """Issue a new API secret; the old one stays valid during the grace period."""
    if not 0 <= grace_hours <= MAX_GRACE_HOURS:
        raise click.BadParameter(
            f"must be from 0 (the old secret stops at once) to {MAX_GRACE_HOURS:g} hours, "
            f"got {grace_hours:g}",
            param_hint="--grace-hours",
        )
    if not yes:
        click.confirm(
            f"Issue a new secret for cdn {cdn}? The old one stops working after "
            f"{grace_hours:g} hours, and the customer must switch before then",
            abort=True,
            err=True,
        )
    secret = _accounts().rotate_secret(cdn, timedelta(hours=grace_hours))
    _print(
        {"cdn": cdn, "secret": secret, "grace_hours": grace_hours},
        as_json,
        f"new secret for cdn {cdn}: {secret}\n"
        f"The old secret keeps working for {grace_hours:g} hours.",
    )


@accounts.command("disable")
@click.option("--cdn", type=int, required=True)
@friendly_errors
def accounts_disable(cdn: int) -> None:
    """Refuse every further request of an account; its uploads wait until it is enabled."""
    waiting = _accounts().set_disabled(cdn, True)
    click.echo(
        f"account cdn {cdn} disabled: its requests are refused, {waiting} queued uploads "
        "wait, and running ones go back to the queue at their next part "
        f"(vod2s3 accounts enable --cdn {cdn} resumes them)"
    )


@accounts.command("enable")
@click.option("--cdn", type=int, required=True)
@friendly_errors
def accounts_enable(cdn: int) -> None:
    """Accept requests of a disabled account again; its waiting uploads start."""
    resumed = _accounts().set_disabled(cdn, False)
    click.echo(f"account cdn {cdn} enabled: {resumed} waiting uploads queued again")


@accounts.command("delete")
@click.option("--cdn", type=int, required=True)
@click.option(
    "--cancel-uploads",
    is_flag=True,
    help="Cancel the account's queued and running uploads (refused without it).",
)
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
@friendly_errors
def accounts_delete(cdn: int, cancel_uploads: bool, yes: bool) -> None:
    """Delete an account and all its upload records; multipart uploads it left on S3 are
    aborted first. Its API key stops working at once."""
    from vod2s3.account_removal import remove_account

    runtime = _runtime()
    _require_schema(runtime)
    runtime.accounts.get(cdn)  # an unknown cdn is said before the question
    if not yes:
        click.confirm(
            f"Delete account cdn {cdn} and every record of its uploads? This cannot be undone",
            abort=True,
            err=True,
        )
    removal = remove_account(runtime, cdn, cancel_uploads)
    click.echo(
        f"account cdn {cdn} deleted: {removal.records_deleted} upload records, "
        f"{removal.cancelled} uploads cancelled, {removal.aborted} multipart uploads aborted"
    )


@accounts.command("set")
@click.option("--cdn", type=int, required=True)
@click.option(
    "--failure-status",
    type=click.Choice(["200", "native", "default"]),
    default=None,
    help="How this account's failures are answered: HTTP 200 with the failure envelope "
    "(for clients that read the body only on success), native statuses, or the "
    "service's VOD2S3_FAILURE_HTTP_STATUS (default).",
)
@click.option(
    "--integrity",
    type=click.Choice(["auto", "crc32c", "md5", "sha256", "default"]),
    default=None,
    help="The check every body carries: one the account's store verifies (docs/"
    "compatibility.md), auto (the cheapest a probe finds verified), or VOD2S3_INTEGRITY "
    "(default).",
)
@click.option(
    "--addressing-style",
    type=click.Choice(["auto", "path", "virtual", "default"]),
    default=None,
    help="How buckets are addressed: auto (path-style for a custom endpoint, "
    "virtual-hosted on AWS), path, or virtual.",
)
@click.option(
    "--ca-bundle",
    default=None,
    help="An absolute path to a PEM file of the CA that signed the endpoint's certificate "
    '(a private CA); "" for the system\'s trust store.',
)
@click.option(
    "--payload-signing",
    type=click.Choice(["auto", "on", "off", "default"]),
    default=None,
    help="SHA-256 payload signing for this account (default: VOD2S3_PAYLOAD_SIGNING).",
)
@click.option(
    "--max-bandwidth",
    default=None,
    metavar="RATE|off",
    help="What the account may send per second from each worker process, within the "
    "worker's VOD2S3_MAX_BANDWIDTH: 512k, 20M, 1.5G (binary units: KiB/s, MiB/s, GiB/s), "
    "or off. Running uploads follow within seconds.",
)
@click.option("--storage-user", default=None, help="The customer's folder on each volume.")
@click.option(
    "--buckets",
    default=None,
    help='Comma-separated buckets the account may use; "" for any bucket its AWS '
    "credentials can write to. The AWS secret is not needed.",
)
@friendly_errors
def accounts_set(
    cdn: int,
    failure_status: str | None,
    integrity: str | None,
    addressing_style: str | None,
    ca_bundle: str | None,
    payload_signing: str | None,
    max_bandwidth: str | None,
    storage_user: str | None,
    buckets: str | None,
) -> None:
    """Change an account's settings (only those given)."""
    given = (
        failure_status,
        integrity,
        addressing_style,
        ca_bundle,
        payload_signing,
        max_bandwidth,
        storage_user,
        buckets,
    )
    if all(option is None for option in given):
        raise click.UsageError(
            "give at least one of --failure-status, --integrity, --addressing-style, "
            "--ca-bundle, --payload-signing, --max-bandwidth, --storage-user, --buckets"
        )
    store = _accounts()
    if max_bandwidth is not None:
        # Checked before any other change is saved: a typing mistake changes nothing.
        limit = store.set_max_bandwidth(cdn, max_bandwidth)
        click.echo(f"account cdn {cdn}: max bandwidth {format_rate(limit)}")
    if storage_user is not None or buckets is not None:
        account = store.set_storage(cdn, storage_user, _bucket_list(buckets))
        allowed = ", ".join(account.allowed_buckets) or "any"
        click.echo(f"account cdn {cdn}: storage user {account.storage_user}, buckets: {allowed}")
    endpoint: dict[str, str | None] = {}
    if addressing_style is not None:
        endpoint["addressing_style"] = None if addressing_style == "default" else addressing_style
    if ca_bundle is not None:
        endpoint["ca_bundle"] = ca_bundle or None
    if payload_signing is not None:
        endpoint["payload_signing"] = None if payload_signing == "default" else payload_signing
    if endpoint:
        store.set_endpoint_options(cdn, **endpoint)
        click.echo(f"account cdn {cdn}: endpoint options saved")
    if failure_status is not None:
        store.set_failure_status(cdn, None if failure_status == "default" else failure_status)
        click.echo(f"account cdn {cdn}: failures answered with {failure_status} status")
    if integrity is not None:
        store.set_integrity(cdn, None if integrity == "default" else integrity)
        click.echo(f"account cdn {cdn}: integrity {integrity}")


@accounts.command("check")
@click.option("--cdn", type=int, required=True)
@click.option("--bucket", default=None, help="Default: the account's first allowed bucket.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def accounts_check(cdn: int, bucket: str | None, as_json: bool) -> None:
    """Try the account's S3 settings against its real endpoint, one row per thing an upload
    needs, each pass, warn or fail with what to do. Leaves nothing in the bucket. Exit
    status 1 if any row fails."""
    from vod2s3.s3 import make_client
    from vod2s3.s3.check import FAIL, AccountCheck
    from vod2s3.worker.accounts import account_target

    runtime = _runtime()
    _require_schema(runtime)
    account = runtime.accounts.get(cdn)
    bucket = bucket or next(iter(account.allowed_buckets), None)
    if not bucket:
        raise click.UsageError("the account allows any bucket: say which with --bucket")
    if not account.has_aws_credentials:
        raise ConfigurationError(f"account cdn {cdn} has no AWS credentials: `accounts set-aws`")
    target = account_target(account, runtime.box)
    settings = runtime.settings

    def client_for(signing: str) -> Any:
        return make_client(
            target,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            payload_signing=signing or target.payload_signing or settings.payload_signing,
        )

    rows = AccountCheck(target, bucket, client_for).run()
    if as_json:
        click.echo(json.dumps([row.as_dict() for row in rows]))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("check", "result", "detail", title=f"account cdn {cdn}, bucket {bucket}")
        for row in rows:
            table.add_row(row.check, row.result, row.detail)
        Console().print(table)
    if any(row.result == FAIL for row in rows):
        sys.exit(1)


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def accounts_list(as_json: bool) -> None:
    """List accounts (never their secrets)."""
    views = [account.public_view() for account in _accounts().all()]
    if as_json:
        click.echo(json.dumps(views))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "cdn", "storage user", "api key", "state", "region", "endpoint", "buckets", "max bandwidth"
    )
    for view in views:
        table.add_row(
            str(view["cdn"]),
            view["storage_user"],
            view["api_key"],
            "disabled" if view["disabled"] else "active",
            view["aws_region"],
            view["aws_endpoint_url"] or "AWS",
            ", ".join(view["buckets"]) or "any",
            view["max_bandwidth"],
        )
    Console().print(table)


# -- servers ----------------------------------------------------------------------------


def _start_worker_thread(runtime: Runtime, concurrency: int | None) -> tuple[Any, threading.Thread]:
    worker = runtime.worker(concurrency)
    thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    thread.start()
    return worker, thread


def _start_deliverer_thread(runtime: Runtime, stopping: threading.Event) -> threading.Thread:
    deliverer = runtime.deliverer()
    thread = threading.Thread(target=deliverer.run, args=(stopping,), name="callbacks", daemon=True)
    thread.start()
    return thread


def _start_coverage_watch(runtime: Runtime, stopping: threading.Event) -> threading.Thread:
    """Warn in the log while a volume has queued uploads and no live worker (one watch per
    process: `serve`, `api`, `worker`)."""
    from vod2s3.coverage_watch import CoverageWatch

    watch = CoverageWatch(runtime.coverage.read)
    thread = threading.Thread(target=watch.run, args=(stopping,), name="coverage", daemon=True)
    thread.start()
    return thread


def _check_port(host: str, port: int) -> None:
    """Fail before starting anything (and before dev mode's banner says it is running) when
    the API could not listen there."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigurationError(
            f"--host {host!r} is not an address to listen on: {error}"
        ) from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as error:
            raise ConfigurationError(
                f"Cannot listen on {host}:{port} ({error.strerror}): "
                "stop what uses it or choose another --port"
            ) from None


def _run_api(
    runtime: Runtime, host: str, port: int, queued: Callable[[], None] | None = None
) -> None:
    from vod2s3.api.app import create_app
    from vod2s3.api.server import api_server

    # uvicorn shuts down on SIGTERM / SIGINT, then raises that signal again once it is done,
    # for the handler that was there before it. With Python's default, SIGTERM would then kill
    # the process before `serve` has stopped its worker (exit 143, claims not given back). The
    # signal has been handled: ignore that echo. A further signal after this returns (while the
    # worker finishes) gets the default again, so a second Ctrl+C still forces the exit.
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _signal_already_handled) for sig in stop_signals}
    try:
        log.info(
            "vod2s3 %s API on http://%s:%s/stable/ (database %s)",
            __version__,
            host,
            port,
            masked_url(runtime.settings.database_url),
        )
        api_server(create_app(runtime.services(queued)), runtime.settings, host, port).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_already_handled(_signum: int, _frame: Any) -> None:
    """uvicorn's re-raise of the stop signal it has already acted on."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--dev", is_flag=True, help="Local S3 endpoint, demo account and sample file.")
@click.option("--concurrency", type=int, default=None, help="Uploads at once.")
@friendly_errors
def serve(host: str, port: int, dev: bool, concurrency: int | None) -> None:
    """Run the API and a worker in one process (creates or migrates the schema)."""
    from vod2s3 import devmode

    _setup_logging()
    if dev:
        devmode.require_loopback(host)  # before anything listens there
    _check_port(host, port)
    settings = _settings()
    runtime = Runtime.open(devmode.dev_settings(settings, Path.cwd()) if dev else settings)
    migrate.upgrade(runtime.engine)
    if not dev:
        devmode.refuse_demo_account(runtime.accounts)
    local_s3 = None
    if dev:
        local_s3 = devmode.start_local_s3()
        devmode.prepare(runtime, local_s3.endpoint)
        click.echo(devmode.banner(f"http://{host}:{port}/stable/", local_s3.endpoint, runtime))
    worker, thread = _start_worker_thread(runtime, concurrency)
    callbacks = _start_deliverer_thread(runtime, worker.stopping)
    _start_coverage_watch(runtime, worker.stopping)
    try:
        _run_api(runtime, host, port, queued=worker.wakeup.set)
    finally:
        worker.stopping.set()
        worker.wakeup.set()
        thread.join(timeout=60)
        callbacks.join(timeout=runtime.settings.callback_timeout + 5)
        if local_s3 is not None:
            local_s3.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@friendly_errors
def api(host: str, port: int) -> None:
    """Run the API only."""
    from vod2s3 import devmode

    _setup_logging()
    runtime = _runtime()
    _require_schema(runtime)
    devmode.refuse_demo_account(runtime.accounts)
    _check_port(host, port)
    stopping = threading.Event()
    _start_coverage_watch(runtime, stopping)
    try:
        _run_api(runtime, host, port)
    finally:
        stopping.set()


@main.command()
@click.option("--volumes", default="", help="Comma-separated volumes this worker serves.")
@click.option("--concurrency", type=int, default=None, help="Uploads at once.")
@click.option(
    "--callbacks/--no-callbacks", default=True, show_default=True, help="Also deliver callbacks."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve this worker's Prometheus metrics on --metrics-host:PORT/metrics (default: off).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@friendly_errors
def worker(
    volumes: str,
    concurrency: int | None,
    callbacks: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a worker only (stops gracefully on SIGTERM or SIGINT)."""
    _setup_logging()
    runtime = _runtime()
    _require_schema(runtime)
    metrics_server = _serve_metrics(runtime, metrics_host, metrics_port)
    served = tuple(v.strip() for v in volumes.split(",") if v.strip())
    the_worker = runtime.worker(concurrency, served)

    def stop(_signum: int, _frame: Any) -> None:
        the_worker.stopping.set()
        the_worker.wakeup.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delivering = _start_deliverer_thread(runtime, the_worker.stopping) if callbacks else None
    _start_coverage_watch(runtime, the_worker.stopping)
    the_worker.run()
    if delivering is not None:
        delivering.join(timeout=runtime.settings.callback_timeout + 5)
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()


def _serve_metrics(runtime: Runtime, host: str, port: int | None) -> Any:
    """The worker's /metrics, /healthz and /readyz over HTTP (a daemon thread), or None
    when no port is given."""
    if port is None:
        return None
    from vod2s3.worker.health import health_app, serve_health

    _check_port(host, port)
    app = health_app(runtime.metrics, runtime.uploads.ping, runtime.settings.metrics_token)
    server = serve_health(host, port, app)
    log.info("metrics on http://%s:%s/metrics (health: /healthz, /readyz)", host, port)
    return server


# Imported last: the group uses this module's helpers (friendly_errors, _runtime).
from vod2s3.cli_uploads import uploads  # noqa: E402

main.add_command(uploads)

from vod2s3.cli_keys import keys  # noqa: E402

main.add_command(keys)

from vod2s3.cli_backup import backup, restore  # noqa: E402

main.add_command(backup)
main.add_command(restore)
