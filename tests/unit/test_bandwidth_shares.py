"""Max-min fair shares of a worker's cap between the accounts sending."""

from __future__ import annotations

import pytest

from vod2s3.bandwidth.shares import fair_shares


def test_uncapped_accounts_split_the_cap_equally() -> None:
    assert fair_shares(90.0, {1: None, 2: None, 3: None}) == {1: 30.0, 2: 30.0, 3: 30.0}


def test_an_account_below_its_equal_share_leaves_the_rest_to_the_others() -> None:
    shares = fair_shares(90.0, {1: 10.0, 2: None, 3: 100.0})

    assert shares == {1: 10.0, 2: 40.0, 3: 40.0}
    assert sum(s for s in shares.values() if s is not None) == pytest.approx(90.0)


def test_accounts_all_held_below_the_cap_get_their_own_caps() -> None:
    assert fair_shares(100.0, {1: 10.0, 2: 20.0}) == {1: 10.0, 2: 20.0}


def test_without_a_worker_cap_each_account_has_its_own_cap_or_none() -> None:
    assert fair_shares(None, {1: 10.0, 2: None}) == {1: 10.0, 2: None}


def test_a_finished_accounts_share_goes_to_the_others_at_once() -> None:
    sending = {1: None, 2: None, 3: 5.0}
    before = fair_shares(60.0, sending)
    del sending[2]
    after = fair_shares(60.0, sending)

    assert before == {1: 27.5, 2: 27.5, 3: 5.0}
    assert after == {1: 55.0, 3: 5.0}


def test_no_account_sending_shares_nothing() -> None:
    assert fair_shares(60.0, {}) == {}
