"""One attempt at one claimed upload: open the source, send it, record the outcome.

The attempt holds the upload by a fenced lease (:mod:`vod2s3.worker.leases`). Losing it is a
value, checked where it matters: the journal answers False, the uploader stops, and the
attempt leaves without writing anything or touching S3 state that the new owner may use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from vod2s3.accounts import WAITING_WHILE_DISABLED, Account
from vod2s3.bandwidth.uplink import Bandwidth
from vod2s3.config import Settings
from vod2s3.errors import DatabaseUnavailable, NotFound, SourceError
from vod2s3.logs import upload_fields
from vod2s3.metrics import Metrics
from vod2s3.s3 import (
    AttemptFailure,
    MultipartProgress,
    ObjectSpec,
    SentPart,
    UploadTuning,
    abort_upload,
    upload,
)
from vod2s3.s3.concurrency import ConcurrencyRules
from vod2s3.s3.sending import Sender
from vod2s3.storage import open_source, resolve_source
from vod2s3.store.journal import JournalRead, PartJournal
from vod2s3.store.outage import OutageLog
from vod2s3.store.queue import LeaseQueue
from vod2s3.store.records import RecordStore
from vod2s3.store.rows import AbandonedMultipart, ClaimedUpload, StoredPart
from vod2s3.worker.accounts import AccountCache
from vod2s3.worker.clients import ClientCache
from vod2s3.worker.integrity import IntegrityChooser
from vod2s3.worker.leases import HeldLease, LeaseKeeper
from vod2s3.worker.regions import BucketRegions
from vod2s3.worker.retry import RetryPolicy, decide

log = logging.getLogger("vod2s3.worker")
T = TypeVar("T")
_MOST_PATIENT_PAUSE = 1.0  # seconds between a job's tries of an unavailable database


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    accounts: AccountCache
    queue: LeaseQueue
    journal: PartJournal
    uploads: RecordStore
    clients: ClientCache
    integrity: IntegrityChooser
    regions: BucketRegions
    policy: RetryPolicy
    keeper: LeaseKeeper
    shutting_down: threading.Event
    worker_name: str
    bandwidth: Bandwidth
    sender: Sender
    metrics: Metrics = field(default_factory=Metrics)


def patiently(ctx: JobContext, upload_id: int, step: Callable[[], T]) -> T:
    """One database step on behalf of a claimed upload, retried while the database is
    unavailable (restarted, failing over) for up to a lease: the upload pauses, instead of
    being abandoned to the next claim once its lease has run out. Repeating is safe: every
    step is guarded by the fencing token, and refused once another worker holds the upload."""
    deadline = time.monotonic() + ctx.settings.lease_seconds
    pause = 0.25
    outage = OutageLog(f"upload {upload_id}", log, _MOST_PATIENT_PAUSE)
    while True:
        try:
            done = step()
        except DatabaseUnavailable as error:
            if time.monotonic() + pause > deadline:
                raise  # the caller says the upload is left for the next claim
            outage.failed(error)
            time.sleep(pause)
            pause = min(2 * pause, _MOST_PATIENT_PAUSE)
            continue
        outage.succeeded()
        return done


class StoreJournal:
    """The uploader's journal: the part journal, written only while the lease holds. Each
    write also renews the lease; a refused one marks it lost."""

    def __init__(self, ctx: JobContext, held: HeldLease) -> None:
        self._ctx = ctx
        self._held = held
        self.multipart = False  # False at the end: it was a single PutObject

    def _guarded(self, step: Callable[[], bool]) -> bool:
        if not self._held.usable():
            return False
        asked_at = time.monotonic()
        if patiently(self._ctx, self._held.lease.upload_id, step):
            self._held.renewed(asked_at)
            return True
        self._held.lose()
        return False

    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> bool:
        self.multipart = True
        lease, journal = self._held.lease, self._ctx.journal
        return self._guarded(lambda: journal.started(lease, upload_id, part_size, source_mtime_ns))

    def resumed(self, kept: Sequence[SentPart]) -> bool:
        self.multipart = True
        lease, journal = self._held.lease, self._ctx.journal
        return self._guarded(lambda: journal.resumed(lease, [_stored(part) for part in kept]))

    def part_sent(self, part: SentPart) -> bool:
        lease, journal = self._held.lease, self._ctx.journal
        if not self._guarded(lambda: journal.part_sent(lease, _stored(part))):
            return False
        self._ctx.metrics.bytes_uploaded(part.length)
        return True

    def fence(self) -> bool:
        lease, queue = self._held.lease, self._ctx.queue
        return self._guarded(lambda: queue.fence(lease))


def _stored(part: SentPart) -> StoredPart:
    return StoredPart(part.number, part.etag, part.checksum, part.length)


def read_journal(ctx: JobContext, held: HeldLease) -> JournalRead:
    """The part journal, read only while the lease holds. The read renews the lease, as a
    journal write does; a refused one marks it lost."""
    asked_at = time.monotonic()
    read = patiently(ctx, held.lease.upload_id, lambda: ctx.journal.read(held.lease))
    if read.held:
        held.renewed(asked_at)
    else:
        held.lose()
    return read


def resume_state(
    ctx: JobContext, claimed: ClaimedUpload, held: HeldLease
) -> MultipartProgress | None:
    """What an earlier attempt recorded of the claimed upload's multipart upload, if any."""
    # The claimed row tells whether an earlier attempt recorded a multipart upload, and
    # nobody else may change that while we hold the lease: most uploads skip the lookup.
    if claimed.multipart_upload_id is None:
        return None
    state = read_journal(ctx, held).multipart
    if state is None:
        return None
    return MultipartProgress(
        upload_id=state.upload_id,
        part_size=state.part_size,
        source_mtime_ns=state.source_mtime_ns,
        parts=tuple(SentPart(p.number, p.etag, p.checksum, p.size) for p in state.parts),
    )


def object_spec(upload: ClaimedUpload | AbandonedMultipart) -> ObjectSpec:
    options = upload.options
    return ObjectSpec(
        bucket=upload.bucket,
        key=upload.destination_path,
        acl=upload.acl,
        metadata=upload.metadata,
        content_type=options.get("content_type", "") or "application/octet-stream",
        cache_control=options.get("cache_control", ""),
        storage_class=options.get("storage_class", ""),
        server_side_encryption=options.get("server_side_encryption", ""),
        sse_kms_key_id=options.get("sse_kms_key_id", ""),
        request_payer=options.get("request_payer", ""),
    )


def run_job(ctx: JobContext, claimed: ClaimedUpload, claimed_at: float) -> None:
    """Run one attempt at ``claimed``, leased by a claim statement sent at ``claimed_at``
    (monotonic)."""
    held = ctx.keeper.hold(claimed.lease, claimed_at)
    try:
        _attempt(ctx, claimed, held)
    finally:
        ctx.keeper.drop(held)


def _attempt(ctx: JobContext, claimed: ClaimedUpload, held: HeldLease) -> None:
    log.info(
        "upload %s (cdn %s): attempt %s started",
        claimed.id,
        claimed.cdn_id,
        claimed.attempts,
        extra=upload_fields(
            claimed, "claimed", "uploading", attempt=claimed.attempts, worker=ctx.worker_name
        ),
    )
    account: Account | None = None
    try:
        account = patiently(ctx, claimed.id, lambda: ctx.accounts.get(claimed.account_id))
        if account.disabled:
            # Claims skip disabled accounts; this one was claimed as its account was being
            # disabled, or after its lease ran out. Its credentials must not be used: it
            # waits in the queue, its parts kept, until the account is enabled again.
            _wait_while_disabled(ctx, claimed, held)
            return
        if claimed.attempts > ctx.policy.max_attempts:
            # Reclaimed after its workers stopped responding, too often.
            raise AttemptFailure(
                retryable=False,
                s3_status=claimed.status,
                code=claimed.error_code or "TooManyAttempts",
                message=f"Gave up after {ctx.policy.max_attempts} attempts: {claimed.message}",
            )
        source = resolve_source(
            ctx.settings.storage_root,
            claimed.path,
            account.storage_user,
            ctx.settings.allow_hard_links,
        )
        fd = open_source(source)
    except NotFound:
        gone = AttemptFailure(
            retryable=False,
            s3_status=0,
            code="AccountMissing",
            message="The account no longer exists",
        )
        _record_failure(ctx, claimed, held, None, gone)
        return
    except SourceError as error:
        _record_failure(ctx, claimed, held, account, _source_failure(error))
        return
    except AttemptFailure as failure:
        _record_failure(ctx, claimed, held, account, failure)
        return
    try:
        _send(ctx, claimed, held, account, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _source_failure(error: SourceError) -> AttemptFailure:
    """A source problem, in the same terms as an S3 one, so one retry path serves both."""
    return AttemptFailure(
        retryable=error.http_status >= 500, s3_status=0, code=error.code, message=error.message
    )


# Requests a worker sends at once when it starts: aws-cli's 10, about, and few enough not
# to flood a small store. On a long link the first windows are the slowest to learn from
# (fresh connections run fast until their first losses, then settle): starting at 4 spent
# 10 to 20 s there (docs/benchmarks.md, "The emulated WAN").
INITIAL_CONNECTIONS = 8


def connection_rules(settings: Settings) -> ConcurrencyRules:
    """The worker-wide limit on requests in flight: adaptive, up to VOD2S3_S3_MAX_CONNECTIONS."""
    maximum = settings.s3_max_connections
    return ConcurrencyRules(initial=min(INITIAL_CONNECTIONS, maximum), maximum=maximum)


def per_upload_limit(settings: Settings) -> int:
    """Requests one upload may have in flight: VOD2S3_PARTS_IN_FLIGHT when set, never more
    than VOD2S3_S3_MAX_CONNECTIONS_PER_UPLOAD."""
    per_upload = settings.s3_max_connections_per_upload
    return min(settings.parts_in_flight or per_upload, per_upload)


def _send(
    ctx: JobContext, claimed: ClaimedUpload, held: HeldLease, account: Account, fd: int, size: int
) -> None:
    target = ctx.accounts.target(account)
    journal = StoreJournal(ctx, held)
    try:
        ctx.regions.check(ctx.clients.get(target), target, claimed.bucket, claimed.cdn_id)
        integrity = ctx.integrity.choose(target, account.integrity, claimed.bucket)
        tuning = UploadTuning(
            multipart_threshold=ctx.settings.multipart_threshold,
            part_size=ctx.settings.part_size,
            parts_in_flight=per_upload_limit(ctx.settings),
            integrity=integrity.mode,
        )
        with ctx.bandwidth.running(account.id):
            outcome = upload(
                ctx.integrity.client(target, integrity.mode),
                target,
                fd,
                size,
                object_spec(claimed),
                tuning,
                should_stop=lambda: (
                    not held.usable()
                    or ctx.shutting_down.is_set()
                    or ctx.accounts.disabled_now(account.id)
                ),
                journal=journal,
                resume=resume_state(ctx, claimed, held),
                taken_over=claimed.attempts > 1,
                throttle=ctx.bandwidth.throttle_for(account.id),
                sender=ctx.sender,
            )
    except AttemptFailure as failure:
        if not held.usable():
            _left_to_new_owner(ctx, claimed, "during the upload")
            return
        _record_failure(ctx, claimed, held, account, failure)
        return
    if not journal.multipart:
        ctx.metrics.bytes_uploaded(size)  # a multipart upload's parts were counted as sent
    finished = patiently(
        ctx,
        claimed.id,
        lambda: ctx.queue.complete(
            held.lease,
            outcome.results,
            outcome.s3_status,
            outcome.checksum,
            size,
            # Parts are journalled only for a multipart upload, this attempt's or an
            # earlier one's: a single PutObject of a fresh upload has none to forget.
            parts_recorded=journal.multipart or claimed.multipart_upload_id is not None,
            integrity=integrity.record(),
        ),
    )
    if finished is None:
        _left_to_new_owner(ctx, claimed, "before its completion was recorded")
        return
    ctx.metrics.upload_finished("completed", finished.seconds)
    log.info(
        "upload %s (cdn %s): completed",
        claimed.id,
        claimed.cdn_id,
        extra=upload_fields(claimed, "completed", "completed", "uploading"),
    )


def _left_to_new_owner(ctx: JobContext, claimed: ClaimedUpload, when: str) -> None:
    """The lease is gone: say why, as the operator reads it. A customer's (or operator's)
    cancel ends the lease as a takeover does; one read of the row tells them apart."""
    try:
        now = ctx.uploads.get_any(claimed.id)
    except DatabaseUnavailable:
        now = None  # away again: the lease ended, for a reason nobody can read now
    if now is not None and now.state == "cancelled":
        log.info(
            "upload %s (cdn %s): cancelled; stopping",
            claimed.id,
            claimed.cdn_id,
            extra=upload_fields(claimed, "stopped", "cancelled", "uploading"),
        )
        return
    log.warning(
        "upload %s: this worker's lease ended %s (it expired, or another worker took the "
        "upload over); stopping without writing",
        claimed.id,
        when,
        extra=upload_fields(claimed, "lease_lost", None, "uploading"),
    )


def _record_failure(
    ctx: JobContext,
    claimed: ClaimedUpload,
    held: HeldLease,
    account: Account | None,
    failure: AttemptFailure,
) -> None:
    upload_id, lease = claimed.id, held.lease
    if failure.code == "Stopped" and account is not None and ctx.accounts.disabled_now(account.id):
        _wait_while_disabled(ctx, claimed, held)
        return
    if failure.code == "Stopped" and ctx.shutting_down.is_set():
        # The multipart upload and its parts stay: the next worker resumes them.
        patiently(ctx, upload_id, lambda: ctx.queue.release(lease))
        log.info(
            "upload %s: released for another worker (shutting down)",
            upload_id,
            extra=upload_fields(claimed, "released", "queued", "uploading"),
        )
        return
    decision = decide(ctx.policy, claimed.attempts, failure.retryable)
    if decision.retry:
        message = (
            f"Queued for retry (attempt {claimed.attempts} of {ctx.policy.max_attempts} "
            f"failed: {failure.message})"
        )
        if not patiently(
            ctx,
            upload_id,
            lambda: ctx.queue.requeue(
                lease, decision.delay, failure.s3_status, failure.code, message
            ),
        ):
            _left_to_new_owner(ctx, claimed, "before its retry was queued")
            return
        log.info(
            "upload %s: %s, retry in %.1fs",
            upload_id,
            failure.code,
            decision.delay.total_seconds(),
            extra=upload_fields(
                claimed, "requeued", "queued", "uploading", error_code=failure.code
            ),
        )
        return
    if not _abort_stored_multipart(ctx, claimed, held, account):
        _left_to_new_owner(ctx, claimed, "before its multipart upload was aborted")
        return
    finished = patiently(
        ctx,
        upload_id,
        lambda: ctx.queue.fail(lease, failure.s3_status, failure.code, failure.message),
    )
    if finished is None:
        _left_to_new_owner(ctx, claimed, "before its failure was recorded")
        return
    ctx.metrics.upload_finished("failed", finished.seconds)
    log.info(
        "upload %s (cdn %s): failed: %s",
        upload_id,
        claimed.cdn_id,
        failure.code,
        extra=upload_fields(claimed, "failed", "failed", "uploading", error_code=failure.code),
    )


def _wait_while_disabled(ctx: JobContext, claimed: ClaimedUpload, held: HeldLease) -> None:
    """Back to the queue, the attempt not counted, the multipart upload and its parts kept:
    it resumes where it stopped once the account is enabled again."""
    lease = held.lease
    if not patiently(ctx, claimed.id, lambda: ctx.queue.release(lease, WAITING_WHILE_DISABLED)):
        _left_to_new_owner(ctx, claimed, "before it was put back to wait")
        return
    log.info(
        "upload %s (cdn %s): the account is disabled; back to the queue until it is enabled",
        claimed.id,
        claimed.cdn_id,
        extra=upload_fields(claimed, "account_disabled", "queued", "uploading"),
    )


def _abort_stored_multipart(
    ctx: JobContext, claimed: ClaimedUpload, held: HeldLease, account: Account | None
) -> bool:
    """Before giving up, abort the multipart upload an attempt left for resuming, so its
    parts stop costing the customer money. Abort first: a crash before the failure is
    recorded only means another attempt. The read is fenced (and renews the lease): a
    worker that lost the upload reads nothing, so it cannot abort the new owner's upload.
    False when the lease is gone."""
    read = read_journal(ctx, held)
    if not read.held:
        return False
    if read.multipart is None or account is None:
        return True
    target = ctx.accounts.target(account)
    abort_upload(ctx.clients.get(target), object_spec(claimed), read.multipart.upload_id)
    return True


def abort_cancelled(ctx: JobContext, cancelled: AbandonedMultipart) -> None:
    """Abort the multipart upload a cancelled upload left, then forget it."""
    try:
        account = ctx.accounts.get(cancelled.account_id)
    except NotFound:
        account = None
    if account is not None:
        target = ctx.accounts.target(account)
        abort_upload(ctx.clients.get(target), object_spec(cancelled), cancelled.multipart_upload_id)
        log.info("upload %s: cancelled; its multipart upload was aborted", cancelled.id)
    ctx.journal.forget_abandoned(cancelled.id, cancelled.multipart_upload_id)
