"""Bounding glibc's malloc arenas in a process that sends from many threads.

glibc gives each thread that meets contention an arena of its own (up to 8 per core) and
keeps the memory freed in it for reuse: a worker's sending threads each allocate and free
a block per write, and every arena ended up holding blocks no thread used any more
(29 MiB at ~28 requests in flight, docs/benchmarks.md). Two arenas keep the contention
low for a process that spends its time in system calls and hashing with the GIL released.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

M_ARENA_MAX: Final = -8  # glibc's <malloc.h>
ARENAS: Final = 2


def limit_malloc_arenas() -> bool:
    """At most ARENAS arenas from now on, unless MALLOC_ARENA_MAX is set (the operator's
    choice stands). Call it before the threads start. True if the C library took it:
    only glibc has arenas (and mallopt) to bound."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the process's own C library
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, ARENAS))
