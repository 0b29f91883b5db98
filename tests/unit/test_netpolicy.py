"""Which URLs and addresses the fetcher may reach (shared.scraping.netpolicy), as tables."""

import ipaddress

import pytest

from shared.scraping.netpolicy import (
    BlockedTarget,
    InvalidTarget,
    UnresolvableHost,
    is_address_allowed,
    normalise_host,
    parse_target,
    resolve_checked,
)

WEB_PORTS = frozenset({80, 443})


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4007::200e"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "127.255.255.254",
        "10.0.0.1",  # private
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",  # link-local: cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # unspecified
        "0.1.2.3",  # "this network"
        "224.0.0.1",  # multicast
        "224.0.1.1",  # multicast that Python calls global
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",  # broadcast
        "192.0.0.9",  # IETF protocol assignments
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "192.88.99.1",  # 6to4 relay anycast
        "::1",
        "::",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::808:808",  # NAT64 of a public address: the gateway is still internal
        "64:ff9b:1::1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:808:808::1",  # 6to4, whatever it embeds
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "fe80::1",  # link-local
        "fe80::1%eth0",
        "fec0::1",  # site-local (deprecated)
        "fc00::1",  # unique local
        "fd12:3456::1",
        "ff02::1",  # multicast that Python calls global
        "2001:db8::1",  # documentation
    ],
)
def test_non_public_addresses_are_denied(address: str) -> None:
    assert not is_address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("address", "networks", "allowed"),
    [
        ("127.0.0.1", ["127.0.0.0/8"], True),
        ("::ffff:127.0.0.1", ["127.0.0.0/8"], True),  # mapped form is judged as its IPv4
        ("127.0.0.2", ["127.0.0.1/32"], False),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("10.1.2.3", ["127.0.0.0/8"], False),
        ("::1", ["127.0.0.0/8"], False),  # IPv4 networks never match IPv6 addresses
        ("::1", ["::1/128"], True),
    ],
)
def test_allowed_networks_are_the_only_exception(
    address: str, networks: list[str], allowed: bool
) -> None:
    parsed = tuple(ipaddress.ip_network(network) for network in networks)
    assert is_address_allowed(ipaddress.ip_address(address), parsed) is allowed


@pytest.mark.parametrize(
    ("host", "normalised"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # UTS 46 non-transitional: ß is kept
        ("ｅｘａｍｐｌｅ．ｃｏｍ", "example.com"),  # full-width letters and dot
        ("under_score.example", "under_score.example"),
        ("2130706433", "127.0.0.1"),  # legacy IPv4 forms become dotted quads
        ("017700000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("017.0.0.1", "15.0.0.1"),  # leading zero means octal, as getaddrinfo reads it
        ("１２７．０．０．１", "127.0.0.1"),
        ("%31%32%37.0.0.1", "127.0.0.1"),
        ("::FFFF:7F00:1", "::ffff:7f00:1"),
        ("0:0:0:0:0:ffff:7f00:1", "::ffff:7f00:1"),
    ],
)
def test_normalise_host(host: str, normalised: str) -> None:
    assert normalise_host(host) == normalised


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "localhost.", "api.localhost", "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ"]
)
def test_localhost_names_are_blocked_without_resolving(host: str) -> None:
    with pytest.raises(BlockedTarget):
        normalise_host(host)


@pytest.mark.parametrize(
    "host",
    ["", "a..b", "exa mple.com", "-bad-.example", "1.2.3.4.5", "example.123", "x" * 64 + ".com"],
)
def test_malformed_hosts_are_invalid(host: str) -> None:
    with pytest.raises(InvalidTarget):
        normalise_host(host)


@pytest.mark.parametrize(
    ("url", "expected_url", "host_header"),
    [
        ("http://example.com", "http://example.com/", "example.com"),
        ("HTTPS://Example.com:443/a?b=1#frag", "https://example.com/a?b=1", "example.com"),
        ("http://example.com:80/x", "http://example.com/x", "example.com"),
        ("http://bücher.example/", "http://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("http://[2606:4700::1111]/", "http://[2606:4700::1111]/", "[2606:4700::1111]"),
        ("  http://example.com/  ", "http://example.com/", "example.com"),
    ],
)
def test_parse_target_rebuilds_the_checked_url(
    url: str, expected_url: str, host_header: str
) -> None:
    target = parse_target(url, WEB_PORTS)
    assert (target.url, target.host_header) == (expected_url, host_header)


def test_parse_target_keeps_a_non_default_allowed_port() -> None:
    target = parse_target("http://example.com:8080/p", frozenset({8080}))
    assert (target.port, target.url, target.host_header) == (
        8080,
        "http://example.com:8080/p",
        "example.com:8080",
    )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "ftp://example.com/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "//example.com/",
        "http://user:pass@example.com/",
        "http://user@example.com/",
        "http://example.com@127.0.0.1/",
        "http://example.com:8080/",
        "http://example.com:22/",
        "https://example.com:0/",
        "http://localhost/",
    ],
)
def test_parse_target_blocks_policy_violations(url: str) -> None:
    with pytest.raises(BlockedTarget):
        parse_target(url, WEB_PORTS)


@pytest.mark.parametrize(
    "url",
    [
        "http:///path",
        "http://",
        "http://example.com:99999/",
        "http://example.com:abc/",
        "http://exa\x00mple.com/",
        "http://[::1/",
    ],
)
def test_parse_target_rejects_malformed_urls(url: str) -> None:
    with pytest.raises(InvalidTarget):
        parse_target(url, WEB_PORTS)


class RecordingResolver:
    """Answers from a fixed table and records every lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[host]


def test_resolve_checked_returns_the_first_address_after_checking_all() -> None:
    resolver = RecordingResolver({"site.example": ["93.184.215.14", "2606:4700::1111"]})
    target = parse_target("https://site.example/", WEB_PORTS)
    assert resolve_checked(target, resolver) == "93.184.215.14"
    assert resolver.calls == [("site.example", 443)]


@pytest.mark.parametrize(
    "answer",
    [["127.0.0.1"], ["93.184.215.14", "10.0.0.1"], ["2606:4700::1111", "::1"], ["not-an-ip"]],
)
def test_resolve_checked_blocks_if_any_address_is_not_public(answer: list[str]) -> None:
    resolver = RecordingResolver({"site.example": answer})
    with pytest.raises(BlockedTarget):
        resolve_checked(parse_target("http://site.example/", WEB_PORTS), resolver)


def test_resolve_checked_does_not_resolve_ip_literals() -> None:
    resolver = RecordingResolver({})
    with pytest.raises(BlockedTarget):
        resolve_checked(parse_target("http://2130706433/", WEB_PORTS), resolver)
    assert resolver.calls == []


@pytest.mark.parametrize("answer", [[], OSError("temporary failure in name resolution")])
def test_resolution_failures_are_unresolvable(answer: list[str] | OSError) -> None:
    def resolver(host: str, port: int) -> list[str]:
        if isinstance(answer, OSError):
            raise answer
        return answer

    with pytest.raises(UnresolvableHost):
        resolve_checked(parse_target("http://site.example/", WEB_PORTS), resolver)
