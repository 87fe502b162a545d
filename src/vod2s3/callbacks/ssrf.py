"""Which callback destinations may be contacted (SPEC §5, issue 4).

A callback URL is chosen by a customer, and the service POSTs to it from inside the operator's
network, so the URL must never reach loopback, private, link-local (cloud metadata) or other
non-public addresses. Two checks use this module:

- at ``aws.upload`` time, :func:`check_url_literal` refuses URLs whose host *is* such an address
  (in any spelling), so the customer hears about the mistake at once;
- at delivery time, :func:`resolve_checked` resolves the host, checks every address it has, and
  hands back the checked address so the connection goes there and nowhere else (no second DNS
  lookup an attacker could answer differently).

An operator may allow networks (``VOD2S3_CALLBACK_ALLOW``; the tests allow 127.0.0.0/8).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "CallbackRefused",
    "CheckedTarget",
    "Network",
    "Resolver",
    "address_problem",
    "check_url_literal",
    "parse_literal_ip",
    "resolve_checked",
    "system_resolver",
    "with_scheme",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class CallbackRefused(Exception):
    """The callback may not be sent. ``reason`` is a sentence meant for the customer.

    ``retryable`` is True only when the cause may go away by itself (DNS did not answer);
    an address that is refused stays refused.
    """

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def system_resolver(host: str, port: int) -> list[str]:
    """Every A and AAAA address of ``host``, deduplicated, in the order the system gave them."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


# --- literal addresses -----------------------------------------------------------------------

# The characters of the legacy IPv4 spellings (decimal, octal, hex parts). Only hosts made of
# these are handed to inet_aton, so that no name is ever read as an address by accident.
_LEGACY_IPV4_CHARS = re.compile(r"[0-9a-fA-FxX.]+")
_DIGITS = re.compile(r"[0-9]+")
_HEX_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL_DIGITS = re.compile(r"[0-7]*")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")
# What a DNS name can hold once IDNA-encoded ("_" occurs in real names, e.g. SRV-style labels).
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def _ascii_host(host: str) -> str:
    """The host as the resolver will see it: lower case, and non-ASCII names IDNA-encoded the
    way ``socket.getaddrinfo`` encodes them (IDNA 2003, whose NFKC step turns full-width
    digits and ideographic dots into "127.0.0.1"). Left as it was when it cannot be encoded."""
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()


def _ends_in_number(host: str) -> bool:
    """The WHATWG URL standard's test: a host whose last label is a number is an IPv4 address
    (or an invalid host), never a name. ``face.b00c`` ends in a name; ``abc.0x1f`` does not."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    return bool(_DIGITS.fullmatch(last) or _HEX_NUMBER.fullmatch(last))


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG URL standard's IPv4 parser (what browsers and URL libraries do)."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    if len(labels) > 4:
        return None
    numbers: list[int] = []
    for label in labels:
        if label == "":
            return None
        if label[:2] in ("0x", "0X"):
            digits, radix, valid = label[2:], 16, _HEX_DIGITS
        elif len(label) > 1 and label[0] == "0":
            digits, radix, valid = label[1:], 8, _OCTAL_DIGITS
        else:
            digits, radix, valid = label, 10, _DIGITS
        if not valid.fullmatch(digits):
            return None
        numbers.append(int(digits, radix) if digits else 0)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, n in enumerate(leading):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """What the C library's resolver makes of a numeric host (it calls inet_aton first)."""
    if not _LEGACY_IPV4_CHARS.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _ipv6_literal(host: str) -> ipaddress.IPv6Address | None:
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    # In a URL the zone separator is written %25 (RFC 6874); people also write a bare %.
    inner = inner.replace("%25", "%", 1)
    try:
        return ipaddress.IPv6Address(inner)
    except ValueError:
        return None


def parse_literal_ip(host: str) -> Address | None:
    """The address ``host`` spells, in any spelling a URL parser or the C resolver accepts:
    dotted quad, one integer, hex, octal and short forms (``0x7f.1``, ``0177.0.0.1``,
    ``127.1``), a trailing dot, bracketed or bare IPv6 (with a zone id, which
    :func:`address_problem` refuses). None for a host name.

    A numeric-looking host that the WHATWG parser and inet_aton read differently (or that
    neither reads) is not an address either; :func:`check_url_literal` and
    :func:`resolve_checked` refuse those outright.
    """
    if host.startswith("[") or ":" in host:
        return _ipv6_literal(host)
    host = _ascii_host(host)
    if not _ends_in_number(host):
        return None
    stripped = host[:-1] if host.endswith(".") else host
    whatwg = _whatwg_ipv4(stripped)
    if whatwg is None or whatwg != _inet_aton(stripped):
        return None
    return whatwg


def _is_localhost(host: str) -> bool:
    name = _ascii_host(host).rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


# --- address classes -------------------------------------------------------------------------

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_METADATA = ipaddress.IPv4Address("169.254.169.254")

# Checked in this order; the first match names the kind. Whatever is not listed is still
# refused when Python does not consider it globally routable (the last check).
_KINDS: tuple[tuple[Network, str], ...] = (
    (_V4("0.0.0.0/32"), "the unspecified address"),
    (_V4("0.0.0.0/8"), 'a "this network" address (0.0.0.0/8)'),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("10.0.0.0/8"), "a private address (RFC 1918)"),
    (_V4("172.16.0.0/12"), "a private address (RFC 1918)"),
    (_V4("192.168.0.0/16"), "a private address (RFC 1918)"),
    (_V4("100.64.0.0/10"), "a shared carrier-grade NAT address (RFC 6598)"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment (RFC 6890)"),
    (_V4("192.0.2.0/24"), "a documentation address (RFC 5737)"),
    (_V4("198.51.100.0/24"), "a documentation address (RFC 5737)"),
    (_V4("203.0.113.0/24"), "a documentation address (RFC 5737)"),
    (_V4("198.18.0.0/15"), "a benchmarking address (RFC 2544)"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
    (_V4("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"),
    (_V6("::/128"), "the unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address (deprecated, RFC 3879)"),
    (_V6("fc00::/7"), "a unique local address (RFC 4193)"),
    (_V6("ff00::/8"), "a multicast address"),
    (_V6("2001:db8::/32"), "a documentation address (RFC 3849)"),
    (_V6("3fff::/20"), "a documentation address (RFC 9637)"),
    (_V6("2001:2::/48"), "a benchmarking address (RFC 5180)"),
    (_V6("100::/64"), "a discard-only address (RFC 6666)"),
)

_MAPPED = _V6("::ffff:0:0/96")
_COMPATIBLE = _V6("::/96")
_NAT64 = _V6("64:ff9b::/96")
_NAT64_LOCAL = _V6("64:ff9b:1::/48")
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")


def _embedded(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """The IPv4 addresses an IPv6 address carries, and the name of the form, or None.

    These forms reach the IPv4 address inside them (the kernel, a NAT64 gateway or a tunnel
    relay does the translating), so ``::ffff:127.0.0.1`` is as much loopback as 127.0.0.1.
    """
    packed = int(ip)
    low32 = ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if ip in _MAPPED:
        return "an IPv4-mapped IPv6 address", [low32]
    if ip in _COMPATIBLE and packed > 1:
        return "an IPv4-compatible IPv6 address (deprecated)", [low32]
    if ip in _NAT64:
        return "a NAT64 address (RFC 6052)", [low32]
    if ip in _NAT64_LOCAL:
        # The operator's own translator; the /96 layout is the one in use in practice.
        return "a local-use NAT64 address (RFC 8215)", [low32]
    if ip in _SIX_TO_FOUR and ip.sixtofour is not None:
        return "a 6to4 address", [ip.sixtofour]
    if ip in _TEREDO and ip.teredo is not None:
        server, client = ip.teredo
        return "a Teredo address", [server, client]
    return None


# Wrapping forms that are refused even when the IPv4 address inside is public: nothing
# legitimate publishes them, and they are tunnelled in ways the checks cannot follow.
_ALWAYS_REFUSED_FORMS = (_COMPATIBLE, _NAT64_LOCAL, _TEREDO)


def _plain_kind(ip: Address) -> str | None:
    """What makes an address (not looked into) unfit, or None when it is globally routable."""
    for network, kind in _KINDS:
        if ip.version == network.version and ip in network:
            if ip == _METADATA:
                return "the cloud metadata address (link-local)"
            return kind
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


def _show(ip: Address) -> str:
    """The address as people write it: Python 3.11 prints ::ffff:127.0.0.1 as ::ffff:7f00:1."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def _allowed(ip: Address, allow: Sequence[Network]) -> bool:
    return any(ip.version == network.version and ip in network for network in allow)


def _kind(ip: Address, allow: Sequence[Network]) -> str | None:
    """Why ``ip`` is refused, as "a loopback address" or "an IPv4-mapped IPv6 address of
    127.0.0.1, a loopback address"; None when it may be contacted."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        # A zone picks a local interface: meaningless for a remote receiver, and the zone
        # text would otherwise slip past the allow-list comparison.
        return f"an address with a zone id (%{ip.scope_id}), which is never accepted"
    embedded = _embedded(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    inner = embedded[1] if embedded else []
    # An operator's allow-list admits the address in either form.
    if _allowed(ip, allow) or (inner and all(_allowed(v4, allow) for v4 in inner)):
        return None
    if embedded is None:
        return _plain_kind(ip)
    form, addresses = embedded
    for v4 in addresses:
        if not _allowed(v4, allow):
            inner_kind = _plain_kind(v4)
            if inner_kind is not None:
                return f"{form} of {v4}, {inner_kind}"
    if any(ip in network for network in _ALWAYS_REFUSED_FORMS):
        return f"{form}, which is not accepted"
    return None


def address_problem(ip: Address, allow: Sequence[Network]) -> str | None:
    """None if ``ip`` may be contacted, else e.g. "10.0.0.1 is a private address (RFC 1918)".

    IPv4-mapped, IPv4-compatible, NAT64, 6to4 and Teredo forms are judged by the IPv4
    address they carry. ``allow`` admits an address in its own or its unwrapped form.
    """
    kind = _kind(ip, allow)
    return None if kind is None else f"{_show(ip)} is {kind}"


# --- URLs ------------------------------------------------------------------------------------

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def with_scheme(url: str) -> str:
    """A callback URL without a scheme means http:// (the original docs' example is
    ``www.mycallbackurl.com/``). Only a scheme at the very start counts, so a query holding
    another URL does not make one up."""
    return url if _SCHEME.match(url) else "http://" + url


def _literal_reason(spelling: str, ip: Address, kind: str) -> str:
    if spelling.strip("[]").replace("%25", "%", 1).lower() in (str(ip), _show(ip)):
        return f"the callback host {spelling} is {kind}"
    return f"the callback host {spelling} is {_show(ip)}, {kind}"


def _host_reason(host: str, allow: Sequence[Network]) -> tuple[str | None, Address | None]:
    """For a host that is not a plain name: (reason to refuse, or None; the literal address).
    (None, None) means a name that has to be resolved."""
    ip = parse_literal_ip(host)
    if ip is not None:
        kind = _kind(ip, allow)
        return (None if kind is None else _literal_reason(host, ip, kind)), ip
    if host.startswith("[") or ":" in host:
        return f"the callback host {host} is not a valid IPv6 address", None
    ascii_host = _ascii_host(host)
    if _ends_in_number(ascii_host):
        # Numeric, but not one address every parser agrees on ("08.0.0.1", "1.2.3.4.5",
        # "0x"): the C resolver might send it to DNS while URL parsers reject it.
        return f"the callback host {host} is not a valid IP address", None
    if _is_localhost(ascii_host):
        loopback = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
        if not any(_allowed(ip, allow) for ip in loopback):
            return f"the callback host {host} is the local machine (loopback)", None
        return None, None
    if not _HOSTNAME.fullmatch(ascii_host):
        return f"the callback host {host} is not a valid host name", None
    return None, None


def check_url_literal(url: str, allow: Sequence[Network]) -> str | None:
    """The reason to refuse a callback URL at ``aws.upload`` time, or None.

    Only what the URL itself says is judged: an IP address in any spelling, ``localhost``,
    or a host no resolver could take. Names are not resolved here (DNS can change before
    delivery; :func:`resolve_checked` checks then).
    """
    try:
        hostname = urlsplit(with_scheme(url)).hostname
    except ValueError:
        return None  # the URL syntax check reports this
    if not hostname:
        return None
    reason, _ip = _host_reason(hostname, allow)
    return reason


@dataclass(frozen=True)
class CheckedTarget:
    """Where to deliver: ``address`` was checked and is the one to connect to; ``host`` goes in
    the Host header and, for https, in TLS SNI and the certificate check."""

    scheme: str
    host: str
    port: int
    address: str
    target: str


def resolve_checked(
    url: str, allow: Sequence[Network], resolver: Resolver = system_resolver
) -> CheckedTarget:
    """Resolve the callback host and check every address it has; refuse if any is refused.

    Every address, not only the first, because the connection could otherwise be steered to
    the bad one (by the order of records, or by a fallback after the good one fails).
    """
    try:
        parts = urlsplit(with_scheme(url))
        port = parts.port
    except ValueError:
        raise CallbackRefused(f"the callback URL {url!r} is not a valid URL") from None
    scheme = parts.scheme
    if scheme not in _DEFAULT_PORTS:
        raise CallbackRefused(f"the callback URL must be http:// or https://, not {scheme}://")
    hostname = parts.hostname
    if not hostname:
        raise CallbackRefused(f"the callback URL {url!r} has no host")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    elif port == 0:
        raise CallbackRefused("the callback URL has port 0")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    reason, literal = _host_reason(hostname, allow)
    if reason is not None:
        raise CallbackRefused(reason)
    if literal is not None:
        return CheckedTarget(scheme, str(literal), port, _connect_address(literal), target)

    host = _ascii_host(hostname)
    try:
        answers = resolver(host, port)
    except (OSError, UnicodeError):
        answers = []
    if not answers:
        raise CallbackRefused(f"the callback host {host} could not be resolved", retryable=True)
    checked: list[Address] = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(answer)
        except ValueError:
            raise CallbackRefused(
                f"the callback host {host} resolves to {answer!r}, which is not an IP address"
            ) from None
        kind = _kind(ip, allow)
        if kind is not None:
            raise CallbackRefused(f"the callback host {host} resolves to {_show(ip)}, {kind}")
        checked.append(ip)
    return CheckedTarget(scheme, host, port, _connect_address(checked[0]), target)


def _connect_address(ip: Address) -> str:
    """The address to dial. An IPv4-mapped IPv6 address is dialled as the IPv4 address it
    stands for, which is where an IPv6 socket would go anyway, without relying on the host's
    dual-stack settings."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
