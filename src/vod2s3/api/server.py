"""The HTTP server the API runs under: uvicorn with its httptools protocol, plus the
connection limits uvicorn does not have (docs/decisions.md says why not another server).

- A **header deadline**: a connection must send a request's headers within
  ``header_timeout`` seconds of connecting, or of the first byte of a later request on a
  kept-alive connection; otherwise it is closed. uvicorn alone holds a connection that
  never finishes its headers, or trickles them, for ever.
- A **cap on open connections per client address** (trusted proxies exempt: they carry
  everyone's) and **in all**, the latter kept below the process's file-descriptor limit, so
  idle connections cannot use up the descriptors that the database and new clients need.
  A connection over a cap is answered 503 with a failure envelope and closed at once.
- **Repeated events are logged once per interval** with a count, never once per event: the
  event loop's own errors (``accept()`` out of descriptors), refused connections and
  header deadlines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import time
from asyncio import TimerHandle
from collections.abc import Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vod2s3.api.access import AccessLog
from vod2s3.api.clientaddr import Network, client_address, is_trusted_proxy
from vod2s3.config import Settings
from vod2s3.errors import RateLimited

log = logging.getLogger("vod2s3.api")

# Descriptors kept free of client connections: the database pool, files being read,
# the listening sockets, logs.
RESERVED_DESCRIPTORS = 128
# Interval of the "N more like this" summaries of repeated events.
REPEAT_INTERVAL = 10.0


class RepeatedEvents:
    """Logs the first event of each kind, then at most one line per interval that says
    how many more there were."""

    def __init__(self, logger: logging.Logger, interval: float = REPEAT_INTERVAL) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def due(self, kind: str) -> str | None:
        """None when this event is to be counted, not logged; otherwise the suffix for its
        line: empty, or how many more of its kind there were since the last line."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        self._last[kind] = now
        more = self._suppressed.pop(kind, 0)
        return f" (and {more} more like this since)" if more else ""

    def report(self, kind: str, level: int, message: str, *args: object) -> None:
        suffix = self.due(kind)
        if suffix is not None:
            self._logger.log(level, message + suffix.replace("%", "%%"), *args)


def file_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class ConnectionLimits:
    """Open connections by client address, and in all. Used from the event loop only."""

    def __init__(
        self,
        per_address: int,
        total: int,
        proxies: Sequence[Network],
        events: RepeatedEvents,
    ) -> None:
        self.per_address = per_address
        self.total = total
        self._proxies = proxies
        self._events = events
        self._open: dict[str, int] = {}
        self._count = 0

    def key(self, peer: str | None) -> str | None:
        """The per-address key of a peer; None for a trusted proxy (not capped by address)."""
        if is_trusted_proxy(peer, self._proxies):
            return None
        return client_address(peer, (), ())

    def admit(self, key: str | None) -> str | None:
        """Count a new connection in; or, over a cap, the reason it is refused."""
        if self._count >= self.total:
            self._events.report(
                "connections-total",
                logging.WARNING,
                "refused a connection: %d connections are open, the most this process takes "
                "(VOD2S3_MAX_CONNECTIONS, or the open-file limit)",
                self._count,
            )
            return "The server has too many connections open: try again in a moment"
        if key is not None and self._open.get(key, 0) >= self.per_address:
            self._events.report(
                "connections-address",
                logging.WARNING,
                "refused a connection from %s: it has %d open, the most one address may have "
                "(VOD2S3_CONNECTIONS_PER_ADDRESS)",
                key,
                self.per_address,
            )
            return (
                f"Too many connections from your address (at most {self.per_address} at "
                "once): reuse a connection, or wait for one to close"
            )
        self._count += 1
        if key is not None:
            self._open[key] = self._open.get(key, 0) + 1
        return None

    def release(self, key: str | None) -> None:
        self._count -= 1
        if key is None:
            return
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)


def _refusal(message: str) -> bytes:
    envelope = {"status": "failure", "code": RateLimited.api_code, "message": message}
    body = json.dumps(envelope | {"handle_time": 0.0, "data": None}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def limited_protocol(
    limits: ConnectionLimits, header_timeout: float, events: RepeatedEvents
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the connection caps and the header deadline."""

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        _limit_key: str | None = None
        _admitted = False
        _header_timer: TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peer = self.client[0] if self.client else None
            self._limit_key = limits.key(peer)
            refused = limits.admit(self._limit_key)
            if refused is not None:
                transport.write(_refusal(refused))
                transport.close()
                return
            self._admitted = True
            self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_deadline()
            if self._admitted:
                self._admitted = False
                limits.release(self._limit_key)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_deadline()

        def on_headers_complete(self) -> None:
            self._disarm_header_deadline()
            super().on_headers_complete()

        def _arm_header_deadline(self) -> None:
            # Armed once per request: the clock runs from the connection (or the request's
            # first byte), and more bytes do not reset it.
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            events.report(
                "header-deadline",
                logging.INFO,
                "closed a connection from %s: no complete request headers within %g s "
                "(VOD2S3_HEADER_TIMEOUT)",
                self._limit_key or "a trusted proxy",
                header_timeout,
            )
            self.transport.close()

    return LimitedHttpToolsProtocol


class ApiServer(uvicorn.Server):
    """uvicorn's server, whose event loop logs its own repeated errors once per interval."""

    def __init__(self, config: uvicorn.Config, events: RepeatedEvents) -> None:
        super().__init__(config)
        self._events = events

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()

        def loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            message = str(context.get("message", "error"))
            suffix = self._events.due(f"loop: {message}")
            if suffix is not None:
                loop.default_exception_handler({**context, "message": message + suffix})

        loop.set_exception_handler(loop_error)
        await super().startup(sockets)


def api_server(app: Any, settings: Settings, host: str, port: int) -> ApiServer:
    """The API's server for ``app``, with every limit from ``settings``."""
    events = RepeatedEvents(log)
    total = min(settings.max_connections, max(16, file_descriptor_limit() - RESERVED_DESCRIPTORS))
    limits = ConnectionLimits(
        settings.connections_per_address, total, settings.trusted_proxies, events
    )
    config = uvicorn.Config(
        AccessLog(app),
        host=host,
        port=port,
        http=limited_protocol(limits, settings.header_timeout, events),
        # uvicorn's loggers follow the root logger's level (VOD2S3_LOG_LEVEL).
        log_level=None,
        access_log=False,  # ours is api/access.py: with the command and cdn, in our format
        # uvicorn's loggers go through ours (text or JSON) instead of its own format.
        log_config=None,
        timeout_keep_alive=5,
        server_header=False,
        # The app reads X-Forwarded-For itself, from VOD2S3_TRUSTED_PROXIES only (uvicorn
        # would believe it from 127.0.0.1 by default and rewrite the client's address).
        proxy_headers=False,
    )
    return ApiServer(config, events)
