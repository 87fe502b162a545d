"""Request signatures: ``base64(HMAC-SHA256(secret, JSON text of the request without signature))``.

The signed text is whatever the client's encoder wrote before it added ``signature``; the server
never sees it directly. It is recovered first by cutting the ``signature`` member out of the
received text (exact for any encoder that appends the member, which is what clients do), then by
re-encoding the parsed object the ways common client libraries would (SPEC §2).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence

from vod2s3.jsonenc import php_json_encode, plain_json_encode
from vod2s3.signing import SIGNATURE_FIELD, compute_signature

__all__ = [
    "REENCODE_LIMIT",
    "SIGNATURE_FIELD",
    "candidate_texts",
    "compute_signature",
    "cut_signature",
    "numbers_in",
    "verify_signature",
]

# Longer texts are checked only as cut (byte-exact), not re-encoded: every field of a real
# request together (2 KB of metadata written as PHP's \uXXXX escapes, a 2,048-character
# callback URL, paths) stays far below it, and re-encoding is most of the work a wrong
# signature costs before anyone is authenticated.
REENCODE_LIMIT = 16 * 1024

# Only the literal spelling counts: a key written with escapes is left to the re-encodings, so
# the scanner never has to decode strings.
_SIGNATURE_KEY = '"' + SIGNATURE_FIELD + '"'

_WS = re.compile(r"[ \t\n\r]*")
# Unrolled so matching is linear in the string's length.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Inside a container only strings and brackets matter; a bare quote means an unterminated string.
_CONTAINER_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|["{}\[\]]', re.DOTALL)
_SCALAR = re.compile(r"[^ \t\n\r,:{}\[\]\"]+")


class _Malformed(Exception):
    """The text is not a JSON object this scanner can take apart."""


def _skip_ws(raw: str, pos: int) -> int:
    match = _WS.match(raw, pos)
    return match.end() if match else pos


def _skip_string(raw: str, pos: int) -> int:
    match = _STRING.match(raw, pos)
    if match is None:
        raise _Malformed
    return match.end()


def _skip_container(raw: str, pos: int) -> int:
    depth = 0
    while True:
        match = _CONTAINER_TOKEN.search(raw, pos)
        if match is None:
            raise _Malformed
        lexeme = match.group()
        pos = match.end()
        if lexeme in ("{", "["):
            depth += 1
        elif lexeme in ("}", "]"):
            depth -= 1
            if depth == 0:
                return pos
        elif lexeme == '"':
            raise _Malformed


def _skip_value(raw: str, pos: int) -> int:
    if pos >= len(raw):
        raise _Malformed
    first = raw[pos]
    if first == '"':
        return _skip_string(raw, pos)
    if first in "{[":
        return _skip_container(raw, pos)
    match = _SCALAR.match(raw, pos)
    if match is None:
        raise _Malformed
    return match.end()


def _closing(raw: str, pos: int) -> int:
    # Anything after the object other than whitespace would make json.loads refuse the text.
    if _skip_ws(raw, pos + 1) != len(raw):
        raise _Malformed
    return pos


def _top_level_members(raw: str) -> tuple[list[tuple[int, int, str]], int, int]:
    """Spans ``(key start, value end, raw key text)`` of the top-level object's members, and the
    positions just after its ``{`` and of its ``}``."""
    pos = _skip_ws(raw, 0)
    if not raw.startswith("{", pos):
        raise _Malformed
    open_end = pos + 1
    members: list[tuple[int, int, str]] = []
    pos = _skip_ws(raw, open_end)
    if raw.startswith("}", pos):
        return members, open_end, _closing(raw, pos)
    while True:
        key_start = pos
        key_end = _skip_string(raw, key_start)
        pos = _skip_ws(raw, key_end)
        if not raw.startswith(":", pos):
            raise _Malformed
        value_end = _skip_value(raw, _skip_ws(raw, pos + 1))
        members.append((key_start, value_end, raw[key_start:key_end]))
        pos = _skip_ws(raw, value_end)
        if raw.startswith(",", pos):
            pos = _skip_ws(raw, pos + 1)
        elif raw.startswith("}", pos):
            return members, open_end, _closing(raw, pos)
        else:
            raise _Malformed


def cut_signature(raw: str) -> str | None:
    """The received text with its top-level ``"signature"`` member cut out, otherwise byte-exact.

    The member goes with one adjacent comma, the preceding one if there is one, and the
    whitespace around that comma, which is what the client's encoder wrote before the member was
    added: ``'{"a": 1, "signature": "x"}'`` gives ``'{"a": 1}'``. ``None`` when the text is not a
    JSON object, has no top-level member spelled exactly ``"signature"``, or has more than one
    (no encoder writes duplicates, and guessing which one was added is not worth it).
    """
    try:
        members, open_end, close_start = _top_level_members(raw)
    except _Malformed:
        return None
    found = [index for index, member in enumerate(members) if member[2] == _SIGNATURE_KEY]
    if len(found) != 1:
        return None
    index = found[0]
    if index > 0:
        cut_from, cut_to = members[index - 1][1], members[index][1]
    elif len(members) > 1:
        cut_from, cut_to = members[0][0], members[1][0]
    else:
        # The client signed an empty object; encoders write that without inner whitespace.
        cut_from, cut_to = open_end, close_start
    return raw[:cut_from] + raw[cut_to:]


def candidate_texts(raw: str, obj: Mapping[str, object]) -> Iterator[str]:
    """The texts a client may have signed, most likely first, without duplicates.

    A generator: the byte-exact cut comes first and the re-encodings are made only if the
    caller asks for more (:func:`verify_signature` stops at the first match), and only for a
    text of at most REENCODE_LIMIT characters. Re-encodings the object cannot have come from
    (NaN, lone surrogates, too deep for PHP) are left out rather than raised.
    """
    given: list[str] = []
    cut = cut_signature(raw)
    if cut is not None:
        given.append(cut)
        yield cut
    if len(raw) > REENCODE_LIMIT:
        return
    received = numbers_in(raw)
    if received is None:
        return  # not JSON: no spelling of a number to hold a re-encoding to
    unsigned = {key: value for key, value in obj.items() if key != SIGNATURE_FIELD}
    encoders: tuple[Callable[[object], str], ...] = (
        php_json_encode,
        lambda value: plain_json_encode(value, ascii_only=False),
        lambda value: plain_json_encode(value, ascii_only=True),
    )
    for encode in encoders:
        try:
            text = encode(unsigned)
        except ValueError:
            continue
        # A re-encoding stands for the received text only if it spells every number as it
        # was received: PHP's writes 1.0 as 1, and a float for a huge integer, so a
        # signature over {"n":1} must not also vouch for {"n":1.0}.
        if text not in given and numbers_in(text) == received:
            given.append(text)
            yield text


def numbers_in(text: str) -> list[str] | None:
    """The numbers of a JSON text, as spelled, in order; None if the text is not JSON.

    Read by the C parser, which hands each number's spelling to a hook: the cost is a C pass
    over the text plus one call per number, however many strings or escapes it holds.
    """
    spelled: list[str] = []

    def record(spelling: str) -> int:
        spelled.append(spelling)
        return 0

    try:
        json.loads(text, parse_int=record, parse_float=record)
    except (ValueError, RecursionError):
        return None
    return spelled


def verify_signature(
    secrets: Sequence[str], raw: str, obj: Mapping[str, object], signature: object
) -> bool:
    """Whether ``signature`` signs one of :func:`candidate_texts` with one of ``secrets``.

    Several secrets are valid during a rotation's grace period. Never raises on client input:
    a signature that is not an ASCII string is simply wrong. Texts are tried in order and the
    first that matches ends the search, so a request signed over the text it sent (every
    known client) costs one text; a wrong signature costs them all. Within a text every
    secret is compared, with :func:`hmac.compare_digest`, so timing does not tell which
    secret matched; which text matched only the signer can know.
    """
    if isinstance(secrets, str):
        # A bare str is a Sequence[str] of one-character secrets: always a caller bug.
        raise TypeError("secrets must be a sequence of secrets, not a single str")
    if not isinstance(signature, str):
        return False
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:
        return False
    for text in candidate_texts(raw, obj):
        matched = False
        for secret in secrets:
            try:
                expected = compute_signature(secret, text).encode("ascii")
            except UnicodeEncodeError:
                # A lone surrogate in the received text cannot be what a client hashed as UTF-8.
                continue
            matched |= hmac.compare_digest(expected, given)
        if matched:
            return True
    return False
