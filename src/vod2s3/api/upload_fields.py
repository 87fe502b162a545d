"""Checks of the aws.upload fields that do not touch storage or the database."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from vod2s3.api.body import parse_json
from vod2s3.api.fields import has_control_chars, one_of, optional_str
from vod2s3.callbacks.ssrf import Network, check_url_literal, with_scheme
from vod2s3.errors import BadRequest
from vod2s3.headers import encode_value
from vod2s3.storage import control_character

ACLS = ("private", "public-read")
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
)
SSE_MODES = ("AES256", "aws:kms")
MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048
MAX_CALLBACK_LENGTH = 2048
# RFC 9110 token characters: what an x-amz-meta-* header name may be made of.
# Used with fullmatch: '$' would also match before a trailing newline ("title\n").
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;.*)?")

mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("video/x-matroska", ".mkv")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("video/x-flv", ".flv")


def object_key(destination_path: str, default: str) -> str:
    key = (destination_path or default).lstrip("/")
    if not key:
        raise BadRequest("Field 'destination_path' must name an object, not only '/'")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadRequest(f"Field 'destination_path' is longer than {MAX_KEY_BYTES} bytes (UTF-8)")
    bad = control_character(key)
    if bad is not None:
        raise BadRequest(
            f"Field 'destination_path' contains the control character {bad}: name the object "
            "without control, line-separator or bidirectional-override characters"
        )
    if ".." in key.split("/"):
        raise BadRequest(
            "Field 'destination_path' must not contain a '..' segment: clients and consoles "
            "that resolve it would show another key; name the object without it"
        )
    return key


def metadata(value: Any) -> dict[str, str]:
    """User metadata as an object of strings. PHP sends an empty array as []; some clients
    send the object JSON-encoded as a string: both are accepted."""
    if value is None or value == "" or value == []:
        return {}
    if isinstance(value, str):
        # The same parser and rules as the request object itself.
        try:
            value = parse_json(value, "The JSON text")
        except BadRequest as error:
            raise BadRequest(
                "Field 'metadata' must be an object of strings (or a JSON string holding "
                f"one): {error.message}"
            ) from None
        if value == [] or value is None:
            return {}
    if not isinstance(value, Mapping):
        raise BadRequest('Field \'metadata\' must be an object of strings, e.g. {"title": "…"}')
    result: dict[str, str] = {}
    seen: set[str] = set()
    for key, item in value.items():
        if not _HEADER_NAME.fullmatch(key):
            raise BadRequest(
                f"Metadata key {key!r} is not valid: use ASCII letters, digits and "
                "!#$%&'*+-.^_`|~ (no spaces)"
            )
        if key.lower() in seen:
            # Header names are case-insensitive: S3 would keep only one of the two values.
            raise BadRequest(f"Metadata key {key!r} appears twice (keys ignore letter case)")
        seen.add(key.lower())
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise BadRequest(f"Metadata value for {key!r} must be a string")
        text = str(item)
        if has_control_chars(text):
            raise BadRequest(f"Metadata value for {key!r} must not contain control characters")
        if _LONE_SURROGATE.search(text):
            # Only reachable through the JSON-string form ("\\ud800" inside the string): the
            # request object itself is refused with one.
            raise BadRequest(
                f"Metadata value for {key!r} holds an unpaired surrogate (\\ud800-\\udfff): "
                "send valid Unicode text"
            )
        result[key] = text
    # S3 counts the values as they are sent: a value that is not plain ASCII goes RFC
    # 2047-encoded (vod2s3.headers), which is longer than its UTF-8.
    size = sum(len(k.encode("utf-8")) + len(encode_value(v)) for k, v in result.items())
    if size > MAX_METADATA_BYTES:
        raise BadRequest(
            f"Metadata is {size} bytes as sent to S3; S3 allows at most {MAX_METADATA_BYTES} "
            "bytes of keys and values in total (a value with non-ASCII characters is sent "
            "base64-encoded, about 4/3 of its UTF-8 size plus 12 bytes)"
        )
    return result


def callback_url(value: Any, allow: Sequence[Network]) -> str:
    """The callback URL as given ("" for none), after checking its shape and, for a literal
    address in any spelling, that callbacks may go there (names are checked at delivery)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise BadRequest("Field 'callback' must be a URL string")
    if len(value) > MAX_CALLBACK_LENGTH:
        raise BadRequest(f"Field 'callback' is longer than {MAX_CALLBACK_LENGTH} characters")
    if has_control_chars(value) or any(ch.isspace() for ch in value):
        raise BadRequest("Field 'callback' must not contain spaces or control characters")
    target = with_scheme(value)
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise BadRequest(f"Field 'callback' is not a valid URL: {value!r}") from None
    if parts.scheme not in ("http", "https"):
        raise BadRequest("Field 'callback' must be an http:// or https:// URL")
    if not parts.hostname:
        raise BadRequest(f"Field 'callback' has no host name: {value!r}")
    if parts.username or parts.password:
        raise BadRequest("Field 'callback' must not contain a user name or password")
    problem = check_url_literal(value, allow)
    if problem:
        raise BadRequest(f"Field 'callback' is refused: {problem}")
    return value


def s3_options(obj: Mapping[str, Any], key: str) -> dict[str, str]:
    """The optional S3 settings beyond the original API."""
    content_type = optional_str(obj, "content_type", 255)
    if content_type and not _MEDIA_TYPE.fullmatch(content_type):
        raise BadRequest("Field 'content_type' must be a media type such as 'video/mp4'")
    sse = one_of(obj, "server_side_encryption", SSE_MODES, required=False)
    kms_key = optional_str(obj, "sse_kms_key_id", 2048)
    if kms_key and sse != "aws:kms":
        raise BadRequest("Field 'sse_kms_key_id' needs 'server_side_encryption': 'aws:kms'")
    return {
        "content_type": content_type or guess_content_type(key),
        "cache_control": optional_str(obj, "cache_control", 1024),
        "storage_class": one_of(obj, "storage_class", STORAGE_CLASSES, required=False),
        "server_side_encryption": sse,
        "sse_kms_key_id": kms_key,
        "request_payer": one_of(obj, "request_payer", ("requester",), required=False),
    }


def guess_content_type(key: str) -> str:
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or "application/octet-stream"
