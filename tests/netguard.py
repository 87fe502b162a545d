"""Support for tests of network code. A guard: any connection or name lookup that would
leave loopback is refused and recorded, and the test fails. It protects against a bug sending
packets to 10.0.0.1 or 169.254.169.254; loopback traffic goes through untouched."""

from __future__ import annotations

import errno
import ipaddress
import socket
import socketserver
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest


def _loopback_literal(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


@pytest.fixture
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuses and records any connection or name lookup that would leave loopback. A guard
    against a bug sending packets to 10.0.0.1 or 169.254.169.254, not a mock of the code
    under test: loopback traffic goes through untouched."""
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def permitted(address: Any) -> bool:
        return isinstance(address, str | bytes) or _loopback_literal(address[0])

    def connect(self: socket.socket, address: Any) -> None:
        if not permitted(address):
            attempts.append(f"connect {address!r}")
            raise OSError(errno.ENETUNREACH, f"test guard: no connection to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not permitted(address):
            attempts.append(f"connect_ex {address!r}")
            return errno.ENETUNREACH
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback_literal(host):
            attempts.append(f"getaddrinfo {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def no_lookup(name: str) -> Any:
        def refuse(host: Any, *args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name} {host!r}")
            raise OSError(errno.ENETUNREACH, f"test guard: no {name}")

        return refuse

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        monkeypatch.setattr(socket, name, no_lookup(name))
    yield attempts
    assert attempts == [], f"a test tried to leave loopback: {attempts}"


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded test server that does not look its own name up: HTTPServer.server_bind asks
    for the host's FQDN, a reverse DNS query the guard above refuses."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class Dns:
    """An injected resolver that logs what it was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]
