"""A worker's budget: shares change as accounts start and stop sending, an account's own
cap and the timetable are read again within a refresh, and the rates are reported. The
clock, the sleep and the local time are injected; the metrics are a real registry."""

from __future__ import annotations

from datetime import datetime

import pytest

from vod2s3.bandwidth import parse_timetable
from vod2s3.bandwidth.uplink import AccountLimit, Bandwidth
from vod2s3.errors import DatabaseUnavailable
from vod2s3.metrics import Metrics

M = 1024**2
CDN = {1: 101, 2: 102, 3: 103}


class World:
    def __init__(self, table: str = "60M") -> None:
        self.now = 500.0
        self.local = datetime(2026, 12, 7, 12, 0)
        self.caps: dict[int, int | None] = {1: None, 2: None, 3: None}
        self.database_up = True
        self.metrics = Metrics()
        self.bandwidth = Bandwidth(
            parse_timetable(table),
            self.limit,
            self.metrics,
            clock=lambda: self.now,
            sleep=self.sleep,
            local_now=lambda: self.local,
            refresh=1.0,
        )

    def limit(self, account_id: int) -> AccountLimit:
        if not self.database_up:
            raise DatabaseUnavailable("the database is away")
        return AccountLimit(CDN[account_id], self.caps[account_id])

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def share(self, account_id: int) -> float | None:
        """The cap in force for the account, as the metrics say (None: no series)."""
        return self.metrics.registry.get_sample_value(
            "vod2s3_bandwidth_cap_bytes_per_second",
            {"scope": "account", "cdn": str(CDN[account_id])},
        )

    def seconds_to_send(self, account_id: int, count: int) -> float:
        began = self.now
        self.bandwidth.throttle_for(account_id)(count)
        return self.now - began


def test_accounts_share_the_cap_and_a_finished_ones_share_moves_at_once() -> None:
    world = World("60M")
    bandwidth = world.bandwidth
    with bandwidth.running(1), bandwidth.running(1), bandwidth.running(1):
        with bandwidth.running(2):
            # Three uploads of account 1, one of account 2: shares per account, not upload.
            assert world.share(1) == world.share(2) == 30 * M
            with bandwidth.running(3):
                assert world.share(1) == world.share(2) == world.share(3) == 20 * M
            assert world.share(1) == world.share(2) == 30 * M  # 3 finished: 1 and 2 share
        assert world.share(1) == 60 * M  # 2 finished: all of it to 1
        assert world.share(2) is None
        assert world.share(3) is None


def test_an_accounts_own_cap_holds_and_leaves_the_rest_to_the_others() -> None:
    world = World("60M")
    world.caps[1] = 10 * M
    with world.bandwidth.running(1), world.bandwidth.running(2):
        assert (world.share(1), world.share(2)) == (10 * M, 50 * M)
        world.seconds_to_send(1, 2 * M)  # empties its burst allowance
        assert world.seconds_to_send(1, 10 * M) == pytest.approx(1.0, rel=0.05)


def test_a_cap_set_while_sending_applies_within_a_refresh() -> None:
    world = World("off")
    with world.bandwidth.running(1):
        assert world.seconds_to_send(1, 50 * M) == 0.0  # no cap at all
        world.caps[1] = 5 * M  # accounts set --max-bandwidth 5M
        world.now += 1.0  # a refresh is due
        world.seconds_to_send(1, 1)
        assert world.share(1) == 5 * M
        assert world.seconds_to_send(1, 5 * M) == pytest.approx(1.0, rel=0.05)


def test_the_last_known_cap_holds_while_the_database_is_away() -> None:
    world = World("off")
    world.caps[1] = 5 * M
    with world.bandwidth.running(1):
        world.database_up = False
        world.now += 1.0
        world.seconds_to_send(1, 1)  # the refresh fails quietly
        assert world.share(1) == 5 * M


def test_the_timetable_entry_in_force_changes_the_cap_while_sending() -> None:
    world = World("08:00,40M 18:00,4M")
    with world.bandwidth.running(1):
        assert world.share(1) == 40 * M
        world.local = world.local.replace(hour=18)
        world.now += 1.0
        world.seconds_to_send(1, 1)
        assert world.bandwidth.cap == 4 * M
        assert world.share(1) == 4 * M
    worker_cap = world.metrics.registry.get_sample_value(
        "vod2s3_bandwidth_cap_bytes_per_second", {"scope": "worker", "cdn": ""}
    )
    assert worker_cap == 4 * M


def test_the_report_and_the_counters_say_what_was_sent_per_account() -> None:
    world = World("off")
    world.bandwidth.report()  # starts the report's window
    with world.bandwidth.running(1), world.bandwidth.running(2):
        world.bandwidth.throttle_for(1)(3 * M)
        world.bandwidth.throttle_for(2)(M)
        world.now += 2.0
        report = world.bandwidth.report()

    assert report.cap is None
    assert report.sent_per_second == pytest.approx(2 * M)
    assert [a.cdn for a in report.accounts] == [101, 102]
    assert [a.sent_per_second for a in report.accounts] == pytest.approx([1.5 * M, 0.5 * M])
    sample = world.metrics.registry.get_sample_value
    assert sample("vod2s3_account_sent_bytes_total", {"cdn": "101"}) == 3 * M
    assert sample("vod2s3_sent_bytes_total") == 4 * M
