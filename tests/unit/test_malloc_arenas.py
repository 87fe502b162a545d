"""The worker bounds glibc's malloc arenas, unless the operator already did."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from vod2s3.malloc_arenas import limit_malloc_arenas

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="only glibc has arenas to bound")
def test_glibc_takes_the_bound() -> None:
    # In a child: the bound is for the life of the process, not for the test runner's.
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.environ.pop('MALLOC_ARENA_MAX', None)\n"
            "from vod2s3.malloc_arenas import limit_malloc_arenas\n"
            "print(limit_malloc_arenas())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == "True"


def test_an_operators_malloc_arena_max_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")

    assert limit_malloc_arenas() is False
