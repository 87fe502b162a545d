"""Broken authentication (OWASP API2:2023), attacked over real HTTP.

The server runs on a FakeClock so the clock window and the rotation grace period are crossed
exactly, without sleeping. Existing suites check that each bad credential gets the 401 message
(tests/integration/test_protocol.py); here every wrong answer must be indistinguishable from
every other, for every command, and no refused request may queue anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.envelopes import ok, refused
from tests.helpers import FakeClock
from tests.security.support import (
    post_json,
    request_object,
    serving,
    sign,
    upload_count,
    without_time,
)
from tests.service import RunningService, make_settings
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.auth import BAD_CREDENTIALS
from vod2s3.api.signature import compute_signature
from vod2s3.jsonenc import php_json_encode

SOURCE = "clip.mp4"
_cdns = itertools.count(3000)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def svc(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, clock: FakeClock
) -> Iterator[RunningService]:
    settings = make_settings(tmp_path_factory.mktemp("authentication"))
    with serving(settings, moto_endpoint, clock) as running:
        yield running


def new_account(svc: RunningService) -> IssuedCredentials:
    cdn = next(_cdns)
    issued = svc.add_account(cdn, f"user{cdn}")
    svc.write_source(f"sestore1/user{cdn}/{SOURCE}", b"video of " + str(cdn).encode())
    return issued


@pytest.fixture(scope="module")
def alice(svc: RunningService) -> IssuedCredentials:
    return new_account(svc)


@pytest.fixture(scope="module")
def bob(svc: RunningService) -> IssuedCredentials:
    return new_account(svc)


def fields_for(command: str, owner: IssuedCredentials) -> dict[str, Any]:
    if command == "aws.upload":
        return {
            "path": f"sestore1/{owner.storage_user}/{SOURCE}",
            "bucket": "videos",
            "acl": "private",
        }
    if command in ("aws.cancel", "aws.retry"):
        return {"id": 1}
    return {}


def obj_for(
    clock: FakeClock, issued: IssuedCredentials, command: str, **fields: Any
) -> dict[str, Any]:
    return request_object(
        issued, command, clock.unix(), **{**fields_for(command, issued), **fields}
    )


def text_signed_with(obj: dict[str, Any], secret: str) -> str:
    return php_json_encode(sign(obj, secret))


COMMANDS = ("aws.status", "aws.upload", "aws.cancel", "aws.retry")


def test_every_wrong_credential_gets_the_same_answer_for_every_command(
    svc: RunningService,
    http: httpx.Client,
    clock: FakeClock,
    alice: IssuedCredentials,
    bob: IssuedCredentials,
) -> None:
    """Unknown key, wrong secret, a cdn that is not the key's, an unknown cdn, a disabled
    account's key with a wrong secret, guessed secrets: one status, one body (apart from
    handle_time), one set of headers. Nothing tells a caller which keys or cdns exist."""
    disabled = new_account(svc)
    svc.runtime.accounts.set_disabled(disabled.cdn, True)
    before = upload_count(svc)
    observed: dict[str, Any] = {}
    for command in COMMANDS:
        base = obj_for(clock, alice, command)
        cases = {
            "unknown api_key": text_signed_with(
                {**base, "api_key": "NOSUCHKEY" + "0" * 23}, alice.secret
            ),
            "wrong secret": text_signed_with(base, "f" * 64),
            "key of alice, cdn of bob, alice's secret": text_signed_with(
                {**base, "cdn": bob.cdn}, alice.secret
            ),
            "key of alice, cdn of bob, bob's secret": text_signed_with(
                {**base, "cdn": bob.cdn}, bob.secret
            ),
            "key of bob, cdn of alice, alice's secret": text_signed_with(
                {**base, "api_key": bob.api_key}, alice.secret
            ),
            "key of alice, cdn nobody has": text_signed_with({**base, "cdn": 987654}, alice.secret),
            "cdn as a string of bob's": text_signed_with(
                {**base, "cdn": str(bob.cdn)}, alice.secret
            ),
            "disabled account, wrong secret": text_signed_with(
                obj_for(clock, disabled, command), "f" * 64
            ),
            "empty secret": text_signed_with(base, ""),
            "api_key used as the secret": text_signed_with(base, alice.api_key),
            "secret of another account": text_signed_with(base, bob.secret),
        }
        for case, text in cases.items():
            observed[f"{command}: {case}"] = without_time(post_json(http, svc.url, text))

    distinct = {repr(answer) for answer in observed.values()}
    assert len(distinct) == 1, observed
    status, body, _headers = next(iter(observed.values()))
    assert status == 401
    # One code too: 0001 for an unknown key, another account's key and a wrong signature.
    assert body == {"status": "failure", "code": "0001", "message": BAD_CREDENTIALS, "data": None}
    assert upload_count(svc) == before


@pytest.mark.parametrize("secret_of", ["alice", "bob"])
@pytest.mark.parametrize("folder_of", ["alice", "bob"])
def test_upload_with_cdn_and_key_of_two_accounts_queues_nothing(
    svc: RunningService,
    http: httpx.Client,
    clock: FakeClock,
    alice: IssuedCredentials,
    bob: IssuedCredentials,
    secret_of: str,
    folder_of: str,
) -> None:
    accounts = {"alice": alice, "bob": bob}
    obj = obj_for(clock, alice, "aws.upload", cdn=bob.cdn)
    obj["path"] = f"sestore1/{accounts[folder_of].storage_user}/{SOURCE}"
    before = (upload_count(svc, alice), upload_count(svc, bob))

    response = post_json(http, svc.url, text_signed_with(obj, accounts[secret_of].secret))

    assert refused(response, 401) == BAD_CREDENTIALS
    assert (upload_count(svc, alice), upload_count(svc, bob)) == before


def test_disabled_account_is_refused_for_every_command_and_nothing_changes(
    svc: RunningService, http: httpx.Client, clock: FakeClock
) -> None:
    victim = new_account(svc)
    queued = ok(
        post_json(
            http, svc.url, text_signed_with(obj_for(clock, victim, "aws.upload"), victim.secret)
        )
    )
    upload_id = queued["data"]["id"]
    svc.write_source(f"sestore1/{victim.storage_user}/other.mp4", b"more")
    svc.runtime.accounts.set_disabled(victim.cdn, True)

    for command, fields in [
        ("aws.status", {}),
        ("aws.status", {"id": upload_id}),
        ("aws.upload", {"path": f"sestore1/{victim.storage_user}/other.mp4"}),
        ("aws.cancel", {"id": upload_id}),
        ("aws.retry", {"id": upload_id}),
    ]:
        text = text_signed_with(obj_for(clock, victim, command, **fields), victim.secret)
        refused(post_json(http, svc.url, text), 403, "disabled")

    assert upload_count(svc, victim) == 1
    row = svc.runtime.uploads.get(svc.runtime.accounts.get(victim.cdn).id, upload_id)
    assert row is not None
    assert row.state == "queued"  # the refused cancel did not happen

    svc.runtime.accounts.set_disabled(victim.cdn, False)
    text = text_signed_with(obj_for(clock, victim, "aws.status", id=upload_id), victim.secret)
    assert ok(post_json(http, svc.url, text))["data"]["state"] == "queued"


def test_rotated_out_secret_stops_working_when_its_grace_period_ends(
    svc: RunningService, http: httpx.Client, clock: FakeClock
) -> None:
    issued = new_account(svc)
    old = issued.secret
    new = svc.runtime.accounts.rotate_secret(issued.cdn, grace=timedelta(seconds=1))

    def answer(secret: str) -> httpx.Response:
        return post_json(
            http, svc.url, text_signed_with(obj_for(clock, issued, "aws.status"), secret)
        )

    ok(answer(old))
    ok(answer(new))
    clock.advance(0.5)
    ok(answer(old))

    clock.advance(0.6)  # 1.1 s after the rotation
    stale = answer(old)
    assert refused(stale, 401) == BAD_CREDENTIALS
    unknown = post_json(
        http,
        svc.url,
        text_signed_with(obj_for(clock, issued, "aws.status", api_key="NOSUCHKEY" + "0" * 23), old),
    )
    assert without_time(stale) == without_time(unknown)  # an expired secret looks like any other
    ok(answer(new))

    # A rotated-out secret cannot queue an upload either.
    before = upload_count(svc, issued)
    upload = text_signed_with(obj_for(clock, issued, "aws.upload"), old)
    assert refused(post_json(http, svc.url, upload), 401) == BAD_CREDENTIALS
    assert upload_count(svc, issued) == before


def test_a_second_rotation_ends_the_first_secret_at_once(
    svc: RunningService, http: httpx.Client, clock: FakeClock
) -> None:
    """At most two secrets are ever valid: the current one and the one it replaced."""
    issued = new_account(svc)
    second = svc.runtime.accounts.rotate_secret(issued.cdn, grace=timedelta(hours=24))
    third = svc.runtime.accounts.rotate_secret(issued.cdn, grace=timedelta(hours=24))

    def answer(secret: str) -> httpx.Response:
        return post_json(
            http, svc.url, text_signed_with(obj_for(clock, issued, "aws.status"), secret)
        )

    assert refused(answer(issued.secret), 401) == BAD_CREDENTIALS
    ok(answer(second))
    ok(answer(third))


def test_old_request_replayed_outside_the_clock_window_is_refused(
    svc: RunningService, http: httpx.Client, clock: FakeClock
) -> None:
    issued = new_account(svc)
    captured_upload = text_signed_with(obj_for(clock, issued, "aws.upload"), issued.secret)
    captured_status = text_signed_with(obj_for(clock, issued, "aws.status"), issued.secret)
    first = ok(post_json(http, svc.url, captured_upload))["data"]

    clock.advance(299)  # still inside: a replay, answered with the same record
    assert ok(post_json(http, svc.url, captured_upload))["data"]["id"] == first["id"]

    clock.advance(2)  # 301 s after signing
    for captured in (captured_upload, captured_status):
        refused(post_json(http, svc.url, captured), 401, "'timestamp'", "behind")
    assert upload_count(svc, issued) == 1

    # The same request re-signed now is accepted: only the stale one is refused.
    fresh = text_signed_with(obj_for(clock, issued, "aws.status"), issued.secret)
    assert [r["id"] for r in ok(post_json(http, svc.url, fresh))["data"]] == [first["id"]]


def _variants(right: str, text: str, secret: str, api_key: str) -> dict[str, Any]:
    raw = base64.b64decode(right)
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256)
    candidates: dict[str, Any] = {
        "number": 12345,
        "zero": 0,
        "float": 1.5,
        "true": True,
        "false": False,
        "empty list": [],
        "right one in a list": [right],
        "right one in an object": {"signature": right},
        "trailing newline": right + "\n",
        "leading space": " " + right,
        "padding stripped": right.rstrip("="),
        "url-safe alphabet": base64.urlsafe_b64encode(raw).decode(),
        "lower case": right.lower(),
        "hex digest": mac.hexdigest(),
        "base64 of the hex digest": base64.b64encode(mac.hexdigest().encode()).decode(),
        "truncated": right[:22],
        "right one twice": right + right,
        "non-ASCII prefix": "\u00e9" + right,
        "HMAC-SHA1": base64.b64encode(
            hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
        ).decode(),
        "plain SHA-256, no key": base64.b64encode(hashlib.sha256(text.encode()).digest()).decode(),
        "empty secret": compute_signature("", text),
        "api_key as the secret": compute_signature(api_key, text),
        "over the empty string": compute_signature(secret, ""),
        "over an empty object": compute_signature(secret, "{}"),
    }
    # A transformation that happens to leave this signature unchanged is no attack.
    return {name: value for name, value in candidates.items() if value != right}


def test_signature_forgeries_and_wrong_types_are_refused(
    svc: RunningService, http: httpx.Client, clock: FakeClock
) -> None:
    issued = new_account(svc)
    obj = obj_for(clock, issued, "aws.upload")
    text = php_json_encode(obj)
    right = compute_signature(issued.secret, text)
    for name, value in _variants(right, text, issued.secret, issued.api_key).items():
        response = post_json(http, svc.url, php_json_encode({**obj, "signature": value}))
        assert response.status_code == 401, name
        assert refused(response, 401) == BAD_CREDENTIALS, name
        assert right not in response.text, name  # the expected signature is never echoed
    assert upload_count(svc, issued) == 0


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("absent", "Field 'signature' is required"),
        ("null", "Field 'signature' is required"),
        ("empty", "Field 'signature' is required"),
        ("capitalised key", "Field 'signature' is required"),
        ("two signature members", "the key 'signature' twice"),
    ],
)
def test_stripped_or_doubled_signature_is_refused(
    svc: RunningService, http: httpx.Client, clock: FakeClock, case: str, expected: str
) -> None:
    issued = new_account(svc)
    obj = obj_for(clock, issued, "aws.upload")
    right = compute_signature(issued.secret, php_json_encode(obj))
    if case == "absent":
        body = php_json_encode(obj)
    elif case == "null":
        body = php_json_encode({**obj, "signature": None})
    elif case == "empty":
        body = php_json_encode({**obj, "signature": ""})
    elif case == "capitalised key":
        body = php_json_encode({**obj, "Signature": right})
    else:
        body = php_json_encode({**obj, "signature": right})[:-1] + ',"signature":"x"}'
    refused(post_json(http, svc.url, body), 400, expected)
    assert upload_count(svc, issued) == 0
