"""Request signatures: every encoding a real client may have signed is accepted, nothing else."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.helpers import php_binary
from vod2s3.api.signature import (
    REENCODE_LIMIT,
    candidate_texts,
    compute_signature,
    cut_signature,
    numbers_in,
    verify_signature,
)
from vod2s3.jsonenc import php_json_encode, plain_json_encode
from vod2s3.signing import sign_request

# The secret of the seed's aws.status example.
SEED_SECRET = "8fc8c48da81e6a2a06a9556379bf798af508dc0792497c678b4c3532ba8b637f"
OTHER_SECRET = "0f3a1b9c2d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeef"

REQUEST: dict[str, Any] = {
    "command": "aws.upload",
    "api_key": "APX4GKLM0RKQLSP2FBO1ROPKSSW47DZE",
    "timestamp": 1700000000,
    "cdn": 158,
    "path": "sestore1/jb/path/to/file.mp4",
    "destination_path": "videos/2024/file.mp4",
    "metadata": {"title": "Café à 東京 😀", "signature": "not the request's"},
    "acl": "private",
}


def _send(signed_text: str, signature: str) -> str:
    """What a client sends after signing: its own text with the member appended."""
    assert signed_text.endswith("}")
    return signed_text[:-1] + ',"signature":' + json.dumps(signature) + "}"


def _verify(raw: str, secrets: list[str] | None = None) -> bool:
    obj = json.loads(raw)
    return verify_signature(secrets or [SEED_SECRET], raw, obj, obj.get("signature"))


# --- compute_signature ---------------------------------------------------------------------


def test_compute_signature_matches_php_vector() -> None:
    # base64_encode(hash_hmac('sha256', $text, $secret, true)) computed by php-cli.
    text = '{"command":"aws.status","path":"a\\/b"}'
    assert compute_signature(SEED_SECRET, text) == "TuKwkkQhIDblUMDXKfbma8d3TzAeOcs3CxnMH8p/rtI="


# --- cut_signature -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a":1,"signature":"x"}', '{"a":1}'),
        ('{"signature":"x","a":1}', '{"a":1}'),
        ('{"a":1,"signature":"x","b":2}', '{"a":1,"b":2}'),
        ('{"signature":"x"}', "{}"),
        ('{ "signature": "x" }', "{}"),
        # Python json.dumps default separators.
        ('{"a": 1, "signature": "x"}', '{"a": 1}'),
        ('{"signature": "x", "a": 1}', '{"a": 1}'),
        ('{"a": 1, "signature": "x", "b": 2}', '{"a": 1, "b": 2}'),
        # Pretty-printed.
        ('{\n  "a": 1,\n  "signature": "x"\n}', '{\n  "a": 1\n}'),
        ('{\n  "signature": "x",\n  "a": 1\n}', '{\n  "a": 1\n}'),
        (
            '{\n  "a": 1,\n  "signature": "x",\n  "b": [\n    2\n  ]\n}',
            '{\n  "a": 1,\n  "b": [\n    2\n  ]\n}',
        ),
        # Text outside the object is kept.
        (' {"a":1,"signature":"x"} \n', ' {"a":1} \n'),
        # Signature values of any type are cut as a whole.
        ('{"a":1,"signature":{"x":[1,"}"]}}', '{"a":1}'),
        ('{"a":1,"signature":null}', '{"a":1}'),
        ('{"a":1,"signature":-1.5e3}', '{"a":1}'),
        # Nested "signature" keys stay.
        (
            '{"metadata":{"signature":"m"},"signature":"x"}',
            '{"metadata":{"signature":"m"}}',
        ),
        (
            '{"signature":"x","list":[{"signature":1}]}',
            '{"list":[{"signature":1}]}',
        ),
        # Strings that look like members stay.
        (
            r'{"note":",\"signature\":\"y\"","signature":"x"}',
            r'{"note":",\"signature\":\"y\""}',
        ),
        (r'{"a":"ends with \\","signature":"x"}', r'{"a":"ends with \\"}'),
        (
            r'{"a":"x\\\",\"signature\":\"y","signature":"x"}',
            r'{"a":"x\\\",\"signature\":\"y"}',
        ),
        ('{"a":"}{][","signature":"x","b":"\\"}"}', '{"a":"}{][","b":"\\"}"}'),
    ],
)
def test_cut_signature(raw: str, expected: str) -> None:
    json.loads(raw)  # every case is valid JSON
    assert cut_signature(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        '{"a":1}',
        "{}",
        '{"metadata":{"signature":"m"}}',
        '{"list":["signature",{"signature":1}]}',
        '{"x":"signature","y":"\\"signature\\":1"}',
        '{"my\\"signature":1}',
        '{"Signature":"x"}',
        # Only the literal spelling is cut; the re-encodings cover escaped keys.
        r'{"a":1,"sig\u006eature":"x"}',
        # Two members: no encoder writes that, so no guess about which one was added.
        '{"signature":"x","a":1,"signature":"y"}',
        # Not a JSON object.
        '["signature"]',
        '"signature"',
        "",
        '{"a":1',
        '{"a" 1,"signature":"x"}',
        '{"a":1 "signature":"x"}',
        '{"a":"unterminated,"signature":"x"}',
        '{"signature":"x"} trailing',
        '{"a":[1,"signature":"x"}',
        '{"a":,"signature":"x"}',
    ],
)
def test_cut_signature_none(raw: str) -> None:
    assert cut_signature(raw) is None


_encoders: dict[str, Callable[[object], str]] = {
    "php": php_json_encode,
    "compact": lambda value: json.dumps(value, separators=(",", ":"), ensure_ascii=False),
    "python-default": json.dumps,
    "indent": lambda value: json.dumps(value, indent=2, ensure_ascii=False),
    "tabs-and-spaces": lambda value: json.dumps(value, indent="\t", separators=(" , ", " : ")),
}

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_php_keys = st.text(max_size=8).filter(lambda key: not key.startswith("\x00"))
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["signature", "a"]) | _php_keys, children, max_size=3)
    ),
    max_leaves=8,
)
_requests = st.dictionaries(
    _php_keys.filter(lambda key: key != "signature"), _json_values, max_size=6
)


@settings(max_examples=300)
@given(
    request=_requests,
    encoder=st.sampled_from(sorted(_encoders)),
    data=st.data(),
)
def test_cut_signature_inverts_adding_the_member(
    request: dict[str, Any], encoder: str, data: st.DataObject
) -> None:
    encode = _encoders[encoder]
    position = data.draw(st.integers(min_value=0, max_value=len(request)), label="position")
    items = list(request.items())
    items.insert(position, ("signature", data.draw(_json_values, label="signature")))
    assert cut_signature(encode(dict(items))) == encode(request)


# --- verify_signature: the encodings real clients sign --------------------------------------


def test_php_text_with_escapes_cut_from_raw() -> None:
    signed_text = php_json_encode(REQUEST)
    assert "\\/" in signed_text
    assert "\\u00e9" in signed_text
    assert "\\ud83d\\ude00" in signed_text
    raw = _send(signed_text, compute_signature(SEED_SECRET, signed_text))
    assert cut_signature(raw) == signed_text
    assert _verify(raw)


@pytest.mark.parametrize(
    "resend",
    [
        lambda obj: json.dumps(obj),
        lambda obj: json.dumps(obj, indent=4, ensure_ascii=False),
        lambda obj: json.dumps(obj, separators=(",", ":"), ensure_ascii=False),
    ],
    ids=["python-default", "pretty-raw-utf8", "compact-no-slash-escapes"],
)
def test_php_signed_but_sent_in_another_layout(resend: Callable[[object], str]) -> None:
    # Signed the PHP way, then the object was re-encoded by something else before sending:
    # only the PHP re-encoding of the parsed object reproduces the signed text.
    signed = sign_request(SEED_SECRET, REQUEST)
    raw = resend(signed)
    assert cut_signature(raw) != php_json_encode(REQUEST)
    assert _verify(raw)


@pytest.mark.parametrize(
    "encode",
    [
        # Ruby JSON.generate, JS JSON.stringify, Python compact with ensure_ascii=False.
        lambda obj: json.dumps(obj, separators=(",", ":"), ensure_ascii=False),
        # Python compact with the default ensure_ascii.
        lambda obj: json.dumps(obj, separators=(",", ":")),
        # Python defaults, pretty printing: only the cut reproduces these.
        lambda obj: json.dumps(obj),
        lambda obj: json.dumps(obj, indent=2, ensure_ascii=False),
    ],
    ids=["raw-utf8", "u-escapes", "python-default", "pretty"],
)
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_other_clients_signing_and_sending_alike(
    encode: Callable[[object], str], position: str
) -> None:
    signed_text = encode(REQUEST)
    signature = compute_signature(SEED_SECRET, signed_text)
    items = list(REQUEST.items())
    index = {"first": 0, "middle": len(items) // 2, "last": len(items)}[position]
    items.insert(index, ("signature", signature))
    raw = encode(dict(items))
    assert cut_signature(raw) == signed_text
    assert _verify(raw)


@pytest.mark.parametrize("ascii_only", [False, True])
def test_plain_signed_but_sent_in_another_layout(ascii_only: bool) -> None:
    signed_text = plain_json_encode(REQUEST, ascii_only=ascii_only)
    signed = {**REQUEST, "signature": compute_signature(SEED_SECRET, signed_text)}
    raw = json.dumps(signed, indent=2, ensure_ascii=not ascii_only)
    assert _verify(raw)


def test_escaped_signature_key_falls_back_to_reencoding() -> None:
    signed_text = php_json_encode(REQUEST)
    raw = signed_text[:-1] + r',"sig\u006eature":"' + compute_signature(SEED_SECRET, signed_text)
    raw += '"}'
    assert cut_signature(raw) is None
    assert _verify(raw)


def test_reordered_members_are_refused() -> None:
    # Re-encodings keep the received order: a proxy that sorts keys breaks the signature.
    signed = sign_request(SEED_SECRET, REQUEST)
    assert not _verify(json.dumps(signed, sort_keys=True))


# --- verify_signature: what must be refused ------------------------------------------------


def test_wrong_secret_refused() -> None:
    raw = php_json_encode(sign_request(OTHER_SECRET, REQUEST))
    assert not _verify(raw)
    assert _verify(raw, [OTHER_SECRET])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"cdn":158', '"cdn":159'),
        ('"acl":"private"', '"acl":"public-read"'),
        ('"path":"sestore1', '"path":"sestore2'),
        ("\\u00e9", "e"),
        ('"Caf', '"caf'),
        ('"signature":"not', '"signature":"Not'),
        ('"timestamp":1700000000', '"timestamp":1700000000,"extra":1'),
        ('"acl":"private",', ""),
    ],
)
def test_tampered_body_refused(old: str, new: str) -> None:
    raw = php_json_encode(sign_request(SEED_SECRET, REQUEST))
    assert _verify(raw)
    tampered = raw.replace(old, new, 1)
    assert tampered != raw
    assert not _verify(tampered)


@pytest.mark.parametrize(
    "signature",
    [None, 123, 1.5, True, ["x"], {"a": 1}, "", "é", "not base64 !", "\ud800"],
)
def test_bad_signature_values_refused(signature: object) -> None:
    raw = php_json_encode(sign_request(SEED_SECRET, REQUEST))
    obj = json.loads(raw)
    assert not verify_signature([SEED_SECRET], raw, obj, signature)


def test_signature_with_a_different_case_or_padding_refused() -> None:
    raw = php_json_encode(sign_request(SEED_SECRET, REQUEST))
    obj = json.loads(raw)
    good = obj["signature"]
    for bad in (good.rstrip("="), good.swapcase(), good + "\n", " " + good):
        assert not verify_signature([SEED_SECRET], raw, obj, bad)


def test_rotation_accepts_both_secrets() -> None:
    secrets = [SEED_SECRET, OTHER_SECRET]
    for secret in secrets:
        raw = php_json_encode(sign_request(secret, REQUEST))
        assert _verify(raw, secrets)
        assert _verify(raw, list(reversed(secrets)))
    assert not _verify(php_json_encode(sign_request("third", REQUEST)), secrets)


def test_no_secrets_refuses() -> None:
    raw = php_json_encode(sign_request(SEED_SECRET, REQUEST))
    obj = json.loads(raw)
    assert not verify_signature([], raw, obj, obj["signature"])


def test_bare_str_secrets_is_a_caller_bug() -> None:
    raw = php_json_encode(sign_request(SEED_SECRET, REQUEST))
    obj = json.loads(raw)
    with pytest.raises(TypeError):
        verify_signature(SEED_SECRET, raw, obj, obj["signature"])


def test_unencodable_raw_text_never_raises() -> None:
    # A lone surrogate (e.g. from a body decoded with surrogateescape) cannot be hashed as UTF-8.
    raw = '{"a":"\ud800","signature":"x"}'
    assert not verify_signature([SEED_SECRET], raw, {"a": "\ud800", "signature": "x"}, "x")


# --- candidate_texts -----------------------------------------------------------------------


def test_candidates_in_order() -> None:
    raw = json.dumps({**REQUEST, "signature": "x"}, indent=1)
    assert list(candidate_texts(raw, json.loads(raw))) == [
        json.dumps(REQUEST, indent=1),
        php_json_encode(REQUEST),
        plain_json_encode(REQUEST, ascii_only=False),
        plain_json_encode(REQUEST, ascii_only=True),
    ]


def test_candidates_without_duplicates() -> None:
    request = {"command": "aws.status", "cdn": 158, "limit": 25}
    raw = php_json_encode({**request, "signature": "x"})
    assert list(candidate_texts(raw, json.loads(raw))) == [
        '{"command":"aws.status","cdn":158,"limit":25}'
    ]


def test_candidates_without_a_cut() -> None:
    obj = {"a": "b/c"}
    # No received text to hold a re-encoding's numbers to: nothing can stand for it.
    assert list(candidate_texts("not json", obj)) == []


def test_candidates_skip_unencodable_values() -> None:
    # json.loads accepts NaN by default; no client library signs it the same way.
    raw = '{"a":NaN,"signature":"x"}'
    obj = json.loads(raw)
    assert math.isnan(obj["a"])
    assert list(candidate_texts(raw, obj)) == ['{"a":NaN}']
    spaced = '{"a": "\\ud800", "signature": "x"}'
    # PHP's encoder and a raw UTF-8 one cannot write a lone surrogate: only the cut and the
    # ASCII-only encoding are candidates.
    assert list(candidate_texts(spaced, json.loads(spaced))) == [
        '{"a": "\\ud800"}',
        '{"a":"\\ud800"}',
    ]


# --- sign_request --------------------------------------------------------------------------


def test_sign_request_appends_signature_last() -> None:
    request = dict(REQUEST)
    signed = sign_request(SEED_SECRET, request)
    assert request == REQUEST
    assert list(signed) == [*REQUEST, "signature"]
    assert signed["signature"] == compute_signature(SEED_SECRET, php_json_encode(REQUEST))


def test_sign_request_refuses_a_signed_request() -> None:
    with pytest.raises(ValueError, match="already"):
        sign_request(SEED_SECRET, {**REQUEST, "signature": "x"})


# --- real PHP clients ----------------------------------------------------------------------

# The seed's client code, with fixed values instead of time() and curl. It prints the text it
# signed and then the text it sends, each followed by NUL (pretty-printed texts span lines).
_PHP_SEED_CLIENT = r"""
$request = array(
    'command' => 'aws.status',
    'api_key' => 'APX4GKLM0RKQLSP2FBO1ROPKSSW47DZE',
    'timestamp' => 1700000000,
    'cdn' => 158,
    'limit' => 25, //optional
    'offset' => 0
);
//Create request signature
$json_request = json_encode($request);
$sig = base64_encode(hash_hmac('sha256', $json_request,
'8fc8c48da81e6a2a06a9556379bf798af508dc0792497c678b4c3532ba8b637f', true));
$request['signature'] = $sig;
echo $json_request, "\0";
$json_request = json_encode($request);
echo $json_request, "\0";
"""

_PHP_UPLOAD_CLIENT = r"""
$request = array(
    'command' => 'aws.upload',
    'api_key' => 'APX4GKLM0RKQLSP2FBO1ROPKSSW47DZE',
    'timestamp' => 1700000000,
    'cdn' => 158,
    'path' => 'sestore1/jb/path/to/file.mp4',
    'destination_path' => 'videos/2024/file.mp4',
    'metadata' => array('title' => "Café à 東京 😀", 'signature' => "not the request's"),
    'acl' => 'private',
    'empty' => array(),
    'object' => new stdClass(),
    'ratio' => 1.5,
    'whole' => 10.0,
);
$json_request = json_encode($request, FLAGS);
$sig = base64_encode(hash_hmac('sha256', $json_request,
'8fc8c48da81e6a2a06a9556379bf798af508dc0792497c678b4c3532ba8b637f', true));
$request['signature'] = $sig;
echo $json_request, "\0";
$json_request = json_encode($request, SEND_FLAGS);
echo $json_request, "\0";
"""


def _run_php(script: str) -> tuple[str, str]:
    done = subprocess.run([php_binary(), "-r", script], capture_output=True, check=True, timeout=60)
    signed_text, sent, rest = done.stdout.decode("utf-8").split("\0", 2)
    assert rest == ""
    return signed_text, sent


@pytest.mark.php
def test_seed_php_client_request_verifies() -> None:
    signed_text, raw = _run_php(_PHP_SEED_CLIENT)
    obj = json.loads(raw)
    assert list(obj) == ["command", "api_key", "timestamp", "cdn", "limit", "offset", "signature"]
    assert cut_signature(raw) == signed_text
    assert _verify(raw)
    assert not _verify(raw, [OTHER_SECRET])
    request = {key: value for key, value in obj.items() if key != "signature"}
    assert sign_request(SEED_SECRET, request) == obj


@pytest.mark.php
@pytest.mark.parametrize(
    ("flags", "send_flags"),
    [
        ("0", "0"),
        # Signed with the defaults, sent pretty: only the PHP re-encoding matches.
        ("0", "JSON_PRETTY_PRINT"),
        # Signed like the plain encoders (floats aside), sent with the defaults.
        ("JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE", "0"),
        ("JSON_UNESCAPED_SLASHES", "JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE"),
        (
            "JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES",
            "JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES",
        ),
    ],
)
def test_php_signed_upload_request_verifies(flags: str, send_flags: str) -> None:
    script = _PHP_UPLOAD_CLIENT.replace("SEND_FLAGS", send_flags).replace("FLAGS", flags)
    signed_text, raw = _run_php(script)
    obj = json.loads(raw)
    assert obj["path"] == "sestore1/jb/path/to/file.mp4"
    assert obj["metadata"] == {"title": "Café à 東京 😀", "signature": "not the request's"}
    assert obj["empty"] == []
    assert obj["object"] == {}
    if flags == "0":
        assert "\\/" in signed_text
        assert "\\u00e9" in signed_text
        assert php_json_encode({k: v for k, v in obj.items() if k != "signature"}) == signed_text
    if flags == send_flags:
        assert cut_signature(raw) == signed_text
    assert _verify(raw)
    assert not _verify(raw.replace("private", "public-read"))


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(request=_requests, data=st.data())
def test_signed_requests_verify_and_mutations_break_them(
    request: dict[str, Any], data: st.DataObject
) -> None:
    signed = sign_request(SEED_SECRET, request)
    raw = php_json_encode(signed)
    obj = json.loads(raw)
    assert verify_signature([SEED_SECRET], raw, obj, obj["signature"])
    # Sent in another layout, the PHP re-encoding of the parsed object still matches, as
    # long as that layout spells every number as PHP did: json.dumps writes the float 1.0
    # that PHP wrote as 1, and a re-encoding never vouches for a number spelled otherwise.
    spaced = json.dumps(signed)
    same_numbers = numbers_in(spaced) == numbers_in(raw)
    relaid = verify_signature([SEED_SECRET], spaced, json.loads(spaced), signed["signature"])
    assert relaid == same_numbers

    mutated = dict(obj)
    change = data.draw(st.sampled_from(["replace", "add", "remove"]), label="change")
    if change == "add" or not request:
        key = data.draw(_php_keys.filter(lambda k: k not in mutated), label="new key")
        mutated[key] = data.draw(_json_values, label="new value")
    else:
        key = data.draw(st.sampled_from(sorted(request)), label="key")
        if change == "remove":
            del mutated[key]
        else:
            value = data.draw(_json_values, label="value")
            # Values PHP writes identically (10 and 10.0) are the same request on the wire.
            assume(php_json_encode(value) != php_json_encode(mutated[key]))
            mutated[key] = value
    tampered = php_json_encode(mutated)
    mutated_obj = json.loads(tampered)
    assert not verify_signature([SEED_SECRET], tampered, mutated_obj, mutated_obj["signature"])


# --- one signature, one object (issue 12, item 4) ---------------------------------------------


@pytest.mark.parametrize(
    ("signed_value", "sent_spelling"),
    [
        (1, "1.0"),  # PHP writes the float 1.0 as 1
        (1, "1e0"),
        (0, "-0"),
        (18446744073709551999, "18446744073709551999"),  # PHP writes it 1.8446744073709552e+19
        (10, "1.0e+1"),
    ],
)
def test_a_signature_vouches_only_for_the_numbers_as_signed(
    signed_value: object, sent_spelling: str
) -> None:
    """A client signed {"n": <signed_value>} as PHP writes it; an attacker sends the same
    signature with the number spelled another way, which PHP's re-encoding would write as
    the signed text. Refused: a re-encoding must reproduce every number as received."""
    request = {"command": "aws.status", "metadata": {"n": signed_value}}
    signed = sign_request(SEED_SECRET, request)
    honest = php_json_encode(signed)
    assert verify_signature([SEED_SECRET], honest, json.loads(honest), signed["signature"])
    forged = honest.replace(f'"n":{php_json_encode(signed_value)}', f'"n":{sent_spelling}')
    assert forged != honest
    assert not verify_signature([SEED_SECRET], forged, json.loads(forged), signed["signature"])


def test_numbers_in_reads_numbers_as_spelled_and_skips_strings() -> None:
    text = '{"a":1.0,"b":"x 12 \\" 3","c":[1,-2e5,3.25E-1],"d":true,"1":null}'
    assert numbers_in(text) == ["1.0", "1", "-2e5", "3.25E-1"]


def test_long_texts_are_only_cut_never_re_encoded() -> None:
    # Re-encoding is most of what a wrong signature costs before authentication: beyond
    # REENCODE_LIMIT only the byte-exact cut is a candidate.
    request = {**REQUEST, "padding": "/" * REENCODE_LIMIT}
    raw = json.dumps({**request, "signature": "x"}, indent=1)
    assert list(candidate_texts(raw, json.loads(raw))) == [json.dumps(request, indent=1)]
    signed = sign_request(SEED_SECRET, request)
    assert verify_signature([SEED_SECRET], php_json_encode(signed), signed, signed["signature"])
    # Re-laid out, the same request is no longer recognised: its signed text is not cut out.
    spaced = json.dumps(signed)
    assert not verify_signature([SEED_SECRET], spaced, signed, signed["signature"])
