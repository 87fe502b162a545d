"""The queue's operations on both databases: enqueue, replay, claim, leases, guarded
transitions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.databases import database_url
from tests.helpers import FakeClock
from vod2s3.accounts import AccountStore
from vod2s3.crypto import SecretBox
from vod2s3.store import migrate
from vod2s3.store.db import make_engine
from vod2s3.store.uploads import NewUpload, StoredPart, TooManyActive, UploadStore

LEASE = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[AccountStore, UploadStore, FakeClock]]:
    with database_url(request.param, tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        clock = FakeClock()
        box = SecretBox(Fernet.generate_key().decode())
        try:
            yield AccountStore(engine, box, clock), UploadStore(engine, clock), clock
        finally:
            engine.dispose()


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


def account_id(accounts: AccountStore, cdn: int = 158) -> int:
    accounts.create(cdn, "jb")
    return accounts.get(cdn).id


def test_enqueue_then_replay_returns_the_same_row(stores: tuple) -> None:
    accounts, uploads, _ = stores
    owner = account_id(accounts)
    first, created = uploads.enqueue(new_upload(owner, "sig-a"))
    again, created_again = uploads.enqueue(new_upload(owner, "sig-a"))
    assert created is True
    assert created_again is False
    assert again.id == first.id
    assert len(uploads.latest(owner, 25, 0)) == 1
    assert first.metadata == {"title": "Vidéo"}


def test_enqueue_refuses_beyond_the_cap_but_still_answers_a_replay(stores: tuple) -> None:
    accounts, uploads, _ = stores
    owner = account_id(accounts)
    first, _ = uploads.enqueue(new_upload(owner, "sig-a"), max_active=2)
    uploads.enqueue(new_upload(owner, "sig-b"), max_active=2)
    with pytest.raises(TooManyActive):
        uploads.enqueue(new_upload(owner, "sig-c"), max_active=2)
    replayed, created = uploads.enqueue(new_upload(owner, "sig-a"), max_active=2)
    assert (replayed.id, created) == (first.id, False)
    assert len(uploads.latest(owner, 25, 0)) == 2
    # Finished uploads do not count against the cap.
    claimed = uploads.claim("w", LEASE)
    assert uploads.complete(claimed.id, "w", {}, 200, "", 10)
    third, created = uploads.enqueue(new_upload(owner, "sig-c"), max_active=2)
    assert created
    assert third.state == "queued"


def test_rows_are_scoped_to_their_account(stores: tuple) -> None:
    accounts, uploads, _ = stores
    mine, theirs = account_id(accounts, 158), account_id(accounts, 159)
    row, _ = uploads.enqueue(new_upload(theirs, "sig"))
    assert uploads.get(mine, row.id) is None
    assert uploads.get(theirs, row.id) is not None
    assert uploads.latest(mine, 25, 0) == []


def test_claim_takes_oldest_due_and_leases_it(stores: tuple) -> None:
    accounts, uploads, _ = stores
    owner = account_id(accounts)
    first, _ = uploads.enqueue(new_upload(owner, "a"))
    uploads.enqueue(new_upload(owner, "b"))

    claimed = uploads.claim("w1", LEASE)
    assert claimed is not None
    assert claimed.id == first.id
    assert claimed.state == "uploading"
    assert claimed.attempts == 1
    assert claimed.lease_owner == "w1"
    second = uploads.claim("w2", LEASE)
    assert second is not None
    assert second.id != first.id
    assert uploads.claim("w3", LEASE) is None


def test_expired_lease_is_reclaimed_and_old_owner_cannot_write(stores: tuple) -> None:
    accounts, uploads, clock = stores
    owner = account_id(accounts)
    row, _ = uploads.enqueue(new_upload(owner, "a"))
    assert uploads.claim("dead-worker", LEASE) is not None
    assert uploads.claim("w2", LEASE) is None  # lease still valid

    clock.advance(LEASE.total_seconds() + 1)
    reclaimed = uploads.claim("w2", LEASE)
    assert reclaimed is not None
    assert reclaimed.id == row.id
    assert reclaimed.attempts == 2

    # The worker that lost its lease is refused on every transition.
    assert uploads.heartbeat(row.id, "dead-worker", LEASE) is False
    assert uploads.record_progress(row.id, "dead-worker", 5) is False
    assert uploads.complete(row.id, "dead-worker", {}, 200, "", 10) is False
    assert uploads.fail(row.id, "dead-worker", 403, "AccessDenied", "no") is False
    assert uploads.get(owner, row.id).state == "uploading"

    assert uploads.complete(row.id, "w2", {"ETag": '"x"'}, 200, "CRC32:abc", 10) is True
    done = uploads.get(owner, row.id)
    assert done.state == "completed"
    assert done.message == "Successfully Uploaded to AWS"
    assert uploads.get_any(row.id).lease_owner is None  # the job's columns, not the record's


def test_requeue_waits_for_its_delay(stores: tuple) -> None:
    accounts, uploads, clock = stores
    owner = account_id(accounts)
    row, _ = uploads.enqueue(new_upload(owner, "a"))
    uploads.claim("w1", LEASE)
    assert uploads.requeue(row.id, "w1", timedelta(seconds=10), 503, "SlowDown", "retrying")
    assert uploads.claim("w1", LEASE) is None
    clock.advance(11)
    again = uploads.claim("w1", LEASE)
    assert again is not None
    assert again.attempts == 2
    assert again.error_code == "SlowDown"


def test_release_does_not_count_the_attempt(stores: tuple) -> None:
    accounts, uploads, _ = stores
    owner = account_id(accounts)
    row, _ = uploads.enqueue(new_upload(owner, "a"))
    uploads.claim("w1", LEASE)
    assert uploads.release(row.id, "w1")
    released = uploads.get(owner, row.id)
    assert released.state == "queued"
    assert released.attempts == 0


def test_claim_filters_by_volume(stores: tuple) -> None:
    accounts, uploads, _ = stores
    owner = account_id(accounts)
    uploads.enqueue(new_upload(owner, "one", volume="sestore1"))
    two, _ = uploads.enqueue(new_upload(owner, "two", volume="sestore2"))
    claimed = uploads.claim("w", LEASE, volumes=("sestore2",))
    assert claimed is not None
    assert claimed.id == two.id
    assert uploads.claim("w", LEASE, volumes=("sestore2",)) is None


def test_latest_is_newest_first_with_state_filter(stores: tuple) -> None:
    accounts, uploads, _ = stores
    owner = account_id(accounts)
    ids = [uploads.enqueue(new_upload(owner, f"s{n}"))[0].id for n in range(4)]
    assert [r.id for r in uploads.latest(owner, 2, 1)] == [ids[2], ids[1]]
    uploads.claim("w", LEASE)
    assert [r.id for r in uploads.latest(owner, 25, 0, "uploading")] == [ids[0]]


def test_multipart_journal_is_written_only_by_the_lease_holder(stores: tuple) -> None:
    accounts, uploads, clock = stores
    owner = account_id(accounts)
    row, _ = uploads.enqueue(new_upload(owner, "a"))
    uploads.claim("w1", LEASE)
    assert uploads.multipart_started(row.id, "w1", "mp-1", 5 * 2**20, 123)
    assert uploads.record_part(row.id, "w1", StoredPart(1, '"e1"', "c1", 5))
    assert uploads.record_part(row.id, "w1", StoredPart(2, '"e2"', "c2", 5))
    assert uploads.get(owner, row.id).bytes_uploaded == 10

    state = uploads.multipart_state(row.id)
    assert state is not None
    assert (state.upload_id, state.part_size, state.source_mtime_ns) == ("mp-1", 5 * 2**20, 123)
    assert [p.number for p in state.parts] == [1, 2]

    clock.advance(LEASE.total_seconds() + 1)
    assert uploads.claim("w2", LEASE) is not None
    # The old worker's late part is refused and leaves no trace.
    assert uploads.record_part(row.id, "w1", StoredPart(3, '"e3"', "c3", 5)) is False
    assert [p.number for p in uploads.multipart_state(row.id).parts] == [1, 2]

    # The new worker found only part 2 at S3.
    assert uploads.multipart_resumed(row.id, "w2", [StoredPart(2, '"e2"', "c2", 5)])
    assert [p.number for p in uploads.multipart_state(row.id).parts] == [2]
    assert uploads.get(owner, row.id).bytes_uploaded == 5

    assert uploads.complete(row.id, "w2", {}, 200, "", 10)
    assert uploads.multipart_state(row.id) is None


def test_a_new_multipart_upload_forgets_the_old_parts(stores: tuple) -> None:
    accounts, uploads, _ = stores
    owner = account_id(accounts)
    row, _ = uploads.enqueue(new_upload(owner, "a"))
    uploads.claim("w1", LEASE)
    uploads.multipart_started(row.id, "w1", "mp-1", 5, 1)
    uploads.record_part(row.id, "w1", StoredPart(1, '"e1"', "c1", 5))
    assert uploads.multipart_started(row.id, "w1", "mp-2", 5, 2)
    state = uploads.multipart_state(row.id)
    assert state.upload_id == "mp-2"
    assert state.parts == ()
    assert uploads.get(owner, row.id).bytes_uploaded == 0
    assert uploads.fail(row.id, "w1", 403, "AccessDenied", "no")
    assert uploads.multipart_state(row.id) is None


def test_claims_take_turns_between_accounts(stores: tuple) -> None:
    accounts, uploads, clock = stores
    busy, quiet = account_id(accounts, 158), account_id(accounts, 159)
    for n in range(50):
        uploads.enqueue(new_upload(busy, f"busy-{n}"))
    clock.advance(1)
    quiet_ids = {uploads.enqueue(new_upload(quiet, f"quiet-{n}"))[0].id for n in range(3)}

    claimed = []
    for _ in range(6):
        clock.advance(0.001)  # claims a moment apart, as real workers make them
        claimed.append(uploads.claim("w", LEASE))
    owners = [row.account_id for row in claimed]

    # The quiet account's uploads, queued after 50 others, start within the first claims.
    assert owners == [busy, quiet, busy, quiet, busy, quiet]
    assert {row.id for row in claimed if row.account_id == quiet} == quiet_ids
