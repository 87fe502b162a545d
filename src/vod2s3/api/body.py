"""Turning an HTTP request into (the JSON text as received, the parsed request object)."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from vod2s3.errors import (
    MalformedRequest,
    MissingField,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

T = TypeVar("T")
FORM_FIELD = "json"
MAX_DEPTH = 32
# Values of any kind (object keys included) in one request object, or in JSON sent inside
# one of its strings. A real request has a few dozen; metadata at most a few hundred (S3
# takes 2 KB of it).
MAX_VALUES = 1000
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
ACCEPTED_TYPES = (
    "multipart/form-data or application/x-www-form-urlencoded with the request object in "
    "the form field 'json', or application/json with the request object as the body"
)


@dataclass(frozen=True)
class ParsedBody:
    raw: str  # the JSON text exactly as the client sent it (needed to check the signature)
    obj: dict[str, Any]


async def read_limited(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused past ``limit`` bytes or when it takes longer than ``timeout`` seconds
    to arrive (a client trickling bytes would otherwise hold a connection forever)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"Request body is larger than the {limit}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout:g} s: send it in one go"
        ) from None
    return b"".join(chunks)


async def parse_body(request: Request, limit: int, timeout: float) -> ParsedBody:
    body = await read_limited(request, limit, timeout)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        raw = _utf8(body, "The request body")
    elif media_type == "application/x-www-form-urlencoded":
        raw = _urlencoded_field(body)
    elif media_type == "multipart/form-data":
        raw = await _multipart_field(request, body)
    elif not media_type:
        raise UnsupportedMediaType(f"Missing Content-Type: send {ACCEPTED_TYPES}")
    else:
        raise UnsupportedMediaType(
            f"Content-Type '{media_type}' is not accepted: send {ACCEPTED_TYPES}"
        )
    return ParsedBody(raw=raw, obj=parse_request_object(raw))


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest(f"{what} is not valid UTF-8") from None


def _urlencoded_field(body: bytes) -> str:
    text = _utf8(body, "The form body")
    try:
        fields = parse_qs(text, keep_blank_values=True, errors="strict", max_num_fields=100)
    except (ValueError, UnicodeDecodeError):
        raise MalformedRequest(
            "The form body is not valid application/x-www-form-urlencoded"
        ) from None
    values = fields.get(FORM_FIELD)
    if not values:
        raise MissingField(f"Form field '{FORM_FIELD}' is missing: send the request object in it")
    return _only(values)


def _only(values: Sequence[T]) -> T:
    """The one value of the form field: two would leave it to the parser which one the
    signature was checked against and which one is acted on."""
    if len(values) > 1:
        raise MalformedRequest(
            f"Form field '{FORM_FIELD}' is sent {len(values)} times: send the request object once"
        )
    return values[0]


async def _multipart_field(request: Request, body: bytes) -> str:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=0, max_fields=100)
    except HTTPException as error:  # Starlette's own checks, with a message worth passing on
        if "files" in str(error.detail):
            raise MalformedRequest(
                f"File parts are not accepted: send the request object in the text field "
                f"'{FORM_FIELD}' (a part without a filename)"
            ) from None
        raise MalformedRequest(
            f"The multipart/form-data body could not be parsed: {error.detail}"
        ) from None
    except Exception:  # python-multipart raises several unrelated types for bad input
        raise MalformedRequest("The multipart/form-data body could not be parsed") from None
    values = form.getlist(FORM_FIELD)
    if not values:
        raise MissingField(f"Form field '{FORM_FIELD}' is missing: send the request object in it")
    value = _only(values)
    if not isinstance(value, str):
        raise MalformedRequest(f"Form field '{FORM_FIELD}' must be text, not a file")
    return value


def _refuse_constant(name: str) -> Any:
    raise MalformedRequest(f"{name} is not allowed")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedRequest(f"the number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # Two members with one name would let the signature be checked against one
            # value while the command used the other.
            raise MalformedRequest(f"it has the key '{key}' twice")
        obj[key] = value
    return obj


def _shape_error(value: Any) -> str | None:
    """What is wrong with the shape of a parsed value, if anything: nesting deeper than
    MAX_DEPTH, more than MAX_VALUES values, or an unpaired surrogate in a string.

    Walks level by level and stops at the level that passes MAX_VALUES, so its cost does
    not grow with the body.
    """
    level: list[Any] = [value]
    depth = seen = 0
    strings: list[str] = []
    while level:
        depth += 1
        seen += len(level)
        if seen > MAX_VALUES:
            return f"holds more than {MAX_VALUES} values: send only the command's fields"
        below: list[Any] = []
        for item in level:
            if isinstance(item, str):
                strings.append(item)
            elif isinstance(item, dict):
                # Keys count as values: they are strings to check, and work to encode.
                strings.extend(item)
                seen += len(item)
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        if below and depth >= MAX_DEPTH and any(isinstance(i, dict | list) for i in below):
            return f"is nested deeper than {MAX_DEPTH} levels"
        level = below
    if _LONE_SURROGATE.search("".join(strings)) is not None:
        # "\ud800" without its pair is valid JSON syntax but no text: it cannot be encoded
        # as UTF-8 for a database, a header or a file name.
        return (
            "holds an unpaired surrogate escape (\\ud800-\\udfff) in a string: "
            "send text as valid Unicode (UTF-8)"
        )
    return None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a text is parsed. A body of tens of thousands of
    tiny lists would otherwise set off dozens of collections, some over the whole heap of
    a long-running server: far more work than the parse. What the parse builds has no
    cycles, so reference counting frees it all."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse_json(raw: str, what: str) -> Any:
    """``raw`` as JSON under the request's rules, wherever JSON text arrives (the request
    object, and JSON carried inside one of its strings): nesting at most MAX_DEPTH, at most
    MAX_VALUES values, no duplicated keys, no NaN or Infinity and no number beyond a float's
    range, no unpaired surrogate. ``what`` names the text in the messages ("The request
    object").

    Whatever a client sends, the work is bounded: one pass of the C parser over at most the
    body limit, then Python-level work on at most MAX_VALUES values. A body made to be
    expensive (tens of thousands of nested lists) is refused after the C pass.
    """
    try:
        # The C parser alone first: it is fast on any text, and it finds what is not JSON.
        with _collector_paused():
            shape = _shape_error(json.loads(raw))
    except json.JSONDecodeError as error:
        raise MalformedRequest(
            f"{what} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        shape = f"is nested deeper than {MAX_DEPTH} levels"
    except ValueError:
        # int() refuses numbers of more than 4300 digits (CPython's DoS guard).
        raise MalformedRequest(f"{what} holds a number with too many digits") from None
    if shape is not None:
        raise MalformedRequest(f"{what} {shape}")
    try:
        # Again with the rules the C parser does not apply, on a value now known to be small.
        return json.loads(
            raw,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite,
        )
    except MalformedRequest as error:
        raise MalformedRequest(f"{what} is not valid: {error.message}") from None


def parse_request_object(raw: str) -> dict[str, Any]:
    if not raw.strip():
        raise MalformedRequest("The request object is empty: send a JSON object")
    obj = parse_json(raw, "The request object")
    if not isinstance(obj, dict):
        raise MalformedRequest(
            "The request object must be a JSON object ({...}), not a list or value"
        )
    return obj
