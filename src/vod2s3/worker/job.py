"""One attempt at one claimed upload: open the source, send it, record the outcome."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from vod2s3.accounts import Account, AccountStore
from vod2s3.clock import Clock
from vod2s3.config import Settings
from vod2s3.crypto import SecretBox
from vod2s3.errors import DatabaseUnavailable, NotFound, SourceError
from vod2s3.logs import upload_fields
from vod2s3.metrics import Metrics
from vod2s3.s3 import (
    MultipartProgress,
    ObjectSpec,
    PartBudget,
    S3Failure,
    S3Target,
    SentPart,
    UploadTuning,
    abort_upload,
    upload,
)
from vod2s3.storage import open_source, resolve_source
from vod2s3.store.uploads import StoredPart, UploadStore
from vod2s3.worker.clients import ClientCache
from vod2s3.worker.retry import RetryPolicy, decide

log = logging.getLogger("vod2s3.worker")
T = TypeVar("T")


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    accounts: AccountStore
    uploads: UploadStore
    box: SecretBox
    clock: Clock
    clients: ClientCache
    policy: RetryPolicy
    owner: str
    shutting_down: threading.Event
    budget: PartBudget
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)


class LeaseKeeper:
    """Extends the lease in the background; notices when another worker took the upload."""

    def __init__(self, ctx: JobContext, upload_id: int) -> None:
        self._ctx = ctx
        self._upload_id = upload_id
        self._done = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name=f"lease-{upload_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        interval = max(1.0, self._ctx.settings.lease_seconds / 3)
        while not self._done.wait(interval):
            try:
                if not self._ctx.uploads.heartbeat(
                    self._upload_id, self._ctx.owner, self._ctx.lease
                ):
                    self.lost = True
                    return
            except Exception:  # a database hiccup: the lease has slack, try again next beat
                log.warning("heartbeat for upload %s failed", self._upload_id, exc_info=True)


def patiently(ctx: JobContext, upload_id: int, step: Callable[[], T]) -> T:
    """One database step on behalf of a claimed upload, retried while the database is
    unavailable (restarted, failing over) for up to a lease: the upload pauses, instead of
    being abandoned to the next claim once its lease has run out. Repeating is safe: reads
    change nothing, and a write's guard refuses it once another worker holds the upload."""
    deadline = time.monotonic() + ctx.settings.lease_seconds
    pause = 0.25
    while True:
        try:
            return step()
        except DatabaseUnavailable:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("upload %s: database unavailable; retrying in %.2fs", upload_id, pause)
            time.sleep(pause)
            pause = min(2 * pause, 1.0)


class LeaseLost(Exception):
    """Another worker took the upload over, or it was cancelled: stop without writing."""


class StoreJournal:
    """Records the multipart upload's progress on the row, only while this worker holds it."""

    def __init__(self, ctx: JobContext, upload_id: int) -> None:
        self._ctx = ctx
        self._uploads = ctx.uploads
        self._owner = ctx.owner
        self._upload_id = upload_id
        self.multipart = False  # False at the end: it was a single PutObject

    def _held(self, write: Callable[[], bool]) -> None:
        if not patiently(self._ctx, self._upload_id, write):
            raise LeaseLost

    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> None:
        self.multipart = True
        self._held(
            lambda: self._uploads.multipart_started(
                self._upload_id, self._owner, upload_id, part_size, source_mtime_ns
            )
        )

    def resumed(self, kept: Sequence[SentPart]) -> None:
        self.multipart = True
        self._held(
            lambda: self._uploads.multipart_resumed(
                self._upload_id, self._owner, [_stored(part) for part in kept]
            )
        )

    def part_sent(self, part: SentPart) -> None:
        self._held(lambda: self._uploads.record_part(self._upload_id, self._owner, _stored(part)))
        self._ctx.metrics.bytes_uploaded(part.length)


def _stored(part: SentPart) -> StoredPart:
    return StoredPart(part.number, part.etag, part.checksum, part.length)


def resume_state(ctx: JobContext, row: Any) -> MultipartProgress | None:
    """What an earlier attempt recorded of the claimed row's multipart upload, if any."""
    # The claimed row tells whether an earlier attempt recorded a multipart upload, and
    # nobody else may change that while we hold the lease: most uploads skip the lookup.
    if row.multipart_upload_id is None:
        return None
    state = patiently(ctx, row.id, lambda: ctx.uploads.multipart_state(row.id))
    if state is None:
        return None
    return MultipartProgress(
        upload_id=state.upload_id,
        part_size=state.part_size,
        source_mtime_ns=state.source_mtime_ns,
        parts=tuple(SentPart(p.number, p.etag, p.checksum, p.size) for p in state.parts),
    )


def object_spec(row: Any) -> ObjectSpec:
    options = dict(row.options or {})
    return ObjectSpec(
        bucket=row.bucket,
        key=row.destination_path,
        acl=row.acl,
        metadata=dict(row.metadata or {}),
        content_type=options.get("content_type", "") or "application/octet-stream",
        cache_control=options.get("cache_control", ""),
        storage_class=options.get("storage_class", ""),
        server_side_encryption=options.get("server_side_encryption", ""),
        sse_kms_key_id=options.get("sse_kms_key_id", ""),
        request_payer=options.get("request_payer", ""),
    )


def s3_target(account: Account, box: SecretBox) -> S3Target:
    return S3Target(
        access_key_id=account.aws_access_key_id,
        secret_access_key=account.aws_secret_access_key(box),
        region=account.aws_region,
        endpoint_url=account.aws_endpoint_url,
    )


def run_job(ctx: JobContext, row: Any) -> None:
    upload_id = row.id
    log.info(
        "upload %s (cdn %s): attempt %s started",
        upload_id,
        row.cdn_id,
        row.attempts,
        extra=upload_fields(row, "claimed", "uploading", attempt=row.attempts, worker=ctx.owner),
    )
    account: Account | None = None
    try:
        account = patiently(ctx, upload_id, lambda: ctx.accounts.get_by_id(row.account_id))
        if row.attempts > ctx.policy.max_attempts:
            # Reclaimed after its workers stopped responding, too often.
            raise S3Failure(
                retryable=False,
                http_status=row.status,
                code=row.error_code or "TooManyAttempts",
                message=f"Gave up after {ctx.policy.max_attempts} attempts: {row.message}",
            )
        source = resolve_source(ctx.settings.storage_root, row.path, account.storage_user)
        fd = open_source(source)
    except NotFound:
        gone = S3Failure(
            retryable=False,
            http_status=0,
            code="AccountMissing",
            message="The account no longer exists",
        )
        _record_failure(ctx, row, None, gone)
        return
    except SourceError as error:
        _record_failure(ctx, row, account, _source_failure(error))
        return
    except S3Failure as failure:
        _record_failure(ctx, row, account, failure)
        return
    try:
        _send(ctx, row, account, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _source_failure(error: SourceError) -> S3Failure:
    """A source problem, in the same terms as an S3 one, so one retry path serves both."""
    return S3Failure(
        retryable=error.http_status >= 500, http_status=0, code=error.code, message=error.message
    )


def _send(ctx: JobContext, row: Any, account: Account, fd: int, size: int) -> None:
    upload_id, owner = row.id, ctx.owner
    target = s3_target(account, ctx.box)
    tuning = UploadTuning(
        multipart_threshold=ctx.settings.multipart_threshold,
        part_size=ctx.settings.part_size,
        parts_in_flight=ctx.settings.parts_in_flight,
    )
    journal = StoreJournal(ctx, upload_id)
    with LeaseKeeper(ctx, upload_id) as lease:
        try:
            outcome = upload(
                ctx.clients.get(target),
                target,
                fd,
                size,
                object_spec(row),
                tuning,
                should_stop=lambda: lease.lost or ctx.shutting_down.is_set(),
                journal=journal,
                resume=resume_state(ctx, row),
                budget=ctx.budget,
                taken_over=row.attempts > 1,
            )
        except LeaseLost:
            log.warning("upload %s: lease lost; leaving it to its new owner", upload_id)
            return
        except S3Failure as failure:
            if lease.lost:
                log.warning("upload %s: lease lost during the upload; stopping", upload_id)
                return
            _record_failure(ctx, row, account, failure)
            return
    if not journal.multipart:
        ctx.metrics.bytes_uploaded(size)  # a multipart upload's parts were counted as sent
    if lease.lost:
        log.warning("upload %s: lease lost; leaving the outcome to its new owner", upload_id)
        return
    if patiently(
        ctx,
        upload_id,
        lambda: ctx.uploads.complete(
            upload_id, owner, outcome.results, outcome.http_status, outcome.checksum, size
        ),
    ):
        _finished(ctx, row, "completed")
        log.info(
            "upload %s (cdn %s): completed",
            upload_id,
            row.cdn_id,
            extra=upload_fields(row, "completed", "completed", "uploading"),
        )


def _record_failure(ctx: JobContext, row: Any, account: Account | None, failure: S3Failure) -> None:
    upload_id, owner = row.id, ctx.owner
    if failure.code == "Stopped" and ctx.shutting_down.is_set():
        # The multipart upload and its parts stay: the next worker resumes them.
        patiently(ctx, upload_id, lambda: ctx.uploads.release(upload_id, owner))
        log.info(
            "upload %s: released for another worker (shutting down)",
            upload_id,
            extra=upload_fields(row, "released", "queued", "uploading"),
        )
        return
    decision = decide(ctx.policy, row.attempts, failure.retryable)
    if decision.retry:
        message = (
            f"Queued for retry (attempt {row.attempts} of {ctx.policy.max_attempts} failed: "
            f"{failure.message})"
        )
        patiently(
            ctx,
            upload_id,
            lambda: ctx.uploads.requeue(
                upload_id, owner, decision.delay, failure.http_status, failure.code, message
            ),
        )
        log.info(
            "upload %s: %s, retry in %.1fs",
            upload_id,
            failure.code,
            decision.delay.total_seconds(),
            extra=upload_fields(row, "requeued", "queued", "uploading", error_code=failure.code),
        )
        return
    _abort_stored_multipart(ctx, row, account)
    if not patiently(
        ctx,
        upload_id,
        lambda: ctx.uploads.fail(
            upload_id, owner, failure.http_status, failure.code, failure.message
        ),
    ):
        log.warning("upload %s: lease lost; the failure was not recorded", upload_id)
        return
    _finished(ctx, row, "failed")
    log.info(
        "upload %s (cdn %s): failed: %s",
        upload_id,
        row.cdn_id,
        failure.code,
        extra=upload_fields(row, "failed", "failed", "uploading", error_code=failure.code),
    )


def _finished(ctx: JobContext, row: Any, outcome: str) -> None:
    """Count an outcome this worker recorded, with the time since the first claim."""
    started = row.started
    seconds = None if started is None else (ctx.clock.now() - started).total_seconds()
    ctx.metrics.upload_finished(outcome, seconds)


def _abort_stored_multipart(ctx: JobContext, row: Any, account: Account | None) -> None:
    """Before giving up, abort the multipart upload an attempt left for resuming, so its
    parts stop costing the customer money. Abort first: a crash before the failure is
    recorded only means another attempt."""
    state = patiently(ctx, row.id, lambda: ctx.uploads.multipart_state(row.id))
    if state is None or account is None:
        return
    _abort(ctx, row, account, state.upload_id)


def abort_cancelled(ctx: JobContext, row: Any) -> None:
    """Abort the multipart upload a cancelled upload left, then forget it."""
    try:
        account = ctx.accounts.get_by_id(row.account_id)
    except NotFound:
        account = None
    if account is not None:
        _abort(ctx, row, account, row.multipart_upload_id)
        log.info("upload %s: cancelled; its multipart upload was aborted", row.id)
    ctx.uploads.forget_multipart(row.id, row.multipart_upload_id)


def _abort(ctx: JobContext, row: Any, account: Account, multipart_upload_id: str) -> None:
    target = s3_target(account, ctx.box)
    abort_upload(ctx.clients.get(target), object_spec(row), multipart_upload_id)
