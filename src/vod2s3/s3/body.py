"""A request body that goes to the socket in large writes, each with a deadline of its own."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import IO, Final, cast

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


# urllib3 asks a stream body for 16 KiB at a time: 1,024 reads and sends per 16 MiB part.
# A bytes body goes out in one sendall instead, but Python bounds a whole sendall by the
# socket's timeout, which urllib3 sets to the *connect* timeout while it sends: a part
# would then have to reach S3 within 10 s (1.6 MB/s per connection) or fail. Writes of
# 1 MiB cost about what one write costs (docs/benchmarks.md), and each has the timeout to
# itself: only a connection that moves less than 1 MiB in a whole timeout (100 KiB/s with
# the default 10 s) fails.
SEND_BLOCK: Final = 1024 * 1024


class PartBody(io.RawIOBase):
    """The bytes of one PutObject or UploadPart, already read and checksummed.

    ``read(n)`` with n > 0 returns up to ``max(n, SEND_BLOCK)`` bytes: urllib3 sends what
    one read returns as one write, and this is how a write gets larger than its 16 KiB.
    ``readinto`` keeps the usual contract, for readers that hand over a buffer (awscrt).
    The bytes are never copied: reads return views of them.
    """

    def __init__(self, data: bytes, throttle: Throttle | None = None) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._position = 0
        self._throttle = throttle

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
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
        end = len(self._view)
        if size is not None and size > 0:
            end = min(end, self._position + max(size, SEND_BLOCK))
        start, self._position = self._position, max(self._position, end)
        if self._throttle is not None and end > start and _sending():
            self._throttle(end - start)
        # A view, typed as bytes: urllib3, http.client and hashlib take any buffer.
        return self._view[start:end]  # type: ignore[return-value]

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        chunk = self._view[self._position : self._position + len(buffer)]
        if self._throttle is not None and chunk and _sending():
            self._throttle(len(chunk))
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


def part_body(data: bytes, throttle: Throttle | None = None) -> IO[bytes]:
    """``data`` as the Body of PutObject or UploadPart (the stubs want a typing.IO)."""
    return cast(IO[bytes], PartBody(data, throttle))
