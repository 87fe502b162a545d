"""User metadata as S3 can carry it: HTTP header values, so non-ASCII goes RFC 2047-encoded."""

from __future__ import annotations

import base64
import email.header
from collections.abc import Mapping

_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {key: encode_value(value) for key, value in metadata.items()}


def encode_value(value: str) -> str:
    """``value`` unchanged when it is a plain header value, else one RFC 2047 encoded word.

    botocore refuses non-ASCII header values; control characters would break the header;
    HTTP drops surrounding spaces; and a value that already looks like an encoded word would
    be decoded by readers. S3 stores the encoded form as sent.
    """
    plain = (
        set(value) <= _PRINTABLE_ASCII
        and value == value.strip(" ")
        and not (value.startswith("=?") and value.endswith("?="))
    )
    if plain:
        return value
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return f"=?UTF-8?B?{encoded}?="


def decode_value(value: str) -> str:
    """The inverse of :func:`encode_value`, for values read back from S3."""
    if not (value.startswith("=?") and value.endswith("?=")):
        return value
    return str(email.header.make_header(email.header.decode_header(value)))
