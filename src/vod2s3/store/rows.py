"""The rows the store hands out, as typed values built in one place.

Callers never see SQLAlchemy rows: each kind of read has a frozen dataclass with a
``from_row`` that names every column it takes (as procrastinate's ``Job.from_row``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

from sqlalchemy import Column, Row

from vod2s3.store.schema import uploads


def _columns(cls: type[Any]) -> tuple[Column[Any], ...]:
    return tuple(uploads.c[field.name] for field in fields(cls))


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """The customer's record, as `aws.status` and callbacks show it (records.record_view)."""

    id: int
    cdn_id: int
    path: str
    destination_path: str
    metadata: dict[str, str]
    acl: str
    callback: str
    message: str
    results: dict[str, str]
    created: datetime
    last_updated: datetime
    status: int
    bucket: str
    state: str
    attempts: int
    bytes_total: int
    bytes_uploaded: int
    error_code: str
    checksum: str
    callback_state: str
    callback_attempts: int
    callback_status: int
    callback_error: str
    started: datetime | None
    finished: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Self:
        values = row._mapping
        return cls(
            id=int(values["id"]),
            cdn_id=int(values["cdn_id"]),
            path=values["path"],
            destination_path=values["destination_path"],
            metadata=dict(values["metadata"] or {}),
            acl=values["acl"],
            callback=values["callback"],
            message=values["message"],
            results=dict(values["results"] or {}),
            created=values["created"],
            last_updated=values["last_updated"],
            status=int(values["status"]),
            bucket=values["bucket"],
            state=values["state"],
            attempts=int(values["attempts"]),
            bytes_total=int(values["bytes_total"]),
            bytes_uploaded=int(values["bytes_uploaded"]),
            error_code=values["error_code"],
            checksum=values["checksum"],
            callback_state=values["callback_state"],
            callback_attempts=int(values["callback_attempts"]),
            callback_status=int(values["callback_status"]),
            callback_error=values["callback_error"],
            started=values["started"],
            finished=values["finished"],
        )


RECORD_COLUMNS = _columns(UploadRecord)


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim's hold on an upload. ``token`` is the fencing token: the upload's lease
    generation when this claim took it. Every write and check of the holder names it."""

    upload_id: int
    token: int


@dataclass(frozen=True, slots=True)
class ClaimedUpload:
    """What a worker needs to run one attempt at an upload it has just claimed."""

    id: int
    account_id: int
    cdn_id: int
    path: str
    volume: str
    bucket: str
    destination_path: str
    metadata: dict[str, str]
    acl: str
    options: dict[str, str]
    message: str
    status: int
    error_code: str
    attempts: int
    multipart_upload_id: str | None
    lease_token: int

    @classmethod
    def from_row(cls, row: Row[Any]) -> Self:
        values = row._mapping
        return cls(
            id=int(values["id"]),
            account_id=int(values["account_id"]),
            cdn_id=int(values["cdn_id"]),
            path=values["path"],
            volume=values["volume"],
            bucket=values["bucket"],
            destination_path=values["destination_path"],
            metadata=dict(values["metadata"] or {}),
            acl=values["acl"],
            options=dict(values["options"] or {}),
            message=values["message"],
            status=int(values["status"]),
            error_code=values["error_code"],
            attempts=int(values["attempts"]),
            multipart_upload_id=values["multipart_upload_id"],
            lease_token=int(values["lease_token"]),
        )

    @property
    def lease(self) -> Lease:
        return Lease(self.id, self.lease_token)


CLAIMED_COLUMNS = _columns(ClaimedUpload)


@dataclass(frozen=True, slots=True)
class StoredPart:
    number: int
    etag: str
    checksum: str
    size: int


@dataclass(frozen=True, slots=True)
class StoredMultipart:
    """The multipart upload an earlier attempt began, and the parts S3 confirmed to it."""

    upload_id: str
    part_size: int
    source_mtime_ns: int
    parts: tuple[StoredPart, ...]


@dataclass(frozen=True, slots=True)
class AbandonedMultipart:
    """A cancelled upload's multipart upload, still to be aborted."""

    id: int
    account_id: int
    bucket: str
    destination_path: str
    metadata: dict[str, str]
    acl: str
    options: dict[str, str]
    multipart_upload_id: str

    @classmethod
    def from_row(cls, row: Row[Any]) -> Self:
        values = row._mapping
        return cls(
            id=int(values["id"]),
            account_id=int(values["account_id"]),
            bucket=values["bucket"],
            destination_path=values["destination_path"],
            metadata=dict(values["metadata"] or {}),
            acl=values["acl"],
            options=dict(values["options"] or {}),
            multipart_upload_id=values["multipart_upload_id"],
        )


ABANDONED_COLUMNS = _columns(AbandonedMultipart)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    id: int
    name: str
    host: str
    pid: int
    process_started: int
    volumes: tuple[str, ...]
    version: str
    started: datetime
    last_heartbeat: datetime
    stopped: datetime | None
    stop_reason: str

    @classmethod
    def from_row(cls, row: Row[Any]) -> Self:
        values = row._mapping
        return cls(
            id=int(values["id"]),
            name=values["name"],
            host=values["host"],
            pid=int(values["pid"]),
            process_started=int(values["process_started"]),
            volumes=tuple(values["volumes"] or ()),
            version=values["version"],
            started=values["started"],
            last_heartbeat=values["last_heartbeat"],
            stopped=values["stopped"],
            stop_reason=values["stop_reason"],
        )
