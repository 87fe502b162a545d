"""The worker's HTTP port (`vod2s3 worker --metrics-port`): /metrics, and /healthz and
/readyz meaning what the API's do (the process is up; the database answers). Any other
path is 404."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from vod2s3.errors import Vod2s3Error
from vod2s3.metrics import Metrics
from vod2s3.metrics_auth import metrics_allowed

StartResponse = Callable[..., Any]


def _json(status: str, body: dict[str, Any], start: StartResponse) -> list[bytes]:
    data = json.dumps(body).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def health_app(metrics: Metrics, ping: Callable[[], None], token: str) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json("405 Method Not Allowed", {"status": "failure"}, start)
        if path == "/healthz":
            return _json("200 OK", {"status": "ok"}, start)
        if path == "/readyz":
            try:
                ping()
            except Vod2s3Error as error:
                return _json(
                    "503 Service Unavailable",
                    {"status": "failure", "message": error.message},
                    start,
                )
            return _json("200 OK", {"status": "ready"}, start)
        if path == "/metrics":
            if not metrics_allowed(token, environ.get("HTTP_AUTHORIZATION")):
                start("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="metrics"')])
                return [b""]
            data = metrics.exposition()
            start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [data]
        return _json(
            "404 Not Found",
            {"status": "failure", "message": f"No such path {path!r}: /metrics, /healthz, /readyz"},
            start,
        )

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_health(host: str, port: int, app: Callable[..., Any]) -> WSGIServer:
    """The port, served by a daemon thread; ``shutdown()`` stops it."""
    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
