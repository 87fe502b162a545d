"""Deleting an account and every row that belongs to it, in bounded batches.

An account's records can number in the millions: each batch of uploads (with their parts
and callback deliveries) is its own short transaction, so the deletion never holds the
database's write lock (SQLite) or a long row lock (PostgreSQL) for long. The account row
goes last, in a transaction that first checks that no upload was added meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select

from vod2s3.errors import Conflict
from vod2s3.store.db import transaction
from vod2s3.store.retention import delete_uploads
from vod2s3.store.schema import accounts, command_answers, uploads

ACTIVE_STATES = ("queued", "uploading")
BATCH = 500


@dataclass(frozen=True, slots=True)
class ActiveUpload:
    """A queued or running upload, and the multipart upload it has open on S3 if any."""

    id: int
    multipart_upload_id: str | None


def active_uploads(engine: Engine, account_id: int) -> list[ActiveUpload]:
    """The account's queued and running uploads."""
    with transaction(engine) as conn:
        rows = conn.execute(
            select(uploads.c.id, uploads.c.multipart_upload_id)
            .where(uploads.c.account_id == account_id, uploads.c.state.in_(ACTIVE_STATES))
            .order_by(uploads.c.id)
        )
        return [ActiveUpload(int(row.id), row.multipart_upload_id) for row in rows]


def delete_account_rows(engine: Engine, account_id: int, batch: int = BATCH) -> int:
    """Delete the account's uploads (refused while any is active), their parts, callback
    deliveries and command answers, then the account. Returns the uploads deleted."""
    deleted = 0
    while True:
        with transaction(engine) as conn:
            ids = [
                int(row.id)
                for row in conn.execute(
                    select(uploads.c.id)
                    .where(
                        uploads.c.account_id == account_id,
                        uploads.c.state.not_in(ACTIVE_STATES),
                    )
                    .order_by(uploads.c.id)
                    .limit(batch)
                )
            ]
            if not ids:
                break
            deleted += delete_uploads(conn, ids)
    with transaction(engine) as conn:
        left = conn.execute(
            select(func.count()).select_from(uploads).where(uploads.c.account_id == account_id)
        ).scalar_one()
        if left:
            raise Conflict(
                f"{left} uploads of the account became active while it was being deleted "
                "(a retry?): run the command again"
            )
        conn.execute(delete(command_answers).where(command_answers.c.account_id == account_id))
        conn.execute(delete(accounts).where(accounts.c.id == account_id))
    return deleted
