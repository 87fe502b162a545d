"""What a worker has found out about a store by asking it (which checks it verifies, where a
bucket is), kept for an hour: stores are reconfigured rarely, and asking again costs a
request before an upload. Keyed by a digest, so that no credential sits in a dict key."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

KEPT = 3600.0  # seconds


class Findings(Generic[T]):
    def __init__(self, kept: float = KEPT) -> None:
        self._kept = kept
        self._found: dict[str, tuple[T, float]] = {}
        self._lock = threading.Lock()

    def get(
        self,
        parts: tuple[str, ...],
        find: Callable[[], T],
        keep: Callable[[T], bool] = lambda _value: True,
    ) -> T:
        """What was found for ``parts`` within the last hour, else ``find()``'s answer,
        kept unless ``keep`` says it is no finding (the store could not be asked)."""
        key = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
        with self._lock:
            found = self._found.get(key)
        if found is not None and time.monotonic() < found[1]:
            return found[0]
        value = find()
        if keep(value):
            with self._lock:
                self._found[key] = (value, time.monotonic() + self._kept)
        return value
