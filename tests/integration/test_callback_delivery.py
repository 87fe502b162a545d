"""Callbacks end to end: real uploads to the moto server through the running API, the outbox,
the Deliverer, and a real HTTP receiver on 127.0.0.1 (SPEC §5, issue 4).

The schedule is driven by a FakeClock shared by the outbox and the deliverer, so the test
walks through a day of retries without sleeping. Nothing here may reach past loopback: an
autouse guard refuses and records any other connection or DNS lookup.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FakeClock
from tests.netguard import Dns, LoopbackHTTPServer
from tests.service import RunningService, make_settings, running_service
from vod2s3.callbacks.delivery import Deliverer, callback_body
from vod2s3.callbacks.schedule import MAX_ATTEMPTS, RETRY_DELAYS
from vod2s3.callbacks.signing import sign, verify
from vod2s3.callbacks.ssrf import Resolver
from vod2s3.client import ClientError, Vod2s3Client
from vod2s3.config import Settings
from vod2s3.runtime import Runtime
from vod2s3.store.outbox import SUPERSEDED, CallbackOutbox

LOOPBACK_ALLOWED = (ipaddress.ip_network("127.0.0.0/8"),)
CDN = 158
FINAL_STATES = {"delivered", "failed"}


# --- safety net: nothing in this module may reach past loopback --------------------------------


pytestmark = pytest.mark.usefixtures("network_guard")


# --- a receiver that records every request and answers from a script --------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Redirect:
    location: str


HANG = "hang"
Answer = int | str | Redirect


@dataclass
class Receiver:
    """Answers each request with the next entry of ``script`` (a status, HANG: say nothing
    until the test ends, or a Redirect), then 200 once the script is used up."""

    port: int = 0
    script: list[Answer] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def next_answer(self, seen: Seen) -> Answer:
        with self.lock:
            self.requests.append(seen)
            return self.script.pop(0) if self.script else 200


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = receiver.next_answer(
                Seen(self.command, self.path, dict(self.headers.items()), body)
            )
            if answer == HANG:
                receiver.release.wait(10)
                self.close_connection = True
                return
            status, extra = 200, {}
            if isinstance(answer, Redirect):
                status, extra = 302, {"Location": answer.location}
            elif isinstance(answer, int):
                status = answer
            payload = b'{"ok":true}'
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST

    return Handler


@pytest.fixture
def make_receiver() -> Iterator[Any]:
    started: list[tuple[LoopbackHTTPServer, Receiver, threading.Thread]] = []

    def start() -> Receiver:
        receiver = Receiver()
        server = LoopbackHTTPServer(("127.0.0.1", 0), _handler(receiver))
        receiver.port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((server, receiver, thread))
        return receiver

    yield start
    for server, receiver, thread in started:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver(make_receiver: Any) -> Receiver:
    result: Receiver = make_receiver()
    return result


def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()  # nothing listens there now
    return port


def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"the resolver was asked for {host}: literal addresses need no lookup")


# --- the service, and deliverers on a clock the test moves ------------------------------------


def callback_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, callback_allow=LOOPBACK_ALLOWED, callback_timeout=1.0)


@pytest.fixture
def svc(tmp_path: Path, s3_endpoint: str) -> Iterator[RunningService]:
    """The running API with loopback callbacks allowed and a 1 s callback timeout."""
    with running_service(callback_settings(tmp_path), s3_endpoint) as running:
        yield running


@dataclass
class Account:
    service: RunningService
    secret: str
    api: Vod2s3Client

    def finished_upload(
        self, callback: str, bucket: str = "videos", name: str = "a.mp4", drain: bool = True
    ) -> int:
        """Upload a small file with ``callback`` and run the worker until it has ended."""
        path = self.service.write_source(f"sestore1/jb/{name}", b"video bytes " + name.encode())
        upload_id = int(self.api.upload(path, bucket, "private", callback=callback)["id"])
        if drain:
            assert self.service.drain() == 1
        return upload_id


@pytest.fixture
def account(svc: RunningService, bucket: str) -> Account:
    issued = svc.add_account(CDN, "jb")
    return Account(svc, issued.secret, svc.client(issued))


@dataclass
class Delivery:
    """A deliverer sharing the service's database, whose outbox and schedule use ``clock``."""

    runtime: Runtime
    clock: FakeClock
    deliverer: Deliverer

    @property
    def outbox(self) -> CallbackOutbox:
        return self.runtime.outbox

    def record(self, upload_id: int) -> Any:
        row = self.runtime.uploads.get_any(upload_id)
        assert row is not None
        return row


def fake_time_delivery(service: RunningService, resolver: Resolver = no_dns) -> Delivery:
    """Call once the upload has ended: the clock starts on a whole second just after now (so
    what the service queued is due, and advancing by whole seconds lands exactly on the
    schedule's due times), inside any secret's grace period."""
    clock = FakeClock(float(int(time.time()) + 1))
    base = service.runtime
    runtime = Runtime(base.settings, base.engine, base.box, clock=clock)
    return Delivery(runtime, clock, runtime.deliverer(resolver=resolver))


def callback_fields(row: Any) -> tuple[str, int, int, str]:
    return (row.callback_state, row.callback_attempts, row.callback_status, row.callback_error)


def without_callback_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if not key.startswith("callback_")}


# --- 1. delivered, signed, recorded -------------------------------------------------------------


def test_completed_upload_is_delivered_signed_and_recorded(
    account: Account, receiver: Receiver
) -> None:
    upload_id = account.finished_upload(receiver.url("/hook"))
    assert account.api.get(upload_id)["callback_state"] == "pending"
    assert receiver.requests == []  # nothing goes out without a deliverer
    delivery = fake_time_delivery(account.service)

    assert delivery.deliverer.deliver_one() is True
    assert delivery.deliverer.deliver_one() is False  # nothing else is due

    [seen] = receiver.requests
    assert (seen.method, seen.path) == ("POST", "/hook")
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "vod2s3-callbacks/1"
    assert seen.headers["X-Vod2s3-Timestamp"] == str(int(delivery.clock.unix()))
    [outbox_row] = delivery.outbox.for_upload(upload_id)
    assert seen.headers["X-Vod2s3-Delivery"] == outbox_row.delivery_id
    assert outbox_row.body.encode() == seen.body  # the bytes kept for retries
    assert verify(account.secret, seen.headers, seen.body, now=delivery.clock.unix())
    assert not verify("not-the-secret", seen.headers, seen.body, now=delivery.clock.unix())
    assert seen.headers["X-Vod2s3-Signature"].count("v1=") == 1

    payload = json.loads(seen.body)
    assert set(payload) == {"status", "message", "data"}
    assert payload["status"] == "success"
    assert payload["message"] == "Successfully Uploaded to AWS"
    status_record = account.api.get(upload_id)
    assert without_callback_fields(payload["data"]) == without_callback_fields(status_record)
    for key in ("id", "state", "results", "message"):
        assert payload["data"][key] == status_record[key]
    assert payload["data"]["state"] == "completed"
    assert payload["data"]["results"]["Key"] == "a.mp4"

    assert callback_fields(delivery.record(upload_id)) == ("delivered", 1, 200, "")
    assert status_record["callback_state"] == "delivered"
    assert status_record["callback_attempts"] == 1
    assert status_record["callback_status"] == 200
    assert status_record["callback_error"] == ""


def test_upload_without_callback_queues_nothing(account: Account, receiver: Receiver) -> None:
    upload_id = account.finished_upload("")
    delivery = fake_time_delivery(account.service)
    assert delivery.outbox.for_upload(upload_id) == []
    assert delivery.deliverer.deliver_one() is False
    assert account.api.get(upload_id)["callback_state"] == "none"
    assert receiver.requests == []


# --- 2. failed and cancelled uploads --------------------------------------------------------


def test_failed_and_cancelled_uploads_send_failure(account: Account, receiver: Receiver) -> None:
    failed_id = account.finished_upload(receiver.url("/failed"), bucket="no-such-bucket")
    path = account.service.write_source("sestore1/jb/b.mp4", b"never sent")
    cancelled_id = int(
        account.api.upload(path, "videos", "private", callback=receiver.url("/cancelled"))["id"]
    )
    assert account.api.cancel(cancelled_id)["state"] == "cancelled"
    assert account.service.drain() == 0
    delivery = fake_time_delivery(account.service)

    assert delivery.deliverer.deliver_one() is True
    assert delivery.deliverer.deliver_one() is True
    assert delivery.deliverer.deliver_one() is False
    seen = {request.path: request for request in receiver.requests}
    assert sorted(seen) == ["/cancelled", "/failed"]

    failed_record = account.api.get(failed_id)
    assert failed_record["state"] == "failed"
    assert failed_record["error_code"] == "NoSuchBucket"
    failure = json.loads(seen["/failed"].body)
    assert failure["status"] == "failure"
    assert failure["message"] == failed_record["message"]
    assert "no-such-bucket" in failure["message"]
    assert failure["data"]["id"] == failed_id
    assert failure["data"]["state"] == "failed"
    assert failure["data"]["error_code"] == "NoSuchBucket"

    cancelled = json.loads(seen["/cancelled"].body)
    assert cancelled["status"] == "failure"
    assert cancelled["message"] == "Cancelled"
    assert cancelled["data"]["id"] == cancelled_id
    assert cancelled["data"]["state"] == "cancelled"

    for upload_id, request in ((failed_id, seen["/failed"]), (cancelled_id, seen["/cancelled"])):
        assert verify(account.secret, request.headers, request.body, now=delivery.clock.unix())
        assert callback_fields(delivery.record(upload_id)) == ("delivered", 1, 200, "")
    assert account.api.get(cancelled_id)["state"] == "cancelled"


# --- 3. retried on the schedule, with one delivery id -----------------------------------------


def test_fails_twice_then_succeeds_on_the_schedule(account: Account, receiver: Receiver) -> None:
    receiver.script = [500, 500]
    upload_id = account.finished_upload(receiver.url())
    delivery = fake_time_delivery(account.service)
    deliverer, clock = delivery.deliverer, delivery.clock
    sent_at = [clock.unix()]

    assert deliverer.deliver_one() is True
    assert len(receiver.requests) == 1
    assert callback_fields(delivery.record(upload_id)) == ("pending", 1, 500, "HTTP 500")

    for delay, attempt in ((RETRY_DELAYS[0], 2), (RETRY_DELAYS[1], 3)):
        assert delay in (timedelta(seconds=5), timedelta(minutes=5))
        clock.advance(delay.total_seconds() - 1)
        assert deliverer.deliver_one() is False  # one second early: not due
        assert len(receiver.requests) == attempt - 1
        clock.advance(1)
        sent_at.append(clock.unix())
        assert deliverer.deliver_one() is True
        assert len(receiver.requests) == attempt
        assert delivery.record(upload_id).callback_attempts == attempt

    assert callback_fields(delivery.record(upload_id)) == ("delivered", 3, 200, "")
    first = receiver.requests[0]
    [outbox_row] = delivery.outbox.for_upload(upload_id)
    for seen, when in zip(receiver.requests, sent_at, strict=True):
        assert seen.headers["X-Vod2s3-Delivery"] == outbox_row.delivery_id
        assert seen.body == first.body
        assert seen.headers["X-Vod2s3-Timestamp"] == str(int(when))  # a fresh signature
        assert verify(account.secret, seen.headers, seen.body, now=when)

    clock.advance(timedelta(days=2).total_seconds())
    assert deliverer.deliver_one() is False
    assert len(receiver.requests) == 3


# --- 4. a receiver that hangs past the timeout -----------------------------------------------


def test_hanging_receiver_times_out_and_is_retried(account: Account, receiver: Receiver) -> None:
    receiver.script = [HANG]
    upload_id = account.finished_upload(receiver.url())
    delivery = fake_time_delivery(account.service)

    started = time.monotonic()
    assert delivery.deliverer.deliver_one() is True
    assert time.monotonic() - started < 3.0  # the 1 s callback timeout, not the receiver
    state, attempts, status, error = callback_fields(delivery.record(upload_id))
    assert (state, attempts, status) == ("pending", 1, 0)
    assert "timed out" in error

    delivery.clock.advance(RETRY_DELAYS[0].total_seconds())
    assert delivery.deliverer.deliver_one() is True
    assert callback_fields(delivery.record(upload_id)) == ("delivered", 2, 200, "")
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body


# --- 5. down for the whole schedule --------------------------------------------------------


def test_receiver_down_for_the_whole_schedule_ends_failed(account: Account) -> None:
    upload_id = account.finished_upload(f"http://127.0.0.1:{closed_port()}/hook")
    before = account.api.get(upload_id)
    delivery = fake_time_delivery(account.service)
    deliverer, clock = delivery.deliverer, delivery.clock
    assert MAX_ATTEMPTS == 8

    for attempt, delay in enumerate(RETRY_DELAYS, start=1):
        assert deliverer.deliver_one() is True
        row = delivery.record(upload_id)
        assert callback_fields(row) == ("pending", attempt, 0, "connection refused")
        clock.advance(delay.total_seconds() - 1)
        assert deliverer.deliver_one() is False
        clock.advance(1)
    assert deliverer.deliver_one() is True  # the eighth and last attempt

    row = delivery.record(upload_id)
    assert callback_fields(row) == ("failed", 8, 0, "connection refused")
    [outbox_row] = delivery.outbox.for_upload(upload_id)
    assert (outbox_row.state, outbox_row.attempts) == ("failed", 8)
    clock.advance(timedelta(days=30).total_seconds())
    assert deliverer.deliver_one() is False

    after = account.api.get(upload_id)
    assert after["callback_state"] == "failed"
    assert after["callback_attempts"] == 8
    assert after["callback_error"] == "connection refused"
    # Delivery never changes the upload's own outcome.
    assert after["state"] == "completed"
    for key in ("state", "message", "status", "results", "error_code", "last_updated"):
        assert after[key] == before[key]


# --- 6. redirects ----------------------------------------------------------------------------


def test_redirect_is_not_followed_and_counts_as_a_failure(
    account: Account, make_receiver: Any
) -> None:
    receiver: Receiver = make_receiver()
    elsewhere: Receiver = make_receiver()
    receiver.script = [Redirect(elsewhere.url("/stolen"))]
    upload_id = account.finished_upload(receiver.url())
    delivery = fake_time_delivery(account.service)

    assert delivery.deliverer.deliver_one() is True
    assert callback_fields(delivery.record(upload_id)) == (
        "pending",
        1,
        302,
        "redirects are not followed (HTTP 302)",
    )
    assert len(receiver.requests) == 1
    assert elsewhere.requests == []


def test_a_retried_upload_supersedes_its_stale_callback(
    account: Account, receiver: Receiver, s3_client: Any
) -> None:
    """A failure callback still being retried when the customer retries the upload is
    dropped once the upload ends again: the old outcome never arrives after the new one, and
    the record describes the new delivery."""
    receiver.script = [500]
    upload_id = account.finished_upload(receiver.url(), bucket="late-bucket")
    delivery = fake_time_delivery(account.service)
    assert delivery.deliverer.deliver_one() is True
    assert callback_fields(delivery.record(upload_id)) == ("pending", 1, 500, "HTTP 500")

    s3_client.create_bucket(Bucket="late-bucket")
    assert account.api.retry(upload_id)["state"] == "queued"
    assert account.service.drain() == 1
    assert account.api.get(upload_id)["state"] == "completed"
    assert callback_fields(delivery.record(upload_id)) == ("pending", 0, 0, "")

    delivery.clock.advance(timedelta(days=2).total_seconds())  # the stale retry is long due
    for _ in range(5):
        if not delivery.deliverer.deliver_one():
            break
    stale, current = delivery.outbox.for_upload(upload_id)
    sent = [
        (json.loads(seen.body)["status"], seen.headers["X-Vod2s3-Delivery"])
        for seen in receiver.requests
    ]
    assert sent == [("failure", stale.delivery_id), ("success", current.delivery_id)]
    assert (stale.state, stale.attempts, stale.last_error) == ("failed", 1, SUPERSEDED)
    assert (current.state, current.attempts) == ("delivered", 1)
    assert callback_fields(delivery.record(upload_id)) == ("delivered", 1, 200, "")


# --- 7. crashes --------------------------------------------------------------------------------


def test_finished_but_not_delivered_is_delivered_after_a_restart(
    tmp_path: Path, s3_endpoint: str, bucket: str, receiver: Receiver
) -> None:
    settings = callback_settings(tmp_path)
    with running_service(settings, s3_endpoint) as first:
        issued = first.add_account(CDN, "jb")
        account = Account(first, issued.secret, first.client(issued))
        upload_id = account.finished_upload(receiver.url())
        assert account.api.get(upload_id)["callback_state"] == "pending"
    # The process is gone: its API stopped and its engine was disposed; no deliverer ever ran.
    assert receiver.requests == []

    restarted = Runtime.open(settings)
    try:
        deliverer = restarted.deliverer(resolver=no_dns)
        assert deliverer.deliver_one() is True
        assert deliverer.deliver_one() is False
        assert restarted.deliverer(resolver=no_dns).deliver_one() is False
        row = restarted.uploads.get_any(upload_id)
        assert row is not None
        assert row.state == "completed"
        assert callback_fields(row) == ("delivered", 1, 200, "")
        [seen] = receiver.requests
        assert verify(issued.secret, seen.headers, seen.body, now=time.time())
        assert json.loads(seen.body)["data"]["id"] == upload_id
    finally:
        restarted.close()


def test_a_dead_deliverers_claim_is_taken_over_after_its_lease(
    account: Account, receiver: Receiver
) -> None:
    upload_id = account.finished_upload(receiver.url())
    delivery = fake_time_delivery(account.service)
    lease = timedelta(seconds=60)
    # A deliverer claims the delivery, fixes its body, and dies before sending it.
    dead = delivery.outbox.claim("dead-deliverer", lease)
    assert dead is not None
    upload_row = delivery.runtime.uploads.get_any(upload_id)
    body = callback_body(upload_row)
    assert delivery.outbox.fix_body(dead.id, "dead-deliverer", body)

    assert delivery.deliverer.deliver_one() is False  # its lease still holds
    delivery.clock.advance(lease.total_seconds())
    assert delivery.deliverer.deliver_one() is False  # not expired until after its end
    assert receiver.requests == []
    delivery.clock.advance(1)
    assert delivery.deliverer.deliver_one() is True

    [seen] = receiver.requests
    assert seen.headers["X-Vod2s3-Delivery"] == dead.delivery_id
    assert seen.body == body.encode()
    assert verify(account.secret, seen.headers, seen.body, now=delivery.clock.unix())
    # The claim that died counts as an attempt.
    assert callback_fields(delivery.record(upload_id)) == ("delivered", 2, 200, "")
    # The dead deliverer, were it to wake up, can no longer write anything.
    assert delivery.outbox.give_up(dead.id, "dead-deliverer", 0, "late") is False
    assert callback_fields(delivery.record(upload_id)) == ("delivered", 2, 200, "")
    assert delivery.deliverer.deliver_one() is False
    assert len(receiver.requests) == 1


# --- 8. secret rotation ----------------------------------------------------------------------


def test_rotation_signs_with_both_secrets_during_the_grace_period(
    account: Account, receiver: Receiver
) -> None:
    receiver.script = [500]
    upload_id = account.finished_upload(receiver.url())
    old_secret = account.secret
    new_secret = account.service.runtime.accounts.rotate_secret(CDN)  # 24 h grace
    delivery = fake_time_delivery(account.service)

    assert delivery.deliverer.deliver_one() is True
    during = receiver.requests[0]
    timestamp = int(delivery.clock.unix())
    signatures = during.headers["X-Vod2s3-Signature"].split()
    assert signatures == [
        f"v1={sign(new_secret, timestamp, during.body)}",
        f"v1={sign(old_secret, timestamp, during.body)}",
    ]
    for secret in (old_secret, new_secret):
        assert verify(secret, during.headers, during.body, now=delivery.clock.unix())
    assert not verify("neither", during.headers, during.body, now=delivery.clock.unix())

    # The retry goes after the grace period: only the new secret signs it.
    delivery.clock.advance(timedelta(hours=25).total_seconds())
    assert delivery.deliverer.deliver_one() is True
    after = receiver.requests[1]
    assert after.headers["X-Vod2s3-Signature"].count("v1=") == 1
    assert verify(new_secret, after.headers, after.body, now=delivery.clock.unix())
    assert not verify(old_secret, after.headers, after.body, now=delivery.clock.unix())
    assert callback_fields(delivery.record(upload_id)) == ("delivered", 2, 200, "")


# --- 9. SSRF -----------------------------------------------------------------------------------


def test_name_resolving_to_a_private_address_is_refused_at_delivery(
    account: Account, receiver: Receiver, network_guard: list[str]
) -> None:
    dns = Dns({"private.test": ["10.0.0.1"]})
    upload_id = account.finished_upload(f"http://private.test:{receiver.port}/hook")
    delivery = fake_time_delivery(account.service, resolver=dns)

    assert delivery.deliverer.deliver_one() is True
    assert dns.asked == ["private.test"]
    assert callback_fields(delivery.record(upload_id)) == (
        "pending",
        1,
        0,
        "the callback host private.test resolves to 10.0.0.1, a private address (RFC 1918)",
    )
    assert receiver.requests == []
    assert network_guard == []
    assert account.api.get(upload_id)["state"] == "completed"


REFUSED_AT_UPLOAD = [
    ("http://10.0.0.1/hook", "the callback host 10.0.0.1 is a private address (RFC 1918)"),
    ("http://2130706433/", "the callback host 2130706433 is 127.0.0.1, a loopback address"),
    ("http://[::1]/x", "the callback host ::1 is a loopback address"),
    ("0x7f.1/cb", "the callback host 0x7f.1 is 127.0.0.1, a loopback address"),
    (
        "https://169.254.169.254/latest/meta-data",
        "the callback host 169.254.169.254 is the cloud metadata address (link-local)",
    ),
    ("http://localhost:8080/", "the callback host localhost is the local machine (loopback)"),
]


def test_literal_private_callbacks_are_refused_at_upload(
    service: RunningService, bucket: str, network_guard: list[str]
) -> None:
    """No allow-list: every literal non-public destination is a 400 and nothing is queued."""
    api = service.client(service.add_account(CDN, "jb"))
    path = service.write_source("sestore1/jb/a.mp4", b"video")
    for url, reason in REFUSED_AT_UPLOAD:
        with pytest.raises(ClientError) as refused:
            api.upload(path, bucket, "private", callback=url)
        assert refused.value.http_status == 400, url
        assert refused.value.message == f"Field 'callback' is refused: {reason}"
    assert api.status() == []
    assert service.drain() == 0
    assert network_guard == []


def test_the_allow_list_covers_only_its_networks_at_upload(account: Account) -> None:
    path = account.service.write_source("sestore1/jb/a.mp4", b"video")
    for url in ("http://10.0.0.1/hook", "http://[::1]/x"):
        with pytest.raises(ClientError) as refused:
            account.api.upload(path, "videos", "private", callback=url)
        assert refused.value.http_status == 400
        assert "refused" in refused.value.message
    assert account.api.status() == []
    accepted = account.api.upload(path, "videos", "private", callback="http://2130706433:9/")
    assert accepted["callback"] == "http://2130706433:9/"


# --- the loop that serve runs -------------------------------------------------------------------


def test_the_delivery_loop_delivers_while_running(account: Account, receiver: Receiver) -> None:
    deliverer = account.service.runtime.deliverer(resolver=no_dns)
    stopping = threading.Event()
    loop = threading.Thread(target=deliverer.run, args=(stopping,), daemon=True)
    loop.start()
    try:
        upload_id = account.finished_upload(receiver.url())
        deadline = time.monotonic() + 10
        while account.api.get(upload_id)["callback_state"] not in FINAL_STATES:
            assert time.monotonic() < deadline, "the loop did not deliver"
            time.sleep(0.05)
    finally:
        stopping.set()
        loop.join(5)
    assert not loop.is_alive()
    assert account.api.get(upload_id)["callback_state"] == "delivered"
    assert len(receiver.requests) == 1
