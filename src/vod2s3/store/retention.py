"""Deleting finished uploads: `vod2s3 uploads purge` and the workers' retention sweep
(``VOD2S3_RETENTION_DAYS``).

An upload goes with its parts and its callback deliveries, a batch per transaction, so a
purge of millions of rows never holds a lock for long. Never deleted: an upload still
queued or running; one whose callback is still to be delivered (the deliverer would lose
it); a cancelled one whose multipart upload the worker's sweep has not aborted yet (S3
would keep its parts, and bill them, with nothing left that names them). "Finished before"
is measured on the database's clock (:mod:`vod2s3.store.sqltime`).
"""

from __future__ import annotations

import functools
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    select,
)

from vod2s3.store.db import transaction
from vod2s3.store.schema import callback_deliveries, upload_parts, uploads
from vod2s3.store.sqltime import SqlTime, TimeKind, later_sql

FINISHED_STATES = ("completed", "failed", "cancelled")
DEFAULT_BATCH = 1000
_FINISHED_BEFORE = "sql_finished_before"  # now minus the age (a negative offset)
_BATCH = bindparam("purge_batch", type_=Integer())
_IDS: BindParameter[Any] = bindparam("purge_ids", expanding=True)


def _purgeable(kind: TimeKind) -> ColumnElement[bool]:
    callback_pending = exists().where(
        callback_deliveries.c.upload_id == uploads.c.id,
        callback_deliveries.c.state == "pending",
    )
    return and_(
        uploads.c.state.in_(FINISHED_STATES),
        uploads.c.finished < later_sql(kind, _FINISHED_BEFORE),
        uploads.c.callback_state != "pending",
        ~callback_pending,
        # Set on a cancelled upload until the sweep has aborted its multipart upload.
        uploads.c.multipart_upload_id.is_(None),
    )


@functools.cache
def _batch(kind: TimeKind) -> Select[Any]:
    # Locked, so a retry or a callback queued meanwhile waits, and the row is then looked
    # at again (no longer finished: skipped). SQLite's write lock already serialises.
    return (
        select(uploads.c.id)
        .where(_purgeable(kind))
        .order_by(uploads.c.finished)
        .limit(_BATCH)
        .with_for_update(skip_locked=True)
    )


@functools.cache
def _count(kind: TimeKind) -> Select[Any]:
    return select(func.count()).select_from(uploads).where(_purgeable(kind))


# The foreign keys cascade too (on SQLite only while PRAGMA foreign_keys is on, which
# make_engine sets); deleting the children by name does not depend on it.
_DELETE_PARTS = delete(upload_parts).where(upload_parts.c.upload_id.in_(_IDS))
_DELETE_DELIVERIES = delete(callback_deliveries).where(callback_deliveries.c.upload_id.in_(_IDS))
_DELETE_UPLOADS = delete(uploads).where(uploads.c.id.in_(_IDS))


class FinishedUploads:
    def __init__(self, engine: Engine, time: SqlTime) -> None:
        self._engine = engine
        self._time = time

    def count(self, age: timedelta) -> int:
        """How many uploads :meth:`purge` would delete now."""
        with transaction(self._engine) as conn:
            params = self._time.bind(**{_FINISHED_BEFORE: -age})
            return int(conn.execute(_count(self._time.kind), params).scalar_one())

    def purge(
        self,
        age: timedelta,
        batch_size: int = DEFAULT_BATCH,
        stopping: threading.Event | None = None,
    ) -> int:
        """Delete the uploads that finished more than ``age`` ago, ``batch_size`` per
        transaction, until none is left (or ``stopping`` is set); returns how many."""
        deleted = 0
        while stopping is None or not stopping.is_set():
            done = self._purge_batch(age, batch_size)
            deleted += done
            if done < batch_size:
                break
        return deleted

    def _purge_batch(self, age: timedelta, batch_size: int) -> int:
        with transaction(self._engine) as conn:
            params = {_BATCH.key: batch_size, **self._time.bind(**{_FINISHED_BEFORE: -age})}
            ids = list(conn.execute(_batch(self._time.kind), params).scalars())
            if not ids:
                return 0
            return delete_uploads(conn, ids)


def delete_uploads(conn: Connection, ids: list[int]) -> int:
    """Delete these uploads with their parts and callback deliveries (here and by
    `accounts delete`); returns how many uploads went."""
    conn.execute(_DELETE_PARTS, {_IDS.key: ids})
    conn.execute(_DELETE_DELIVERIES, {_IDS.key: ids})
    return int(conn.execute(_DELETE_UPLOADS, {_IDS.key: ids}).rowcount)
