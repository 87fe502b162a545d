"""Typed access to the fields of a request object, with messages that say how to fix them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vod2s3.errors import BadRequest, MissingField

# ASCII digits only: Python's \d and int() also take Arabic-Indic, fullwidth and other
# Unicode digits, which no client means as a number.
_INT_TEXT = re.compile(r"^-?[0-9]{1,18}$")
# The same bound for numbers as for numeric strings: at most 18 digits. A bigger JSON number
# would overflow a float (the clock check) or a 64-bit database integer (ids).
_INT_LIMIT = 10**18


def as_int(obj: Mapping[str, Any], name: str, value: Any) -> int:
    # bool is an int in Python, but `true` is not a number to a client.
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= _INT_LIMIT:
            raise BadRequest(f"Field '{name}' must be a whole number of at most 18 digits")
        return value
    if isinstance(value, str) and _INT_TEXT.match(value.strip()):
        return int(value.strip())
    raise BadRequest(f"Field '{name}' must be a whole number, got {_describe(value)}")


def required_int(obj: Mapping[str, Any], name: str) -> int:
    if name not in obj or obj[name] is None:
        raise MissingField(f"Field '{name}' is required")
    return as_int(obj, name, obj[name])


def optional_int(
    obj: Mapping[str, Any], name: str, default: int, low: int, high: int | None = None
) -> int:
    if obj.get(name) in (None, ""):
        return default
    value = as_int(obj, name, obj[name])
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"Field '{name}' must be {bounds}, got {value}")
    return value


def required_str(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None or value == "":
        raise MissingField(f"Field '{name}' is required")
    if not isinstance(value, str):
        raise BadRequest(f"Field '{name}' must be a string, got {_describe(value)}")
    return value


def optional_str(obj: Mapping[str, Any], name: str, max_length: int = 1024) -> str:
    value = obj.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"Field '{name}' must be a string, got {_describe(value)}")
    if len(value) > max_length:
        raise BadRequest(f"Field '{name}' is longer than {max_length} characters")
    if has_control_chars(value):
        raise BadRequest(f"Field '{name}' must not contain control characters")
    return value


def one_of(obj: Mapping[str, Any], name: str, choices: tuple[str, ...], required: bool) -> str:
    value = required_str(obj, name) if required else optional_str(obj, name)
    if value == "" and not required:
        return ""
    if value not in choices:
        listed = " or ".join(f"'{c}'" for c in choices)
        raise BadRequest(f"Field '{name}' must be {listed}")
    return value


def has_control_chars(text: str) -> bool:
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
