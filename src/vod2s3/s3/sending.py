"""One worker's sending threads, shared by all its uploads, and how many send at once.

A pool per upload left each upload's threads (and their malloc arenas) behind it and could
not share connections between uploads; one long-lived pool per worker, gated by an
adaptive limit (s3/concurrency.py), spreads one large file over many connections and lets
many files share them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from botocore.exceptions import ClientError

from vod2s3.s3.body import Throttle
from vod2s3.s3.concurrency import ConcurrencyController, ConcurrencyRules
from vod2s3.s3.failure import stopped

T = TypeVar("T")

log = logging.getLogger(__name__)

_WAIT_SLICE = 0.25  # seconds between checks of should_stop while waiting for a slot


class Sender:
    """Runs requests that send bodies, no more at once than the controller's limit.

    :meth:`submit` runs a request on the worker's sending threads (UploadPart);
    :meth:`slot` holds a place for one the caller sends on its own thread (PutObject).
    :meth:`counted` wraps a body's throttle so that the bytes sent feed the controller.
    """

    def __init__(self, rules: ConcurrencyRules, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._controller = ConcurrencyController(rules, clock())
        self._pool = ThreadPoolExecutor(rules.maximum, thread_name_prefix="s3-send")
        self._changed = threading.Condition()
        self._in_flight = 0
        self.most_in_flight = 0

    @classmethod
    def fixed(cls, limit: int) -> Sender:
        """A sender for one upload that always allows ``limit`` requests (library use)."""
        return cls(ConcurrencyRules(initial=limit, maximum=limit, minimum=limit))

    @property
    def limit(self) -> int:
        with self._changed:
            return self._controller.limit

    def submit(self, request: Callable[[], T], should_stop: Callable[[], bool]) -> Future[T]:
        """Wait for a slot, then run ``request`` on a sending thread."""
        self._take(should_stop)
        try:
            return self._pool.submit(self._run, request)
        except BaseException:
            self._give_back()
            raise

    @contextmanager
    def slot(self, should_stop: Callable[[], bool]) -> Iterator[None]:
        """Hold a slot while the block sends a request on the caller's thread."""
        self._take(should_stop)
        try:
            yield
        except ClientError as exc:
            self._heard(exc)
            raise
        finally:
            self._give_back()

    def counted(self, throttle: Throttle | None) -> Throttle:
        """``throttle``, and the bytes it lets go counted as sent."""

        def count(sent: int) -> None:
            if throttle is not None:
                throttle(sent)
            with self._changed, self._feeding() as controller:
                controller.sent(sent, self._clock())
                self._changed.notify_all()  # the limit may have grown

        return count

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except ClientError as exc:
            self._heard(exc)
            raise
        finally:
            self._give_back()

    def _heard(self, exc: ClientError) -> None:
        if exc.response.get("Error", {}).get("Code") == "SlowDown":
            with self._changed, self._feeding() as controller:
                controller.slowed_down(self._clock())

    def _take(self, should_stop: Callable[[], bool]) -> None:
        with self._changed:
            while self._in_flight >= self._controller.limit:
                self._changed.wait(timeout=_WAIT_SLICE)
                if should_stop():
                    raise stopped()
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
            with self._feeding() as controller:
                controller.in_flight(self._in_flight, self._clock())

    def _give_back(self) -> None:
        with self._changed:
            self._in_flight -= 1
            with self._feeding() as controller:
                controller.in_flight(self._in_flight, self._clock())
            self._changed.notify_all()

    @contextmanager
    def _feeding(self) -> Iterator[ConcurrencyController]:
        """The controller, to feed while holding the lock; then a debug line if it closed a
        window or changed the limit: how the limit moves, and why, is what an operator
        tuning the connection settings (or a benchmark) needs to see."""
        controller = self._controller
        before = controller.limit, controller.windows
        yield controller
        if (controller.limit, controller.windows) != before:
            log.debug(
                "requests at once: limit %d -> %d, %d in flight; %.2f MB/s sent in the last window",
                before[0],
                controller.limit,
                self._in_flight,
                controller.last_rate / 1e6,
            )
