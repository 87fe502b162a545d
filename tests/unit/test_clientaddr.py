"""Which client the per-address limits count: the peer, or what a trusted proxy forwarded."""

from __future__ import annotations

import ipaddress

import pytest

from vod2s3.api.clientaddr import UNKNOWN, client_address, is_trusted_proxy

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # An untrusted peer is the client, whatever it forwards.
        ("198.51.100.1", ["203.0.113.9"], "198.51.100.1"),
        # A trusted proxy: the rightmost address that is not a trusted proxy.
        ("10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        ("10.0.0.1", ["1.1.1.1, 203.0.113.9, 10.0.0.2"], "203.0.113.9"),
        ("10.0.0.1", ["1.1.1.1", "203.0.113.9"], "203.0.113.9"),  # two header lines
        # Nothing forwarded, or only proxies: the last proxy reached.
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["10.0.0.2"], "10.0.0.2"),
        # IPv6 by /64, IPv4-mapped as IPv4.
        ("2001:db8::1", [], "2001:db8::/64"),
        ("fd00::1", ["2001:db8:0:0:ffff::1"], "2001:db8::/64"),
        ("::ffff:198.51.100.1", [], "198.51.100.1"),
        # What is no address, forwarded by a trusted proxy, counts as written (cut short).
        ("10.0.0.1", ["unknown"], "unknown"),
        ("10.0.0.1", ["x" * 100], "x" * 64),
        (None, [], UNKNOWN),
        ("/run/vod2s3.sock", [], "/run/vod2s3.sock"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], client: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == client


def test_is_trusted_proxy() -> None:
    assert is_trusted_proxy("10.1.2.3", PROXIES)
    assert not is_trusted_proxy("198.51.100.1", PROXIES)
    assert not is_trusted_proxy(None, PROXIES)
    assert not is_trusted_proxy("10.1.2.3", ())
