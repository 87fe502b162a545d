"""The store on both databases: records, the lease queue with its fencing tokens, the part
journal, and the workers' registry."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, update

from tests.databases import KINDS, database_url
from tests.helpers import FakeClock
from vod2s3.accounts import WAITING_WHILE_DISABLED, AccountStore
from vod2s3.bandwidth.report import AccountSending, SendingReport
from vod2s3.crypto import SecretBox
from vod2s3.errors import BadRequest
from vod2s3.store import migrate
from vod2s3.store.db import make_engine
from vod2s3.store.journal import PartJournal
from vod2s3.store.queue import LeaseQueue, margin_of
from vod2s3.store.records import NewUpload, RecordStore, TooManyActive
from vod2s3.store.rows import ClaimedUpload, StoredPart
from vod2s3.store.schema import uploads, workers
from vod2s3.store.sqltime import ProcessTime, ServerTime, SqlTime
from vod2s3.store.workers import WorkerLock, WorkerRegistry

LEASE = timedelta(seconds=30)


@dataclass
class Stores:
    engine: Engine
    clock: FakeClock
    accounts: AccountStore
    records: RecordStore
    queue: LeaseQueue
    journal: PartJournal
    workers: WorkerRegistry

    def account(self, cdn: int = 158) -> int:
        self.accounts.create(cdn, "jb")
        return self.accounts.get(cdn).id

    def claim(self, worker: int = 1, volumes: tuple[str, ...] = ()) -> ClaimedUpload | None:
        return self.queue.claim(worker, f"worker-{worker}", volumes)


def _stores(engine: Engine, clock: FakeClock, time: SqlTime, lease: timedelta = LEASE) -> Stores:
    box = SecretBox(Fernet.generate_key().decode())
    return Stores(
        engine,
        clock,
        AccountStore(engine, box, clock),
        RecordStore(engine, time),
        LeaseQueue(engine, time, lease),
        PartJournal(engine, time, lease),
        WorkerRegistry(engine, time),
    )


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(kind: str, tmp_path: Path) -> Iterator[Engine]:
    with database_url(kind, tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def stores(engine: Engine) -> Stores:
    """Time on a clock the test moves by hand, on both databases."""
    clock = FakeClock()
    return _stores(engine, clock, ProcessTime(clock))


def new_upload(account_id: int, signature: str, volume: str = "sestore1") -> NewUpload:
    return NewUpload(
        account_id=account_id,
        cdn_id=158,
        request_signature=signature,
        path=f"{volume}/jb/{signature}.mp4",
        volume=volume,
        bucket="videos",
        destination_path=f"{signature}.mp4",
        metadata={"title": "Vidéo"},
        acl="private",
        callback="",
        options={"content_type": "video/mp4"},
        bytes_total=10,
    )


def claimed(s: Stores, worker: int = 1) -> ClaimedUpload:
    row = s.claim(worker)
    assert row is not None
    return row


# -- the customer's records -----------------------------------------------------------------


def test_enqueue_then_replay_returns_the_same_record(stores: Stores) -> None:
    owner = stores.account()
    first, created = stores.records.enqueue(new_upload(owner, "sig-a"))
    again, created_again = stores.records.enqueue(new_upload(owner, "sig-a"))
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert len(stores.records.latest(owner, 25, 0)) == 1
    assert first.metadata == {"title": "Vidéo"}
    assert first.state == "queued"


def test_enqueue_refuses_beyond_the_cap_but_still_answers_a_replay(stores: Stores) -> None:
    owner = stores.account()
    first, _ = stores.records.enqueue(new_upload(owner, "sig-a"), max_active=2)
    stores.records.enqueue(new_upload(owner, "sig-b"), max_active=2)
    with pytest.raises(TooManyActive):
        stores.records.enqueue(new_upload(owner, "sig-c"), max_active=2)
    replayed, created = stores.records.enqueue(new_upload(owner, "sig-a"), max_active=2)
    assert (replayed.id, created) == (first.id, False)
    # Finished uploads do not count against the cap.
    assert stores.queue.complete(claimed(stores).lease, {}, 200, "", 10) is not None
    third, created = stores.records.enqueue(new_upload(owner, "sig-c"), max_active=2)
    assert created
    assert third.state == "queued"


def test_records_are_scoped_to_their_account(stores: Stores) -> None:
    mine, theirs = stores.account(158), stores.account(159)
    row, _ = stores.records.enqueue(new_upload(theirs, "sig"))
    assert stores.records.get(mine, row.id) is None
    assert stores.records.get(theirs, row.id) is not None
    assert stores.records.latest(mine, 25, 0) == []


def test_latest_is_newest_first_with_state_filter(stores: Stores) -> None:
    owner = stores.account()
    ids = [stores.records.enqueue(new_upload(owner, f"s{n}"))[0].id for n in range(4)]
    assert [r.id for r in stores.records.latest(owner, 2, 1)] == [ids[2], ids[1]]
    stores.claim()
    assert [r.id for r in stores.records.latest(owner, 25, 0, "uploading")] == [ids[0]]


# -- claims and fencing tokens --------------------------------------------------------------


def test_claim_takes_oldest_due_under_a_new_token(stores: Stores) -> None:
    owner = stores.account()
    first, _ = stores.records.enqueue(new_upload(owner, "a"))
    stores.records.enqueue(new_upload(owner, "b"))
    one = claimed(stores, 1)
    assert (one.id, one.attempts, one.lease_token) == (first.id, 1, 1)
    two = claimed(stores, 2)
    assert two.id != first.id
    assert stores.claim(3) is None
    record = stores.records.get(owner, first.id)
    assert record is not None
    assert record.state == "uploading"


def test_a_stale_token_is_refused_everything(stores: Stores) -> None:
    owner = stores.account()
    row, _ = stores.records.enqueue(new_upload(owner, "a"))
    stale = claimed(stores, 1).lease
    assert stores.journal.started(stale, "mp-1", 5, 1)
    assert stores.claim(2) is None  # the lease still runs
    stores.clock.advance(LEASE.total_seconds() + 1)
    fresh = claimed(stores, 2)
    assert (fresh.lease_token, fresh.attempts) == (stale.token + 1, 2)

    assert stores.queue.renew([stale]) == set()
    assert stores.queue.fence(stale) is False
    assert stores.journal.read(stale).held is False
    assert stores.journal.read(stale).multipart is None
    assert stores.journal.part_sent(stale, StoredPart(1, '"e"', "c", 5)) is False
    assert stores.journal.resumed(stale, []) is False
    assert stores.journal.started(stale, "mp-2", 5, 1) is False
    assert stores.queue.requeue(stale, timedelta(0), 500, "x", "x") is False
    assert stores.queue.release(stale) is False
    assert stores.queue.fail(stale, 403, "AccessDenied", "no") is None
    assert stores.queue.complete(stale, {}, 200, "", 10) is None
    record = stores.records.get(owner, row.id)
    assert record is not None
    assert (record.state, record.bytes_uploaded) == ("uploading", 0)

    # The new holder's journal read still finds what the old one recorded.
    read = stores.journal.read(fresh.lease)
    assert read.held
    assert read.multipart is not None
    assert read.multipart.upload_id == "mp-1"
    assert stores.queue.renew([fresh.lease]) == {row.id}
    done = stores.queue.complete(fresh.lease, {"ETag": '"x"'}, 200, "CRC32C:abc", 10)
    assert done is not None
    record = stores.records.get(owner, row.id)
    assert record is not None
    assert (record.state, record.message) == ("completed", "Successfully Uploaded to AWS")


def test_a_holder_without_margin_left_may_not_act(stores: Stores) -> None:
    owner = stores.account()
    stores.records.enqueue(new_upload(owner, "a"))
    lease = claimed(stores).lease
    stores.clock.advance((LEASE - margin_of(LEASE)).total_seconds() + 1)
    assert stores.queue.fence(lease) is False  # not expired, but too close to it
    assert stores.journal.started(lease, "mp", 5, 1) is False
    assert stores.queue.renew([lease]) != set()  # a heartbeat still keeps it alive...
    assert stores.queue.fence(lease) is True  # ...and then it may act again


def test_renewals_keep_a_lease_alive_past_its_first_term(stores: Stores) -> None:
    owner = stores.account()
    stores.records.enqueue(new_upload(owner, "a"))
    lease = claimed(stores).lease
    for _ in range(5):
        stores.clock.advance(LEASE.total_seconds() / 3)
        assert stores.queue.renew([lease]) == {lease.upload_id}
    assert stores.claim(2) is None


def test_a_second_claim_by_the_same_worker_fences_the_first(stores: Stores) -> None:
    owner = stores.account()
    stores.records.enqueue(new_upload(owner, "a"))
    first = claimed(stores, 1).lease
    stores.clock.advance(LEASE.total_seconds() + 1)
    second = claimed(stores, 1).lease  # the same worker, after its lease ran out
    assert stores.queue.fence(first) is False
    assert stores.queue.fence(second) is True


def test_requeue_waits_for_its_delay(stores: Stores) -> None:
    owner = stores.account()
    stores.records.enqueue(new_upload(owner, "a"))
    lease = claimed(stores).lease
    assert stores.queue.requeue(lease, timedelta(seconds=10), 503, "SlowDown", "retrying")
    assert stores.claim() is None
    stores.clock.advance(11)
    again = claimed(stores)
    assert (again.attempts, again.error_code) == (2, "SlowDown")


def test_release_does_not_count_the_attempt(stores: Stores) -> None:
    owner = stores.account()
    row, _ = stores.records.enqueue(new_upload(owner, "a"))
    assert stores.queue.release(claimed(stores).lease)
    released = stores.records.get(owner, row.id)
    assert released is not None
    assert (released.state, released.attempts) == ("queued", 0)


def test_a_cancel_ends_the_holders_lease(stores: Stores) -> None:
    owner = stores.account()
    row, _ = stores.records.enqueue(new_upload(owner, "a"))
    lease = claimed(stores).lease
    cancelled, changed = stores.records.cancel(owner, row.id)
    assert changed
    assert cancelled is not None
    assert cancelled.state == "cancelled"
    assert stores.queue.renew([lease]) == set()
    assert stores.queue.complete(lease, {}, 200, "", 10) is None


def test_claim_filters_by_volume(stores: Stores) -> None:
    owner = stores.account()
    stores.records.enqueue(new_upload(owner, "one", volume="sestore1"))
    two, _ = stores.records.enqueue(new_upload(owner, "two", volume="sestore2"))
    assert claimed_on(stores, ("sestore2",)).id == two.id
    assert stores.claim(volumes=("sestore2",)) is None


def claimed_on(s: Stores, volumes: tuple[str, ...]) -> ClaimedUpload:
    row = s.claim(volumes=volumes)
    assert row is not None
    return row


def test_claims_take_turns_between_accounts(stores: Stores) -> None:
    busy, quiet = stores.account(158), stores.account(159)
    for n in range(50):
        stores.records.enqueue(new_upload(busy, f"busy-{n}"))
    stores.clock.advance(1)
    quiet_ids = {stores.records.enqueue(new_upload(quiet, f"q-{n}"))[0].id for n in range(3)}
    taken = []
    for _ in range(6):
        stores.clock.advance(0.001)  # claims a moment apart, as real workers make them
        taken.append(claimed(stores))
    # The quiet account's uploads, queued after 50 others, start within the first claims.
    assert [row.account_id for row in taken] == [busy, quiet, busy, quiet, busy, quiet]
    assert {row.id for row in taken if row.account_id == quiet} == quiet_ids


def test_a_disabled_accounts_uploads_wait_and_say_why(stores: Stores) -> None:
    """Claims pass over a disabled account's queued uploads (and the others still run);
    enabling it makes them claimable again, their message back to "Queued"."""
    off, on = stores.account(158), stores.account(159)
    waiting, _ = stores.records.enqueue(new_upload(off, "waits"))
    assert stores.accounts.set_disabled(158, True) == 1
    running, _ = stores.records.enqueue(new_upload(on, "runs"))
    assert claimed(stores).id == running.id
    assert stores.claim() is None
    record = stores.records.get(off, waiting.id)
    assert record is not None
    assert (record.state, record.message) == ("queued", WAITING_WHILE_DISABLED)

    assert stores.accounts.set_disabled(158, False) == 1
    record = stores.records.get(off, waiting.id)
    assert record is not None
    assert record.message == "Queued"
    assert claimed(stores).id == waiting.id


def test_idle_accounts_do_not_stand_in_the_way(stores: Stores) -> None:
    idle = [stores.account(1000 + n) for n in range(200)]
    busy = stores.account(158)
    row, _ = stores.records.enqueue(new_upload(busy, "a"))
    assert claimed(stores).id == row.id
    assert len(idle) == 200
    assert stores.claim() is None


@pytest.mark.parametrize("threads", [8])
def test_concurrent_claimers_give_each_row_one_holder_per_token(
    stores: Stores, threads: int
) -> None:
    owners = [stores.account(158 + n) for n in range(3)]
    rows = 60
    for n in range(rows):
        stores.records.enqueue(new_upload(owners[n % 3], f"c-{n}"))
    taken: list[tuple[int, int, int]] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def claimer(worker: int) -> None:
        try:
            while (row := stores.claim(worker)) is not None:
                with guard:
                    taken.append((row.id, row.lease_token, worker))
        except BaseException as error:  # reported below
            errors.append(error)

    pool = [threading.Thread(target=claimer, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert errors == []
    holders = Counter((row_id, token) for row_id, token, _ in taken)
    assert len(holders) == rows
    assert set(holders.values()) == {1}


# -- the part journal -----------------------------------------------------------------------


def test_journal_progress_is_the_sum_of_the_recorded_parts(stores: Stores) -> None:
    owner = stores.account()
    row, _ = stores.records.enqueue(new_upload(owner, "a"))
    lease = claimed(stores).lease
    assert stores.journal.started(lease, "mp-1", 5 * 2**20, 123)
    assert stores.journal.part_sent(lease, StoredPart(1, '"e1"', "c1", 5))
    assert stores.journal.part_sent(lease, StoredPart(2, '"e2"', "c2", 5))
    # The same part written again (a retried write) is counted once.
    assert stores.journal.part_sent(lease, StoredPart(2, '"e2"', "c2", 5))
    record = stores.records.get(owner, row.id)
    assert record is not None
    assert record.bytes_uploaded == 10

    read = stores.journal.read(lease)
    assert read.multipart is not None
    state = read.multipart
    assert (state.upload_id, state.part_size, state.source_mtime_ns) == ("mp-1", 5 * 2**20, 123)
    assert [p.number for p in state.parts] == [1, 2]

    assert stores.journal.resumed(lease, [StoredPart(2, '"e2"', "c2", 5)])
    read = stores.journal.read(lease)
    assert read.multipart is not None
    assert [p.number for p in read.multipart.parts] == [2]
    record = stores.records.get(owner, row.id)
    assert record is not None
    assert record.bytes_uploaded == 5

    assert stores.queue.complete(lease, {}, 200, "", 10) is not None
    assert stores.journal.read(lease).held is False


def test_a_new_multipart_upload_forgets_the_old_parts(stores: Stores) -> None:
    owner = stores.account()
    row, _ = stores.records.enqueue(new_upload(owner, "a"))
    lease = claimed(stores).lease
    stores.journal.started(lease, "mp-1", 5, 1)
    stores.journal.part_sent(lease, StoredPart(1, '"e1"', "c1", 5))
    assert stores.journal.started(lease, "mp-2", 5, 2)
    read = stores.journal.read(lease)
    assert read.multipart is not None
    assert (read.multipart.upload_id, read.multipart.parts) == ("mp-2", ())
    record = stores.records.get(owner, row.id)
    assert record is not None
    assert record.bytes_uploaded == 0


# -- the database's clock -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("skew", [300.0, -300.0])
def test_on_postgres_a_skewed_host_never_takes_a_live_lease(tmp_path: Path, skew: float) -> None:
    """Two workers' stores read "now" from PostgreSQL: the process clocks (one 5 minutes
    off) play no part in when a lease runs out."""
    with database_url("postgresql", tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            honest_clock = FakeClock(start=time.time())
            skewed_clock = FakeClock(start=honest_clock.unix() + skew)
            honest = _stores(engine, honest_clock, ServerTime(honest_clock))
            skewed = _stores(engine, skewed_clock, ServerTime(skewed_clock))
            owner = honest.account()
            honest.records.enqueue(new_upload(owner, "live"))
            live = claimed(honest, 1)
            assert skewed.claim(2) is None  # however far its clock is ahead
            assert skewed.queue.fence(live.lease) is True  # the token, not the host, decides

            # A dead worker's lease, already over by the database's clock, is taken.
            skewed.records.enqueue(new_upload(owner, "dead"))
            dead = claimed(skewed, 3)
            with engine.begin() as conn:
                conn.execute(
                    update(uploads)
                    .where(uploads.c.id == dead.id)
                    .values(lease_expires=uploads.c.created - timedelta(seconds=1))
                )
            taken = claimed(honest if skew > 0 else skewed, 4)
            assert (taken.id, taken.lease_token) == (dead.id, dead.lease_token + 1)
        finally:
            engine.dispose()


# -- workers ------------------------------------------------------------------------------


def test_a_dead_workers_uploads_are_taken_over_at_once(stores: Stores, kind: str) -> None:
    owner = stores.account()
    row, _ = stores.records.enqueue(new_upload(owner, "a"))
    me = stores.workers.register("me", (), "test")
    lock = WorkerLock(stores.engine, me)
    assert lock.hold()
    gone = stores.workers.register("gone", ("sestore1",), "test")
    lease = stores.queue.claim(gone, "gone")
    assert lease is not None
    if kind == "sqlite":
        # On one host a worker is dead when its process is: give it a PID that has exited.
        dead_pid = _exited_pid()
        with stores.engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.id == gone).values(pid=dead_pid))
    assert stores.claim(me) is None  # its lease still runs: nobody knows it is dead yet
    assert stores.workers.reap(me) == [gone]
    taken = stores.queue.claim(me, "me")
    assert taken is not None
    assert (taken.id, taken.lease_token) == (row.id, lease.lease_token + 1)
    assert stores.workers.reap(me) == []  # declared once
    listed = {w.id: w for w in stores.workers.listed(include_stopped=True)}
    assert listed[gone].stop_reason == "dead"
    assert listed[me].stopped is None
    lock.release()


def test_a_live_worker_is_left_alone(stores: Stores) -> None:
    owner = stores.account()
    stores.records.enqueue(new_upload(owner, "a"))
    me = stores.workers.register("me", (), "test")
    other = stores.workers.register("other", (), "test")
    other_lock = WorkerLock(stores.engine, other)
    assert other_lock.hold()  # on SQLite: this very process, which is alive
    assert stores.queue.claim(other, "other") is not None
    assert stores.workers.reap(me) == []
    assert stores.claim(me) is None
    other_lock.release()


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.postgres
def test_a_transaction_left_idle_is_ended_by_the_server(tmp_path: Path) -> None:
    """A worker frozen mid-transaction must not hold its row locks (and so keep SKIP LOCKED
    claims off its uploads) for as long as it stays frozen."""
    with database_url("postgresql", tmp_path) as url:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                setting = conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout")
                assert setting.scalar_one() == "30s"
        finally:
            engine.dispose()


def test_a_heartbeat_records_what_the_worker_sends(stores: Stores) -> None:
    """The uplink budget's rates reach the dashboard's process through the workers table."""
    me = stores.workers.register("me", (), "test")
    assert stores.workers.listed()[0].sending == SendingReport()  # before its first report

    report = SendingReport(
        cap=2.0 * 1024**2,
        sent_per_second=1.5 * 1024**2,
        accounts=(AccountSending(158, 1024.0**2, 512.0 * 1024, 1024.0**2),
                  AccountSending(159, 0.5 * 1024**2, None, None)),
    )  # fmt: skip
    stores.workers.beat(me, report)
    assert stores.workers.listed()[0].sending == report

    stores.workers.beat(me)
    assert stores.workers.listed()[0].sending == SendingReport()


def test_an_accounts_own_cap_is_stored_in_bytes_per_second(stores: Stores) -> None:
    stores.account(158)

    assert stores.accounts.set_max_bandwidth(158, "20M") == 20 * 1024**2
    assert stores.accounts.get(158).max_bandwidth == 20 * 1024**2
    with pytest.raises(BadRequest, match="give bytes per second"):
        stores.accounts.set_max_bandwidth(158, "lots")
    assert stores.accounts.get(158).max_bandwidth == 20 * 1024**2
    assert stores.accounts.set_max_bandwidth(158, "off") is None
    assert stores.accounts.get(158).max_bandwidth is None
