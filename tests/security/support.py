"""Shared pieces of the attack suites: a server with an injectable clock, signing and sending."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.envelopes import envelope_of
from tests.service import RunningService, running_service
from vod2s3.accounts import IssuedCredentials
from vod2s3.api.signature import compute_signature
from vod2s3.clock import Clock
from vod2s3.config import Settings
from vod2s3.jsonenc import php_json_encode
from vod2s3.store.schema import uploads


@contextmanager
def serving(
    settings: Settings, s3_endpoint: str, clock: Clock | None = None
) -> Iterator[RunningService]:
    """tests.service.running_service with the runtime's clock chosen by the test."""
    with running_service(settings, s3_endpoint, clock=clock) as running:
        yield running


def request_object(
    issued: IssuedCredentials, command: str, timestamp: float | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "command": command,
        "api_key": issued.api_key,
        "timestamp": int(time.time() if timestamp is None else timestamp),
        "cdn": issued.cdn,
        **fields,
    }


def sign(obj: dict[str, Any], secret: str) -> dict[str, Any]:
    """The PHP client's recipe: json_encode, HMAC the text, append 'signature'."""
    signed = dict(obj)
    signed["signature"] = compute_signature(secret, php_json_encode(obj))
    return signed


def signed_text(
    issued: IssuedCredentials, command: str, timestamp: float | None = None, **fields: Any
) -> str:
    return php_json_encode(
        sign(request_object(issued, command, timestamp, **fields), issued.secret)
    )


def post_json(http: httpx.Client, url: str, body: str | bytes) -> httpx.Response:
    content = body.encode("utf-8") if isinstance(body, str) else body
    return http.post(url, content=content, headers={"Content-Type": "application/json"})


def without_time(response: httpx.Response) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Everything a client can observe of an answer except how long it took."""
    body = envelope_of(response)
    body.pop("handle_time")
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("date", "content-length")
    }
    return response.status_code, body, headers


def upload_count(svc: RunningService, issued: IssuedCredentials | None = None) -> int:
    """Rows in the uploads table: all of them, or one account's."""
    query = select(func.count()).select_from(uploads)
    if issued is not None:
        query = query.where(uploads.c.cdn_id == issued.cdn)
    with svc.runtime.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def compact(obj: Any) -> str:
    """Python json.dumps(separators=(",", ":")): one of the encodings the server accepts."""
    return json.dumps(obj, separators=(",", ":"))
