"""What the uploader reports about a multipart upload so that another worker can resume it.

The uploader knows nothing of where this is kept: the worker passes a journal that writes to
the database, and reads the last state back as a :class:`MultipartProgress` to resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SentPart:
    """A part S3 has confirmed."""

    number: int
    etag: str
    checksum: str
    length: int


@dataclass(frozen=True)
class MultipartProgress:
    """A multipart upload begun by an earlier attempt."""

    upload_id: str
    part_size: int
    source_mtime_ns: int
    parts: tuple[SentPart, ...]


class UploadJournal(Protocol):
    """Each method answers whether the caller may go on. False means the upload is no longer
    this attempt's to send (its lease is gone): the uploader stops at once, touching no S3
    state that another attempt may now own."""

    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> bool:
        """A new multipart upload exists; any earlier one's parts are forgotten. Called before
        any part is sent, so that a crash never leaves an upload nobody knows about. On
        False the new upload, which nobody else knows, is aborted."""

    def resumed(self, kept: Sequence[SentPart]) -> bool:
        """An earlier multipart upload continues with these parts (checked against S3)."""

    def part_sent(self, part: SentPart) -> bool:
        """S3 confirmed a part."""

    def fence(self) -> bool:
        """Called right before every destructive or final S3 action on a multipart upload
        another attempt could know of (CompleteMultipartUpload, AbortMultipartUpload, the
        abort of strays): may this attempt still act on it?"""


class NoJournal:
    """For callers that do not resume (the upload is still aborted on failure)."""

    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> bool:
        return True

    def resumed(self, kept: Sequence[SentPart]) -> bool:
        return True

    def part_sent(self, part: SentPart) -> bool:
        return True

    def fence(self) -> bool:
        return True
