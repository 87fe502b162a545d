"""Who the client is at the network level: the address the per-address limits count.

The TCP peer is the client, unless the peer is one of the operator's trusted proxies
(``VOD2S3_TRUSTED_PROXIES``): then ``X-Forwarded-For`` is read from the right, past every
trusted proxy, and the first other address is the client. Entries further left were written
by the client and are never believed. An IPv6 client counts by its /64, the block one host
is normally given, so it cannot get a fresh budget from each of its addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "(unknown)"
# What a trusted proxy forwarded that is no address at all (a client's own header passed on
# from a trusted network): counted as written, cut to this length.
_MAX_UNPARSED = 64


def _parse(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def is_trusted_proxy(peer: str | None, proxies: Sequence[Network]) -> bool:
    address = _parse(peer) if peer else None
    return address is not None and _trusted(address, proxies)


def address_key(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[Network]
) -> str:
    """The key of the client behind ``peer``: an IPv4 address, an IPv6 /64, or, for a
    peer that is no IP address (a Unix socket), the peer as given."""
    if not peer:
        return UNKNOWN
    address = _parse(peer)
    if address is None:
        return peer
    if not proxies or not _trusted(address, proxies):
        return address_key(address)
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        forwarded = _parse(hop)
        if forwarded is None:
            return hop.strip()[:_MAX_UNPARSED]
        address = forwarded
        if not _trusted(address, proxies):
            break
    return address_key(address)
