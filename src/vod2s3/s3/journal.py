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
    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> None:
        """A new multipart upload exists; any earlier one's parts are forgotten. Called before
        any part is sent, so that a crash never leaves an upload nobody knows about."""

    def resumed(self, kept: Sequence[SentPart]) -> None:
        """An earlier multipart upload continues with these parts (checked against S3)."""

    def part_sent(self, part: SentPart) -> None:
        """S3 confirmed a part. Raising here stops the upload without aborting it."""


class NoJournal:
    """For callers that do not resume (the upload is still aborted on failure)."""

    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> None:
        return None

    def resumed(self, kept: Sequence[SentPart]) -> None:
        return None

    def part_sent(self, part: SentPart) -> None:
        return None
