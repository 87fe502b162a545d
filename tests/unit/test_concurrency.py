"""The adaptive limit on a worker's requests in flight, driven by an injected clock."""

from __future__ import annotations

import pytest

from vod2s3.s3.concurrency import HOLD_WINDOWS, ConcurrencyController, ConcurrencyRules

WINDOW = 2.0
# Growth by half from the first window: the doubling start has tests of its own (below).
RULES = ConcurrencyRules(initial=4, maximum=64, minimum=1, window=WINDOW, doubling_start=False)


class Run:
    """A controller and a clock: each window, the limit fully used (or not) at a rate."""

    def __init__(self, rules: ConcurrencyRules = RULES) -> None:
        self.now = 100.0
        self.controller = ConcurrencyController(rules, self.now)

    def window(self, rate: float, *, busy: bool = True) -> int:
        """One window at ``rate`` bytes/s with every slot in use (or one spare); the limit
        decided at its end."""
        limit = self.controller.limit
        self.controller.in_flight(limit if busy else limit - 1, self.now)
        self.controller.sent(int(rate * WINDOW / 2), self.now + WINDOW / 2)
        self.now += WINDOW
        self.controller.sent(int(rate * WINDOW / 2), self.now)
        return self.controller.limit


def test_it_starts_with_a_few_connections() -> None:
    assert Run().controller.limit == 4


def test_it_grows_by_half_while_throughput_keeps_rising() -> None:
    run = Run()

    limits = [run.window(rate) for rate in (10e6, 15e6, 22e6, 33e6)]

    assert limits == [6, 9, 13, 19]


def test_nothing_is_decided_before_a_window_has_passed() -> None:
    run = Run()
    run.controller.in_flight(4, run.now)

    run.controller.sent(10**9, run.now + WINDOW * 0.9)

    assert run.controller.limit == 4


def test_it_never_grows_past_the_maximum() -> None:
    run = Run(ConcurrencyRules(initial=4, maximum=10, window=WINDOW, doubling_start=False))

    limits = [run.window(rate) for rate in (1e6, 2e6, 4e6, 8e6)]

    assert limits == [6, 9, 10, 10]


def test_a_limit_not_in_use_teaches_nothing() -> None:
    """Fewer parts to send than the limit: throughput says nothing about more connections."""
    run = Run()

    assert [run.window(rate, busy=False) for rate in (1e6, 5e6, 25e6)] == [4, 4, 4]


def test_a_request_in_flight_across_windows_keeps_the_limit_in_use() -> None:
    """Long parts start in one window and send through the next ones: still in use."""
    run = Run()
    run.controller.in_flight(4, run.now)
    run.now += WINDOW
    run.controller.sent(10**6, run.now)
    assert run.controller.limit == 6
    run.controller.in_flight(6, run.now)
    run.now += WINDOW
    run.controller.sent(4 * 10**6, run.now)  # no request started or ended in this window

    assert run.controller.limit == 9


def test_when_throughput_stops_rising_it_steps_back_to_the_best_limit_and_holds() -> None:
    run = Run()
    assert run.window(10e6) == 6
    assert run.window(20e6) == 9
    assert run.window(20.5e6) == 6  # 9 bought nothing over 6: back to 6
    assert run.window(20e6) == 6  # 9 were still in flight as it began: it measured 9

    held = [run.window(20e6) for _ in range(HOLD_WINDOWS - 1)]

    assert held == [6] * (HOLD_WINDOWS - 1)
    assert run.window(20e6) == 9  # then it probes again


def test_a_held_limit_that_does_clearly_worse_than_the_one_given_up_grows_at_once() -> None:
    """A lossy long link: 9 connections measured while new looked as good as 13, but once
    settled they carry far less than 13 did. The hold ends; 13 is tried again."""
    run = Run()
    assert [run.window(rate) for rate in (10e6, 20e6, 30e6)] == [6, 9, 13]
    assert run.window(30.5e6) == 9  # 13 bought nothing over 9 (as measured): back to 9
    assert run.window(30e6) == 9  # 13 still in flight, doing as well: wait for the drain

    assert run.window(18e6) == 13  # settled, 9 carry 18 MB/s where 13 carried 30.5
    assert run.window(28e6) == 19  # and 13 beat 9 as measured now: growing again


def test_a_drain_that_does_clearly_worse_than_the_limit_given_up_ends_the_hold() -> None:
    """The 13 requests still in flight after the step back carry far less than when they
    were new: 9 can only do worse. No waiting for them to drain."""
    run = Run()
    assert [run.window(rate) for rate in (10e6, 20e6, 30e6)] == [6, 9, 13]
    assert run.window(30.5e6) == 9

    assert run.window(20e6) == 13  # a draining window, 13 in flight, at 20 MB/s


def test_a_held_limit_about_as_good_as_the_one_given_up_holds() -> None:
    """The usual case (a full link, or a store at its capacity): no early end."""
    run = Run()
    run.window(10e6)
    run.window(20e6)
    run.window(20.5e6)  # back to 6
    run.window(20e6)  # the 9 requests drain

    assert [run.window(19.8e6) for _ in range(HOLD_WINDOWS - 1)] == [6] * (HOLD_WINDOWS - 1)


def test_a_slow_down_hold_does_not_end_early() -> None:
    run = Run()
    for rate in (1e6, 2e6, 4e6, 8e6):
        run.window(rate)
    run.controller.slowed_down(run.now)
    run.window(8e6)  # the 19 requests drain

    assert [run.window(1e6) for _ in range(HOLD_WINDOWS - 1)] == [9] * (HOLD_WINDOWS - 1)


def test_a_probe_that_pays_keeps_growing() -> None:
    run = Run()
    run.window(10e6)
    run.window(20e6)
    run.window(20e6)  # back to 6, holding
    for _ in range(HOLD_WINDOWS + 1):  # one more: the window the 9 requests drained in
        run.window(20e6)
    assert run.controller.limit == 9

    assert run.window(30e6) == 13  # the link got better: more connections pay again


def test_slow_down_halves_the_limit_once_per_window() -> None:
    run = Run()
    for rate in (1e6, 2e6, 4e6, 8e6):
        run.window(rate)
    assert run.controller.limit == 19

    run.controller.slowed_down(run.now)
    run.controller.slowed_down(run.now + 0.1)  # the other requests in flight heard it too

    assert run.controller.limit == 9
    run.controller.slowed_down(run.now + WINDOW)
    assert run.controller.limit == 4


def test_slow_down_holds_before_growing_again() -> None:
    run = Run()
    run.controller.slowed_down(run.now)
    assert run.controller.limit == 2

    held = [run.window(50e6) for _ in range(HOLD_WINDOWS - 1)]

    assert held == [2] * (HOLD_WINDOWS - 1)
    assert run.window(50e6) == 3


def test_slow_down_never_goes_below_the_minimum() -> None:
    run = Run(ConcurrencyRules(initial=2, maximum=8, minimum=2, window=WINDOW))

    run.controller.slowed_down(run.now)

    assert run.controller.limit == 2


@pytest.mark.parametrize(
    "rules",
    [
        {"initial": 0, "maximum": 4, "minimum": 0},
        {"initial": 8, "maximum": 4},
        {"initial": 2, "minimum": 3},
        {"window": 0.0},
    ],
)
def test_rules_that_cannot_work_are_refused(rules: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"minimum|window"):
        ConcurrencyRules(**rules)  # type: ignore[arg-type]


def test_windows_with_more_in_flight_than_the_limit_measure_nothing() -> None:
    """After a step back, the requests already sent run on: until they drain, a window
    measures the old number of connections, and the hold waits for them (while they do
    about as well as the limit given up did)."""
    run = Run()
    run.window(10e6)
    run.window(20e6)
    assert run.window(20e6) == 6  # back to 6; the 9 requests sent are still in flight

    for _ in range(HOLD_WINDOWS + 2):
        run.controller.in_flight(9, run.now)
        run.now += WINDOW
        run.controller.sent(int(19.5e6 * WINDOW), run.now)
    assert run.controller.limit == 6  # the hold has not even begun
    held = [run.window(20e6) for _ in range(HOLD_WINDOWS + 1)]

    assert held == [6] * HOLD_WINDOWS + [9]  # the first drained the 9


DOUBLING = ConcurrencyRules(initial=8, maximum=64, window=WINDOW)


def test_it_doubles_from_the_start_while_throughput_keeps_rising() -> None:
    run = Run(DOUBLING)

    assert [run.window(rate) for rate in (5e6, 10e6, 20e6)] == [16, 32, 64]


def test_after_the_first_step_back_it_grows_by_half() -> None:
    run = Run(DOUBLING)
    assert [run.window(rate) for rate in (5e6, 10e6, 20e6)] == [16, 32, 64]
    assert run.window(20.5e6) == 32  # 64 bought nothing over 32: back to 32
    run.window(20e6)  # the 64 requests drain

    held = [run.window(20e6) for _ in range(HOLD_WINDOWS)]

    assert held == [32] * (HOLD_WINDOWS - 1) + [48]  # the probe: half again, not double


def test_after_a_slow_down_it_grows_by_half() -> None:
    run = Run(DOUBLING)
    run.window(5e6)  # 16
    run.controller.slowed_down(run.now)
    assert run.controller.limit == 8

    held = [run.window(5e6) for _ in range(HOLD_WINDOWS)]

    assert held == [8] * (HOLD_WINDOWS - 1) + [12]
