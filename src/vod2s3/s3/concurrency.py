"""How many requests a worker keeps sending at once: found by measuring, not configured.

On a long link with some loss one connection carries a few MB/s, and throughput grows with
the connections in flight until the link (or the store, or the uplink budget) is full.
The controller starts small, grows while the bytes sent per second keep rising, steps back
to the best limit it saw when they stop rising, and halves when the store asks to slow
down (503 SlowDown). It is pure: the caller feeds it bytes, in-flight counts and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# A window's throughput must beat the best seen by this much to count as rising: below it
# is noise, and one more connection that buys nothing only costs the store a request.
RISE: Final = 0.05
# Windows spent at the best limit after a growth that did not pay (or a slow-down) before
# probing again: the link or the store may have changed meanwhile.
HOLD_WINDOWS: Final = 5


@dataclass(frozen=True)
class ConcurrencyRules:
    initial: int = 4
    maximum: int = 64
    minimum: int = 1
    window: float = 2.0  # seconds of bytes measured per decision
    # Double (not grow by half) until the first step back or slow-down.
    doubling_start: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        if self.window <= 0:
            raise ValueError("the window must be positive")


class ConcurrencyController:
    """The in-flight limit of one worker's requests.

    Feed it with :meth:`sent` (bytes handed to connections), :meth:`in_flight` (requests
    in flight now) and :meth:`slowed_down`; read :attr:`limit`. Each call may close the
    current window (``rules.window`` seconds) and decide:

    - the limit was in use (requests in flight reached it) and the window's throughput beat
      the best seen so far by RISE: the best is now this limit; grow, doubling until the
      first step back or slow-down (a start that finds a fast link's number of
      connections in few windows, as TCP's slow start does), by half (at least 1) after;
    - it was in use and throughput did not rise: go back to the best limit and hold it for
      HOLD_WINDOWS windows (measuring it afresh), then probe again by growing;
    - while holding, the best limit does clearly worse (by RISE) than the larger one just
      given up did: its best was measured while connections were new, not what it carries
      now, so the hold ends and it grows at once. On a lossy long link a fresh connection
      sends fast until its first losses, then settles at a fraction of that: a limit
      measured in its first windows looks better than it is, and the larger limit would
      otherwise be given up for 5 windows on that false comparison;
    - it was not in use: nothing was learnt about more connections; keep the limit;
    - more requests than the limit were in flight (after a step back or a halving, the
      requests already sent run on; a part can take many windows on a slow link): the
      window measured the old number, not this one; keep the limit and wait — unless even
      those requests did clearly worse than the limit given up: then the hold ends early,
      as above.

    A slow-down halves the limit at once and forgets the best throughput (the store's
    capacity, not the link's, is the bound now). The requests in flight when the store
    pushed back all hear it: only the first slow-down in a window halves.
    """

    def __init__(self, rules: ConcurrencyRules, now: float) -> None:
        self.rules = rules
        self.limit = rules.initial
        self._best_rate = 0.0
        self._best_limit = rules.initial
        self.last_rate = 0.0  # bytes a second in the last window closed
        self.windows = 0  # windows closed so far
        self._hold = 0
        self._above_rate = 0.0  # what the limit given up for the best one carried
        self._starting = rules.doubling_start  # until the first step back or slow-down
        self._window_start = now
        self._bytes = 0
        self._current = 0
        self._busiest = 0
        self._last_slowdown: float | None = None

    def sent(self, count: int, now: float) -> None:
        self._bytes += count
        self._tick(now)

    def in_flight(self, count: int, now: float) -> None:
        self._current = count
        self._busiest = max(self._busiest, count)
        self._tick(now)

    def slowed_down(self, now: float) -> None:
        if self._last_slowdown is not None and now - self._last_slowdown < self.rules.window:
            return
        self._last_slowdown = now
        self.limit = max(self.rules.minimum, self.limit // 2)
        self._best_limit = self.limit
        self._best_rate = 0.0
        self._above_rate = 0.0  # the store asked for fewer: no early end to this hold
        self._starting = False
        self._hold = HOLD_WINDOWS
        self._new_window(now)

    def _tick(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed < self.rules.window:
            return
        rate = self._bytes / elapsed
        self.last_rate = rate
        self.windows += 1
        if self._busiest == self.limit:
            self._decide(rate)
        elif self._busiest > self.limit and self._worse_than_above(rate):
            # Still draining after a step back, so more requests than the limit sent in
            # this window: if even they did clearly worse than the limit given up, the
            # held limit can only do worse still. Waiting for the drain (a part can take
            # many windows on a slow link) would hold the link below it for nothing.
            self._best_rate = rate
            self._hold = 0
            self._grow()
        self._new_window(now)

    def _worse_than_above(self, rate: float) -> bool:
        """Holding, and ``rate`` clearly (RISE) below what the limit given up carried."""
        return self._hold > 0 and rate * (1 + RISE) < self._above_rate

    def _decide(self, rate: float) -> None:
        if self._hold > 0:
            # Holding at the best limit: measure it afresh, for the next probe to beat.
            self._hold -= 1
            self._best_rate = rate
            if self._worse_than_above(rate):
                self._hold = 0
            if self._hold == 0:
                self._grow()
            return
        if rate > self._best_rate * (1 + RISE):
            self._best_rate = rate
            self._best_limit = self.limit
            self._grow()
            return
        self._above_rate = rate
        self._starting = False
        self.limit = self._best_limit
        self._hold = HOLD_WINDOWS

    def _grow(self) -> None:
        step = self.limit if self._starting else max(1, self.limit // 2)
        self.limit = min(self.rules.maximum, self.limit + step)

    def _new_window(self, now: float) -> None:
        # Requests still in flight count for the new window: a long part may start in one
        # window and move bytes through several.
        self._window_start = now
        self._bytes = 0
        self._busiest = self._current
