"""One access-log line per API request: method, path, status, duration, and for the
ScaleEngine endpoints the command and cdn the request named (logger ``vod2s3.access``;
fields of their own under VOD2S3_LOG_FORMAT=json)."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("vod2s3.access")

# Set by /stable/ in the request's state once the body is parsed.
COMMAND, CDN, CLIENT = "access_command", "access_cdn", "access_client"


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._line(scope, status, time.perf_counter() - started)

    @staticmethod
    def _line(scope: Scope, status: int, seconds: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        state: dict[str, Any] = scope.get("state") or {}
        client = state.get(CLIENT) or (scope.get("client") or ("-",))[0]
        command, cdn = state.get(COMMAND), state.get(CDN)
        fields = {
            "event": "request",
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client": client,
            "command": command,
            "cdn": cdn,
        }
        log.info(
            "%s %s %s %d %.1f ms%s",
            client,
            scope["method"],
            scope["path"],
            status,
            seconds * 1000,
            f" {command} cdn={cdn}" if command else "",
            extra=fields,
        )
