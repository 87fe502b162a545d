"""Replays of a signed aws.upload (SPEC §2): in sequence, concurrently, and across two API
processes sharing one database, one upload is queued and every arrival gets its record. The
database's unique constraint is what enforces it; a request with any field changed is not a
replay but a forgery (401)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import exc, insert, inspect, select

from tests.envelopes import envelope_of, ok, refused
from tests.helpers import free_port, wait_for_http
from tests.security.support import post_json, request_object, sign, signed_text, upload_count
from tests.service import RunningService, make_settings, running_service
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.auth import BAD_CREDENTIALS
from vod2s3.jsonenc import php_json_encode
from vod2s3.store.schema import uploads

VOD2S3 = str(Path(sys.executable).parent / "vod2s3")
THREADS = 20
_cdns = itertools.count(4000)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[RunningService]:
    settings = make_settings(tmp_path_factory.mktemp("replay"))
    with running_service(settings, moto_endpoint) as running:
        yield running


@pytest.fixture
def acct(svc: RunningService) -> IssuedCredentials:
    cdn = next(_cdns)
    issued = svc.add_account(cdn, f"user{cdn}")
    for name in ("clip.mp4", "other.mp4"):
        svc.write_source(f"sestore1/user{cdn}/{name}", b"video " + name.encode())
    return issued


def upload_obj(issued: IssuedCredentials, **fields: Any) -> dict[str, Any]:
    return request_object(
        issued,
        "aws.upload",
        path=f"sestore1/{issued.storage_user}/clip.mp4",
        bucket="videos",
        acl="private",
        **fields,
    )


def at_once(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """``send(i)`` from ``count`` threads released together."""
    barrier = threading.Barrier(count)
    answers: list[httpx.Response | BaseException | None] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = send(i)
        except BaseException as error:  # reported below, not lost in the thread
            answers[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    responses: list[httpx.Response] = []
    for answer in answers:
        assert isinstance(answer, httpx.Response), answer
        responses.append(answer)
    return responses


def assert_one_upload(
    svc: RunningService, issued: IssuedCredentials, responses: list[httpx.Response]
) -> dict[str, Any]:
    records = [ok(response)["data"] for response in responses]
    for response in responses:
        assert envelope_of(response)["message"] == "AWS Upload Queued"
    assert {record["id"] for record in records} == {records[0]["id"]}, records
    assert upload_count(svc, issued) == 1
    record: dict[str, Any] = records[0]
    return record


def test_the_same_request_in_sequence_is_one_upload_even_after_cancel_and_file_removal(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    body = php_json_encode(sign(upload_obj(acct), acct.secret))
    first = ok(post_json(http, svc.url, body))["data"]
    again = [post_json(http, svc.url, body) for _ in range(3)]
    assert assert_one_upload(svc, acct, again)["id"] == first["id"]

    # Also through the other body forms: the same signed text is the same request.
    form = http.post(svc.url, data={"json": body})
    multipart = http.post(svc.url, files={"json": (None, body)})
    assert assert_one_upload(svc, acct, [form, multipart])["id"] == first["id"]

    # A replay never revives: cancelled stays cancelled, and a gone file does not matter.
    cancel = sign(request_object(acct, "aws.cancel", id=first["id"]), acct.secret)
    ok(post_json(http, svc.url, php_json_encode(cancel)))
    (svc.storage_root / "sestore1" / acct.storage_user / "clip.mp4").unlink()
    replayed = ok(post_json(http, svc.url, body))["data"]
    assert (replayed["id"], replayed["state"]) == (first["id"], "cancelled")
    assert upload_count(svc, acct) == 1


def test_the_same_request_from_20_threads_at_once_is_one_upload(
    svc: RunningService, acct: IssuedCredentials
) -> None:
    body = php_json_encode(sign(upload_obj(acct), acct.secret)).encode()
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=THREADS)) as client:
        responses = at_once(
            THREADS,
            lambda _i: client.post(
                svc.url, content=body, headers={"Content-Type": "application/json"}
            ),
        )
    record = assert_one_upload(svc, acct, responses)
    assert record["state"] == "queued"


def test_the_same_request_to_two_api_processes_at_once_is_one_upload(
    svc: RunningService, acct: IssuedCredentials, tmp_path: Path
) -> None:
    settings = svc.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env.update(
        VOD2S3_DATABASE_URL=settings.database_url,
        VOD2S3_STORAGE_ROOT=str(settings.storage_root),
        VOD2S3_MASTER_KEY=settings.master_key,
    )
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    logs = []
    try:
        for n in range(2):
            port = free_port()
            log = (tmp_path / f"api{n}.log").open("wb")
            logs.append(log)
            proc = subprocess.Popen(
                [VOD2S3, "api", "--port", str(port)],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
            urls.append(f"http://127.0.0.1:{port}/stable/")

        body = php_json_encode(sign(upload_obj(acct), acct.secret))
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=THREADS)) as client:
            responses = at_once(THREADS, lambda i: client.post(urls[i % 2], data={"json": body}))
        record = assert_one_upload(svc, acct, responses)
        # And each process answers a later replay with that record too.
        for url in urls:
            assert (
                ok(httpx.post(url, data={"json": body}, timeout=30))["data"]["id"] == record["id"]
            )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    for n in range(2):
        assert "Traceback" not in (tmp_path / f"api{n}.log").read_text()
    assert upload_count(svc, acct) == 1


def test_the_database_refuses_a_second_row_with_the_same_signature(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    """The guarantee does not rest on the API's own check: the table itself refuses."""
    constraints = inspect(svc.runtime.engine).get_unique_constraints("uploads")
    assert ["account_id", "request_signature"] in [c["column_names"] for c in constraints]

    body = php_json_encode(sign(upload_obj(acct), acct.secret))
    upload_id = ok(post_json(http, svc.url, body))["data"]["id"]
    with svc.runtime.engine.connect() as conn:
        row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).one()._asdict()
    row.pop("id")
    with pytest.raises(exc.IntegrityError), svc.runtime.engine.begin() as conn:
        conn.execute(insert(uploads).values(**row))
    assert upload_count(svc, acct) == 1


def _changed(obj: dict[str, Any], case: str, issued: IssuedCredentials) -> str:
    """The captured request with one thing changed, keeping the captured signature."""
    signed = sign(obj, issued.secret)
    signature = signed.pop("signature")
    folder = f"sestore1/{issued.storage_user}"
    changes: dict[str, Callable[[dict[str, Any]], None]] = {
        "path": lambda o: o.update(path=f"{folder}/other.mp4"),
        "bucket": lambda o: o.update(bucket="attacker-bucket"),
        "acl": lambda o: o.update(acl="public-read"),
        "destination_path added": lambda o: o.update(destination_path="stolen.mp4"),
        "callback added": lambda o: o.update(callback="http://attacker.example/"),
        "metadata added": lambda o: o.update(metadata={"x": "y"}),
        "timestamp refreshed": lambda o: o.update(timestamp=o["timestamp"] + 1),
        "cdn as a string": lambda o: o.update(cdn=str(o["cdn"])),
    }
    if case == "keys reordered":
        changed = dict(reversed(list(signed.items())))
    else:
        changed = dict(signed)
        changes[case](changed)
    changed["signature"] = signature
    return php_json_encode(changed)


@pytest.mark.parametrize(
    "case",
    [
        "path",
        "bucket",
        "acl",
        "destination_path added",
        "callback added",
        "metadata added",
        "timestamp refreshed",
        "cdn as a string",
        "keys reordered",
    ],
)
def test_a_replay_with_one_thing_changed_is_refused_not_queued(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, case: str
) -> None:
    obj = upload_obj(acct)
    original = ok(post_json(http, svc.url, php_json_encode(sign(obj, acct.secret))))["data"]

    response = post_json(http, svc.url, _changed(obj, case, acct))

    assert refused(response, 401) == BAD_CREDENTIALS
    assert upload_count(svc, acct) == 1
    status = sign(request_object(acct, "aws.status"), acct.secret)
    listed = ok(post_json(http, svc.url, php_json_encode(status)))["data"]
    assert [(r["id"], r["path"], r["bucket"], r["acl"]) for r in listed] == [
        (original["id"], original["path"], "videos", "private")
    ]


def test_the_same_request_reformatted_is_still_the_same_upload(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    """Whitespace and escaping do not change the signed content, so they cannot be used to
    slip a replay past the check as a 'new' request."""
    signed = sign(upload_obj(acct), acct.secret)
    first = ok(post_json(http, svc.url, php_json_encode(signed)))["data"]
    for text in (
        json.dumps(signed),  # ", " and ": " separators, '/' unescaped
        json.dumps(signed, indent=2),
        "\n  " + php_json_encode(signed) + "  \n",
    ):
        assert ok(post_json(http, svc.url, text))["data"]["id"] == first["id"]
    assert upload_count(svc, acct) == 1


# -- replays of the commands that change an upload, and of reads (issue 12, item 3) ----------


def test_a_replayed_cancel_after_the_owner_retried_changes_nothing(
    svc: RunningService, acct: IssuedCredentials
) -> None:
    client = svc.client(acct)
    upload_id = client.upload(f"sestore1/{acct.storage_user}/clip.mp4", "videos", "private")["id"]
    captured = signed_text(acct, "aws.cancel", id=upload_id)
    with httpx.Client(timeout=10) as http:
        first = ok(post_json(http, svc.url, captured))
        assert first["data"]["state"] == "cancelled"
        assert client.retry(upload_id)["state"] == "queued"  # the owner changes their mind
        replayed = ok(post_json(http, svc.url, captured))
    assert replayed["message"] == first["message"]
    assert replayed["data"] == first["data"]  # the first answer, given again
    assert client.get(upload_id)["state"] == "queued"  # and nothing cancelled


def test_a_replayed_retry_after_the_owner_cancelled_changes_nothing(
    svc: RunningService, acct: IssuedCredentials
) -> None:
    client = svc.client(acct)
    upload_id = client.upload(f"sestore1/{acct.storage_user}/clip.mp4", "videos", "private")["id"]
    client.cancel(upload_id)
    captured = signed_text(acct, "aws.retry", id=upload_id)
    with httpx.Client(timeout=10) as http:
        first = ok(post_json(http, svc.url, captured))
        assert first["data"]["state"] == "queued"
        # The owner cancels again: a request of their own, not the one cancelled before
        # (the same fields in the same second would be the same signed request).
        cancel_again = signed_text(acct, "aws.cancel", time.time() + 1, id=upload_id)
        assert ok(post_json(http, svc.url, cancel_again))["data"]["state"] == "cancelled"
        replayed = ok(post_json(http, svc.url, captured))
    assert replayed["data"] == first["data"]
    assert client.get(upload_id)["state"] == "cancelled"


def test_a_replayed_refusal_is_refused_again_the_same_way(
    svc: RunningService, acct: IssuedCredentials
) -> None:
    client = svc.client(acct)
    upload_id = client.upload(f"sestore1/{acct.storage_user}/clip.mp4", "videos", "private")["id"]
    captured = signed_text(acct, "aws.retry", id=upload_id)  # a queued upload: nothing to retry
    with httpx.Client(timeout=10) as http:
        first = refused(post_json(http, svc.url, captured), 409, "only failed or cancelled")
        client.cancel(upload_id)  # now a retry would act, but not this captured one
        again = refused(post_json(http, svc.url, captured), 409, "only failed or cancelled")
    assert again == first
    assert client.get(upload_id)["state"] == "cancelled"


def test_replays_of_a_read_do_not_spend_the_owners_rate_limit(
    tmp_path: Path, moto_endpoint: str
) -> None:
    settings = make_settings(tmp_path, rate_limit=1.0, rate_burst=3)
    with running_service(settings, moto_endpoint) as limited:
        issued = limited.add_account(158, "jb")
        captured = signed_text(issued, "aws.status")
        with httpx.Client(timeout=10) as http:
            answers = [post_json(http, limited.url, captured).status_code for _ in range(60)]
            # The first arrival and the replays' own burst pass; the flood is refused...
            assert answers[:4] == [200] * 4
            assert set(answers[4:]) == {429}
            # ...and the owner's own requests still have their burst (two of three left).
            for offset in range(2):
                own = signed_text(issued, "aws.status", offset=offset)
                ok(post_json(http, limited.url, own))
