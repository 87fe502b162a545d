"""Property-based attacks on the protocol layer over real HTTP (one server for the module).

1. Arbitrary raw bodies with arbitrary content types: never a 500, always the JSON envelope.
2. Generated request objects — real and fake commands, every field absent, right or junk of
   any JSON type (nested, huge numbers, unicode, null), signed right, signed wrong or not at
   all: never a 500, and an upload is queued only by a correctly signed aws.upload that
   succeeded. Another account's rows never change.
3. Afterwards the server still answers a valid request.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.envelopes import LEAK_MARKERS, envelope_of, ok
from tests.security.support import compact, post_json, signed_text, upload_count
from tests.service import RunningService, make_settings, running_service
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.signature import compute_signature
from vod2s3.jsonenc import php_json_encode

COMMANDS = ("aws.upload", "aws.status", "aws.cancel", "aws.retry")
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[RunningService]:
    settings_ = make_settings(tmp_path_factory.mktemp("fuzz"))
    with running_service(settings_, moto_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def fuzzer(svc: RunningService) -> IssuedCredentials:
    issued = svc.add_account(7001, "fuzzer")
    for name in ("a.mp4", "b/c.mp4"):
        svc.write_source(f"sestore1/fuzzer/{name}", b"fuzz video")
    return issued


@pytest.fixture(scope="module")
def victim(svc: RunningService, http: httpx.Client) -> IssuedCredentials:
    issued = svc.add_account(7002, "victim")
    path = svc.write_source("sestore1/victim/v.mp4", b"victim video")
    ok(
        post_json(
            http,
            svc.url,
            signed_text(issued, "aws.upload", path=path, bucket="videos", acl="private"),
        )
    )
    return issued


def victim_rows(http: httpx.Client, svc: RunningService, victim: IssuedCredentials) -> Any:
    return ok(post_json(http, svc.url, signed_text(victim, "aws.status", limit=1000)))["data"]


# -- strategies ---------------------------------------------------------------------------------

text = st.text(max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.sampled_from([10**18, -(10**18), 2**63, 2**64, 10**308, 10**400, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
    | st.sampled_from(["", " ", "\u202e", "\u00e9", "\U0001f600", "../..", "%2e%2e", "\\"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=XyZ",
        "text/plain",
        "application/xml",
        "*/*",
        "application/json; boundary=--",
    ]
) | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    # h11 refuses to send a header value with surrounding spaces: that is the client, not us.
    lambda value: value.strip() or None
)


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["binary", "text", "json", "mutated json", "form", "multipart"]))
    if kind == "binary":
        return draw(st.binary(max_size=2000))
    if kind == "text":
        return draw(st.text(max_size=500)).encode("utf-8", "surrogatepass")
    dumped = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))
    data = dumped.encode("utf-8", "surrogatepass")
    if kind == "mutated json":
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(max_size=4)) + data[at + draw(st.integers(0, 3)) :]
    elif kind == "form":
        data = b"json=" + quote(data).encode() + draw(st.sampled_from([b"", b"&json=x", b"&a"]))
    elif kind == "multipart":
        data = (
            b'--XyZ\r\nContent-Disposition: form-data; name="json"'
            + draw(st.sampled_from([b"", b'; filename="f"']))
            + b"\r\n\r\n"
            + data
            + draw(st.sampled_from([b"\r\n--XyZ--\r\n", b"", b"\r\n--XyZ"]))
        )
    return data


def assert_envelope(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code != 500, response.text
    assert 200 <= response.status_code < 500, response.text
    body = envelope_of(response)
    for marker in LEAK_MARKERS:
        assert marker not in response.text
    if body["status"] == "failure":
        assert response.status_code >= 400
        assert body["data"] is None
    return body


# -- 1. raw bodies -----------------------------------------------------------------------------


@FUZZ
@given(body=raw_bodies(), content_type=CONTENT_TYPES)
def test_raw_bodies_never_break_the_envelope(
    svc: RunningService, http: httpx.Client, body: bytes, content_type: str | None
) -> None:
    before = upload_count(svc)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = http.post(svc.url, content=body, headers=headers)
    envelope = assert_envelope(response)
    assert envelope["status"] == "failure"  # nothing unsigned can succeed
    assert upload_count(svc) == before


# -- 2. generated request objects ---------------------------------------------------------------


@st.composite
def requests(
    draw: st.DrawFn, fuzzer: IssuedCredentials, victim: IssuedCredentials
) -> dict[str, Any]:
    def field(right: list[Any], wrong: list[Any], weights: tuple[int, int, int]) -> Any:
        """A right value, a plausible wrong one, absent (Ellipsis), or junk of any JSON type,
        with ``weights`` the percentages of the first three."""
        roll = draw(st.integers(0, 99))
        if roll < weights[0]:
            return draw(st.sampled_from(right))
        if roll < weights[0] + weights[1]:
            return draw(st.sampled_from(wrong))
        if roll < sum(weights):
            return ...
        return draw(json_values)

    now = int(time.time())
    core = (90, 5, 2)
    obj: dict[str, Any] = {
        "command": field(list(COMMANDS), ["aws.delete", "AWS.UPLOAD", "aws.upload ", ""], core),
        "api_key": field([fuzzer.api_key], [victim.api_key, fuzzer.api_key.lower()], core),
        "timestamp": field([now, str(now), f" {now} "], [now - 400, now + 400, 1.5], core),
        "cdn": field([fuzzer.cdn, str(fuzzer.cdn)], [victim.cdn, 0, True], core),
        "path": field(
            ["sestore1/fuzzer/a.mp4", "sestore1/fuzzer/b/c.mp4"],
            ["sestore1/victim/v.mp4", "sestore1/fuzzer/missing.mp4", "sestore1/fuzzer/b"],
            core,
        ),
        "bucket": field(["videos"], ["Bad_Bucket", "a"], core),
        "acl": field(["private", "public-read"], ["PRIVATE", "public"], core),
    }
    optional: dict[str, tuple[list[Any], list[Any]]] = {
        "id": ([1, "1", 2], [0, -1, "x"]),
        "limit": ([1, 1000, "5"], [0, 1001]),
        "offset": ([0, 3], [-1, 10**9 + 1]),
        "state": (["queued", "failed"], ["nope"]),
        "metadata": ([{}, [], {"title": "x"}, '{"a":"b"}'], ["[[[[1]]]]", {"a b": "c"}, 5]),
        "callback": (["", "http://example.com/cb"], ["ftp://x", "http://127.0.0.1/"]),
        "destination_path": (["x.mp4", "/y.mp4"], ["/", "a\u0000b"]),
        "storage_class": (["STANDARD", "GLACIER"], ["cold"]),
        "server_side_encryption": (["AES256"], ["des"]),
        "sse_kms_key_id": ([""], ["key"]),
        "content_type": (["video/mp4"], ["not a type"]),
    }
    for name, (right, wrong) in optional.items():
        obj[name] = field(right, wrong, (8, 4, 85))
    if draw(st.booleans()):
        obj[draw(text)] = draw(json_values)
    return {name: value for name, value in obj.items() if value is not ...}


def encode(obj: dict[str, Any], style: str) -> str:
    if style == "php":
        try:
            return php_json_encode(obj)
        except ValueError:  # a number PHP could not hold: fall back to a compact encoding
            pass
    return compact(obj)


@st.composite
def signed_requests(
    draw: st.DrawFn, fuzzer: IssuedCredentials, victim: IssuedCredentials
) -> tuple[str, bool, str, str]:
    """(the JSON text to send, whether it is correctly signed, its command, its body form)."""
    obj = draw(requests(fuzzer, victim))
    mode = draw(st.sampled_from(["php", "compact"] * 4 + ["wrong", "victim", "none", "junk"]))
    style = "php" if mode == "php" else "compact"
    text_ = encode(obj, style)
    right = mode in ("php", "compact")
    if mode in ("php", "compact"):
        obj["signature"] = compute_signature(fuzzer.secret, text_)
    elif mode == "wrong":
        obj["signature"] = compute_signature("0" * 64, text_)
    elif mode == "victim":
        obj["signature"] = compute_signature(victim.secret, text_)
    elif mode == "junk":
        obj["signature"] = draw(json_values)
    form = draw(st.sampled_from(["json", "form", "multipart"]))
    command = obj.get("command")
    return encode(obj, style), right, command if isinstance(command, str) else "", form


def test_fuzz_setup_can_queue(
    svc: RunningService, http: httpx.Client, fuzzer: IssuedCredentials
) -> None:
    """The oracle below is only meaningful if a right request does queue on this server."""
    before = upload_count(svc, fuzzer)
    text_ = signed_text(
        fuzzer, "aws.upload", path="sestore1/fuzzer/a.mp4", bucket="videos", acl="private"
    )
    ok(post_json(http, svc.url, text_))
    assert upload_count(svc, fuzzer) == before + 1


@pytest.fixture(scope="module")
def outcomes() -> dict[str, int]:
    return {}


def test_generated_requests_never_500_and_only_valid_uploads_queue(
    svc: RunningService,
    http: httpx.Client,
    fuzzer: IssuedCredentials,
    victim: IssuedCredentials,
    outcomes: dict[str, int],
) -> None:
    victim_before = victim_rows(http, svc, victim)

    @settings(FUZZ, max_examples=300)
    @given(case=signed_requests(fuzzer, victim))
    def attack(case: tuple[str, bool, str, str]) -> None:
        body, right, command, form = case
        before = upload_count(svc)
        if form == "json":
            response = post_json(http, svc.url, body)
        elif form == "form":
            response = http.post(svc.url, data={"json": body})
        else:
            response = http.post(svc.url, files={"json": (None, body)})
        envelope = assert_envelope(response)
        added = upload_count(svc) - before
        if envelope["status"] == "success":
            assert right, envelope
            assert command in COMMANDS
        queued = envelope["status"] == "success" and command == "aws.upload"
        assert added in ((0, 1) if queued else (0,)), (added, envelope["message"])
        key = f"{response.status_code} {command if command in COMMANDS else 'other'}"
        outcomes[key] = outcomes.get(key, 0) + 1
        if queued:
            assert envelope["data"]["cdn_id"] == fuzzer.cdn

    attack()
    assert victim_rows(http, svc, victim) == victim_before
    # The generator reached the command handlers, not only the refusals.
    assert any(k.startswith("200 aws.upload") for k in outcomes), outcomes
    assert any(k.startswith("200 aws.status") for k in outcomes), outcomes
    assert any(k.startswith("400 ") for k in outcomes), outcomes
    assert any(k.startswith("401 ") for k in outcomes), outcomes


# -- the inputs that did cause a 500 before they were fixed ----------------------------------

FOUND_500S: dict[str, tuple[str, dict[str, Any], str]] = {
    # int - float in the clock check: OverflowError before the key was even looked up.
    "timestamp of 400 digits": ("aws.status", {"timestamp": 10**400}, "'timestamp'"),
    # SQLite cannot bind an integer past 64 bits: OverflowError in every id lookup.
    "status id of 30 digits": ("aws.status", {"id": 10**30}, "'id'"),
    "cancel id of 2**64": ("aws.cancel", {"id": 2**64}, "'id'"),
    "retry id of 20 digits": ("aws.retry", {"id": 10**19}, "'id'"),
    # The JSON-string form of metadata is parsed again, past the request's own guards:
    "metadata string with a 5000-digit number": (
        "aws.upload",
        {"metadata": '{"a":' + "1" * 5000 + "}"},
        "'metadata'",
    ),
    "metadata string nested 20000 deep": (
        "aws.upload",
        {"metadata": "[" * 20000 + "]" * 20000},
        "'metadata'",
    ),
    "metadata string with a lone surrogate": (
        "aws.upload",
        {"metadata": '{"title":"\\ud800"}'},
        "unpaired surrogate",
    ),
}


@pytest.mark.parametrize("case", FOUND_500S, ids=list(FOUND_500S))
def test_inputs_that_once_caused_a_500_are_a_400(
    svc: RunningService, http: httpx.Client, fuzzer: IssuedCredentials, case: str
) -> None:
    command, fields, expected = FOUND_500S[case]
    obj: dict[str, Any] = {
        "command": command,
        "api_key": fuzzer.api_key,
        "timestamp": int(time.time()),
        "cdn": fuzzer.cdn,
    }
    if command == "aws.upload":
        obj.update(path="sestore1/fuzzer/a.mp4", bucket="videos", acl="private")
    obj.update(fields)
    text_ = compact(obj)  # PHP could not encode these numbers; Python's json can
    obj["signature"] = compute_signature(fuzzer.secret, text_)
    before = upload_count(svc)
    response = post_json(http, svc.url, compact(obj))
    body = assert_envelope(response)
    assert response.status_code == 400, body
    assert expected in body["message"]
    assert upload_count(svc) == before


# -- 3. still serving ---------------------------------------------------------------------------


def test_the_server_still_serves_after_the_fuzzing(
    svc: RunningService, http: httpx.Client, fuzzer: IssuedCredentials
) -> None:
    envelope = ok(post_json(http, svc.url, signed_text(fuzzer, "aws.status", limit=1000)))
    assert envelope["message"] == "Found AWS Status"
    assert all(record["cdn_id"] == fuzzer.cdn for record in envelope["data"])
    health = http.get(svc.base_url + "/healthz")
    assert health.status_code == 200
    # Where /metrics exists, the fuzzed command names did not become labels: an attacker
    # cannot grow the metrics without bound.
    scraped = http.get(svc.base_url + "/metrics")
    if scraped.status_code == 200:
        labels = set(re.findall(r'command="([^"]*)"', scraped.text))
        assert labels
        assert labels <= {*COMMANDS, "unknown"}, labels
