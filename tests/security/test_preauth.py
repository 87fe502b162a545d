"""Work anyone can make the server do before authenticating, over real HTTP (issue 12,
items 1 and 5): a limit per client address, bodies built to be expensive, and the timing
of an unknown key against a known key with a wrong signature."""

from __future__ import annotations

import ipaddress
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.envelopes import envelope_of
from tests.helpers import FakeClock
from tests.security.support import post_json, request_object, sign, signed_text
from tests.service import RunningService, make_settings, running_service
from vod2s3.api.auth import authenticate
from vod2s3.api.body import MAX_VALUES, parse_request_object
from vod2s3.errors import Unauthorized
from vod2s3.jsonenc import php_json_encode

PROXY = (ipaddress.ip_network("127.0.0.1/32"),)


def unknown_key_request(extra: object = None) -> str:
    obj = {
        "command": "aws.status",
        "api_key": "0" * 40,
        "cdn": 1,
        "timestamp": int(time.time()),
        "x": extra,
        "signature": "AAAA",
    }
    return json.dumps(obj)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def behind_proxy(tmp_path: Path, s3_endpoint: str, clock: FakeClock) -> Iterator[RunningService]:
    settings = make_settings(
        tmp_path, address_rate_limit=2.0, address_rate_burst=3, trusted_proxies=PROXY
    )
    with running_service(settings, s3_endpoint, clock=clock) as running:
        yield running


def from_client(http: httpx.Client, svc: RunningService, forwarded_for: str) -> httpx.Response:
    return http.post(
        svc.url,
        content=unknown_key_request().encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
    )


def test_each_client_address_has_its_own_budget_before_authentication(
    behind_proxy: RunningService, clock: FakeClock, http: httpx.Client
) -> None:
    svc = behind_proxy
    customer = svc.client(svc.add_account(158, "jb"))
    # A burst of three unauthenticated requests from one client behind the proxy...
    for _ in range(3):
        assert from_client(http, svc, "198.51.100.7").status_code == 401
    over = from_client(http, svc, "198.51.100.7")

    assert over.status_code == 429
    assert over.headers["Retry-After"] == "1"
    assert "Too many requests from your address" in envelope_of(over)["message"]
    # ...does not hold back another client, nor one that comes without the proxy.
    assert from_client(http, svc, "198.51.100.8").status_code == 401
    assert customer.status() == []
    # Addresses the client wrote itself, left of what the proxy added, change nothing.
    assert from_client(http, svc, "203.0.113.1, 198.51.100.7").status_code == 429
    # An IPv6 client counts by its /64: another address of its block shares the budget.
    for _ in range(3):
        assert from_client(http, svc, "2001:db8:1:2::1").status_code == 401
    assert from_client(http, svc, "2001:db8:1:2::ffff").status_code == 429
    assert from_client(http, svc, "2001:db8:1:3::1").status_code == 401

    clock.advance(0.5)  # one token back at 2 per second
    assert from_client(http, svc, "198.51.100.7").status_code == 401
    assert from_client(http, svc, "198.51.100.7").status_code == 429


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    tmp_path: Path, s3_endpoint: str, clock: FakeClock, http: httpx.Client
) -> None:
    settings = make_settings(tmp_path, address_rate_limit=2.0, address_rate_burst=3)
    with running_service(settings, s3_endpoint, clock=clock) as svc:
        # Without VOD2S3_TRUSTED_PROXIES the peer (127.0.0.1) is the client, whatever it
        # claims to be forwarding for.
        answers = [from_client(http, svc, f"198.51.100.{n}").status_code for n in range(4)]
    assert answers == [401, 401, 401, 429]


def test_the_probes_nested_body_is_refused_after_one_pass(
    behind_proxy: RunningService, http: httpx.Client
) -> None:
    """The probe's body: 60 KB of 1,000 lists nested 30 deep. It is refused for its size in
    values, before any signature work; a body of the same shape within the limit is
    checked as usual (and fails only its signature)."""
    nested = "[" * 29 + "1" + "]" * 29
    probe = unknown_key_request().replace('"x": null', '"x": [' + ",".join([nested] * 1000) + "]")
    assert len(probe) > 60_000

    response = post_json(http, behind_proxy.url, probe)

    assert response.status_code == 400
    assert f"more than {MAX_VALUES} values" in envelope_of(response)["message"]
    within = unknown_key_request([[[[1]]]] * 10)
    assert post_json(http, behind_proxy.url, within).status_code == 401


def test_a_request_at_the_value_limit_still_works(
    behind_proxy: RunningService, http: httpx.Client
) -> None:
    svc = behind_proxy
    issued = svc.add_account(158, "jb")
    obj = request_object(issued, "aws.status")
    # Unknown fields are ignored (SPEC §2), up to the limit of values in all: the object,
    # each member's key and value (with "padding" and "signature"), the padding's elements.
    values_besides_padding = 1 + 2 * (len(obj) + 2)
    obj["padding"] = list(range(MAX_VALUES - values_besides_padding))
    text = php_json_encode(sign(obj, issued.secret))
    assert parse_request_object(text)  # within the limit

    response = post_json(http, svc.url, text)

    assert response.status_code == 200, envelope_of(response)
    obj["padding"].append(0)
    too_many = php_json_encode(sign(obj, issued.secret))
    assert post_json(http, svc.url, too_many).status_code == 400


def test_an_unknown_key_takes_as_long_as_a_known_key_with_a_wrong_signature(
    behind_proxy: RunningService,
) -> None:
    """Issue 12 item 5: the two ways to fail authentication cannot be told apart by their
    time. Medians of many interleaved samples of the server's own check, with a generous
    bound: a difference in the work done (a skipped decoy, a database read on one path
    only) shows as a factor, noise does not."""
    svc = behind_proxy
    issued = svc.add_account(158, "jb")
    services = svc.runtime.services(None)
    known = json.loads(signed_text(issued, "aws.status", limit=25))
    known["signature"] = "A" * 43 + "="
    unknown = dict(known, api_key="f" * len(issued.api_key))
    samples: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(400):
        for name, obj in (("known", known), ("unknown", unknown)):
            raw = json.dumps(obj)
            started = time.perf_counter()
            with pytest.raises(Unauthorized):
                authenticate(services, raw, obj)
            samples[name].append(time.perf_counter() - started)
    ratio = statistics.median(samples["unknown"]) / statistics.median(samples["known"])
    assert 0.67 < ratio < 1.5, samples


def test_handle_time_is_given_in_whole_milliseconds(
    behind_proxy: RunningService, http: httpx.Client
) -> None:
    response = post_json(http, behind_proxy.url, unknown_key_request())
    handle_time = envelope_of(response)["handle_time"]
    assert round(handle_time, 3) == handle_time
