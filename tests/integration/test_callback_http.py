"""Callback POSTs against real HTTP receivers on loopback, and the SSRF battery: refused
destinations get no request, and no packet leaves the machine."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.netguard import Dns, LoopbackHTTPServer
from vod2s3.callbacks.http import DeliveryResult, _request_parts, post
from vod2s3.callbacks.signing import callback_headers, verify
from vod2s3.callbacks.ssrf import CheckedTarget, Network

SECRET = "s3cr3t"
BODY = b'{"status":"success","message":"Successfully Uploaded to AWS","data":{"id":7}}'
DELIVERY = "1f0c7a52-3d7e-4b8e-9a51-6f2d0c9e8b13"
ALLOW_V4: list[Network] = [ipaddress.ip_network("127.0.0.0/8")]
ALLOW_V6: list[Network] = [ipaddress.ip_network("::1/128")]
HUGE_BYTES = 256 * 1024 * 1024


# --- safety net: nothing in this module may reach past loopback --------------------------------


pytestmark = pytest.mark.usefixtures("network_guard")


# --- a receiver that records what it got and answers as told -----------------------------------


@dataclass
class Seen:
    method: str
    target: str
    host: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``mode``: "status" (answer ``status``), "hang" (say nothing until the test ends),
    "redirect" (302 to ``location``), "huge" (200 with a body of HUGE_BYTES), "drip-head"
    (the status line one byte at a time), "drip-body" (200, then the body one byte at a time)."""

    address: str
    port: int = 0
    mode: str = "status"
    status: int = 200
    location: str = ""
    requests: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    body_bytes_sent: int = 0
    body_send_failed: bool = False

    @property
    def netloc(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.netloc}{path}"


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.requests.append(
                Seen("POST", self.path, self.headers.get("Host", ""), dict(self.headers), body)
            )
            try:
                self._answer()
            finally:
                receiver.answered.set()

        do_GET = do_POST

        def _answer(self) -> None:
            mode = receiver.mode
            if mode == "hang":
                receiver.release.wait(30)
                return
            if mode == "drip-head":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                    if receiver.release.wait(0.2):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                return
            if mode == "redirect":
                self.send_response(302)
                self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "huge":
                self._huge()
                return
            if mode == "drip-body":
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.flush()
                for _ in range(100):
                    if receiver.release.wait(0.2):
                        return
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return
                return
            payload = b'{"ok":true}'
            self.send_response(receiver.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _huge(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while receiver.body_bytes_sent < HUGE_BYTES and not receiver.release.is_set():
                    self.wfile.write(chunk)
                    receiver.body_bytes_sent += len(chunk)
                self.wfile.flush()
            except OSError:
                receiver.body_send_failed = True

    return Handler


class _Server6(LoopbackHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def make_receiver() -> Iterator[Any]:
    started: list[tuple[LoopbackHTTPServer, Receiver, threading.Thread]] = []

    def start(address: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(address)
        server_class = _Server6 if ":" in address else LoopbackHTTPServer
        try:
            server = server_class((address, 0), _handler(receiver))
        except OSError as exc:
            pytest.skip(f"cannot listen on {address}: {exc}")
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        receiver.port = int(server.server_address[1])
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        started.append((server, receiver, thread))
        return receiver

    yield start
    for server, receiver, thread in started:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver(make_receiver: Any) -> Receiver:
    result: Receiver = make_receiver()
    return result


def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"the resolver was asked for {host}")


def headers_now() -> dict[str, str]:
    return callback_headers([SECRET], int(time.time()), DELIVERY, BODY)


# --- delivered ---------------------------------------------------------------------------------


def test_delivered_with_original_host_and_a_signature_that_verifies(receiver: Receiver) -> None:
    headers = headers_now()
    result = post(receiver.url("/hook?upload=7"), BODY, headers, allow=ALLOW_V4, resolver=no_dns)
    assert result == DeliveryResult(True, 200, "")
    [seen] = receiver.requests
    assert seen.method == "POST"
    assert seen.target == "/hook?upload=7"
    assert seen.host == f"127.0.0.1:{receiver.port}"
    assert seen.body == BODY
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "vod2s3-callbacks/1"
    assert seen.headers["X-Vod2s3-Delivery"] == DELIVERY
    assert verify(SECRET, seen.headers, seen.body, now=time.time())


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(receiver: Receiver, status: int) -> None:
    receiver.status = status
    assert post(receiver.url(), BODY, headers_now(), allow=ALLOW_V4) == DeliveryResult(
        True, status, ""
    )


def test_hostname_is_pinned_to_the_checked_address(receiver: Receiver) -> None:
    dns = Dns({"callback.test": ["127.0.0.1"]})
    url = f"http://callback.test:{receiver.port}/cb"
    result = post(url, BODY, headers_now(), allow=ALLOW_V4, resolver=dns)
    assert result == DeliveryResult(True, 200, "")
    # Resolved once, by our resolver; the receiver (listening only on 127.0.0.1) got the
    # request with the name from the URL in Host.
    assert dns.asked == ["callback.test"]
    [seen] = receiver.requests
    assert seen.host == f"callback.test:{receiver.port}"
    assert seen.target == "/cb"


def test_scheme_less_url_is_http(receiver: Receiver) -> None:
    dns = Dns({"www.mycallbackurl.test": ["127.0.0.1"]})
    url = f"www.mycallbackurl.test:{receiver.port}/"
    assert post(url, BODY, headers_now(), allow=ALLOW_V4, resolver=dns).delivered
    assert receiver.requests[0].host == f"www.mycallbackurl.test:{receiver.port}"


def test_ipv6_loopback(make_receiver: Any) -> None:
    receiver6: Receiver = make_receiver("::1")
    result = post(receiver6.url(), BODY, headers_now(), allow=ALLOW_V6, resolver=no_dns)
    assert result == DeliveryResult(True, 200, "")
    assert receiver6.requests[0].host == f"[::1]:{receiver6.port}"

    dns = Dns({"callback6.test": ["::1"]})
    url = f"http://callback6.test:{receiver6.port}/six"
    assert post(url, BODY, headers_now(), allow=ALLOW_V6, resolver=dns).delivered
    assert receiver6.requests[1].host == f"callback6.test:{receiver6.port}"
    assert receiver6.requests[1].target == "/six"


def test_ipv6_loopback_needs_its_own_allowance(make_receiver: Any) -> None:
    receiver6: Receiver = make_receiver("::1")
    result = post(receiver6.url(), BODY, headers_now(), allow=ALLOW_V4)
    assert result == DeliveryResult(False, 0, "the callback host ::1 is a loopback address")
    assert receiver6.requests == []


def test_request_parts() -> None:
    """Host carries the port only when it is not the scheme's default; IPv6 is bracketed;
    TLS gets the name, never the address."""
    cases = [
        (CheckedTarget("https", "example.com", 443, "93.184.216.34", "/a?b=c"),
         "https://93.184.216.34:443/a?b=c", "example.com", {"sni_hostname": "example.com"}),
        (CheckedTarget("http", "example.com", 80, "2606:2800:220:1::1", "/"),
         "http://[2606:2800:220:1::1]:80/", "example.com", {}),
        (CheckedTarget("https", "example.com.", 8443, "93.184.216.34", "/"),
         "https://93.184.216.34:8443/", "example.com.:8443", {"sni_hostname": "example.com"}),
        (CheckedTarget("https", "2606:2800:220:1::1", 443, "2606:2800:220:1::1", "/"),
         "https://[2606:2800:220:1::1]:443/", "[2606:2800:220:1::1]", {}),
    ]  # fmt: skip
    for target, url, host, extensions in cases:
        built_url, headers, built_extensions = _request_parts(target, {"host": "evil", "A": "b"})
        assert (built_url, headers["Host"], built_extensions) == (url, host, extensions)
        assert "host" not in headers
        assert headers["A"] == "b"


# --- not delivered -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 404, 410, 500, 502, 503])
def test_error_status_is_not_delivered(receiver: Receiver, status: int) -> None:
    receiver.status = status
    result = post(receiver.url(), BODY, headers_now(), allow=ALLOW_V4)
    assert result == DeliveryResult(False, status, f"HTTP {status}")
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("where", ["loopback", "metadata"])
def test_redirect_is_not_followed(make_receiver: Any, where: str) -> None:
    receiver: Receiver = make_receiver()
    target: Receiver = make_receiver()
    receiver.mode = "redirect"
    # The second receiver would see a followed redirect; the guard would catch one to the
    # metadata address.
    receiver.location = (
        target.url("/stolen") if where == "loopback" else "http://169.254.169.254/latest/meta-data"
    )
    result = post(receiver.url(), BODY, headers_now(), allow=ALLOW_V4)
    assert result == DeliveryResult(False, 302, "redirects are not followed (HTTP 302)")
    assert len(receiver.requests) == 1
    assert target.requests == []


def test_hanging_receiver_times_out(receiver: Receiver) -> None:
    receiver.mode = "hang"
    started = time.monotonic()
    result = post(receiver.url(), BODY, headers_now(), allow=ALLOW_V4, timeout=1.0)
    elapsed = time.monotonic() - started
    assert result == DeliveryResult(False, 0, "timed out after 1 s")
    assert elapsed < 2.0
    assert len(receiver.requests) == 1


def test_deadline_covers_a_receiver_that_drips_its_answer(receiver: Receiver) -> None:
    """Each byte comes well inside the read timeout; only an overall deadline stops this."""
    receiver.mode = "drip-head"
    started = time.monotonic()
    result = post(receiver.url(), BODY, headers_now(), allow=ALLOW_V4, timeout=1.0)
    elapsed = time.monotonic() - started
    assert result == DeliveryResult(False, 0, "timed out after 1 s")
    assert elapsed < 2.0


def test_a_2xx_whose_body_drips_is_delivered_by_the_deadline(receiver: Receiver) -> None:
    receiver.mode = "drip-body"
    started = time.monotonic()
    result = post(receiver.url(), BODY, headers_now(), allow=ALLOW_V4, timeout=1.0)
    elapsed = time.monotonic() - started
    assert result == DeliveryResult(True, 200, "")
    assert elapsed < 2.0


def test_huge_answer_is_read_only_up_to_the_cap(receiver: Receiver) -> None:
    receiver.mode = "huge"
    started = time.monotonic()
    result = post(
        receiver.url(), BODY, headers_now(), allow=ALLOW_V4, timeout=5.0, max_response_bytes=4096
    )
    elapsed = time.monotonic() - started
    assert result == DeliveryResult(True, 200, "")
    assert elapsed < 2.0
    # The connection was closed after the first few KiB: the receiver could not send it all.
    assert receiver.answered.wait(10)
    assert receiver.body_send_failed
    assert receiver.body_bytes_sent < HUGE_BYTES


def test_connection_refused() -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens on this port now
    result = post(f"http://127.0.0.1:{port}/", BODY, headers_now(), allow=ALLOW_V4)
    assert result == DeliveryResult(False, 0, "connection refused")


def test_unresolvable_host() -> None:
    result = post("http://nowhere.test/", BODY, headers_now(), allow=ALLOW_V4, resolver=Dns({}))
    assert result == DeliveryResult(
        False, 0, "the callback host nowhere.test could not be resolved"
    )


# --- https: the name goes to TLS, the connection to the checked address ------------------------


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_sends_the_name_in_sni_and_checks_the_certificate(tmp_path: Path) -> None:
    """A TLS listener on 127.0.0.1 records the SNI name. Its certificate is self-signed, so
    the client must refuse it: proof that the certificate is checked at all."""
    cert, key = _self_signed(tmp_path, "callback.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client gives up on the handshake, as it should
        finally:
            connection.close()

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        dns = Dns({"callback.test": ["127.0.0.1"]})
        url = f"https://callback.test:{port}/cb"
        result = post(url, BODY, headers_now(), allow=ALLOW_V4, resolver=dns, timeout=5.0)
    finally:
        thread.join(10)
        listener.close()
    assert names == ["callback.test"]
    assert result.delivered is False
    assert result.status == 0
    assert result.error.startswith("TLS certificate check failed")


@pytest.mark.parametrize("cert_name", ["callback.test", "other.test"])
def test_https_connects_to_the_address_and_checks_the_name(
    tmp_path: Path, make_receiver: Any, monkeypatch: pytest.MonkeyPatch, cert_name: str
) -> None:
    """A full https delivery to 127.0.0.1 for the name callback.test: SNI and the certificate
    check use the name (a certificate for another name is refused), Host carries it too."""
    cert, key = _self_signed(tmp_path, cert_name)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    receiver: Receiver = make_receiver(tls=server_context)
    # Trust this one certificate instead of the public CAs: the only way to finish a handshake
    # on loopback. Everything else about the client is as in production.
    monkeypatch.setattr(
        httpx, "create_ssl_context", lambda **_: ssl.create_default_context(cafile=str(cert))
    )
    dns = Dns({"callback.test": ["127.0.0.1"]})
    url = f"https://callback.test:{receiver.port}/secure"
    result = post(url, BODY, headers_now(), allow=ALLOW_V4, resolver=dns, timeout=5.0)
    assert names == ["callback.test"]
    if cert_name == "callback.test":
        assert result == DeliveryResult(True, 200, "")
        [seen] = receiver.requests
        assert seen.host == f"callback.test:{receiver.port}"
        assert seen.target == "/secure"
    else:
        assert result.delivered is False
        assert result.error.startswith("TLS certificate check failed: Hostname mismatch")
        assert receiver.requests == []


# --- the SSRF battery: refused, and nothing sent -----------------------------------------------

BATTERY_DNS = {
    "private.test": ["10.0.0.1"],
    "rebind.test": ["127.0.0.1"],
    "mixed.test": ["93.184.216.34", "127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
}


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "the callback host 127.0.0.1 is a loopback address"),
        ("2130706433", "the callback host 2130706433 is 127.0.0.1, a loopback address"),
        ("0x7f.1", "the callback host 0x7f.1 is 127.0.0.1, a loopback address"),
        ("0177.0.0.1", "the callback host 0177.0.0.1 is 127.0.0.1, a loopback address"),
        ("127.1", "the callback host 127.1 is 127.0.0.1, a loopback address"),
        ("[::1]", "the callback host ::1 is a loopback address"),
        (
            "[::ffff:127.0.0.1]",
            "the callback host ::ffff:127.0.0.1 is an IPv4-mapped IPv6 address of 127.0.0.1,"
            " a loopback address",
        ),
        (
            "169.254.169.254",
            "the callback host 169.254.169.254 is the cloud metadata address (link-local)",
        ),
        ("10.0.0.1", "the callback host 10.0.0.1 is a private address (RFC 1918)"),
        ("localhost", "the callback host localhost is the local machine (loopback)"),
        (
            "private.test",
            "the callback host private.test resolves to 10.0.0.1, a private address (RFC 1918)",
        ),
        ("rebind.test", "the callback host rebind.test resolves to 127.0.0.1, a loopback address"),
        ("mixed.test", "the callback host mixed.test resolves to 127.0.0.1, a loopback address"),
        (
            "metadata.test",
            "the callback host metadata.test resolves to 169.254.169.254,"
            " the cloud metadata address (link-local)",
        ),
    ],
)
@pytest.mark.parametrize("scheme", ["http://", "https://", ""])
def test_refused_without_allow_list_and_nothing_sent(
    receiver: Receiver, network_guard: list[str], host: str, reason: str, scheme: str
) -> None:
    dns = Dns(BATTERY_DNS)
    url = f"{scheme}{host}:{receiver.port}/latest/meta-data"
    result = post(url, BODY, headers_now(), allow=[], resolver=dns)
    assert result == DeliveryResult(False, 0, reason)
    assert receiver.requests == []
    assert network_guard == []
    # Only names are resolved, and only by the injected resolver.
    assert dns.asked == ([host] if host in BATTERY_DNS else [])


def test_allow_list_for_loopback_still_refuses_private(receiver: Receiver) -> None:
    dns = Dns({"both.test": ["127.0.0.1", "10.0.0.1"]})
    result = post(
        f"http://both.test:{receiver.port}/", BODY, headers_now(), allow=ALLOW_V4, resolver=dns
    )
    assert result == DeliveryResult(
        False, 0, "the callback host both.test resolves to 10.0.0.1, a private address (RFC 1918)"
    )
    assert receiver.requests == []
