"""A large file as a multipart upload: parts read and sent in parallel, then completed.

Memory stays bounded: a part is read from the file block by block by the thread that sends
it (s3/streamed.py), so a part in flight holds one block, not the part.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, as_completed, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vod2s3.s3.abort import abort_strays, abort_upload
from vod2s3.s3.classify import classify
from vod2s3.s3.failure import AttemptFailure, stopped
from vod2s3.s3.integrity import (
    Mode,
    body_params,
    completed_part,
    create_params,
    mode_of,
)
from vod2s3.s3.journal import MultipartProgress, SentPart, UploadJournal
from vod2s3.s3.model import ObjectSpec, UploadTuning
from vod2s3.s3.params import object_params, payer_params
from vod2s3.s3.parts import MAX_PARTS, MIN_PART_SIZE, Part, part_size_for, plan_parts
from vod2s3.s3.sending import Sender
from vod2s3.s3.source import SourceFile
from vod2s3.s3.streamed import streamed_body

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


@dataclass(frozen=True)
class _Upload:
    client: S3Client
    spec: ObjectSpec
    upload_id: str
    source: SourceFile
    part_size: int
    should_stop: Callable[[], bool]
    mode: Mode
    throttle: Callable[[int], None] | None = None

    def send(self, part: Part) -> SentPart:
        """Runs in a pool thread: checksum one part in a pass over the file, then send it
        from the file — unless the attempt was told to stop (its lease is gone) while the
        part waited for its turn."""
        if self.should_stop():
            raise stopped()
        value, body = streamed_body(self.source, part.offset, part.length, self.mode, self.throttle)
        response = self.client.upload_part(
            Bucket=self.spec.bucket,
            Key=self.spec.key,
            UploadId=self.upload_id,
            PartNumber=part.number,
            Body=body,
            **body_params(self.mode, value),
            **payer_params(self.spec),
        )
        return SentPart(part.number, response["ETag"], value, part.length)

    def complete(self, sent: list[SentPart]) -> Mapping[str, Any]:
        listed: list[CompletedPartTypeDef] = [
            completed_part(self.mode, p.number, p.etag, p.checksum)  # type: ignore[misc]
            for p in sent
        ]
        return self.client.complete_multipart_upload(
            Bucket=self.spec.bucket,
            Key=self.spec.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": listed},
            **payer_params(self.spec),
        )


def upload_multipart(
    client: S3Client,
    spec: ObjectSpec,
    source: SourceFile,
    size: int,
    tuning: UploadTuning,
    progress: Callable[[int], None],
    should_stop: Callable[[], bool],
    journal: UploadJournal,
    resume: MultipartProgress | None = None,
    taken_over: bool = False,
    throttle: Callable[[int], None] | None = None,
    sender: Sender | None = None,
) -> tuple[Mapping[str, Any], list[SentPart]]:
    """S3's CompleteMultipartUpload answer and the parts, in order.

    With ``resume``, an earlier attempt's upload continues: only the parts S3 does not hold
    (those that were in flight) are sent. A failure that makes the upload id useless (a
    permanent error, a changed source) aborts it; any other failure leaves it for the next
    attempt to resume, and the journal holds what it needs.

    Parts go through ``sender`` (the worker's, shared by its uploads), at most
    ``tuning.parts_in_flight`` of this upload at once.
    """
    mode: Mode = tuning.integrity  # type: ignore[assignment]
    upload, done = _resume(client, spec, source, size, resume, journal, should_stop, mode)
    if upload is not None:
        upload = dataclasses.replace(upload, throttle=throttle)
    else:
        if taken_over:
            _fenced(journal)
            abort_strays(client, spec, keep=None if resume is None else resume.upload_id)
        part_size = part_size_for(size, tuning.part_size)
        created = client.create_multipart_upload(**object_params(spec), **create_params(mode))
        upload = _Upload(
            client, spec, created["UploadId"], source, part_size, should_stop, mode, throttle
        )
        # Not recorded (a lost lease, the database away): no attempt could ever resume it,
        # and nobody else knows it, so it must not stay open.
        try:
            recorded = journal.started(upload.upload_id, part_size, source.mtime_ns)
        except Exception:
            abort_upload(client, spec, upload.upload_id)
            raise
        if not recorded:
            abort_upload(client, spec, upload.upload_id)
            raise stopped()
    if done:
        progress(sum(part.length for part in done))
    todo = [
        p for p in plan_parts(size, upload.part_size) if p.number not in {d.number for d in done}
    ]
    try:
        sent = _send_parts(
            upload,
            todo,
            tuning.parts_in_flight,
            progress,
            should_stop,
            journal,
            sender or Sender.fixed(tuning.parts_in_flight),
            own_sender=sender is None,
        )
        source.check()  # a change after the last part was read
        if should_stop():
            raise stopped()
        parts = sorted([*done, *sent], key=lambda p: p.number)
        _fenced(journal)
        return upload.complete(parts), parts
    except Exception as exc:
        if _upload_id_is_useless(exc, spec) and journal.fence():
            abort_upload(client, spec, upload.upload_id)
        raise


def _fenced(journal: UploadJournal) -> None:
    """Stop unless the journal confirms this attempt may still act on the upload."""
    if not journal.fence():
        raise stopped()


def _upload_id_is_useless(exc: Exception, spec: ObjectSpec) -> bool:
    """Permanent S3 errors and a changed source end this multipart upload for good; transient
    errors, a stop, or the caller's own exception (a lost lease) leave it to be resumed."""
    if not isinstance(exc, ClientError | BotoCoreError | AttemptFailure):
        return False
    failure = exc if isinstance(exc, AttemptFailure) else classify(exc, bucket=spec.bucket)
    return failure.code == "SourceChanged" or not failure.retryable


def _resume(
    client: S3Client,
    spec: ObjectSpec,
    source: SourceFile,
    size: int,
    resume: MultipartProgress | None,
    journal: UploadJournal,
    should_stop: Callable[[], bool],
    mode: Mode,
) -> tuple[_Upload | None, list[SentPart]]:
    """The earlier upload and the parts of it S3 really holds, or (None, []) to start over."""
    if resume is None:
        return None, []
    usable = (
        resume.source_mtime_ns == source.mtime_ns
        and resume.part_size >= MIN_PART_SIZE
        and resume.part_size * MAX_PARTS >= size
        # A multipart upload keeps the check it was begun with (a flexible checksum is
        # declared when it is created): parts of another check cannot finish it.
        and all(mode_of(part.checksum) == mode for part in resume.parts)
    )
    if not usable:
        # Parts of a file that has changed since must never be stitched into the object.
        _fenced(journal)
        abort_upload(client, spec, resume.upload_id)
        return None, []
    try:
        held = _list_parts(client, spec, resume.upload_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return None, []  # aborted or expired by a lifecycle rule: start over
        raise
    kept = [p for p in resume.parts if held.get(p.number) == (p.etag, p.length)]
    if not journal.resumed(kept):
        raise stopped()
    upload = _Upload(client, spec, resume.upload_id, source, resume.part_size, should_stop, mode)
    return upload, kept


def _list_parts(client: S3Client, spec: ObjectSpec, upload_id: str) -> dict[int, tuple[str, int]]:
    """Every part S3 holds for the upload: number -> (ETag, size). ListParts answers at most
    1,000 parts per call."""
    held: dict[int, tuple[str, int]] = {}
    marker = 0
    while True:
        page = client.list_parts(
            Bucket=spec.bucket,
            Key=spec.key,
            UploadId=upload_id,
            PartNumberMarker=marker,
            **payer_params(spec),
        )
        for part in page.get("Parts", []):
            held[part["PartNumber"]] = (part["ETag"], part["Size"])
        if not page.get("IsTruncated"):
            return held
        marker = int(page["NextPartNumberMarker"])


def _send_parts(
    upload: _Upload,
    parts: Iterable[Part],
    in_flight: int,
    progress: Callable[[int], None],
    should_stop: Callable[[], bool],
    journal: UploadJournal,
    sender: Sender,
    own_sender: bool,
) -> list[SentPart]:
    sent: list[SentPart] = []
    running: set[Future[SentPart]] = set()
    try:
        for part in parts:
            while len(running) >= in_flight:
                _collect(running, sent, progress, journal)
            if should_stop():
                raise stopped()
            running.add(sender.submit(functools.partial(upload.send, part), should_stop))
        while running:
            _collect(running, sent, progress, journal)
    except Exception:
        # Waits for the parts still on the wire, so none can land after the caller's abort.
        _settle(running, sent, progress, journal)
        raise
    finally:
        if own_sender:
            sender.close()
    return sorted(sent, key=lambda p: p.number)


def _collect(
    running: set[Future[SentPart]],
    sent: list[SentPart],
    progress: Callable[[int], None],
    journal: UploadJournal,
) -> None:
    """Wait for at least one part and take it out of ``running``; report every part that
    finished (on the caller's thread), then raise the first failure among them."""
    done, _ = wait(running, return_when=FIRST_COMPLETED)
    failure: BaseException | None = None
    for future in done:
        running.discard(future)
        error = future.exception()
        if error is not None:
            failure = failure or error
            continue
        _report(future.result(), sent, progress, journal)
    if failure is not None:
        raise failure


def _settle(
    running: set[Future[SentPart]],
    sent: list[SentPart],
    progress: Callable[[int], None],
    journal: UploadJournal,
) -> None:
    """After a failure or a stop: wait for the parts still on the wire and report those S3
    confirmed, so that the attempt that resumes does not send them again. Their own failures,
    and the journal's (a lost lease), only end the reporting: the first failure is the one
    that counts."""
    reporting = True
    for future in as_completed(running):
        if reporting and future.exception() is None:
            try:
                _report(future.result(), sent, progress, journal)
            except Exception:
                reporting = False
    running.clear()


def _report(
    part: SentPart,
    sent: list[SentPart],
    progress: Callable[[int], None],
    journal: UploadJournal,
) -> None:
    sent.append(part)
    if not journal.part_sent(part):
        raise stopped()
    progress(part.length)
