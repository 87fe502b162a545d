"""The Starlette application: POST /stable/, /healthz, /readyz, /metrics, /dashboard, and
failure envelopes for everything else."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vod2s3.api.auth import answered_as, authenticate
from vod2s3.api.body import parse_body
from vod2s3.api.clientaddr import client_address
from vod2s3.api.commands import COMMANDS
from vod2s3.api.context import Services
from vod2s3.api.dashboard import make_dashboard
from vod2s3.api.dashboard_actions import make_dashboard_action
from vod2s3.api.envelope import failure, native_status, success
from vod2s3.api.fields import required_str
from vod2s3.api.once import SINGLE_USE, run_once
from vod2s3.errors import MethodNotAllowed, NoSuchEndpoint, UnknownCommand, Vod2s3Error
from vod2s3.metrics_auth import metrics_allowed

log = logging.getLogger("vod2s3.api")


def _run_command(services: Services, raw: str, obj: dict[str, Any]) -> tuple[str, Any]:
    command = required_str(obj, "command")
    handler = COMMANDS.get(command)
    if handler is None:
        raise UnknownCommand(
            f"Unknown command {command[:64]!r}: known commands are {', '.join(sorted(COMMANDS))}"
        )
    call = authenticate(services, raw, obj)
    with answered_as(call.account):
        if command in SINGLE_USE:
            return run_once(services, call, command, handler)
        return handler(services, call)


# The status recorded for a request whose client closed the connection first (nginx's).
CLIENT_CLOSED = 499


def _client(request: Request, services: Services) -> str:
    peer = request.client.host if request.client is not None else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return client_address(peer, forwarded, services.settings.trusted_proxies)


def _failed(services: Services, error: Vod2s3Error, started: float) -> tuple[Response, int]:
    """The failure envelope, sent with HTTP 200 if the account (once authenticated) or the
    service says so, and the status that fits the failure, which the metrics count."""
    as_200 = (error.failure_status or services.settings.failure_http_status) == "200"
    response = failure(error, started, as_200)
    if isinstance(error, MethodNotAllowed):
        response.headers["Allow"] = "POST"
    return response, native_status(error)


def _make_stable(services: Services) -> Any:
    async def stable(request: Request) -> Response:
        started = time.perf_counter()
        command: object = None
        client = _client(request, services)
        request.state.access_client = client
        try:
            # First, before the body is read or a signature checked: an unauthenticated
            # flood from one address is refused here, at the least cost.
            services.addresses.check(client)
            if request.method != "POST":
                raise MethodNotAllowed(
                    f"Method {request.method} is not allowed: "
                    f"POST the request to {request.url.path}"
                )
            settings = services.settings
            body = await parse_body(request, settings.max_body_bytes, settings.body_timeout)
            command = body.obj.get("command")
            # For the access log: what the request named (a string command, a number cdn).
            if isinstance(command, str) and command in COMMANDS:
                request.state.access_command = command
            cdn = body.obj.get("cdn")
            if isinstance(cdn, int) and not isinstance(cdn, bool):
                request.state.access_cdn = cdn
            # Database and file-system work is blocking: keep it off the event loop.
            message, data = await run_in_threadpool(_run_command, services, body.raw, body.obj)
            response: Response = success(message, data, started)
            status = response.status_code
        except Vod2s3Error as error:
            response, status = _failed(services, error, started)
        except ClientDisconnect:
            # The client went away before its body arrived: nothing of ours failed, and
            # nobody is there to answer. Counted apart (nginx's 499), not as a 5xx that
            # anyone could raise at will.
            log.info("client %s disconnected before its request body arrived", client)
            services.metrics.api_request(command, CLIENT_CLOSED, COMMANDS)
            return Response(status_code=CLIENT_CLOSED)
        except Exception:
            log.exception("unhandled error in /stable/")
            response, status = _failed(services, Vod2s3Error("internal"), started)
        # Counted by what happened, also when a failure was sent with HTTP 200.
        services.metrics.api_request(command, status, COMMANDS)
        return response

    return stable


def _make_metrics(services: Services) -> Any:
    async def metrics(request: Request) -> Response:
        """Prometheus text format. Aggregate counts only: no account's key, secret or cdn."""
        token = services.settings.metrics_token
        if not metrics_allowed(token, request.headers.get("authorization")):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        # The queue depth is read from the database: keep it off the event loop.
        body = await run_in_threadpool(services.metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


async def healthz(_request: Request) -> Response:
    """The process is up (it does not look at the database: see /readyz)."""
    return JSONResponse({"status": "ok"})


def _make_readyz(services: Services) -> Any:
    async def readyz(_request: Request) -> Response:
        """Ready to serve: the database answers. 503 with the envelope when it does not."""
        started = time.perf_counter()
        try:
            await run_in_threadpool(services.uploads.ping)
        except Vod2s3Error as error:
            return failure(error, started)
        return JSONResponse({"status": "ready"})

    return readyz


def _no_such_endpoint(path: str) -> str:
    return f"No such endpoint {path!r}: POST API requests to /stable/"


async def _not_found(request: Request, exc: Exception) -> Response:
    started = time.perf_counter()
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        response = failure(
            MethodNotAllowed(f"Method {request.method} is not allowed here"), started
        )
        # RFC 9110: a 405 names the methods that are allowed. Starlette's router knows them,
        # except for /stable/, which takes every common method only to refuse all but POST.
        routed = (exc.headers or {}).get("Allow", "")
        response.headers["Allow"] = _ALLOW.get(request.url.path, routed)
        return response
    return failure(NoSuchEndpoint(_no_such_endpoint(request.url.path)), started)


async def _server_error(_request: Request, _exc: Exception) -> Response:
    return failure(Vod2s3Error("internal"), time.perf_counter())


_ALLOW = dict.fromkeys(("/stable/", "/stable", "/dev/", "/dev"), "POST")


def create_app(services: Services) -> Starlette:
    stable = _make_stable(services)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    app = Starlette(
        routes=[
            Route("/stable/", stable, methods=methods),
            Route("/stable", stable, methods=methods),
            # ScaleEngine's Perl client posts to /dev/ by default: the same API.
            Route("/dev/", stable, methods=methods),
            Route("/dev", stable, methods=methods),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", _make_readyz(services), methods=["GET", "HEAD"]),
            Route("/metrics", _make_metrics(services), methods=["GET", "HEAD"]),
            Route(
                "/dashboard",
                # Off, it answers exactly as an unknown path does.
                make_dashboard(services, _no_such_endpoint("/dashboard")),
                methods=["GET", "HEAD"],
            ),
            Route(
                "/dashboard/uploads/{upload_id:int}/{action}",
                make_dashboard_action(services, _no_such_endpoint("/dashboard")),
                methods=["POST"],
            ),
        ],
        exception_handlers={404: _not_found, 405: _not_found, 500: _server_error},
    )
    # Starlette would answer "/healthz/" with a redirect to an absolute URL built from the
    # request's Host header, which a client controls; such a path is unknown here instead.
    app.router.redirect_slashes = False
    return app
