"""`vod2s3 uploads` (issue 15, item 3) run as a subprocess against SQLite and PostgreSQL,
and the workers' retention sweep (VOD2S3_RETENTION_DAYS).

The uploads are made by the store's own code on a clock the test sets (ProcessTime with a
FakeClock, on both databases): "60 days ago" is then a real 60 days before the CLI's
"now", which on PostgreSQL is the server's clock."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine

from tests.databases import database_url
from tests.helpers import FakeClock
from tests.integration.test_cli import Cli
from tests.service import wait_until, worker_process
from vod2s3.accounts import AccountStore
from vod2s3.config import MiB
from vod2s3.crypto import SecretBox
from vod2s3.records import record_view
from vod2s3.store import migrate
from vod2s3.store.db import make_engine
from vod2s3.store.journal import PartJournal
from vod2s3.store.outbox import CallbackOutbox
from vod2s3.store.queue import LeaseQueue
from vod2s3.store.records import NewUpload, RecordStore
from vod2s3.store.retention import FinishedUploads
from vod2s3.store.sqltime import ProcessTime
from vod2s3.worker.retention import RetentionSweep

KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
DAY = 86400.0
LEASE = timedelta(seconds=30)
CALLBACK = "http://127.0.0.1:9/callback"  # never called: deliveries are made by hand here


@dataclass
class Seed:
    """The store's own code, on a clock the test moves."""

    engine: Engine
    box: SecretBox
    clock: FakeClock = field(default_factory=lambda: FakeClock(time.time() - 60 * DAY))
    accounts_by_cdn: dict[int, int] = field(default_factory=dict)
    signatures: int = 0

    def __post_init__(self) -> None:
        sql_time = ProcessTime(self.clock)
        self.records = RecordStore(self.engine, sql_time)
        self.queue = LeaseQueue(self.engine, sql_time, LEASE)
        self.journal = PartJournal(self.engine, sql_time, LEASE)
        self.outbox = CallbackOutbox(self.engine, sql_time)
        self.finished = FinishedUploads(self.engine, sql_time)
        accounts = AccountStore(self.engine, self.box, self.clock)
        for cdn in (158, 159):
            accounts.create(cdn, "jb")
            self.accounts_by_cdn[cdn] = accounts.get(cdn).id

    def queued(
        self, cdn: int, volume: str = "sestore1", bucket: str = "videos", callback: str = ""
    ) -> int:
        self.signatures += 1
        record, _ = self.records.enqueue(
            NewUpload(
                account_id=self.accounts_by_cdn[cdn],
                cdn_id=cdn,
                request_signature=f"sig-{self.signatures}",
                path=f"{volume}/jb/{self.signatures}.mp4",
                volume=volume,
                bucket=bucket,
                destination_path=f"videos/{self.signatures}.mp4",
                metadata={},
                acl="private",
                callback=callback,
                options={},
                bytes_total=10,
            )
        )
        return record.id

    def claimed(self, upload_id: int) -> Any:
        """Claim the one queued upload (each is claimed as soon as it is made)."""
        claim = self.queue.claim(1, "worker-1")
        assert claim is not None
        assert claim.id == upload_id
        return claim.lease

    def completed(self, cdn: int, callback: str = "", **where: str) -> int:
        upload_id = self.queued(cdn, callback=callback, **where)
        assert self.queue.complete(self.claimed(upload_id), {}, 200, "", 10) is not None
        return upload_id

    def failed(self, cdn: int, **where: str) -> int:
        upload_id = self.queued(cdn, **where)
        assert self.queue.fail(self.claimed(upload_id), 403, "AccessDenied", "denied")
        return upload_id

    def cancelled(self, cdn: int, multipart: bool = False) -> int:
        upload_id = self.queued(cdn)
        if multipart:  # a multipart upload begun, not yet aborted by a worker's sweep
            assert self.journal.started(self.claimed(upload_id), "mp-1", 5 * MiB, 1)
        _, done = self.records.cancel(self.accounts_by_cdn[cdn], upload_id)
        assert done
        return upload_id

    def deliver_callback(self) -> None:
        delivery = self.outbox.claim("deliverer", LEASE)
        assert delivery is not None
        assert self.outbox.delivered(delivery.id, "deliverer", 200)


@dataclass
class World:
    """Uploads of two accounts in every state, 60 days old and 1 day old."""

    done: int  # completed 60 days ago, cdn 158: purged
    failed: int  # failed 60 days ago, cdn 159, sestore2, bucket archive: purged
    delivered: int  # completed 60 days ago, its callback delivered: purged with its delivery
    pending: int  # completed 60 days ago, its callback still pending: kept
    aborting: int  # cancelled 60 days ago, its multipart upload not aborted yet: kept
    cancelled: int  # cancelled 60 days ago, cdn 159: purged
    old_queued: int  # queued 60 days ago: kept
    recent_done: int  # completed 1 day ago, cdn 159: kept
    recent_queued: int  # queued 1 day ago, cdn 158: kept

    @property
    def purgeable(self) -> set[int]:
        return {self.done, self.failed, self.delivered, self.cancelled}

    @property
    def all(self) -> list[int]:
        return sorted(vars(self).values())


def make_world(seed: Seed) -> World:
    done = seed.completed(158)
    failed = seed.failed(159, volume="sestore2", bucket="archive")
    delivered = seed.completed(158, callback=CALLBACK)
    seed.deliver_callback()
    pending = seed.completed(158, callback=CALLBACK)
    aborting = seed.cancelled(158, multipart=True)
    cancelled = seed.cancelled(159)
    seed.clock.advance(59 * DAY)
    recent_done = seed.completed(159)
    seed.clock.advance(-59 * DAY)
    old_queued = seed.queued(158)
    seed.clock.advance(59 * DAY)
    recent_queued = seed.queued(158)
    return World(
        done, failed, delivered, pending, aborting, cancelled, old_queued, recent_done,
        recent_queued,
    )  # fmt: skip


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ops(kind: str, tmp_path: Path) -> Iterator[tuple[Cli, Seed]]:
    """`vod2s3` on a fresh database of ``kind`` (schema made), and the store's code on it."""
    with database_url(kind, tmp_path) as url:
        master_key = Fernet.generate_key().decode()
        engine = make_engine(url)
        migrate.upgrade(engine)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
        env["VOD2S3_DATABASE_URL"] = url
        env["VOD2S3_MASTER_KEY"] = master_key
        env["VOD2S3_STORAGE_ROOT"] = str(tmp_path / "storage")
        try:
            yield Cli(env, tmp_path / "db.sqlite", tmp_path), Seed(engine, SecretBox(master_key))
        finally:
            engine.dispose()


def listed(cli: Cli, *args: str) -> list[int]:
    page = cli.json("uploads", "list", "--json", *args)
    return [upload["id"] for upload in page["uploads"]]


def failure(cli: Cli, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a command that must fail with a message, not a traceback; its stderr."""
    done = cli.run(*args, check=False, env=env)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    return done.stderr


def test_list_filters_across_accounts(ops: tuple[Cli, Seed]) -> None:
    cli, seed = ops
    world = make_world(seed)
    newest_first = world.all[::-1]

    assert listed(cli) == newest_first
    assert listed(cli, "--cdn", "159") == [world.recent_done, world.cancelled, world.failed]
    assert listed(cli, "--state", "failed,cancelled") == [
        world.cancelled,
        world.aborting,
        world.failed,
    ]
    assert listed(cli, "--state", "queued", "--state", "uploading") == [
        world.recent_queued,
        world.old_queued,
    ]
    assert listed(cli, "--volume", "sestore2") == [world.failed]
    assert listed(cli, "--bucket", "archive") == [world.failed]
    old = listed(cli, "--older-than", "30d")
    assert old == [n for n in newest_first if n not in (world.recent_done, world.recent_queued)]
    assert listed(cli, "--older-than", "30d", "--state", "queued", "--cdn", "158") == [
        world.old_queued
    ]
    assert listed(cli, "--older-than", "90d") == []

    first = cli.json("uploads", "list", "--json", "--limit", "4")
    assert [u["id"] for u in first["uploads"]] == newest_first[:4]
    assert (first["more"], first["next_before"]) == (True, newest_first[3])
    rest = cli.json("uploads", "list", "--json", "--before", str(newest_first[3]))
    assert [u["id"] for u in rest["uploads"]] == newest_first[4:]
    assert (rest["more"], rest["next_before"]) == (False, None)

    # Each upload: the customer's record, then the operator's fields.
    upload = next(u for u in first["uploads"] if u["id"] == world.recent_queued)
    operator = {"account_id", "volume", "next_attempt", "lease_owner", "lease_expires"}
    operator |= {"worker_id", "multipart_upload_id"}
    record = seed.records.get_any(world.recent_queued)
    assert record is not None
    assert upload == {**record_view(record), **{name: upload[name] for name in operator}}
    assert set(upload) - set(record_view(record)) == operator
    assert (upload["account_id"], upload["volume"]) == (seed.accounts_by_cdn[158], "sestore1")

    text = cli.run("uploads", "list", "--limit", "4").stdout
    assert all(len(line) <= 100 for line in text.splitlines()), text
    assert f"--before {newest_first[3]}" in text
    assert "queued" in text
    assert "No uploads match." in cli.run("uploads", "list", "--older-than", "90d").stdout


def test_show_is_the_customers_record_and_the_operators_fields(ops: tuple[Cli, Seed]) -> None:
    cli, seed = ops
    world = make_world(seed)

    shown = cli.json("uploads", "show", str(world.pending), "--json")
    record = seed.records.get_any(world.pending)
    assert record is not None
    assert {k: v for k, v in shown.items() if k in record_view(record)} == record_view(record)
    assert (shown["state"], shown["callback_state"]) == ("completed", "pending")
    [delivery] = shown["callback_deliveries"]
    assert (delivery["state"], delivery["url"], delivery["attempts"]) == ("pending", CALLBACK, 0)

    aborting = cli.json("uploads", "show", str(world.aborting), "--json")
    assert (aborting["state"], aborting["multipart_upload_id"]) == ("cancelled", "mp-1")

    text = cli.run("uploads", "show", str(world.failed)).stdout
    assert "state: failed" in text
    assert "error_code: AccessDenied" in text
    assert "volume: sestore2" in text

    assert "No upload with id 99999" in failure(cli, "uploads", "show", "99999")


def test_cancel_and_retry_say_what_became_of_each_id(ops: tuple[Cli, Seed]) -> None:
    cli, seed = ops
    world = make_world(seed)

    cancel = cli.run(
        "uploads", "cancel", str(world.recent_queued), str(world.done), "99999", check=False
    )
    assert cancel.returncode == 1
    assert cancel.stdout.splitlines() == [
        f"upload {world.recent_queued}: cancelled",
        f"upload {world.done}: already completed, not cancelled (only a queued or uploading "
        "upload can be)",
        "upload 99999: not found",
    ]
    assert cli.json("uploads", "show", str(world.recent_queued), "--json")["state"] == "cancelled"
    assert cli.json("uploads", "show", str(world.done), "--json")["state"] == "completed"
    assert "cancelled" in cli.run("uploads", "cancel", str(world.old_queued)).stdout

    retry = cli.run("uploads", "retry", str(world.failed), str(world.recent_done), check=False)
    assert retry.returncode == 1
    assert retry.stdout.splitlines() == [
        f"upload {world.failed}: queued again",
        f"upload {world.recent_done}: completed, not retried (only a failed or cancelled "
        "upload can be)",
    ]
    again = cli.json("uploads", "show", str(world.failed), "--json")
    assert (again["state"], again["error_code"], again["finished"]) == ("queued", "", None)
    assert cli.run("uploads", "retry", str(world.recent_queued)).stdout.endswith("queued again\n")


def test_purge_deletes_only_finished_uploads_that_nothing_waits_for(
    ops: tuple[Cli, Seed],
) -> None:
    cli, seed = ops
    world = make_world(seed)
    kept = [n for n in world.all if n not in world.purgeable]

    dry = cli.run("uploads", "purge", "--finished-before", "30d", "--dry-run").stdout
    assert dry == "would delete 4 uploads finished more than 30d ago\n"
    refused = cli.run("uploads", "purge", "--finished-before", "30d", stdin="n\n", check=False)
    assert refused.returncode == 1
    assert "Delete 4 uploads" in refused.stderr
    assert listed(cli) == world.all[::-1]

    done = cli.run("uploads", "purge", "--finished-before", "30d", "--batch-size", "3", "--yes")
    assert done.stdout == "deleted 4 uploads finished more than 30d ago\n"
    assert sorted(listed(cli)) == kept
    assert seed.outbox.for_upload(world.delivered) == []
    assert len(seed.outbox.for_upload(world.pending)) == 1
    # Asked again, with nothing left to delete.
    again = cli.run("uploads", "purge", "--finished-before", "30d", "--yes").stdout
    assert again.startswith("deleted 0 uploads")


def test_the_retention_sweep_deletes_in_batches_on_a_fixed_clock(ops: tuple[Cli, Seed]) -> None:
    _, seed = ops
    world = make_world(seed)
    # The seed's clock reads "1 day ago": the oldest uploads finished 59 days before it.
    assert RetentionSweep(seed.finished, 60).sweep() == 0
    assert seed.finished.purge(timedelta(days=30), batch_size=3) == 4  # batches of 3 and 1
    remaining = {n for n in world.all if seed.records.get_any(n) is not None}
    assert remaining == set(world.all) - world.purgeable
    seed.clock.advance(31 * DAY)
    assert RetentionSweep(seed.finished, 30).sweep() == 1  # recent_done, now 31 days old
    assert seed.records.get_any(world.recent_done) is None
    assert seed.records.get_any(world.pending) is not None
    assert seed.records.get_any(world.aborting) is not None


def test_a_worker_with_retention_days_deletes_old_records_at_start(
    ops: tuple[Cli, Seed], tmp_path: Path
) -> None:
    cli, seed = ops
    old = [seed.completed(158), seed.failed(159), seed.cancelled(159)]
    pending = seed.completed(158, callback=CALLBACK)
    seed.clock.advance(59 * DAY)
    recent = seed.completed(158)
    env = {**cli.env, "VOD2S3_RETENTION_DAYS": "30", "VOD2S3_POLL_INTERVAL": "0.05"}
    env["VOD2S3_LOG_LEVEL"] = "INFO"
    log = tmp_path / "worker.log"
    with worker_process(env, log) as proc:
        wait_until(proc, log, lambda: "retention: deleted" in log.read_text())
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert "retention: deleted 3 uploads finished more than 30 days ago" in log.read_text()
    assert [seed.records.get_any(n) for n in old] == [None, None, None]
    assert seed.records.get_any(pending) is not None
    assert seed.records.get_any(recent) is not None


@pytest.mark.parametrize("kind", ["sqlite"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("uploads", "list", "--older-than", "3x"), "'3x' is not a duration"),
        (("uploads", "list", "--older-than", "30"), "such as 90s, 45m, 2h or 30d"),
        (("uploads", "list", "--state", "bogus"), "'bogus' is not a state: choose from queued"),
        (("uploads", "list", "--state", "queued,bogus"), "'bogus' is not a state"),
        (("uploads", "list", "--cdn", "999"), "No account with cdn 999"),
        (("uploads", "list", "--limit", "0"), "--limit"),
        (("uploads", "purge", "--finished-before", "soon", "--yes"), "'soon' is not a duration"),
        (("uploads", "purge", "--yes"), "--finished-before"),
        (("uploads", "cancel", "abc"), "'abc' is not a valid integer"),
        (("uploads", "retry"), "Missing argument 'ID...'"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(
    ops: tuple[Cli, Seed], args: tuple[str, ...], message: str
) -> None:
    cli, _ = ops
    assert message in failure(cli, *args)


@pytest.mark.parametrize("kind", ["sqlite"])
@pytest.mark.parametrize("days", ["-5", "thirty", "1.5", "99999"])
def test_a_bad_retention_setting_is_refused_with_what_to_set(
    ops: tuple[Cli, Seed], days: str
) -> None:
    cli, _ = ops
    for command in (("worker",), ("uploads", "list")):
        stderr = failure(cli, *command, env={"VOD2S3_RETENTION_DAYS": days})
        assert stderr.startswith("error: VOD2S3_RETENTION_DAYS must be"), stderr
        assert len(stderr.strip().splitlines()) == 1


def test_uploads_need_the_schema_first(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env["VOD2S3_DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    cli = Cli(env, tmp_path / "empty.sqlite", tmp_path)
    assert "vod2s3 db upgrade" in failure(cli, "uploads", "list")


def test_an_empty_database_lists_and_purges_nothing(ops: tuple[Cli, Seed]) -> None:
    cli, _ = ops
    assert cli.json("uploads", "list", "--json") == {
        "uploads": [],
        "more": False,
        "next_before": None,
    }
    purged = cli.run("uploads", "purge", "--finished-before", "0s").stdout
    assert purged == "deleted 0 uploads finished more than 0d ago\n"
