"""Reading the source file by offset, noticing if it changes underneath us."""

from __future__ import annotations

import os
from collections.abc import Iterator

from vod2s3.s3.failure import source_changed


class SourceFile:
    """An open file that must keep the size we were told and the mtime it had when we began.

    A video still being written (or replaced in place) would otherwise go up as a mix of old
    and new bytes, which S3's checksums cannot catch because we checksum what we read.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._mtime_ns = os.fstat(fd).st_mtime_ns
        self.check()

    @property
    def mtime_ns(self) -> int:
        return self._mtime_ns

    def check(self) -> None:
        stat = os.fstat(self._fd)
        if stat.st_size != self._size or stat.st_mtime_ns != self._mtime_ns:
            raise source_changed()

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; thread-safe (pread keeps no file position)."""
        data = os.pread(self._fd, length, offset)
        if len(data) < length:
            # Short reads happen for reads over 2 GiB on Linux, and at an early end of file.
            chunks = [data]
            got = len(data)
            while got < length:
                chunk = os.pread(self._fd, length - got, offset + got)
                if not chunk:
                    raise source_changed()
                chunks.append(chunk)
                got += len(chunk)
            data = b"".join(chunks)
        self.check()
        return data

    def blocks(self, offset: int, length: int, block: int) -> Iterator[bytes]:
        """The bytes ``[offset, offset + length)`` in reads of at most ``block`` bytes: a pass
        over a part that never holds more than one block of it."""
        end = offset + length
        while offset < end:
            count = min(block, end - offset)
            yield self.read(offset, count)
            offset += count
