"""The worker-wide budget of buffer bytes."""

from __future__ import annotations

import threading
import time

import pytest

from vod2s3.s3.budget import PartBudget
from vod2s3.s3.failure import AttemptFailure

MIB = 1024 * 1024


def never() -> bool:
    return False


def test_small_buffers_share_the_room_of_one_big_one() -> None:
    budget = PartBudget(16 * MIB)
    taken = [budget.take(5 * MIB, never) for _ in range(3)]
    assert taken == [5 * MIB] * 3
    waiting = threading.Thread(target=budget.take, args=(5 * MIB, never))
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive()  # 15 MiB are out: a fourth 5 MiB buffer must wait
    budget.give_back(taken[0])
    waiting.join(timeout=2)
    assert not waiting.is_alive()


def test_a_buffer_larger_than_the_budget_goes_alone() -> None:
    budget = PartBudget(8 * MIB)
    assert budget.take(20 * MIB, never) == 8 * MIB
    with pytest.raises(AttemptFailure) as stopped:
        budget.take(1, lambda: True)
    assert stopped.value.code == "Stopped"
