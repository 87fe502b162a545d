"""One callback POST, to the address that was checked, within one overall deadline.

The destination is resolved and checked first (:mod:`vod2s3.callbacks.ssrf`). The request then
goes to that IP address, never to the name: a second lookup could return a different address
(DNS rebinding). The name still travels in the Host header and, for https, in TLS SNI and the
certificate check, so virtual hosts and certificates work as usual.

httpx's timeouts apply to each connect, read and write separately, so a receiver that sends a
byte every few seconds would hold the worker for ever. A deadline on the network stream itself
bounds the whole exchange.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from vod2s3.callbacks.ssrf import (
    CallbackRefused,
    CheckedTarget,
    Network,
    Resolver,
    resolve_checked,
    system_resolver,
)

__all__ = ["DeliveryResult", "post"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class DeliveryResult:
    """``status`` is 0 when no HTTP answer came; ``error`` is "" when delivered."""

    delivered: bool
    status: int
    error: str


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _remaining(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise error("the delivery deadline passed")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        remaining = self._remaining(timeout, httpcore.ConnectTimeout)
        tls = self._inner.start_tls(ssl_context, server_hostname, remaining)
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects only to the checked address, and puts the deadline on the connection."""

    def __init__(self, address: str, deadline: float) -> None:
        self._address = ipaddress.ip_address(address)
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        # The request URL already carries the address; this is a second lock on the door, so
        # that no later change to how the URL is built can make httpcore resolve a name.
        try:
            same = ipaddress.ip_address(host) == self._address
        except ValueError:
            same = False
        if not same:
            raise httpcore.ConnectError(f"refusing to connect to {host}: not the checked address")
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise httpcore.ConnectTimeout("the delivery deadline passed")
        stream = self._inner.connect_tcp(
            host,
            port,
            timeout=remaining if timeout is None else min(timeout, remaining),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("callbacks never use Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _ResponseBody(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _PinnedTransport(httpx.BaseTransport):
    """httpx's transport, minus proxies, plus :class:`_PinnedBackend`.

    httpx.HTTPTransport takes no network backend, so this is the few lines of it that matter.
    httpcore's exceptions pass through unmapped; :func:`post` maps them itself.
    """

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._pool = httpcore.ConnectionPool(
            # certifi's CAs as httpx uses by default; trust_env=False because only the CLI
            # reads the environment (SSL_CERT_FILE would otherwise be read here).
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=1,
            max_keepalive_connections=0,
            retries=0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.read(),
            extensions=request.extensions,
        )
        response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseBody(response),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _request_parts(
    target: CheckedTarget, headers: Mapping[str, str]
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL to the checked address, the headers with the original Host, and the
    extensions that put the original name in TLS."""
    url = f"{target.scheme}://{_url_host(target.address)}:{target.port}{target.target}"
    host = _url_host(target.host)
    if target.port != _DEFAULT_PORTS[target.scheme]:
        host = f"{host}:{target.port}"
    sent = {name: value for name, value in headers.items() if name.lower() != "host"}
    sent["Host"] = host
    # One request per connection; nothing is kept open for a receiver to hold on to.
    sent["Connection"] = "close"
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and not _is_ip(target.host):
        # SNI and the certificate check use this name instead of the address in the URL.
        # A trailing dot is not part of the name a certificate carries.
        extensions["sni_hostname"] = target.host.rstrip(".")
    return url, sent, extensions


def _cause(exc: BaseException) -> BaseException:
    """The socket or TLS error underneath. httpcore wraps it as ``ConnectError(original)``,
    and its pool re-raises with ``from None``, which clears ``__cause__``; the original
    survives as the first argument."""
    for _ in range(10):
        inner = exc.__cause__
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if inner is None:
            break
        exc = inner
    return exc


def _network_error(exc: Exception, timeout: float) -> str:
    """A sentence for the record, from what httpcore or the socket raised."""
    if isinstance(exc, httpcore.TimeoutException | httpx.TimeoutException | TimeoutError):
        return f"timed out after {timeout:g} s"
    cause = _cause(exc)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate check failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed: {cause.reason or cause}"
    if isinstance(exc, httpcore.ConnectError | httpx.ConnectError):
        return f"could not connect: {cause}"
    if isinstance(exc, httpcore.RemoteProtocolError | httpx.RemoteProtocolError):
        return f"the answer was not valid HTTP: {cause}"
    if isinstance(cause, ConnectionResetError):
        return "the connection was reset"
    return f"the connection failed: {cause or type(cause).__name__}"


# What a delivery can raise short of a programming error.
_NETWORK_ERRORS = (
    httpx.HTTPError,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    OSError,
)


def _drain(response: httpx.Response, limit: int, deadline: float) -> None:
    """Read at most ``limit`` bytes of the body, then stop: only the status matters, and a
    receiver must not be able to make the service read (or decompress) a large answer."""
    received = 0
    try:
        for chunk in response.iter_raw():
            received += len(chunk)
            if received >= limit or time.monotonic() >= deadline:
                break
    except _NETWORK_ERRORS:
        pass  # the status already decided the outcome


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow: Sequence[Network],
    timeout: float = 10.0,
    resolver: Resolver = system_resolver,
    max_response_bytes: int = 4096,
) -> DeliveryResult:
    """POST ``body`` to the callback URL. Never raises for network trouble or a refused
    destination: the outcome is in the result. Success is any 2xx within ``timeout``
    seconds (connect, send and the status line); redirects are not followed."""
    try:
        target = resolve_checked(url, allow, resolver)
    except CallbackRefused as refused:
        return DeliveryResult(False, 0, refused.reason)
    deadline = time.monotonic() + timeout
    request_url, request_headers, extensions = _request_parts(target, headers)
    transport = _PinnedTransport(_PinnedBackend(target.address, deadline))
    status = 0
    try:
        with (
            httpx.Client(
                transport=transport,
                trust_env=False,
                follow_redirects=False,
                timeout=httpx.Timeout(timeout),
            ) as client,
            client.stream(
                "POST",
                request_url,
                content=body,
                headers=request_headers,
                extensions=extensions,
            ) as response,
        ):
            status = response.status_code
            _drain(response, max_response_bytes, deadline)
    except _NETWORK_ERRORS as exc:
        if status == 0:
            return DeliveryResult(False, 0, _network_error(exc, timeout))
        # The answer's status arrived; trouble while closing does not change it.
    if 200 <= status < 300:
        return DeliveryResult(True, status, "")
    if 300 <= status < 400:
        return DeliveryResult(False, status, f"redirects are not followed (HTTP {status})")
    return DeliveryResult(False, status, f"HTTP {status}")
