"""A loopback reverse proxy for tests: counts S3 requests by operation and injects faults.

It sits between boto3 (or a vod2s3 worker subprocess) and the moto server::

    with FaultProxy(s3_endpoint) as proxy:
        proxy.add_rule(Rule(operation="UploadPart", part_number=2))  # one 503 SlowDown
        client = boto3.client("s3", endpoint_url=proxy.url, ...)
        ...
        assert proxy.part_numbers() == [1, 2, 2]

Forwarding is faithful: method, request target (path and query exactly as received), every
end-to-end header unchanged (Host included, so SigV4 signatures still verify when moto's auth is
on) and the body. Hop-by-hop headers are not forwarded; a ``Transfer-Encoding: chunked`` request
body is de-chunked and sent upstream with ``Content-Length`` (HTTP trailers are dropped). Each
request uses its own upstream connection (``Connection: close``). Towards the client the proxy
speaks HTTP/1.1 with keep-alive, answers ``Expect: 100-continue`` with ``100 Continue`` and
always sends ``Content-Length``.

Standard library only; nothing is logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import secrets
import socket
import socketserver
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["ACTIONS", "FaultProxy", "Rule", "Seen", "operation_of"]

ACTIONS = frozenset({"status", "drop", "delay", "headers", "error_200", "corrupt", "stall", "slow"})

# Hop-by-hop headers (RFC 9110 section 7.6.1): meaningful for one connection only.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
}

_MAX_LINE = 65536
_BODY_PIECE = 64 * 1024  # request bodies are read, and their arrival noted, in pieces of this
_STALL_POLL = 0.05  # seconds between looks at a stalled connection's client end


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it.

    ``path`` is percent-decoded and without the query; ``query`` holds the decoded query
    parameters (last value wins, ``?uploads`` gives ``{"uploads": ""}``). ``part_number`` is the
    ``partNumber`` query parameter when present and numeric. ``body_bytes`` counts the request
    body after de-chunking. ``status`` is the status returned to the client (0 if dropped).
    ``user_agent`` names the worker that sent it (``vod2s3-worker/<name>``).
    """

    method: str
    path: str
    query: dict[str, str]
    operation: str
    part_number: int | None
    body_bytes: int
    status: int
    user_agent: str = ""


def _neutral(name: str) -> bool:
    """Query parameters that do not select an S3 sub-resource (x-id, presigned-URL fields)."""
    lower = name.lower()
    return (
        lower == "x-id"
        or lower.startswith("x-amz-")
        or name in ("AWSAccessKeyId", "Signature", "Expires")
    )


def operation_of(method: str, path: str, query: Mapping[str, str]) -> str:
    """The S3 operation of a path-style request, or ``"Other"``.

    Recognised: PutObject, UploadPart, CreateMultipartUpload, CompleteMultipartUpload,
    AbortMultipartUpload, ListParts, ListMultipartUploads, HeadObject, GetObject, CreateBucket.
    Headers are not consulted, so CopyObject counts as PutObject and UploadPartCopy as
    UploadPart. Requests for other sub-resources (``?tagging``, ``?acl``, ...) are "Other".
    """
    method = method.upper()
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "Other"  # ListBuckets
    subresources = {name for name in query if not _neutral(name)}
    if not key:
        if method == "PUT" and not subresources:
            return "CreateBucket"
        if method == "GET" and "uploads" in query:
            return "ListMultipartUploads"
        return "Other"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPart" if "partNumber" in query else "Other"
        return "PutObject" if not subresources else "Other"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "Other"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "Other"
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        plain = {"versionId", "partNumber"}
        if all(name in plain or name.startswith("response-") for name in subresources):
            return "GetObject"
        return "Other"
    if method == "HEAD":
        return "HeadObject"
    return "Other"


@dataclass
class Rule:
    """A fault to inject. Rules are checked in order; the first matching one with firings left
    fires (and only that one).

    Actions:
      - ``status``: answer ``status`` with an S3 ``<Error>`` XML body carrying ``code``, without
        forwarding.
      - ``drop``: read the whole request, then close the socket without any response.
      - ``delay``: wait ``delay`` seconds, then forward (the request still goes through, unless
        the proxy is stopped meanwhile).
      - ``headers``: forward, then add ``headers`` to the upstream response (replacing any
        upstream header of the same name).
      - ``error_200``: answer 200 with an ``<Error>`` body (code InternalError), without
        forwarding.
      - ``corrupt``: forward the request with one byte of its body changed (the middle
        one), as a fault on the wire would: the store sees a body that does not match
        its check.
      - ``stall``: stop reading the request body after its headers, and answer nothing:
        the connection stays open, its buffers full, for ``delay`` seconds (0: until the
        client resets it or the proxy stops), then it is dropped. Recorded (status 0,
        ``body_bytes`` 0) as the stall begins.
      - ``slow``: read the request body at ``rate`` bytes a second (a slow link), then
        forward it.
    ``times`` is how many matching requests it fires on; -1 means every time.
    ``user_agent``, when set, limits the rule to requests whose User-Agent contains it (a
    worker's ``vod2s3-worker/<name>``, say: a fault for one worker only).
    """

    operation: str | None = None
    part_number: int | None = None
    action: str = "status"
    status: int = 503
    code: str = "SlowDown"
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int = 1
    user_agent: str | None = None
    rate: int = 0  # bytes per second, for "slow"


@dataclass
class _Armed:
    rule: Rule
    left: int  # -1 = unlimited


@dataclass(frozen=True)
class _Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _BadRequest(Exception):
    pass


class _ClientGone(Exception):
    pass


def _error_xml(code: str, message: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()


def _canned_error(status: int, code: str) -> _Reply:
    request_id = secrets.token_hex(8).upper()
    message = _MESSAGES.get(code, f"{code} injected by FaultProxy.")
    body = _error_xml(code, message, request_id)
    reason = http.client.responses.get(status, "Injected")
    headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    return _Reply(status, reason, headers, body)


def _part_number(query: Mapping[str, str]) -> int | None:
    value = query.get("partNumber")
    if value is None or not value.isdigit():
        return None
    return int(value)


def _connection_tokens(headers: list[tuple[str, str]]) -> set[str]:
    """Header names listed in Connection headers are hop-by-hop too."""
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        if proxy.receive_buffer:
            # Set on the listening socket, so accepted ones start with it (and with a window
            # scale to match).
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, proxy.receive_buffer)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that vanish (timeouts, drops) are expected; log nothing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and http.server answers Expect: 100-continue
    disable_nagle_algorithm = True
    timeout = 60.0  # idle keep-alive connections end after this
    server: _Server
    _pace = 0  # bytes per second the body is read at; 0: as fast as it comes

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- one request -------------------------------------------------------------------------

    def _proxy(self) -> None:
        try:
            self._proxy_one()
        finally:
            self.server.proxy._leave()

    def _proxy_one(self) -> None:
        proxy = self.server.proxy
        seq = proxy._arrive()
        words = self.requestline.split()
        target = words[1] if len(words) >= 2 else self.path  # raw: http.server rewrites "//"
        raw_path, _, raw_query = target.partition("?")
        path = unquote(raw_path)
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        operation = operation_of(self.command, path, query)
        part_number = _part_number(query)
        proxy._begin(operation)
        try:
            self._handle(seq, target, path, query, operation, part_number)
        finally:
            proxy._end(operation)

    def _handle(
        self,
        seq: int,
        target: str,
        path: str,
        query: dict[str, str],
        operation: str,
        part_number: int | None,
    ) -> None:
        proxy = self.server.proxy
        # Matched before the body is read: a stall must not read it.
        rule = proxy._match(operation, part_number, self.user_agent)
        action = rule.action if rule is not None else None
        if rule is not None and action == "stall":
            # Recorded as it begins: the client sees nothing until it gives up, and the
            # test may look meanwhile.
            proxy._record(
                seq,
                Seen(self.command, path, query, operation, part_number, 0, 0, self.user_agent),
            )
            self._stall(rule.delay)
            return
        self._pace = rule.rate if rule is not None and action == "slow" else 0
        try:
            body, chunked = self._read_body()
        except _BadRequest:
            reply = _canned_error(400, "BadRequest")
            self.close_connection = True
            proxy._record(seq, Seen(self.command, path, query, operation, part_number, 0, 400))
            self._send(reply)
            return
        except (_ClientGone, OSError):
            self.close_connection = True
            return

        def record(status: int) -> None:
            seen = Seen(
                self.command,
                path,
                query,
                operation,
                part_number,
                len(body),
                status,
                self.user_agent,
            )
            proxy._record(seq, seen)

        if rule is not None and action == "drop":
            record(0)
            self._drop()
            return
        if rule is not None and action == "status":
            reply = _canned_error(rule.status, rule.code)
        elif action == "error_200":
            reply = _canned_error(200, "InternalError")
        else:
            if rule is not None and action == "delay" and not proxy._sleep(rule.delay):
                record(0)  # the proxy is stopping: abandon the request
                self._drop()
                return
            if rule is not None and action == "corrupt" and body:
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
            reply = self._forward(target, body, chunked)
            if rule is not None and action == "headers":
                added = {name.lower() for name in rule.headers}
                kept = [(n, v) for n, v in reply.headers if n.lower() not in added]
                reply = dataclasses.replace(reply, headers=kept + list(rule.headers.items()))
        record(reply.status)  # before answering: the client may look at counts right away
        self._send(reply)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _proxy

    # --- request body ------------------------------------------------------------------------

    def _read_body(self) -> tuple[bytes, bool]:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            codings = [c.strip().lower() for c in encoding.split(",")]
            if codings[-1:] != ["chunked"]:
                raise _BadRequest(encoding)
            return self._read_chunked(), True
        length = self.headers.get("Content-Length")
        if length is None:
            return b"", False
        if not length.strip().isdigit():
            raise _BadRequest(length)
        return self._read_exactly(int(length)), False

    def _read_exactly(self, size: int) -> bytes:
        # In pieces, each noted as it arrives: the proxy measures what clients send per second.
        pieces: list[bytes] = []
        left = size
        while left > 0:
            piece = self.rfile.read(min(left, _BODY_PIECE))
            if not piece:
                raise _ClientGone
            self.server.proxy._body_received(len(piece))
            if self._pace and not self.server.proxy._sleep(len(piece) / self._pace):
                raise _ClientGone  # the proxy is stopping
            pieces.append(piece)
            left -= len(piece)
        return b"".join(pieces)

    def _read_line(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            raise _ClientGone
        if len(line) > _MAX_LINE:
            raise _BadRequest("line too long")
        return line

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_field = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise _BadRequest(size_field) from None
            if size < 0:
                raise _BadRequest(size_field)
            if size == 0:
                break
            chunks.append(self._read_exactly(size))
            if self._read_line().strip():
                raise _BadRequest("chunk not followed by CRLF")
        while self._read_line().strip():  # trailer section, dropped
            pass
        return b"".join(chunks)

    # --- upstream ----------------------------------------------------------------------------

    def _upstream_headers(self, body: bytes, chunked: bool) -> list[tuple[str, str]]:
        received = list(self.headers.items())
        skip = _HOP_BY_HOP | _connection_tokens(received)
        if chunked:
            skip = skip | {"content-length"}
        headers = [(n, v) for n, v in received if n.lower() not in skip]
        if chunked:
            headers.append(("Content-Length", str(len(body))))
        headers.append(("Connection", "close"))
        return headers

    def _forward(self, target: str, body: bytes, chunked: bool) -> _Reply:
        proxy = self.server.proxy
        conn = http.client.HTTPConnection(
            proxy._upstream_host, proxy._upstream_port, timeout=proxy.upstream_timeout
        )
        try:
            conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
            for name, value in self._upstream_headers(body, chunked):
                conn.putheader(name, value)
            conn.endheaders(body if body else None)
            response = conn.getresponse()  # skips an interim "100 Continue" from upstream
            data = response.read()
            received = response.getheaders()
            status, reason = response.status, response.reason
        except (OSError, http.client.HTTPException):
            return _canned_error(502, "BadGateway")
        finally:
            conn.close()
        skip = _HOP_BY_HOP | _connection_tokens(received)
        no_body = self.command == "HEAD" or status == 304
        if not no_body:
            skip = skip | {"content-length"}
        headers = [(n, v) for n, v in received if n.lower() not in skip]
        if not no_body and status >= 200 and status != 204:
            headers.append(("Content-Length", str(len(data))))
        return _Reply(status, reason, headers, data)

    # --- towards the client ------------------------------------------------------------------

    def _send(self, reply: _Reply) -> None:
        headers = list(reply.headers)
        names = {name.lower() for name, _ in headers}
        body_allowed = self.command != "HEAD" and reply.status not in (204, 304)
        if "content-length" not in names and reply.status != 204:
            headers.append(("Content-Length", str(len(reply.body))))
        if self.close_connection:
            headers.append(("Connection", "close"))
        head = f"{self.protocol_version} {reply.status} {reply.reason}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        # One write for head and body: no Nagle / delayed-ACK stall between them.
        data = head.encode("latin-1") + (reply.body if body_allowed else b"")
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (read timeout) or went away

    @property
    def user_agent(self) -> str:
        return self.headers.get("User-Agent", "")

    def _stall(self, hold: float) -> None:
        """Read nothing more, for ``hold`` seconds (0: until the proxy stops), then drop the
        connection. A reset from the client (it gave up) ends the stall early; a close does
        not show while its unread body is in the way."""
        self.close_connection = True
        proxy = self.server.proxy
        deadline = time.monotonic() + hold if hold > 0 else None
        while not proxy._stopping.wait(_STALL_POLL):
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                if self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    break
            except BlockingIOError:
                continue
            except OSError:
                break
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """A reverse proxy on 127.0.0.1 (a free port) in front of ``upstream``."""

    def __init__(
        self, upstream: str, *, upstream_timeout: float = 60.0, receive_buffer: int = 0
    ) -> None:
        """``receive_buffer``: SO_RCVBUF of the connections it accepts (0: the system's), so
        that a slow reader does not take megabytes into its buffers first, as a slow
        link's far end would not."""
        self.receive_buffer = receive_buffer
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must look like http://127.0.0.1:PORT, not {upstream!r}")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"upstream must not have a path or query: {upstream!r}")
        self.upstream = upstream
        self.upstream_timeout = upstream_timeout
        self._upstream_host: str = parts.hostname
        self._upstream_port: int = parts.port
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._rules: list[_Armed] = []
        self._seen: list[tuple[int, Seen]] = []
        self._arrivals = 0
        self._handling = 0
        self._by_operation: dict[str, int] = {}
        self._most_by_operation: dict[str, int] = {}
        self._body_bytes: list[tuple[float, int]] = []  # (monotonic time, bytes so far)
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; only once started."""
        if self._url is None:
            raise RuntimeError("FaultProxy is not started")
        return self._url

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FaultProxy is already started")
        self._stopping.clear()
        server = _Server(self)
        host, port = server.server_address[:2]
        self._url = f"http://{host!s}:{int(port)}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"faultproxy-{port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, close client connections (idle keep-alive ones too), abandon delayed
        requests and wait (up to 5 s) for in-flight requests to finish."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._idle:
            self._idle.wait_for(lambda: not self._connections, timeout=5.0)
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = None
        self._thread = None
        self._url = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- rules and observations --------------------------------------------------------------

    def add_rule(self, rule: Rule, *, first: bool = False) -> None:
        """Arm ``rule`` after the rules already armed, or with ``first`` before them (so that
        it takes precedence over, say, a delay every request already matches)."""
        if rule.action not in ACTIONS:
            raise ValueError(f"unknown action {rule.action!r}; expected one of {sorted(ACTIONS)}")
        if rule.times < -1:
            raise ValueError(f"times must be -1 (every time) or >= 0, not {rule.times}")
        if rule.delay < 0:
            raise ValueError(f"delay must be >= 0, not {rule.delay}")
        if rule.action == "slow" and rule.rate <= 0:
            raise ValueError(f"a slow rule needs a rate > 0, not {rule.rate}")
        for name, value in rule.headers.items():
            if any(c in name + value for c in "\r\n") or not name or ":" in name:
                raise ValueError(f"invalid header {name!r}: {value!r}")
        frozen = dataclasses.replace(rule, headers=dict(rule.headers))  # later edits don't leak
        with self._lock:
            armed = _Armed(frozen, rule.times)
            if first:
                self._rules.insert(0, armed)
            else:
                self._rules.append(armed)

    def clear(self) -> None:
        """Forget rules and seen requests."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()
            self._body_bytes.clear()
            self._most_by_operation = dict(self._by_operation)

    @property
    def seen(self) -> list[Seen]:
        """The requests answered (or dropped) so far, in arrival order; a copy."""
        with self._lock:
            ordered = sorted(self._seen, key=lambda item: item[0])
        return [seen for _, seen in ordered]

    def arrivals(self) -> int:
        """How many requests have arrived so far: a mark for :meth:`seen_since`."""
        with self._lock:
            return self._arrivals

    def seen_since(self, mark: int) -> list[Seen]:
        """The requests (answered or dropped) that arrived after ``mark`` (an earlier
        :meth:`arrivals`), in arrival order; one that arrived before it and was answered
        later is not among them."""
        with self._lock:
            ordered = sorted((i for i in self._seen if i[0] > mark), key=lambda i: i[0])
        return [seen for _, seen in ordered]

    def count(self, operation: str) -> int:
        return sum(1 for seen in self.seen if seen.operation == operation)

    def part_numbers(self, operation: str = "UploadPart") -> list[int]:
        """Part numbers of the requests for ``operation``, in arrival order."""
        return [
            seen.part_number
            for seen in self.seen
            if seen.operation == operation and seen.part_number is not None
        ]

    def body_bytes(self) -> list[tuple[float, int]]:
        """Request body bytes received so far, as (time.monotonic(), total so far) at each
        piece read (up to 64 KiB): what clients sent, over time; a copy."""
        with self._lock:
            return list(self._body_bytes)

    # --- used by the handler -----------------------------------------------------------------

    def _body_received(self, count: int) -> None:
        now = time.monotonic()
        with self._lock:
            total = self._body_bytes[-1][1] if self._body_bytes else 0
            self._body_bytes.append((now, total + count))

    def _arrive(self) -> int:
        with self._lock:
            self._arrivals += 1
            self._handling += 1
            return self._arrivals

    def _leave(self) -> None:
        with self._lock:
            self._handling -= 1

    def _begin(self, operation: str) -> None:
        with self._lock:
            now = self._by_operation.get(operation, 0) + 1
            self._by_operation[operation] = now
            self._most_by_operation[operation] = max(now, self._most_by_operation.get(operation, 0))

    def _end(self, operation: str) -> None:
        with self._lock:
            self._by_operation[operation] -= 1

    def in_flight_of(self, operation: str) -> int:
        """Requests for ``operation`` in the proxy now."""
        with self._lock:
            return self._by_operation.get(operation, 0)

    def most_in_flight(self, operation: str) -> int:
        """The most requests for ``operation`` that were in the proxy at once (arrived, not
        yet answered, dropped or abandoned) since it started or was last cleared."""
        with self._lock:
            return self._most_by_operation.get(operation, 0)

    def in_flight(self) -> int:
        """Requests that arrived and are not yet answered, dropped or abandoned."""
        with self._lock:
            return self._handling

    def _record(self, seq: int, seen: Seen) -> None:
        with self._lock:
            self._seen.append((seq, seen))

    def _match(self, operation: str, part_number: int | None, user_agent: str = "") -> Rule | None:
        with self._lock:
            for armed in self._rules:
                rule = armed.rule
                if rule.operation is not None and rule.operation != operation:
                    continue
                if rule.part_number is not None and rule.part_number != part_number:
                    continue
                if rule.user_agent is not None and rule.user_agent not in user_agent:
                    continue
                if armed.left == 0:
                    continue
                if armed.left > 0:
                    armed.left -= 1
                return rule
        return None

    def _sleep(self, seconds: float) -> bool:
        """Wait; False if the proxy began stopping meanwhile."""
        return not self._stopping.wait(seconds)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._idle:
            self._connections.discard(conn)
            self._idle.notify_all()
