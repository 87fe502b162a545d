"""The Alembic migrations produce exactly the schema the code declares, on both databases,
and carry the rows of a database written at any earlier revision up to head."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select

from tests.databases import KINDS, database_url
from tests.helpers import FakeClock
from vod2s3.accounts import AccountStore
from vod2s3.crypto import SecretBox
from vod2s3.store import migrate
from vod2s3.store.db import make_engine
from vod2s3.store.overview import UploadOverview
from vod2s3.store.records import RecordStore
from vod2s3.store.schema import metadata
from vod2s3.store.sqltime import sql_time_for


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_migrations_match_declared_schema(kind: str, tmp_path: Path) -> None:
    with database_url(kind, tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            assert migrate.current_revision(engine) == migrate.head_revision()
            with engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                differences = compare_metadata(context, metadata)
            assert differences == []
            tables = set(inspect(engine).get_table_names())
            assert {"accounts", "uploads", "alembic_version"} <= tables
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_upgrade_twice_is_harmless(kind: str, tmp_path: Path) -> None:
    with database_url(kind, tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            migrate.upgrade(engine)
            assert migrate.current_revision(engine) == migrate.head_revision()
        finally:
            engine.dispose()


# Oldest first; every one but head is a starting point.
REVISIONS = [revision.id for revision in reversed(migrate.history())]
WRITTEN = datetime(2026, 11, 26, 12, 0, 0)
KEY = Fernet.generate_key().decode()


def _account(account_id: int, cdn: int, disabled: bool, box: SecretBox) -> dict[str, Any]:
    return {
        "id": account_id,
        "cdn": cdn,
        "storage_user": f"user{cdn}",
        "api_key": f"KEY{cdn:029d}",
        "secret_enc": box.encrypt(f"secret-of-{cdn}"),
        "previous_secret_enc": None,
        "previous_secret_expires": None,
        "disabled": disabled,
        "aws_access_key_id": f"AKIA{cdn}",
        "aws_secret_access_key_enc": box.encrypt(f"aws-secret-of-{cdn}"),
        "aws_region": "us-east-1",
        "aws_endpoint_url": "",
        "allowed_buckets": ["vod"],
        "created": WRITTEN,
        "last_claimed": WRITTEN,  # 0003 on (nullable until 0006)
    }


STATES = ("queued", "uploading", "completed", "failed", "cancelled")


def _upload(upload_id: int, state: str) -> dict[str, Any]:
    finished = state in ("completed", "failed", "cancelled")
    return {
        "id": upload_id,
        "account_id": 1,
        "cdn_id": 158,
        "request_signature": f"sig-{upload_id}",
        "path": f"sestore1/user158/{state}.mp4",
        "volume": "sestore1",
        "bucket": "vod",
        "destination_path": f"{state}.mp4",
        "metadata": {"title": state},
        "acl": "private",
        "callback": "https://example.com/hook" if finished else "",
        "options": {},
        "state": state,
        "message": f"{state} before the upgrade",
        "status": {"completed": 200, "failed": 403}.get(state, 0),
        "error_code": "AccessDenied" if state == "failed" else "",
        "results": {"url": f"https://vod.s3.amazonaws.com/{state}.mp4"}
        if state == "completed"
        else {},
        "checksum": "",
        "attempts": 1 if state != "queued" else 0,
        "bytes_total": 20 * 1024 * 1024,
        "bytes_uploaded": 16 * 1024 * 1024 if state == "uploading" else 0,
        "callback_state": "delivered" if finished else "none",
        "callback_attempts": 1 if finished else 0,
        "created": WRITTEN,
        "last_updated": WRITTEN,
        "started": None if state == "queued" else WRITTEN,
        "finished": WRITTEN if finished else None,
        "next_attempt_at": WRITTEN,
        "lease_owner": "old-worker" if state == "uploading" else None,
        "lease_expires": WRITTEN if state == "uploading" else None,
        # 0002 on: a multipart upload under way, with one part sent.
        "multipart_upload_id": "mpu-1" if state == "uploading" else None,
        "part_size": 16 * 1024 * 1024 if state == "uploading" else None,
        "source_mtime_ns": 1_700_000_000_000_000_000 if state == "uploading" else None,
    }


def _rows(box: SecretBox) -> dict[str, list[dict[str, Any]]]:
    """Head-shaped rows of every table; each revision gets the tables and columns it has."""
    uploads = [_upload(number, state) for number, state in enumerate(STATES, start=1)]
    return {
        "accounts": [_account(1, 158, False, box), _account(2, 159, True, box)],
        "uploads": uploads,
        "upload_parts": [
            {"upload_id": 2, "part_number": 1, "etag": '"e1"', "checksum": "c1", "size": 16 << 20}
        ],
        "callback_deliveries": [
            {
                "upload_id": upload["id"],
                "account_id": 1,
                "delivery_id": f"00000000-0000-0000-0000-00000000000{upload['id']}",
                "url": upload["callback"],
                "body": "{}",
                "state": "delivered",
                "attempts": 1,
                "next_attempt_at": WRITTEN,
                "last_status": 200,
                "last_error": "",
                "created": WRITTEN,
                "updated": WRITTEN,
            }
            for upload in uploads
            if upload["callback"]
        ],
        "workers": [
            {
                "id": 1,
                "name": "old-worker",
                "host": "storage1",
                "pid": 4242,
                "volumes": ["sestore1"],
                "version": "0.1.0",
                "started": WRITTEN,
                "last_heartbeat": WRITTEN,
                "stopped": WRITTEN,
                "stop_reason": "stopped",
            }
        ],
        "command_answers": [
            {
                "account_id": 1,
                "signature": "answered",
                "command": "aws.cancel",
                "status": 200,
                "message": "cancelled",
                "data": {"id": 5},
                "created": WRITTEN,
            }
        ],
    }


def _populate(conn: Connection, rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Insert each row's columns that the table has at this revision; skip absent tables.
    Returns how many rows went into each table."""
    present = set(inspect(conn).get_table_names())
    written: dict[str, int] = {}
    for name, table_rows in rows.items():  # parents before children
        if name not in present:
            continue
        table = Table(name, MetaData(), autoload_with=conn)
        columns = set(table.c.keys())
        conn.execute(
            table.insert(), [{k: v for k, v in r.items() if k in columns} for r in table_rows]
        )
        written[name] = len(table_rows)
    return written


def _fix_sequences(conn: Connection, tables: dict[str, int]) -> None:
    """PostgreSQL's serial counters do not see explicit ids: move them past the rows."""
    if conn.dialect.name != "postgresql":
        return
    for name in ("accounts", "uploads", "callback_deliveries", "workers"):
        if name in tables:
            sequence = f"pg_get_serial_sequence('{name}', 'id')"
            conn.exec_driver_sql(f"SELECT setval({sequence}, (SELECT max(id) FROM {name}))")  # noqa: S608


def _count(engine: Engine, name: str) -> int:
    table = Table(name, MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("revision", REVISIONS[:-1])
def test_a_database_written_at_an_earlier_revision_upgrades_to_head(
    kind: str, revision: str, tmp_path: Path
) -> None:
    box = SecretBox(KEY)
    with database_url(kind, tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine, revision)
            with engine.begin() as conn:
                written = _populate(conn, _rows(box))
                _fix_sequences(conn, written)

            migrate.upgrade(engine)

            assert migrate.current_revision(engine) == migrate.head_revision()
            assert {name: _count(engine, name) for name in written} == written
            clock = FakeClock()
            accounts = AccountStore(engine, box, clock)
            account = accounts.get(158)
            assert account.api_secrets(box, clock.now()) == ["secret-of-158"]
            assert account.aws_secret_access_key(box) == "aws-secret-of-158"
            assert accounts.get(159).disabled
            records = RecordStore(engine, sql_time_for(engine, clock))
            for upload_id, state in enumerate(STATES, start=1):
                record = records.get(1, upload_id)
                assert record is not None
                assert (record.state, record.message) == (state, f"{state} before the upgrade")
            if "callback_deliveries" in written:
                detail = UploadOverview(engine, sql_time_for(engine, clock)).show(3)
                assert detail is not None
                assert [d.state for d in detail.deliveries] == ["delivered"]
            # The current code writes into the upgraded tables too.
            accounts.create(160, "user160")
            assert accounts.get(160).storage_user == "user160"
        finally:
            engine.dispose()
