"""PostgreSQL going away in the middle of a run, under one `vod2s3 api` and two
`vod2s3 worker` processes. Either restarted (`pg_ctl restart`: down for a fraction of a
second), when the uploads in flight wait for it and go on, nothing sent twice; or stopped
for longer than a lease, when they give up waiting and the next claims resume them. While it
is down the API answers 503 with the failure envelope (never 500); the same worker processes
carry on when it is back; every upload completes exactly once with its bytes intact, and no
multipart upload is left open.

The test runs against a throwaway PostgreSQL cluster of its own (tests.pgcluster: initdb and
pg_ctl on a free port), never the machine's server on 127.0.0.1:5432 that other tests share.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from tests.faultproxy import FaultProxy, Rule
from tests.pgcluster import PgCluster
from tests.scale import (
    FINAL,
    LEASE_SECONDS,
    Fleet,
    MiB,
    Source,
    claims,
    completions,
    log_events,
    overlaps,
    restartable_postgres_database,
    wait_until,
    write_source,
)
from vod2s3.client import ClientError, Vod2s3Client
from vod2s3.errors import DatabaseUnavailable
from vod2s3.s3 import ObjectSpec, S3Target, UploadTuning, make_client, upload
from vod2s3.s3.journal import NoJournal
from vod2s3.store.db import make_engine

UPLOADS = 30
LATE = 6  # queued once the database is back
MULTIPART = {3, 10, 17, 24}  # indexes of the 12-16 MiB files
OUTAGE = LEASE_SECONDS + 2.0  # seconds stopped in the "stopped" case: longer than a lease


@dataclass(frozen=True)
class Answer:
    at: float  # epoch seconds
    status: int  # HTTP status; 0 when the API could not be reached
    envelope: dict[str, Any] | None


class Prober(threading.Thread):
    """Asks the API for ``aws.status`` every 20 ms and records each answer."""

    def __init__(self, client: Vod2s3Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.answers: list[Answer] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                envelope = self.client.call("aws.status", limit=1)
                self.answers.append(Answer(time.time(), 200, envelope))
            except ClientError as error:
                self.answers.append(Answer(time.time(), error.http_status, error.response))
            self.stopping.wait(0.02)

    def statuses(self) -> dict[int, int]:
        seen: dict[int, int] = {}
        for answer in self.answers:
            seen[answer.status] = seen.get(answer.status, 0) + 1
        return seen


def make_sources(fleet: Fleet, bucket: str) -> list[Source]:
    rng = random.Random(6)
    return [
        write_source(
            fleet.root,
            i,
            1,
            "alpha",
            "sestore1",
            bucket,
            rng.randint(12 * MiB, 16 * MiB) if i in MULTIPART else rng.randint(2 * 1024, MiB),
        )
        for i in range(UPLOADS)
    ]


def take_postgres_away(how: str, prober: Prober, cluster: PgCluster) -> None:
    if how == "restart":
        cluster.restart()
        return
    cluster.stop()
    stopped = time.monotonic()
    wait_until(lambda: any(a.status == 503 for a in prober.answers), "a 503", 10)
    # Stay down for longer than a lease (the outage's length is the point, not a wait).
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    cluster.start()


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["restart", "stopped"])
def test_postgres_going_away_mid_run_loses_and_duplicates_nothing(
    how: str, tmp_path: Any, s3_endpoint: str, s3_client: Any
) -> None:
    began = time.monotonic()
    with (
        restartable_postgres_database(tmp_path / "postgres.log") as cluster,
        FaultProxy(s3_endpoint) as proxy,
        Fleet(tmp_path, cluster.url, {"VOD2S3_WORKER_CONCURRENCY": "2"}) as fleet,
    ):
        # Slow S3 down so that the run lasts a few seconds and spans the outage.
        proxy.add_rule(Rule(operation="UploadPart", action="delay", delay=0.2, times=-1))
        proxy.add_rule(Rule(operation="PutObject", action="delay", delay=0.2, times=-1))
        fleet.cli("db", "upgrade")
        s3_client.create_bucket(Bucket="videos")
        account = fleet.add_account(1, "alpha", "videos", proxy.url)
        sources = make_sources(fleet, "videos")
        engine = make_engine(cluster.url)

        def states() -> dict[int, str]:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT id, state FROM uploads"))
                return {row.id: row.state for row in rows}

        def multipart_in_progress() -> bool:
            with engine.connect() as conn:
                return bool(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM uploads WHERE state = 'uploading' "
                            "AND multipart_upload_id IS NOT NULL AND bytes_uploaded > 0"
                        )
                    ).scalar_one()
                )

        try:
            api_url = fleet.start_api("api")
            workers = {name: fleet.start_worker(name) for name in ("w1", "w2")}
            pids = {name: fleet.procs[name].pid for name in workers}
            client = account.client(api_url)

            def queue(batch: list[Source]) -> dict[int, Source]:
                return {
                    int(client.upload(s.path, s.bucket, "private", destination_path=s.key)["id"]): s
                    for s in batch
                }

            upload_of = queue(sources[: UPLOADS - LATE])
            started = time.monotonic()

            # Take the database away once the run is under way, a multipart upload
            # half-done.
            wait_until(
                lambda: sum(s in FINAL for s in states().values()) >= 3 and multipart_in_progress(),
                "a multipart upload in progress",
                60,
                fleet,
            )
            done_before = sum(s in FINAL for s in states().values())
            probe = account.client(api_url)
            probe.timeout = 5.0
            prober = Prober(probe)
            prober.start()
            wait_until(
                lambda: any(a.status == 200 for a in prober.answers),
                "the prober's first answer",
                10,
                fleet,
            )
            away_at = time.time()
            take_postgres_away(how, prober, cluster)
            back_at = time.time()
            outage_took = back_at - away_at
            # The API answers again without being restarted, and takes new uploads.
            wait_until(
                lambda: any(a.status == 200 and a.at > back_at for a in prober.answers),
                "the API to answer 200 after the outage",
                30,
                fleet,
            )
            prober.stopping.set()
            prober.join(timeout=10)
            upload_of.update(queue(sources[UPLOADS - LATE :]))

            wait_until(
                lambda: len(states()) == UPLOADS and all(s in FINAL for s in states().values()),
                "every upload to reach a final state",
                90,
                fleet,
            )
            finished_after = time.monotonic() - started
            # The same worker processes did it: alive all along, never restarted.
            for name in workers:
                assert fleet.alive(name), fleet.tail()
                assert fleet.procs[name].pid == pids[name]
            records = {upload_id: client.get(upload_id) for upload_id in upload_of}
            for name in ("w1", "w2", "api"):
                status, _ = fleet.stop(name)
                assert status == 0, fleet.tail()
        finally:
            engine.dispose()

        logs = {name: fleet.log(name) for name in workers}
        seen = prober.statuses()
        unavailable = [a for a in prober.answers if a.status == 503]
        print(
            f"\n{how}: {done_before} of {UPLOADS - LATE} done when the database went away; "
            f"pg_ctl took {outage_took:.2f}s; the API answered {seen} "
            f"({len(prober.answers)} probes); all {UPLOADS} final {finished_after:.1f}s "
            f"after queueing; test took {time.monotonic() - began:.1f}s"
        )

        # While PostgreSQL was away the API said 503 with the failure envelope, never 500.
        assert set(seen) <= {200, 503}, [a for a in prober.answers if a.status != 200]
        assert unavailable, f"no 503 seen: the outage was too short to catch ({seen})"
        for answer in unavailable:
            assert answer.envelope is not None
            assert answer.envelope["status"] == "failure"
            assert "database is unavailable" in answer.envelope["message"]
            assert away_at <= answer.at <= back_at + 5

        # Nothing lost, nothing duplicated.
        assert {r["state"] for r in records.values()} == {"completed"}, [
            (i, r["state"], r["message"]) for i, r in records.items() if r["state"] != "completed"
        ]
        done = [upload_id for text_ in logs.values() for upload_id in completions(text_)]
        assert sorted(done) == sorted(upload_of), "an upload was completed twice or never"
        for upload_id, source in upload_of.items():
            body = s3_client.get_object(Bucket=source.bucket, Key=source.key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == source.sha256, (upload_id, source)
        assert s3_client.list_multipart_uploads(Bucket="videos").get("Uploads", []) == []
        held = [
            claim
            for name, text_ in logs.items()
            for claim in claims(name, text_, lost_is_over=True)
        ]
        assert all(c.end is not None for c in held), [c for c in held if c.end is None]
        found = overlaps(held, lost_is_over=True)
        assert found == [], "\n".join(found)
        attempts = {upload_id: r["attempts"] for upload_id, r in records.items()}
        small = sum(1 for s in sources if not s.multipart)
        if how == "restart":
            # Down for less than a lease: every upload in flight waited and went on;
            # nothing was reclaimed or sent twice.
            assert set(attempts.values()) == {1}, attempts
            assert proxy.count("PutObject") == small, fleet.tail()
            assert proxy.count("CreateMultipartUpload") == len(MULTIPART)
        else:
            # Down for longer than a lease: the uploads in flight gave up waiting, and were
            # claimed once more, each exactly once.
            assert max(attempts.values()) == 2, attempts

        # Both workers went on claiming after the outage.
        for name, text_ in logs.items():
            after = [m for when, m in log_events(text_) if when > back_at and "started" in m]
            assert after, f"{name} did not resume work after the outage\n{fleet.tail()}"
        waited = {
            name: len(re.findall(r"upload \d+: database unavailable \(", text_))
            for name, text_ in logs.items()
        }
        print(
            f"attempts {sorted(attempts.values())}; uploads that waited for the database "
            f"{waited}; S3: {proxy.count('PutObject')} PutObject for {small} small files, "
            f"{proxy.count('CreateMultipartUpload')} CreateMultipartUpload, "
            f"{proxy.count('UploadPart')} UploadPart, "
            f"{proxy.count('AbortMultipartUpload')} AbortMultipartUpload"
        )


class UnrecordedJournal(NoJournal):
    """A journal whose database is away when the multipart upload begins."""

    def started(self, upload_id: str, part_size: int, source_mtime_ns: int) -> bool:
        raise DatabaseUnavailable("The database is unavailable right now")


def test_a_multipart_upload_that_cannot_be_recorded_is_aborted(
    tmp_path: Any, s3_endpoint: str, s3_client: Any
) -> None:
    """Nobody could resume a multipart upload whose id never reached the database: the
    uploader aborts it rather than leave it open."""
    s3_client.create_bucket(Bucket="videos")
    target = S3Target("testing", "testing", "us-east-1", s3_endpoint)
    path = tmp_path / "source.mp4"
    path.write_bytes(os.urandom(6 * MiB))
    spec = ObjectSpec(
        bucket="videos", key="unrecorded.mp4", acl="private", metadata={}, content_type="video/mp4"
    )
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(DatabaseUnavailable):
            upload(
                make_client(target),
                target,
                fd,
                6 * MiB,
                spec,
                UploadTuning(multipart_threshold=5 * MiB, part_size=5 * MiB),
                journal=UnrecordedJournal(),
            )
    finally:
        os.close(fd)
    assert s3_client.list_multipart_uploads(Bucket="videos").get("Uploads", []) == []
