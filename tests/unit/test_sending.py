"""The worker's sending pool: its slots, what it learns from SlowDown and from bytes sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from vod2s3.s3.concurrency import ConcurrencyRules
from vod2s3.s3.failure import AttemptFailure
from vod2s3.s3.sending import Sender

WINDOW = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sender(clock: Clock) -> Iterator[Sender]:
    running = Sender(ConcurrencyRules(initial=2, maximum=8, window=WINDOW), clock)
    yield running
    running.close()


def slow_down() -> None:
    raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "UploadPart")


def never() -> bool:
    return False


def test_no_more_requests_run_than_the_limit(sender: Sender) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def request() -> None:
        started.release()
        release.wait(10)

    first = [sender.submit(request, never) for _ in range(2)]
    for _ in first:
        assert started.acquire(timeout=10)
    third: list[object] = []
    waiting = threading.Thread(target=lambda: third.append(sender.submit(request, never)))
    waiting.start()
    waiting.join(timeout=0.3)

    assert waiting.is_alive()  # no slot until one of the first two ends
    release.set()
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert sender.most_in_flight == 2


def test_a_stop_ends_the_wait_for_a_slot(sender: Sender) -> None:
    release = threading.Event()
    held = [sender.submit(lambda: release.wait(10), never) for _ in range(2)]

    with pytest.raises(AttemptFailure) as failure:
        sender.submit(lambda: None, lambda: True)

    assert failure.value.code == "Stopped"
    release.set()
    for future in held:
        future.result(timeout=10)


def test_slow_down_halves_the_limit_and_the_error_still_reaches_the_upload(
    sender: Sender,
) -> None:
    future = sender.submit(slow_down, never)

    with pytest.raises(ClientError):
        future.result(timeout=10)
    assert sender.limit == 1


def test_slow_down_on_a_put_halves_the_limit_too(sender: Sender) -> None:
    with pytest.raises(ClientError), sender.slot(never):
        slow_down()

    assert sender.limit == 1


def test_bytes_sent_with_every_slot_in_use_grow_the_limit(sender: Sender, clock: Clock) -> None:
    paid: list[int] = []
    count = sender.counted(paid.append)
    with sender.slot(never), sender.slot(never):
        count(10**6)
        clock.now += WINDOW
        count(10**6)

    assert paid == [10**6, 10**6]  # the uplink budget's throttle still hears every byte
    assert sender.limit == 4  # doubled: the first growth since the start
