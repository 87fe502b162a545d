"""The SSRF guard's pure parts: literal spellings, address classes, URL checks, resolution."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vod2s3.callbacks.ssrf import (
    CallbackRefused,
    CheckedTarget,
    Network,
    address_problem,
    check_url_literal,
    parse_literal_ip,
    resolve_checked,
    system_resolver,
)

FULLWIDTH_DIGITS = {ord(digit): 0xFF10 + int(digit) for digit in "0123456789"}
LOOPBACK_V4: list[Network] = [ipaddress.ip_network("127.0.0.0/8")]
LOOPBACK_BOTH: list[Network] = [
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
]


# --- safety net: nothing in this module may reach past loopback --------------------------------


pytestmark = pytest.mark.usefixtures("network_guard")


# --- parse_literal_ip --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0x0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0x7f.1.", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("167772161", "10.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0", "0.0.0.0"),
        ("1.16777215", "1.255.255.255"),
        ("93.184.216.34", "93.184.216.34"),
        # Full-width digits and an ideographic full stop: the resolver's IDNA step maps them.
        ("127.0.0.1".translate(FULLWIDTH_DIGITS), "127.0.0.1"),
        ("127。0。0。1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("[2606:2800:220:1::1]", "2606:2800:220:1::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("[fe80::1%25eth0]", "fe80::1%eth0"),
    ],
)
def test_parse_literal_ip_spellings(host: str, expected: str) -> None:
    assert parse_literal_ip(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "www.mycallbackurl.com",
        "localhost",
        "face.b00c",  # hex letters, but a name: its last label is not a number
        "cafe",
        "deadbeef",
        "0x7f.example.com",
        "1.2.3.4.example",
        "xn--bcher-kva.de",
        # Numeric-looking but not one address every parser agrees on: refused elsewhere.
        "08.0.0.1",  # 8 is not an octal digit
        "0x",  # WHATWG: 0.0.0.0; inet_aton: invalid
        "1.2.3.4.5",
        "256.0.0.1",
        "1.16777216",
        "4294967296",
        "127..1",
        ".127.0.0.1",
        "00x7f.1",
        "0x7g.1",
        "[not-an-address]",
        "[127.0.0.1]",
        ":::1",
    ],
)
def test_parse_literal_ip_not_an_address(host: str) -> None:
    assert parse_literal_ip(host) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_spelling_is_the_same_address(value: int) -> None:
    ip = ipaddress.IPv4Address(value)
    octets = [int(part) for part in str(ip).split(".")]
    spellings = [
        str(ip),
        str(value),
        hex(value),
        ".".join(hex(o) for o in octets),
        ".".join("0" + oct(o)[2:] for o in octets),
        f"{octets[0]}.{(octets[1] << 16) | (octets[2] << 8) | octets[3]}",
        f"{octets[0]}.{octets[1]}.{(octets[2] << 8) | octets[3]}",
        str(ip) + ".",
    ]
    for spelling in spellings:
        assert parse_literal_ip(spelling) == ip, spelling


# --- address_problem ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private address (RFC 1918)"),
        ("172.16.0.1", "private address (RFC 1918)"),
        ("172.31.255.255", "private address (RFC 1918)"),
        ("192.168.1.1", "private address (RFC 1918)"),
        ("169.254.169.254", "cloud metadata address (link-local)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this network"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("2001:2::1", "benchmarking"),
        ("192.0.0.1", "IETF protocol assignment"),
        ("192.0.0.9", "IETF protocol assignment"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("fec0::1", "site-local"),
        ("100::1", "discard-only"),
        ("5f00::1", "reserved"),  # outside 2000::/3 global unicast
        ("4000::1", "reserved"),
    ],
)
def test_refused_kinds(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    problem = address_problem(ip, [])
    assert problem is not None
    assert problem.startswith(f"{address} is ")
    assert kind in problem


@pytest.mark.parametrize(
    ("wrapped", "inner", "form"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1", "IPv4-mapped"),
        ("::ffff:10.0.0.1", "10.0.0.1", "IPv4-mapped"),
        ("::ffff:169.254.169.254", "169.254.169.254", "IPv4-mapped"),
        ("::127.0.0.1", "127.0.0.1", "IPv4-compatible"),
        ("::10.0.0.1", "10.0.0.1", "IPv4-compatible"),
        ("2002:7f00:1::", "127.0.0.1", "6to4"),
        ("2002:a00:1:1234::5", "10.0.0.1", "6to4"),
        ("64:ff9b::127.0.0.1", "127.0.0.1", "NAT64"),
        ("64:ff9b::10.0.0.1", "10.0.0.1", "NAT64"),
        ("64:ff9b:1::127.0.0.1", "127.0.0.1", "local-use NAT64"),
        ("64:ff9b:1::10.0.0.1", "10.0.0.1", "local-use NAT64"),
        # Teredo: server 127.0.0.1 / 10.0.0.1; the client part is 93.184.216.34, obfuscated.
        ("2001:0:7f00:1:0:0:a247:27dd", "127.0.0.1", "Teredo"),
        ("2001:0:a00:1:0:0:a247:27dd", "10.0.0.1", "Teredo"),
        # Teredo: public server, client 10.0.0.1 (stored as its complement).
        ("2001:0:5db8:d822:0:0:f5ff:fffe", "10.0.0.1", "Teredo"),
    ],
)
def test_wrapped_forms_are_judged_by_the_ipv4_inside(wrapped: str, inner: str, form: str) -> None:
    problem = address_problem(ipaddress.ip_address(wrapped), [])
    assert problem is not None
    assert form in problem
    assert f"of {inner}," in problem


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:2800:220:1::1",
        "2001:4860:4860::8888",
        "::ffff:93.184.216.34",  # mapped, carrying a public address
        "64:ff9b::93.184.216.34",  # DNS64 answers look like this on IPv6-only networks
        "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), []) is None


@pytest.mark.parametrize(
    "address",
    [
        "::93.184.216.34",  # IPv4-compatible: deprecated, refused whatever it carries
        "64:ff9b:1::93.184.216.34",  # local-use NAT64: the operator's own translator
        "2001:0:5db8:d822:0:0:a247:27dd",  # Teredo with public server and client
    ],
)
def test_forms_refused_even_with_a_public_address_inside(address: str) -> None:
    problem = address_problem(ipaddress.ip_address(address), [])
    assert problem is not None
    assert "not accepted" in problem


def test_zone_ids_are_refused_even_when_allowed() -> None:
    problem = address_problem(ipaddress.ip_address("::1%lo"), LOOPBACK_BOTH)
    assert problem is not None
    assert "zone id" in problem
    assert address_problem(ipaddress.ip_address("2606:2800:220:1::1%eth0"), []) is not None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.1.2.3", "::ffff:127.0.0.1", "64:ff9b::127.0.0.1", "2002:7f00:1::", "::1"],
)
def test_allow_list_admits_raw_or_unwrapped(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), LOOPBACK_BOTH) is None


def test_allow_list_for_ipv4_does_not_admit_ipv6_loopback() -> None:
    problem = address_problem(ipaddress.ip_address("::1"), LOOPBACK_V4)
    assert problem == "::1 is a loopback address"


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "::ffff:10.0.0.1", "169.254.169.254", "fe80::1", "fc00::1"]
)
def test_allow_list_still_refuses_the_rest(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), LOOPBACK_BOTH) is not None


def test_reason_names_address_and_kind() -> None:
    assert (
        address_problem(ipaddress.ip_address("10.0.0.1"), [])
        == "10.0.0.1 is a private address (RFC 1918)"
    )
    assert address_problem(ipaddress.ip_address("::ffff:127.0.0.1"), []) == (
        "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address"
    )


# --- check_url_literal ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "the callback host 127.0.0.1 is a loopback address"),
        ("2130706433", "the callback host 2130706433 is 127.0.0.1, a loopback address"),
        ("http://0x7f.1:8080/x", "the callback host 0x7f.1 is 127.0.0.1, a loopback address"),
        ("http://[::1]/", "the callback host ::1 is a loopback address"),
        (
            "http://[::ffff:127.0.0.1]/",
            "the callback host ::ffff:127.0.0.1 is an IPv4-mapped IPv6 address of 127.0.0.1,"
            " a loopback address",
        ),
        (
            "http://169.254.169.254/latest/meta-data",
            "the callback host 169.254.169.254 is the cloud metadata address (link-local)",
        ),
        ("http://10.0.0.1/", "the callback host 10.0.0.1 is a private address (RFC 1918)"),
        ("localhost:9000/cb", "the callback host localhost is the local machine (loopback)"),
        ("https://LOCALHOST./", "the callback host localhost. is the local machine (loopback)"),
        (
            "http://api.localhost/",
            "the callback host api.localhost is the local machine (loopback)",
        ),
        ("http://127.0.0.1./", "the callback host 127.0.0.1. is 127.0.0.1, a loopback address"),
        ("HTTP://0177.0.0.1/", "the callback host 0177.0.0.1 is 127.0.0.1, a loopback address"),
        ("http://08.0.0.1/", "the callback host 08.0.0.1 is not a valid IP address"),
        ("http://ex%41mple.com/", "the callback host ex%41mple.com is not a valid host name"),
    ],
)
def test_check_url_literal_refuses(url: str, reason: str) -> None:
    assert check_url_literal(url, []) == reason


@pytest.mark.parametrize(
    "url",
    [
        "www.mycallbackurl.com/",
        "https://example.com/hook?a=1",
        "http://evil.example/",  # names are only resolved at delivery
        "http://93.184.216.34/",
        "http://[2606:2800:220:1::1]:8443/",
        "http://face.b00c/",
        "https://bücher.de/",
    ],
)
def test_check_url_literal_passes(url: str) -> None:
    assert check_url_literal(url, []) is None


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/", "2130706433", "http://0x7f.1/", "localhost:9000/cb"]
)
def test_check_url_literal_with_allow_list(url: str) -> None:
    assert check_url_literal(url, LOOPBACK_V4) is None
    assert check_url_literal("http://10.0.0.1/", LOOPBACK_V4) is not None


# --- resolve_checked -----------------------------------------------------------------------


class FakeDns:
    """An injected resolver: a fixed table, and a log of what was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


DNS = {
    "evil.example": ["10.0.0.1"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],
    "mixed6.example": ["2606:2800:220:1::1", "fd00::1"],
    "metadata.example": ["169.254.169.254"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "good.example": ["93.184.216.34", "2606:2800:220:1::1"],
    "www.mycallbackurl.com": ["93.184.216.34"],
    "example.com": ["93.184.216.34"],
    "v6.example": ["2606:2800:220:1::1"],
    "public-mapped.example": ["::ffff:93.184.216.34"],
    "garbage.example": ["not-an-ip"],
    "empty.example": [],
    "loop.example": ["127.0.0.1"],
    "loop-and-private.example": ["127.0.0.1", "10.0.0.1"],
    "xn--bcher-kva.de": ["93.184.216.34"],
}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "http://evil.example/",
            "the callback host evil.example resolves to 10.0.0.1, a private address (RFC 1918)",
        ),
        (
            "http://mixed.example/",
            "the callback host mixed.example resolves to 127.0.0.1, a loopback address",
        ),
        (
            "https://mixed6.example/",
            "the callback host mixed6.example resolves to fd00::1,"
            " a unique local address (RFC 4193)",
        ),
        (
            "metadata.example/latest",
            "the callback host metadata.example resolves to 169.254.169.254,"
            " the cloud metadata address (link-local)",
        ),
        (
            "http://mapped.example/",
            "the callback host mapped.example resolves to ::ffff:10.0.0.1, an IPv4-mapped IPv6"
            " address of 10.0.0.1, a private address (RFC 1918)",
        ),
        (
            "http://garbage.example/",
            "the callback host garbage.example resolves to 'not-an-ip', which is not an IP address",
        ),
    ],
)
def test_resolve_checked_refuses_any_bad_address(url: str, reason: str) -> None:
    with pytest.raises(CallbackRefused) as refused:
        resolve_checked(url, [], FakeDns(DNS))
    assert refused.value.reason == reason
    assert str(refused.value) == reason
    assert refused.value.retryable is False


@pytest.mark.parametrize("host", ["nowhere.example", "empty.example"])
def test_resolve_checked_dns_failure(host: str) -> None:
    with pytest.raises(CallbackRefused) as refused:
        resolve_checked(f"https://{host}/cb", [], FakeDns(DNS))
    assert refused.value.reason == f"the callback host {host} could not be resolved"
    assert refused.value.retryable is True


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "the callback URL must be http:// or https://, not ftp://"),
        ("http:///path", "the callback URL 'http:///path' has no host"),
        (
            "http://example.com:99999/",
            "the callback URL 'http://example.com:99999/' is not a valid URL",
        ),
        ("http://example.com:0/", "the callback URL has port 0"),
        ("http://[::1/", "the callback URL 'http://[::1/' is not a valid URL"),
        ("http://127.0.0.1/", "the callback host 127.0.0.1 is a loopback address"),
        ("http://0x7f.1/", "the callback host 0x7f.1 is 127.0.0.1, a loopback address"),
        ("localhost:9000/cb", "the callback host localhost is the local machine (loopback)"),
        ("http://1.2.3.4.5/", "the callback host 1.2.3.4.5 is not a valid IP address"),
    ],
)
def test_resolve_checked_refuses_before_any_lookup(url: str, reason: str) -> None:
    dns = FakeDns(DNS)
    with pytest.raises(CallbackRefused) as refused:
        resolve_checked(url, [], dns)
    assert refused.value.reason == reason
    assert dns.asked == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "www.mycallbackurl.com/",
            CheckedTarget("http", "www.mycallbackurl.com", 80, "93.184.216.34", "/"),
        ),
        (
            "https://Example.COM:8443/a/b?c=d&e=f#fragment",
            CheckedTarget("https", "example.com", 8443, "93.184.216.34", "/a/b?c=d&e=f"),
        ),
        (
            "https://good.example",
            CheckedTarget("https", "good.example", 443, "93.184.216.34", "/"),
        ),
        (
            "http://v6.example:8080/x",
            CheckedTarget("http", "v6.example", 8080, "2606:2800:220:1::1", "/x"),
        ),
        (
            # A mapped answer is dialled as the IPv4 address it stands for.
            "http://public-mapped.example/",
            CheckedTarget("http", "public-mapped.example", 80, "93.184.216.34", "/"),
        ),
        (
            "https://bücher.de/",
            CheckedTarget("https", "xn--bcher-kva.de", 443, "93.184.216.34", "/"),
        ),
        (
            # A query that holds a URL does not make the scheme-less URL look schemed.
            "example.com/cb?next=http://other/",
            CheckedTarget("http", "example.com", 80, "93.184.216.34", "/cb?next=http://other/"),
        ),
        (
            "http://93.184.216.34:81/",
            CheckedTarget("http", "93.184.216.34", 81, "93.184.216.34", "/"),
        ),
        (
            "http://[2606:2800:220:1::1]/",
            CheckedTarget("http", "2606:2800:220:1::1", 80, "2606:2800:220:1::1", "/"),
        ),
    ],
)
def test_resolve_checked_targets(url: str, expected: CheckedTarget) -> None:
    assert resolve_checked(url, [], FakeDns(DNS)) == expected


def test_resolve_checked_asks_for_the_port_and_never_for_literals() -> None:
    dns = FakeDns(DNS)
    resolve_checked("https://example.com:8443/", [], dns)
    resolve_checked("http://93.184.216.34/", [], dns)
    assert dns.asked == [("example.com", 8443)]


def test_resolve_checked_with_allow_list() -> None:
    dns = FakeDns(DNS)
    target = resolve_checked("http://loop.example:9000/cb", LOOPBACK_V4, dns)
    assert target == CheckedTarget("http", "loop.example", 9000, "127.0.0.1", "/cb")
    literal = resolve_checked("http://0x7f.1:9000/", LOOPBACK_V4, dns)
    assert literal == CheckedTarget("http", "127.0.0.1", 9000, "127.0.0.1", "/")
    with pytest.raises(CallbackRefused):
        resolve_checked("http://evil.example/", LOOPBACK_V4, dns)
    # Allowed loopback does not carry a private address in with it.
    with pytest.raises(CallbackRefused):
        resolve_checked("http://loop-and-private.example/", LOOPBACK_V4, dns)
    mixed = resolve_checked("http://mixed.example/", [ipaddress.ip_network("127.0.0.1/32")], dns)
    assert mixed.address == "93.184.216.34"


def test_system_resolver_on_loopback_literals() -> None:
    assert system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
    try:
        answers = system_resolver("::1", 80)
    except OSError:
        pytest.skip("this system does not resolve IPv6 literals")
    assert answers == ["::1"]
