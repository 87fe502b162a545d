"""The wire protocol (SPEC §2) attacked over real HTTP: body forms, signature encodings, the
clock window, every failure status with its envelope, and aws.status's own fields (§3.2)."""

from __future__ import annotations

import itertools
import json
import math
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.envelopes import ok, refused
from tests.helpers import FakeClock
from tests.service import RunningService, make_settings, running_service
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.auth import BAD_CREDENTIALS
from vod2s3.api.signature import compute_signature
from vod2s3.jsonenc import php_json_encode

Encoder = Callable[[dict[str, Any]], str]
LIMIT = 64 * 1024


def php(obj: dict[str, Any]) -> str:
    return php_json_encode(obj)


def plain_raw(obj: dict[str, Any]) -> str:
    """Ruby JSON.generate / JavaScript JSON.stringify: compact, raw UTF-8, '/' unescaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def plain_escaped(obj: dict[str, Any]) -> str:
    """Python json.dumps(separators=(",", ":")): compact, non-ASCII as \\uXXXX."""
    return json.dumps(obj, separators=(",", ":"))


def python_default(obj: dict[str, Any]) -> str:
    """Python json.dumps with its default ", " and ": " separators."""
    return json.dumps(obj)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[RunningService]:
    """One real API server (uvicorn, SQLite) for the whole module: the abuse accumulates on it,
    and the last test checks that it still serves."""
    settings = make_settings(tmp_path_factory.mktemp("protocol"))
    with running_service(settings, moto_endpoint) as running:
        yield running


_cdns = itertools.count(1000)


def new_account(svc: RunningService, buckets: list[str] | None = None) -> IssuedCredentials:
    cdn = next(_cdns)
    return svc.add_account(cdn, f"user{cdn}", buckets=buckets)


@pytest.fixture
def acct(svc: RunningService) -> IssuedCredentials:
    return new_account(svc)


# -- helpers -----------------------------------------------------------------------------------


def request_object(issued: IssuedCredentials, command: str, **fields: Any) -> dict[str, Any]:
    return {
        "command": command,
        "api_key": issued.api_key,
        "timestamp": int(time.time()),
        "cdn": issued.cdn,
        **fields,
    }


def sign(obj: dict[str, Any], secret: str, encoder: Encoder = php) -> dict[str, Any]:
    """The client's recipe: encode, HMAC the text, add 'signature' last."""
    signed = dict(obj)
    signed["signature"] = compute_signature(secret, encoder(obj))
    return signed


def signed_text(
    issued: IssuedCredentials, command: str, encoder: Encoder = php, **fields: Any
) -> str:
    return encoder(sign(request_object(issued, command, **fields), issued.secret, encoder))


def post_json(http: httpx.Client, url: str, body: str | bytes) -> httpx.Response:
    content = body.encode("utf-8") if isinstance(body, str) else body
    return http.post(url, content=content, headers={"Content-Type": "application/json"})


def check_no_leak(response: httpx.Response) -> None:
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


def status_text(issued: IssuedCredentials, **fields: Any) -> str:
    return signed_text(issued, "aws.status", **fields)


# -- body forms --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/stable/", "/stable"])
@pytest.mark.parametrize("form", ["multipart", "multipart-by-hand", "urlencoded", "json"])
def test_every_body_form_is_accepted_on_both_paths(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, form: str, suffix: str
) -> None:
    url = svc.base_url + suffix
    text = status_text(acct)
    if form == "multipart":
        # A part without a filename: a form field, as PHP's curl sends an array of strings.
        request = http.build_request("POST", url, files={"json": (None, text)})
        sent = request.read().decode()
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert 'name="json"' in sent
        assert "filename" not in sent
        response = http.send(request)
    elif form == "multipart-by-hand":
        boundary = "------------------------d74496d66958873e"
        body = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="json"\r\n\r\n'
            f"{text}\r\n"
            f"--{boundary}--\r\n"
        ).encode()
        response = http.post(
            url,
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    elif form == "urlencoded":
        response = http.post(url, data={"json": text})
        assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
    else:
        response = post_json(http, url, text)
    body = ok(response)
    assert body["message"] == "Found AWS Status"
    assert body["data"] == []


def test_json_content_type_with_charset_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    response = http.post(
        svc.url,
        content=status_text(acct).encode(),
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    ok(response)


# -- signature encodings -----------------------------------------------------------------------

TITLE = "Café über 日本 🎬"


def _upload_object(svc: RunningService, issued: IssuedCredentials, name: str) -> dict[str, Any]:
    path = svc.write_source(f"sestore1/user{issued.cdn}/dir/sub/{name}.mp4", b"video")
    return request_object(
        issued,
        "aws.upload",
        path=path,
        bucket="videos",
        acl="private",
        metadata={"title": TITLE},
    )


@pytest.mark.parametrize(
    ("encoder", "marker"),
    [
        (php, "\\/"),  # '/' escaped, non-ASCII as \u00e9
        (plain_raw, "é"),  # raw UTF-8
        (plain_escaped, "\\u00e9"),
        (python_default, '", "'),
    ],
    ids=["php", "plain-raw-utf8", "plain-u-escaped", "python-default-separators"],
)
def test_signature_encodings_are_accepted(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    encoder: Encoder,
    marker: str,
) -> None:
    obj = _upload_object(svc, acct, encoder.__name__)
    text = encoder(sign(obj, acct.secret, encoder))
    assert marker in text
    assert text.endswith('"}')  # signature appended last
    body = ok(post_json(http, svc.url, text))
    assert body["message"] == "AWS Upload Queued"
    assert body["data"]["metadata"] == {"title": TITLE}
    assert body["data"]["path"] == obj["path"]


@pytest.mark.parametrize("encoder", [php, python_default], ids=["php", "python-default"])
def test_signature_placed_first_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, encoder: Encoder
) -> None:
    obj = _upload_object(svc, acct, f"first-{encoder.__name__}")
    signed = {"signature": compute_signature(acct.secret, encoder(obj)), **obj}
    text = encoder(signed)
    assert text.startswith('{"signature"')
    ok(post_json(http, svc.url, text))


def test_php_signed_text_sent_form_encoded_like_the_original_example(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    obj = _upload_object(svc, acct, "php-form")
    ok(http.post(svc.url, data={"json": php(sign(obj, acct.secret, php))}))


@pytest.mark.parametrize(
    ("signed_with", "sent_with"),
    [
        (php, lambda o: json.dumps(o, indent=2)),
        (plain_raw, plain_escaped),
        (plain_escaped, plain_raw),
    ],
    ids=["php-sent-pretty", "raw-sent-escaped", "escaped-sent-raw"],
)
def test_signature_over_a_reencoding_is_accepted(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    signed_with: Encoder,
    sent_with: Encoder,
) -> None:
    """The text cannot be cut out of what was sent, but a re-encoding of the object matches."""
    obj = _upload_object(svc, acct, f"re-{signed_with.__name__}")
    ok(post_json(http, svc.url, sent_with(sign(obj, acct.secret, signed_with))))


# -- 401 ---------------------------------------------------------------------------------------


def _bad_credentials_cases(
    svc: RunningService, issued: IssuedCredentials, case: str
) -> tuple[str, str]:
    """(the text to send, the signature that would have been right)."""
    obj = request_object(issued, "aws.status")
    right = compute_signature(issued.secret, php(obj))
    if case == "unknown-key":
        obj["api_key"] = "NOSUCHKEY00000000000000000000000"
        return php(sign(obj, issued.secret)), right
    if case == "wrong-secret":
        return php(sign(obj, "0" * 64)), right
    if case == "other-accounts-cdn":
        other = new_account(svc)
        obj["cdn"] = other.cdn
        return php(sign(obj, issued.secret)), compute_signature(issued.secret, php(obj))
    if case == "other-accounts-secret":
        other = new_account(svc)
        return php(sign(obj, other.secret)), right
    if case == "tampered-after-signing":
        signed = sign(obj, issued.secret)
        signed["limit"] = 5
        return php(signed), right
    if case == "signature-not-a-string":
        signed = sign(obj, issued.secret)
        signed["signature"] = 12345
        return php(signed), right
    if case == "signature-as-list":
        signed = sign(obj, issued.secret)
        signed["signature"] = [signed["signature"]]
        return php(signed), right
    if case == "signature-of-other-text":
        signed = dict(obj)
        signed["signature"] = compute_signature(issued.secret, php({"command": "aws.status"}))
        return php(signed), right
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "unknown-key",
        "wrong-secret",
        "other-accounts-cdn",
        "other-accounts-secret",
        "tampered-after-signing",
        "signature-not-a-string",
        "signature-as-list",
        "signature-of-other-text",
    ],
)
def test_bad_credentials_get_one_401_message(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, case: str
) -> None:
    text, right_signature = _bad_credentials_cases(svc, acct, case)
    response = post_json(http, svc.url, text)
    message = refused(response, 401, "signature")
    assert message == BAD_CREDENTIALS
    assert right_signature not in response.text  # the expected signature is never echoed


def test_tampered_upload_queues_nothing(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    obj = _upload_object(svc, acct, "tampered")
    signed = sign(obj, acct.secret)
    signed["bucket"] = "attacker-bucket"
    refused(post_json(http, svc.url, php(signed)), 401)
    assert ok(post_json(http, svc.url, status_text(acct)))["data"] == []


@pytest.mark.parametrize(("skew", "direction"), [(-301, "behind"), (301, "ahead of")])
def test_timestamp_outside_the_window_is_refused(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, skew: int, direction: str
) -> None:
    # Rounded away from now so that the request's own latency cannot bring it back in.
    now = time.time()
    timestamp = math.floor(now) + skew if skew < 0 else math.ceil(now) + skew
    text = php(sign(request_object(acct, "aws.status", timestamp=timestamp), acct.secret))
    message = refused(post_json(http, svc.url, text), 401, "'timestamp'", "clock", direction)
    assert "300 s" in message


@pytest.mark.parametrize("skew", [-299, 299])
def test_timestamp_inside_the_window_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, skew: int
) -> None:
    now = time.time()
    timestamp = math.ceil(now) + skew if skew < 0 else math.floor(now) + skew
    text = php(sign(request_object(acct, "aws.status", timestamp=timestamp), acct.secret))
    ok(post_json(http, svc.url, text))


def test_integers_as_numeric_strings_are_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    client = svc.client(acct)
    first = client.upload(
        svc.write_source(f"sestore1/user{acct.cdn}/n.mp4", b"n"), "videos", "private"
    )
    obj = request_object(acct, "aws.status", limit="5", offset="0")
    obj["cdn"] = str(acct.cdn)
    obj["timestamp"] = str(obj["timestamp"])
    body = ok(post_json(http, svc.url, php(sign(obj, acct.secret))))
    assert [r["id"] for r in body["data"]] == [first["id"]]
    by_id = request_object(acct, "aws.status", id=str(first["id"]))
    assert ok(post_json(http, svc.url, php(sign(by_id, acct.secret))))["data"]["id"] == first["id"]


# -- 403 ---------------------------------------------------------------------------------------


def test_disabled_account_is_403_only_after_a_valid_signature(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    svc.runtime.accounts.set_disabled(acct.cdn, True)
    refused(post_json(http, svc.url, status_text(acct)), 403, "disabled")
    wrong = php(sign(request_object(acct, "aws.status"), "not-the-secret"))
    assert refused(post_json(http, svc.url, wrong), 401) == BAD_CREDENTIALS
    svc.runtime.accounts.set_disabled(acct.cdn, False)
    ok(post_json(http, svc.url, status_text(acct)))


# -- 404 ---------------------------------------------------------------------------------------


def test_unknown_id_and_other_accounts_id_look_the_same(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    other = new_account(svc)
    theirs = svc.client(other).upload(
        svc.write_source(f"sestore1/user{other.cdn}/theirs.mp4", b"x"), "videos", "private"
    )["id"]
    missing = theirs + 100_000

    theirs_message = refused(post_json(http, svc.url, status_text(acct, id=theirs)), 404)
    missing_message = refused(post_json(http, svc.url, status_text(acct, id=missing)), 404)

    assert str(theirs) in theirs_message
    assert theirs_message.replace(str(theirs), "N") == missing_message.replace(str(missing), "N")
    # The owner does see it.
    ok(post_json(http, svc.url, status_text(other, id=theirs)))


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
@pytest.mark.parametrize("path", ["/nope", "/stable/x", "/api/stable/"])
def test_unknown_path_is_a_404_envelope(
    svc: RunningService, http: httpx.Client, method: str, path: str
) -> None:
    response = http.request(method, svc.base_url + path, content=b"{}")
    refused(response, 404, "/stable/")


# -- 405 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("suffix", ["/stable/", "/stable"])
def test_other_methods_are_405_with_allow(
    svc: RunningService, http: httpx.Client, method: str, suffix: str
) -> None:
    response = http.request(method, svc.base_url + suffix)
    refused(response, 405, method, "POST")
    assert response.headers["allow"] == "POST"


def test_head_is_405_with_allow(svc: RunningService, http: httpx.Client) -> None:
    response = http.head(svc.url)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].split(";")[0] == "application/json"


def test_post_to_healthz_is_405_with_allow(svc: RunningService, http: httpx.Client) -> None:
    response = http.post(svc.base_url + "/healthz")
    refused(response, 405, "POST")
    assert "GET" in response.headers["allow"]


# -- 413 ---------------------------------------------------------------------------------------


def test_body_over_the_limit_with_content_length_is_413(
    svc: RunningService, http: httpx.Client
) -> None:
    response = post_json(http, svc.url, b"{" + b" " * LIMIT + b"}")
    assert response.request.headers["content-length"] == str(LIMIT + 2)
    refused(response, 413, str(LIMIT))


def test_chunked_body_over_the_limit_is_413(svc: RunningService, http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"pad":"'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = http.post(svc.url, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    refused(response, 413, str(LIMIT))


def _padded(acct: IssuedCredentials, size: int) -> bytes:
    # Plain encoding: PHP's would write each '/' of the base64 signature as '\/', so the
    # length would depend on the signature.
    obj = request_object(acct, "aws.status", pad="")
    length = len(plain_escaped(sign(obj, acct.secret, plain_escaped)))
    obj["pad"] = "x" * (size - length)
    text = plain_escaped(sign(obj, acct.secret, plain_escaped)).encode()
    assert len(text) == size
    return text


def test_body_of_exactly_the_limit_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    ok(post_json(http, svc.url, _padded(acct, LIMIT)))
    refused(post_json(http, svc.url, _padded(acct, LIMIT + 1)), 413)


# -- 415 ---------------------------------------------------------------------------------------


def test_text_plain_is_415(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    response = http.post(
        svc.url, content=status_text(acct).encode(), headers={"Content-Type": "text/plain"}
    )
    refused(response, 415, "text/plain", "application/json", "'json'")


def test_missing_content_type_is_415(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    response = http.post(svc.url, content=status_text(acct).encode())
    assert "content-type" not in response.request.headers
    refused(response, 415, "Content-Type", "application/json")


# -- 400: the body -----------------------------------------------------------------------------


def _nested(depth: int) -> str:
    """A request object whose deepest container is at ``depth`` (the object itself is 1)."""
    return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"command":"aws.status",', "not valid JSON"),
        (b"{'command': 'aws.status'}", "not valid JSON"),
        (b'[{"command":"aws.status"}]', "must be a JSON object"),
        (b'"aws.status"', "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"", "empty"),
        (b'{"command":"aws.\xff\xfe"}', "not valid UTF-8"),
        (b'{"command":"aws.status","command":"aws.upload"}', "'command' twice"),
        (_nested(33).encode(), "nested deeper than 32"),
        (b'{"command":"aws.status","cdn":NaN}', "NaN"),
        (b'{"command":"aws.status","cdn":-Infinity}', "-Infinity"),
        (b'{"command":"aws.status","cdn":' + b"1" * 5000 + b"}", "too many digits"),
        (b'{"command":"aws.status","api_key":"\\ud800"}', "surrogate"),
        (b'{"command":"aws.status","x":{"\\udfff":1}}', "surrogate"),
        (b'{"command":"aws.status","x":1e400}', "out of range"),
        (b'{"command":"aws.status","x":-1E999}', "out of range"),
    ],
    ids=[
        "truncated",
        "single-quotes",
        "array",
        "string",
        "number",
        "null",
        "empty",
        "bad-utf8",
        "duplicate-key",
        "too-deep",
        "nan",
        "infinity",
        "huge-integer",
        "lone-surrogate-value",
        "lone-surrogate-key",
        "float-overflow",
        "negative-float-overflow",
    ],
)
def test_malformed_json_body_is_400(
    svc: RunningService, http: httpx.Client, body: bytes, expected: str
) -> None:
    refused(post_json(http, svc.url, body), 400, expected)


def test_nesting_of_exactly_32_is_accepted(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    deep: Any = []
    for _ in range(30):
        deep = [deep]
    # The request object is level 1, 'extra' holds levels 2..32.
    text = signed_text(acct, "aws.status", extra=deep)
    assert text.count("[") == 31
    ok(post_json(http, svc.url, text))


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("command", "Field 'command' is required"),
        ("api_key", "Field 'api_key' is required"),
        ("cdn", "Field 'cdn' is required"),
        ("timestamp", "Field 'timestamp' is required"),
        ("signature", "Field 'signature' is required"),
    ],
)
def test_missing_required_field_is_named(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, field: str, expected: str
) -> None:
    signed = sign(request_object(acct, "aws.status"), acct.secret)
    del signed[field]
    refused(post_json(http, svc.url, php(signed)), 400, expected)
    signed[field] = None
    refused(post_json(http, svc.url, php(signed)), 400, expected)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "boolean"), (158.5, "158.5"), ("abc", "'abc'"), ({"a": 1}, "object"), ([1], "list")],
)
def test_cdn_that_is_not_a_whole_number_is_400(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, value: Any, shown: str
) -> None:
    obj = request_object(acct, "aws.status")
    obj["cdn"] = value
    refused(
        post_json(http, svc.url, php(sign(obj, acct.secret))),
        400,
        "Field 'cdn' must be a whole number",
        shown,
    )


@pytest.mark.parametrize("field", ["command", "api_key"])
def test_string_fields_that_are_not_strings_are_400(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, field: str
) -> None:
    obj = request_object(acct, "aws.status")
    obj[field] = 7
    refused(post_json(http, svc.url, php(sign(obj, acct.secret))), 400, f"Field '{field}'")


@pytest.mark.parametrize("command", ["aws.delete", "AWS.STATUS", "aws.status ", "stats"])
def test_unknown_command_lists_the_known_ones(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, command: str
) -> None:
    text = signed_text(acct, command)
    refused(post_json(http, svc.url, text), 400, "Unknown command", "aws.status", "aws.upload")


@pytest.mark.parametrize("form", ["urlencoded", "multipart"])
def test_form_without_the_json_field_is_400(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, form: str
) -> None:
    text = status_text(acct)
    if form == "urlencoded":
        response = http.post(svc.url, data={"JSON": text, "request": text})
    else:
        response = http.post(svc.url, files={"request": (None, text)})
    refused(response, 400, "Form field 'json' is missing")


def test_form_with_an_empty_json_field_is_400(svc: RunningService, http: httpx.Client) -> None:
    refused(http.post(svc.url, data={"json": ""}), 400, "empty")


def test_multipart_file_part_is_refused(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    response = http.post(svc.url, files={"json": ("request.json", status_text(acct))})
    refused(response, 400, "File parts are not accepted", "'json'")


def test_multipart_without_boundary_is_400(svc: RunningService, http: httpx.Client) -> None:
    response = http.post(
        svc.url, content=b"json=x", headers={"Content-Type": "multipart/form-data"}
    )
    refused(response, 400, "multipart/form-data")


def test_urlencoded_body_with_bad_utf8_is_400(svc: RunningService, http: httpx.Client) -> None:
    response = http.post(
        svc.url,
        content=b"json=%7B%FF%7D",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    refused(response, 400, "form body")


def test_unknown_fields_are_ignored(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    text = signed_text(acct, "aws.status", extra=1, another={"x": [1, 2]}, note="hi/there")
    assert ok(post_json(http, svc.url, text))["data"] == []


# -- aws.status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"limit": 0}, "Field 'limit' must be from 1 to 1000, got 0"),
        ({"limit": 1001}, "Field 'limit' must be from 1 to 1000, got 1001"),
        ({"limit": "many"}, "Field 'limit' must be a whole number"),
        ({"offset": -1}, "Field 'offset' must be"),
        ({"offset": 1.5}, "Field 'offset' must be a whole number"),
        ({"state": "bogus"}, "Field 'state' must be one of"),
        ({"state": 3}, "Field 'state' must be a string"),
        ({"id": 0}, "Field 'id' must be"),
        ({"id": "x1"}, "Field 'id' must be a whole number"),
    ],
)
def test_status_field_checks(
    svc: RunningService,
    http: httpx.Client,
    acct: IssuedCredentials,
    fields: dict[str, Any],
    expected: str,
) -> None:
    refused(post_json(http, svc.url, status_text(acct, **fields)), 400, expected)


def test_status_state_message_lists_the_states(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    message = refused(post_json(http, svc.url, status_text(acct, state="bogus")), 400)
    for state in ("queued", "uploading", "completed", "failed", "cancelled"):
        assert state in message


def test_status_defaults_to_25_newest_first_and_finds_one_by_id(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials
) -> None:
    client = svc.client(acct)
    ids = [
        client.upload(
            svc.write_source(f"sestore1/user{acct.cdn}/{n}.mp4", b"x"), "videos", "private"
        )["id"]
        for n in range(30)
    ]

    listed = ok(post_json(http, svc.url, status_text(acct)))
    assert listed["message"] == "Found AWS Status"
    assert [r["id"] for r in listed["data"]] == ids[::-1][:25]

    everything = ok(post_json(http, svc.url, status_text(acct, limit=1000)))["data"]
    assert len(everything) == 30
    page = ok(post_json(http, svc.url, status_text(acct, limit=1, offset=29)))["data"]
    assert [r["id"] for r in page] == [ids[0]]
    beyond = ok(post_json(http, svc.url, status_text(acct, offset=30)))["data"]
    assert beyond == []
    assert ok(post_json(http, svc.url, status_text(acct, state="queued", limit=1000)))["data"]
    assert ok(post_json(http, svc.url, status_text(acct, state="completed")))["data"] == []

    one = ok(post_json(http, svc.url, status_text(acct, id=ids[3])))
    assert one["message"] == "Found AWS Status"
    assert isinstance(one["data"], dict)
    assert one["data"]["id"] == ids[3]
    assert one["data"]["cdn_id"] == acct.cdn


# -- afterwards --------------------------------------------------------------------------------


def test_server_still_serves_after_all_of_the_above(
    svc: RunningService, http: httpx.Client
) -> None:
    """Runs last in this module, on the server every test above has attacked."""
    issued = new_account(svc)
    ok(post_json(http, svc.url, status_text(issued)))
    ok(http.post(svc.url, data={"json": status_text(issued)}))
    assert http.get(svc.base_url + "/healthz").status_code == 200


# -- ambiguous requests (issue 12) -------------------------------------------------------------


@pytest.mark.parametrize("form", ["urlencoded", "multipart"])
def test_a_form_with_two_json_fields_is_refused(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, form: str
) -> None:
    """Two objects, each validly signed: which one would be checked and which acted on was
    the form parser's choice (last in multipart, first in urlencoded)."""
    status = status_text(acct)
    cancel = signed_text(acct, "aws.cancel", id=1)
    if form == "urlencoded":
        response = http.post(
            svc.url,
            content=urlencode([("json", status), ("json", cancel)]).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        response = http.post(svc.url, files=[("json", (None, status)), ("json", (None, cancel))])
    refused(response, 400, "Form field 'json' is sent 2 times")


@pytest.mark.parametrize(
    ("field", "spelling"),
    [
        ("cdn", "arabic-indic"),
        ("timestamp", "arabic-indic"),
        ("limit", "fullwidth"),
        ("id", "devanagari"),
    ],
)
def test_digits_other_than_ascii_are_not_numbers(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, field: str, spelling: str
) -> None:
    zero = {"arabic-indic": 0x0660, "fullwidth": 0xFF10, "devanagari": 0x0966}[spelling]
    obj = request_object(acct, "aws.status")
    number = {"cdn": acct.cdn, "timestamp": obj["timestamp"], "limit": 2, "id": 1}[field]
    obj[field] = "".join(chr(zero + int(digit)) for digit in str(number))
    assert int(obj[field]) == number  # Python itself would read it as the number
    response = post_json(http, svc.url, php(sign(obj, acct.secret)))
    refused(response, 400, f"Field '{field}' must be a whole number")


def test_a_timestamp_a_fraction_over_the_window_says_so(tmp_path: Path, moto_endpoint: str) -> None:
    """300.5 s ahead is reported as 301 s, not as the 300 s that the window allows."""
    clock = FakeClock(1_800_000_000.5)
    with running_service(make_settings(tmp_path), moto_endpoint, clock=clock) as server:
        issued = server.add_account(158, "jb")
        obj = request_object(issued, "aws.status", timestamp=1_800_000_301)
        with httpx.Client(timeout=10) as client:
            response = post_json(client, server.url, php(sign(obj, issued.secret)))
        message = refused(response, 401, "'timestamp'")
        assert "is 301 s ahead of the server's clock" in message


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    svc: RunningService,
) -> None:
    """RFC 9112 §6.1: a request with both framings may be an attempt to smuggle a second
    request past a proxy that reads the other one; the server must refuse it and close."""
    host, port = svc.base_url.split("//", 1)[1].split(":")
    body = b'{"command":"aws.status"}'
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (
        b"POST /stable/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
        + smuggled
    )
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):  # returns b"" once the server has closed
            received += chunk
    head = received.split(b"\r\n", 1)[0]
    assert head == b"HTTP/1.1 400 Bad Request", received[:300]
    assert received.count(b"HTTP/1.1 ") == 1  # the request behind it was never answered


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "CONNECT"])
@pytest.mark.parametrize("suffix", ["/stable/", "/stable"])
def test_an_unusual_method_is_405_with_allow_post_only(
    svc: RunningService, http: httpx.Client, method: str, suffix: str
) -> None:
    response = http.request(method, svc.base_url + suffix)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/healthz/", "/dashboard/", "/metrics/"])
def test_a_trailing_slash_is_not_redirected_to_the_clients_host(
    svc: RunningService, http: httpx.Client, path: str
) -> None:
    """A redirect built from the Host header would send the client to any host it names."""
    response = http.get(svc.base_url + path, headers={"Host": "evil.example"})
    assert "location" not in response.headers
    assert "evil.example" not in response.text
    refused(response, 404)


@pytest.mark.parametrize("spelling", ["1.0", "1e0", "10E-1"])
def test_a_number_spelled_otherwise_than_signed_is_refused(
    svc: RunningService, http: httpx.Client, acct: IssuedCredentials, spelling: str
) -> None:
    """The signature was made over "limit":1 (as PHP writes it, and as PHP would re-encode
    every spelling below): the same signature on "limit":<spelling> is a forgery."""
    honest = status_text(acct, limit=1)
    ok(post_json(http, svc.url, honest))
    forged = honest.replace('"limit":1,', f'"limit":{spelling},')
    assert forged != honest
    refused(post_json(http, svc.url, forged), 401)
