"""A request body read from the file block by block as it goes to the socket, in large
writes that each have a deadline of their own.

A request in flight holds one block (SEND_BLOCK), not its whole part: how many requests a
worker keeps sending is no longer bounded by memory (docs/decisions.md).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import IO, Final, Protocol, cast

from vod2s3.s3.classify import classify
from vod2s3.s3.failure import source_changed
from vod2s3.s3.integrity import Mode, RunningCheck

# Called with a chunk's length just before the chunk is handed over (the uplink budget's
# limiter: it returns once the bytes may go).
Throttle = Callable[[int], None]
# Set on a thread while botocore's signer reads a body to hash it (s3/client.py): those
# reads send nothing, and must not be paid for as if they did.
_signing = threading.local()


def signing_began(**_kwargs: object) -> None:
    _signing.active = True


def signing_ended(**_kwargs: object) -> None:
    _signing.active = False


def _sending() -> bool:
    return not getattr(_signing, "active", False)


# urllib3 asks a stream body for 16 KiB at a time: 512 reads and sends per 8 MiB part.
# A bytes body goes out in one sendall instead, but Python bounds a whole sendall by the
# socket's timeout, which urllib3 sets to the *connect* timeout while it sends: a part
# would then have to reach S3 within 10 s or fail. Each write of a block has the timeout
# to itself: only a connection that moves less than a block in a whole timeout fails.
# The block is what a request in flight holds: 256 KiB lets a worker keep 64 requests in
# flight within 160 MiB (bench/memory.py), at a cost in CPU per GiB measured against 1 MiB
# blocks in docs/benchmarks.md.
SEND_BLOCK: Final = 256 * 1024


class RangeSource(Protocol):
    """Where a body's bytes come from: the source file (s3/source.py), which also notices a
    file that changes while it is read."""

    def read(self, offset: int, length: int) -> bytes: ...


class PartBody(io.RawIOBase):
    """The bytes ``[offset, offset + length)`` of a source as the Body of one PutObject or
    UploadPart, whose check was computed in an earlier pass over the same bytes.

    ``read(n)`` with n > 0 returns up to ``max(n, SEND_BLOCK)`` bytes, read from the source
    there and then: urllib3 sends what one read returns as one write, and this is how a
    write gets larger than its 16 KiB. ``readinto`` keeps the usual contract, for readers
    that hand over a buffer (awscrt). The body is seekable: botocore measures it, its signer
    reads it once and seeks back, and a resend starts again from 0.

    The check the store verifies (Content-MD5, x-amz-checksum-crc32c) holds the body to the
    bytes of the earlier pass: if the file changed in between, the store refuses the part.
    The sha256 check has no header of its own: the store verifies the payload hash the signer
    computes from what it reads here. With ``expected`` (the sha256 mode), the pass the
    signer reads is checked against the earlier pass before the request goes, and a file
    that changed in between ends the request as a changed source.
    """

    def __init__(
        self,
        source: RangeSource,
        offset: int,
        length: int,
        throttle: Throttle | None = None,
        expected: tuple[Mode, str] | None = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._offset = offset
        self._length = length
        self._position = 0
        self._throttle = throttle
        self._expected = expected
        self._verifying: RunningCheck | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}
        if whence not in base:
            raise ValueError(f"invalid whence {whence}")
        position = base[whence] + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:
            return b""
        end = self._length
        if size is not None and size > 0:
            end = min(end, self._position + max(size, SEND_BLOCK))
        return self._take(end - self._position)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        chunk = self._take(min(len(buffer), self._length - self._position))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def _take(self, count: int) -> bytes:
        """The next ``count`` bytes (fewer at the end), paid to the throttle when they are
        about to be sent, checked when the signer is the one reading."""
        if count <= 0:
            return b""
        start = self._position
        try:
            chunk = self._source.read(self._offset + start, count)
        except OSError as exc:
            # Sorted here: botocore would report it as a failed connection.
            raise classify(exc) from exc
        self._position = start + len(chunk)
        if _sending():
            if self._throttle is not None:
                self._throttle(len(chunk))
        elif self._expected is not None:
            self._verify(self._expected, start, chunk)
        return chunk

    def _verify(self, expected: tuple[Mode, str], start: int, chunk: bytes) -> None:
        if start == 0:
            self._verifying = RunningCheck(expected[0])
        if self._verifying is None:
            return  # not a pass from the start: nothing to compare
        self._verifying.update(chunk)
        if self._position == self._length:
            value, self._verifying = self._verifying.value(), None
            if value != expected[1]:
                raise source_changed()


def part_body(
    source: RangeSource,
    offset: int,
    length: int,
    throttle: Throttle | None = None,
    expected: tuple[Mode, str] | None = None,
) -> IO[bytes]:
    """Bytes of ``source`` as the Body of PutObject or UploadPart (the stubs want a
    typing.IO); see :class:`PartBody`."""
    return cast(IO[bytes], PartBody(source, offset, length, throttle, expected))
