"""The rows the store hands out, as typed values built in one place.

Callers never see SQLAlchemy rows: each kind of read has a frozen dataclass whose fields
are the columns it takes, built by one ``from_row`` (as procrastinate's ``Job.from_row``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self, get_type_hints

from sqlalchemy import Column, Row

from vod2s3.bandwidth.report import SendingReport
from vod2s3.store.schema import uploads


def _columns(cls: type[Any]) -> tuple[Column[Any], ...]:
    return tuple(uploads.c[field.name] for field in fields(cls))


def _keep(value: Any) -> Any:
    return value


def _converter(hint: Any) -> Callable[[Any], Any]:
    """How a column's value becomes the field's type: a JSON column may be NULL, and a JSON
    array arrives as a list."""
    origin = getattr(hint, "__origin__", hint)
    if origin is int:
        return int
    if origin is dict:
        return lambda value: dict(value or {})
    if origin is tuple:
        return lambda value: tuple(value or ())
    if origin is SendingReport:
        return SendingReport.from_json
    return _keep


_CONVERTERS: dict[type[Any], tuple[tuple[str, Callable[[Any], Any]], ...]] = {}


def _converters(cls: type[Any]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    known = _CONVERTERS.get(cls)
    if known is None:
        hints = get_type_hints(cls)
        known = tuple((field.name, _converter(hints[field.name])) for field in fields(cls))
        _CONVERTERS[cls] = known
    return known


class FromRow:
    """``from_row``: a row's columns of the same names as the fields, converted to the
    fields' types. The one place rows become values."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Row[Any]) -> Self:
        values = row._mapping
        return cls(**{name: convert(values[name]) for name, convert in _converters(cls)})


@dataclass(frozen=True, slots=True)
class UploadRecord(FromRow):
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
    integrity: dict[str, str] | None
    callback_state: str
    callback_attempts: int
    callback_status: int
    callback_error: str
    started: datetime | None
    finished: datetime | None


RECORD_COLUMNS = _columns(UploadRecord)


@dataclass(frozen=True, slots=True)
class UploadJobFields(FromRow):
    """What only the operator sees of an upload beside its record: where it is in the
    queue and who holds it (`vod2s3 uploads list` and `show`)."""

    account_id: int
    volume: str
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires: datetime | None
    worker_id: int | None
    multipart_upload_id: str | None


JOB_COLUMNS = _columns(UploadJobFields)


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim's hold on an upload. ``token`` is the fencing token: the upload's lease
    generation when this claim took it. Every write and check of the holder names it."""

    upload_id: int
    token: int


@dataclass(frozen=True, slots=True)
class ClaimedUpload(FromRow):
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
class AbandonedMultipart(FromRow):
    """A cancelled upload's multipart upload, still to be aborted."""

    id: int
    account_id: int
    bucket: str
    destination_path: str
    metadata: dict[str, str]
    acl: str
    options: dict[str, str]
    multipart_upload_id: str


ABANDONED_COLUMNS = _columns(AbandonedMultipart)


@dataclass(frozen=True, slots=True)
class WorkerRow(FromRow):
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
    sending: SendingReport  # as of its last heartbeat
