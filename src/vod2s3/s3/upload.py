"""upload(): one file to one S3 object, by PutObject or multipart, every failure classified."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from vod2s3.s3.classify import classify
from vod2s3.s3.confirm import confirmed
from vod2s3.s3.failure import stopped
from vod2s3.s3.integrity import Mode, composite, final_checksum
from vod2s3.s3.journal import MultipartProgress, NoJournal, UploadJournal
from vod2s3.s3.model import ObjectSpec, S3Target, UploadOutcome, UploadTuning
from vod2s3.s3.multipart import upload_multipart
from vod2s3.s3.params import sent_options
from vod2s3.s3.parts import MAX_PUT_SIZE
from vod2s3.s3.put import put_object
from vod2s3.s3.results import build_results, response_status
from vod2s3.s3.sending import Sender
from vod2s3.s3.source import SourceFile
from vod2s3.s3.urls import object_url

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client

_P = ParamSpec("_P")
_R = TypeVar("_R")


def upload(
    client: S3Client,
    target: S3Target,
    fd: int,
    size: int,
    spec: ObjectSpec,
    tuning: UploadTuning,
    progress: Callable[[int], None] = lambda n: None,
    should_stop: Callable[[], bool] = lambda: False,
    journal: UploadJournal | None = None,
    resume: MultipartProgress | None = None,
    taken_over: bool = False,
    throttle: Callable[[int], None] | None = None,
    sender: Sender | None = None,
) -> UploadOutcome:
    """Upload ``size`` bytes of ``fd`` as ``spec``; raise :class:`AttemptFailure` on failure.

    ``progress(n)`` is called on this thread with the bytes S3 has newly confirmed (after each
    part, or after the PutObject); ``should_stop()`` is polled before each part. Exceptions
    raised by these two callbacks are the caller's own and come back out unchanged (after the
    multipart upload is aborted).

    ``journal`` hears about the multipart upload's id and each confirmed part, and is asked
    before every destructive or final action; ``resume`` is what an earlier attempt's
    journal recorded: see :mod:`vod2s3.s3.journal`. A journal that answers False stops the
    upload (a "Stopped" failure) without touching S3 state. Exceptions raised by the journal
    come back out unchanged too, and leave the upload to be resumed.
    ``taken_over``: an earlier attempt may have died between creating a multipart upload and
    recording it; before creating a new one, such strays of the same key are aborted.
    ``throttle(n)`` is called by each body just before it hands ``n`` bytes to the
    connection, on the sending thread; it returns once they may go (the uplink budget).
    ``sender``: the worker's sending threads and connection limit, shared by its uploads
    (s3/sending.py); without it, the upload sends ``tuning.parts_in_flight`` at a time on
    threads of its own.
    """
    mode: Mode = tuning.integrity  # type: ignore[assignment]  # checked by UploadTuning
    journal = _CarriedJournal(journal or NoJournal())
    progress = _carried(progress)
    should_stop = _carried(should_stop)
    if sender is not None:
        # The bytes sent feed the worker's connection limit (s3/concurrency.py).
        throttle = sender.counted(throttle)
    try:
        source = SourceFile(fd, size)
        if should_stop():
            raise stopped()
        if size > MAX_PUT_SIZE or (size > 0 and size >= tuning.multipart_threshold):
            response, sent = upload_multipart(
                client,
                spec,
                source,
                size,
                tuning,
                progress,
                should_stop,
                journal,
                resume,
                taken_over,
                throttle,
                sender,
            )
            response = confirmed(client, spec, response)
            computed = composite(mode, [part.checksum for part in sent])
            checksum = final_checksum(mode, response, computed, parts=len(sent))
        else:
            with nullcontext() if sender is None else sender.slot(should_stop):
                response, computed = put_object(client, spec, source, size, mode, throttle)
            response = confirmed(client, spec, response)
            checksum = final_checksum(mode, response, computed)
            progress(size)
    except _CallerError as exc:
        raise exc.original from None
    except Exception as exc:
        raise classify(exc, bucket=spec.bucket, options=sent_options(spec)) from exc
    url = object_url(target, spec.bucket, spec.key)
    return UploadOutcome(
        results=build_results(response, bucket=spec.bucket, key=spec.key, url=url),
        s3_status=response_status(response),
        checksum=checksum,
    )


class _CallerError(Exception):
    """Carries an exception from the caller's callback past classification."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _CarriedJournal:
    """The caller's journal, its exceptions carried past classification like the callbacks'."""

    def __init__(self, journal: UploadJournal) -> None:
        self.started = _carried(journal.started)
        self.resumed = _carried(journal.resumed)
        self.part_sent = _carried(journal.part_sent)
        self.fence = _carried(journal.fence)


def _carried(callback: Callable[_P, _R]) -> Callable[_P, _R]:
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return callback(*args, **kwargs)
        except Exception as exc:
            raise _CallerError(exc) from exc

    return call
