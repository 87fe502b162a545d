"""Assertions on the response envelope every answer of the API uses."""

from __future__ import annotations

from typing import Any

import httpx

from vod2s3.errors import API_CODES

ENVELOPE_KEYS = {"status", "message", "handle_time", "data"}
# What a client must never see in any answer.
LEAK_MARKERS = ("Traceback", 'File "', "site-packages", "/src/vod2s3/")


def envelope_of(response: httpx.Response) -> dict[str, Any]:
    """The envelope, after checking its shape, its content type and that it leaks nothing."""
    for marker in LEAK_MARKERS:
        assert marker not in response.text, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    body: dict[str, Any] = response.json()
    assert body.get("status") in ("success", "failure"), body
    if body["status"] == "failure":
        # ScaleEngine's code, or vod2s3's own: always one of the documented ones.
        assert set(body) == ENVELOPE_KEYS | {"code"}, body
        assert body["code"] in API_CODES, body
    else:
        assert set(body) == ENVELOPE_KEYS, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["handle_time"], float)
    assert body["handle_time"] >= 0
    assert round(body["handle_time"], 3) == body["handle_time"]  # to the millisecond only
    return body


def ok(response: httpx.Response) -> dict[str, Any]:
    body = envelope_of(response)
    assert response.status_code == 200, body
    assert body["status"] == "success", body
    return body


def refused(response: httpx.Response, status: int, *expected: str) -> str:
    """Assert a failure envelope with ``status``; returns its message, which must contain
    every one of ``expected``."""
    body = envelope_of(response)
    assert response.status_code == status, body
    assert body["status"] == "failure"
    assert body["data"] is None
    for text in expected:
        assert text in body["message"], (text, body["message"])
    return str(body["message"])
