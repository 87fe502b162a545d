"""JSON encoders that reproduce, byte for byte, what client libraries write.

A request's signature is an HMAC over the JSON text the client built *before* it added the
``signature`` member. When that text cannot be cut out of the received body, the server rebuilds
it by re-encoding the parsed object the way the client's library would have, so these encoders
must match those libraries exactly, not merely produce equivalent JSON.

Inputs are what :func:`json.loads` returns (``dict`` with ``str`` keys in received order,
``list``, ``str``, ``int``, ``float``, ``bool``, ``None``). Both encoders raise :class:`ValueError`
for a value the imitated library cannot encode (NaN, infinities, lone surrogates, and for PHP
nesting deeper than 512), so callers can skip that candidate text; other types raise
:class:`TypeError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii

__all__ = ["PHP_MAX_DEPTH", "php_json_encode", "plain_json_encode"]

# json_encode()'s default $depth; PHP returns false (JSON_ERROR_DEPTH) beyond it, and every
# array or object counts, even an empty one.
PHP_MAX_DEPTH = 512

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# PHP's float printer (php_gcvt with serialize_precision = -1) switches to exponent form when
# the decimal point position is outside [-3, 17].
_PHP_FIXED_MIN_DECPT = -3
_PHP_FIXED_MAX_DECPT = 17

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_DEL = "\x7f"


def _php_string(text: str) -> str:
    # Python's ASCII-only string encoder (C) writes what PHP writes: the same short escapes
    # (\" \\ \b \f \n \r \t), other control and non-ASCII characters as lowercase \uXXXX,
    # surrogate pairs beyond the BMP. PHP also escapes "/" (and, in that output, a "/" is
    # never part of an escape), and leaves DEL raw where Python writes \u007f. Kept in C for
    # every character: this runs on request bodies before anyone is authenticated.
    if _SURROGATE.search(text):
        # A lone surrogate is invalid UTF-8 on PHP's side: json_encode() fails
        # (JSON_ERROR_UTF8), so no PHP client can have signed such a text.
        raise ValueError("string contains a lone surrogate; PHP's json_encode cannot encode it")
    if _DEL not in text:
        return encode_basestring_ascii(text).replace("/", "\\/")
    # Each DEL-free piece encoded on its own, joined with raw DEL: '"a"\x7f"b"'. A raw DEL
    # appears nowhere else in the output (the encoder escapes it), so dropping the quotes
    # around each one leaves '"a\x7fb"'.
    pieces = _DEL.join(map(encode_basestring_ascii, text.split(_DEL)))
    return pieces.replace('"' + _DEL + '"', _DEL).replace("/", "\\/")


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of abs(value) and the decimal point position (dtoa mode 0).

    Python's repr and PHP's zend_dtoa(mode 0) both use David Gay's shortest round-trip
    algorithm, so repr's digits are PHP's digits; only the layout differs.
    """
    mantissa, _, exponent = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    significant = all_digits.lstrip("0")
    if not significant:
        return "0", 1
    leading_zeros = len(all_digits) - len(significant)
    decpt = len(int_part) + int(exponent or "0") - leading_zeros
    return significant.rstrip("0"), decpt


def _php_float(value: float) -> str:
    """Format a float exactly as PHP 7.1+ json_encode does (serialize_precision = -1)."""
    if not math.isfinite(value):
        raise ValueError("Inf and NaN cannot be JSON encoded (PHP's json_encode fails)")
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    digits, decpt = _shortest_digits(value)
    if decpt < _PHP_FIXED_MIN_DECPT or decpt > _PHP_FIXED_MAX_DECPT:
        exponent = decpt - 1
        body = digits[0] + "." + (digits[1:] or "0")
        return f"{sign}{body}e{'-' if exponent < 0 else '+'}{abs(exponent)}"
    if decpt <= 0:
        return f"{sign}0.{'0' * -decpt}{digits}"
    if len(digits) <= decpt:
        return sign + digits + "0" * (decpt - len(digits))
    return f"{sign}{digits[:decpt]}.{digits[decpt:]}"


def _php_scalar(value: object) -> str:
    if isinstance(value, str):
        return _php_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return str(value)
        # PHP integers are 64-bit and json_decode turns a longer integer into a float, so the
        # only way PHP writes such a number is as that float.
        try:
            as_float = float(value)
        except OverflowError:
            raise ValueError("integer too large for a PHP float") from None
        return _php_float(as_float)
    if isinstance(value, float):
        return _php_float(value)
    raise TypeError(f"cannot JSON-encode a {type(value).__name__}")


def _php_members(value: dict[object, object]) -> Iterator[tuple[str, object]]:
    for index, (key, item) in enumerate(value.items()):
        if not isinstance(key, str):
            raise TypeError(f"object keys must be str, not {type(key).__name__}")
        yield ("," if index else "") + _php_string(key) + ":", item


def _php_elements(value: list[object] | tuple[object, ...]) -> Iterator[tuple[str, object]]:
    for index, item in enumerate(value):
        yield ("," if index else ""), item


def php_json_encode(value: object) -> str:
    """``json_encode($value)`` with PHP's default flags, PHP >= 7.1 (serialize_precision -1).

    Compact; ``/`` as ``\\/``; non-ASCII as lowercase ``\\uXXXX`` (surrogate pairs beyond the
    BMP); control characters as ``\\uXXXX`` except ``\\b \\f \\n \\r \\t``; DEL raw; floats in
    PHP's own layout (``1.0e+25``, ``1.0e-5``, ``0.0001``, ``-0``, and integral floats without
    ``.0`` such as ``10``); integers outside int64 as PHP's float for them. An empty dict is
    ``{}``: it came from a JSON object, which PHP's json_decode (without $assoc) keeps as
    stdClass.
    """
    out: list[str] = []
    # An explicit stack rather than recursion: 512 levels would exhaust Python's stack.
    open_containers: list[tuple[Iterator[tuple[str, object]], str]] = []
    current = value
    while True:
        if isinstance(current, dict | list | tuple):
            if len(open_containers) >= PHP_MAX_DEPTH:
                raise ValueError(f"nesting deeper than {PHP_MAX_DEPTH}; PHP's json_encode fails")
            if isinstance(current, dict):
                out.append("{")
                open_containers.append((_php_members(current), "}"))
            else:
                out.append("[")
                open_containers.append((_php_elements(current), "]"))
        else:
            out.append(_php_scalar(current))
        while open_containers:
            members, closer = open_containers[-1]
            following = next(members, None)
            if following is not None:
                separator, current = following
                out.append(separator)
                break
            open_containers.pop()
            out.append(closer)
        else:
            return "".join(out)


def plain_json_encode(value: object, *, ascii_only: bool) -> str:
    """Compact JSON as Python ``json.dumps(separators=(",", ":"))``, JS ``JSON.stringify`` and
    Ruby ``JSON.generate`` write it for strings, integers, nesting and key order.

    No slash escaping. ``ascii_only=False`` writes non-ASCII as raw characters (U+2028/U+2029
    included); ``True`` writes them as lowercase ``\\uXXXX`` like Python's ``ensure_ascii``
    (which also escapes DEL as ``\\u007f``). Floats follow Python's repr (``1.0``, ``1e+25``);
    JS (``1``, ``1e+25``) and Ruby (``1.0``, ``1.0e+25``) differ there, and only there.
    """
    text = json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=False)
    if not ascii_only and _SURROGATE.search(text):
        # Raw output is sent as UTF-8, which cannot carry a lone surrogate.
        raise ValueError("string contains a lone surrogate; it cannot be written as UTF-8")
    return text
