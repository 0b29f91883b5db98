"""SSRF: every way of pointing fetch() at an internal address ends in blocked_address.

Canary HTTP servers listen on 127.0.0.1 and [::1] at port P and count every connection; each
vector aims at them (or at other internal addresses) and must leave them untouched. P is
allowed as a port, so what stops each vector is the address policy, not the port rule.
Names are answered by an injected resolver: no real DNS, and no traffic leaves this machine.
"""

import ipaddress
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.scraping.fetch import FetchError, FetchLimits, fetch

pytestmark = pytest.mark.integration

ORIGIN_ADDRESS = "127.0.0.2"


@dataclass
class Hits:
    """Requests a server received, as paths."""

    paths: list[str] = field(default_factory=list)


class CountingHandler(BaseHTTPRequestHandler):
    """Answers every request with a small page, or a redirect for /redirect?to=URL."""

    hits: Hits

    def do_GET(self) -> None:
        self.hits.paths.append(self.path)
        url = urlsplit(self.path)
        if url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<html><title>reached</title></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""


class IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@dataclass
class Network:
    """The canaries (must never be hit) and the origin (allowed only where a test says so)."""

    port: int
    canary: Hits
    origin: Hits
    ipv6_canary: bool

    @property
    def limits(self) -> FetchLimits:
        """Default limits, plus port P so only the address check can stop a vector."""
        return FetchLimits(allowed_ports=frozenset({80, 443, self.port}))

    @property
    def origin_limits(self) -> FetchLimits:
        """Limits that trust the origin's address, and nothing else internal."""
        origin = (ipaddress.ip_network(f"{ORIGIN_ADDRESS}/32"),)
        return FetchLimits(allowed_ports=frozenset({80, 443, self.port}), allowed_networks=origin)

    def origin_url(self, path: str) -> str:
        return f"http://{ORIGIN_ADDRESS}:{self.port}{path}"


def start(
    server_class: type[socketserver.TCPServer], address: str, port: int, hits: Hits
) -> socketserver.TCPServer:
    handler = type("Handler", (CountingHandler,), {"hits": hits})
    server = server_class((address, port), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def start_servers(canary: Hits, origin: Hits) -> tuple[list[socketserver.TCPServer], bool]:
    """Canary on 127.0.0.1:P (and [::1]:P if IPv6 works), origin on 127.0.0.2:P."""
    servers = [start(ThreadingHTTPServer, "127.0.0.1", 0, canary)]
    port = servers[0].server_address[1]
    servers.append(start(ThreadingHTTPServer, ORIGIN_ADDRESS, port, origin))
    try:
        servers.append(start(IPv6Server, "::1", port, canary))
    except OSError:  # no IPv6 loopback here: the [::1] vectors are still checked for blocking
        return servers, False
    return servers, True


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, Hits, Hits, bool]]:
    canary, origin = Hits(), Hits()
    running, ipv6 = start_servers(canary, origin)
    yield running[0].server_address[1], canary, origin, ipv6
    for server in running:
        server.shutdown()
        server.server_close()


@pytest.fixture
def net(servers: tuple[int, Hits, Hits, bool]) -> Network:
    port, canary, origin, ipv6 = servers
    canary.paths.clear()
    origin.paths.clear()
    return Network(port, canary, origin, ipv6)


class TableResolver:
    """Resolves only the names a test declares; any other lookup fails the test."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise AssertionError(f"unexpected DNS lookup of {host!r}")
        sequence = self.answers[host]
        return sequence[min(self.calls.count(host), len(sequence)) - 1]


def fake_dns() -> TableResolver:
    return TableResolver(
        {
            "127.0.0.1.nip.io": [["127.0.0.1"]],
            "internal.test": [["127.0.0.1"]],
            "metadata.test": [["169.254.169.254"]],
            "xn--bcher-kva.internal.test": [["10.0.0.1"]],
            "mixed.test": [["93.184.215.14", "127.0.0.1"]],
            "mixed6.test": [["2606:4700::1111", "::1"]],
            "mapped.test": [["::ffff:127.0.0.1"]],
        }
    )


DIRECT_VECTORS = [
    "http://127.0.0.1:{P}/",
    "http://2130706433:{P}/",  # decimal
    "http://017700000001:{P}/",  # octal
    "http://0177.0.0.1:{P}/",  # octal first octet
    "http://0x7f000001:{P}/",  # hex
    "http://0x7f.1:{P}/",  # hex, short form
    "http://127.1:{P}/",  # short form
    "http://127.0.0.1.:{P}/",  # trailing dot
    "http://%31%32%37.0.0.1:{P}/",  # percent-encoded host
    "http://１２７．０．０．１:{P}/",  # full-width digits and dots
    "http://localhost:{P}/",
    "http://localhost.:{P}/",
    "http://LOCALHOST:{P}/",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:{P}/",  # IDN that normalises to localhost
    "http://127.0.0.1.nip.io:{P}/",
    "http://internal.test:{P}/",
    "http://bücher.internal.test:{P}/",  # IDN resolved (as punycode) to 10.0.0.1
    "http://mixed.test:{P}/",  # one public and one loopback address in the same answer
    "http://mixed6.test:{P}/",
    "http://mapped.test:{P}/",  # resolver answers with an IPv4-mapped IPv6 address
    "http://[::1]:{P}/",
    "http://[::]:{P}/",
    "http://[::ffff:127.0.0.1]:{P}/",
    "http://[0:0:0:0:0:ffff:7f00:1]:{P}/",
    "http://[::127.0.0.1]:{P}/",  # IPv4-compatible
    "http://[2002:7f00:1::]:{P}/",  # 6to4
    "http://[64:ff9b::7f00:1]:{P}/",  # NAT64
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://[fec0::1]:{P}/",  # site-local
    "http://[fe80::1]:{P}/",  # link-local
    "http://[fe80::1%25lo]:{P}/",  # link-local with zone
    "http://[fd00::1]/",  # unique local
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://metadata.test/computeMetadata/v1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://10.0.0.1/",
    "http://10.255.255.255:{P}/",
    "http://172.16.0.1/",
    "http://172.31.0.1/",
    "http://192.168.0.1/",
    "http://0.0.0.0:{P}/",
    "http://0:{P}/",  # 0.0.0.0 reaches the local host on Linux
    "http://224.0.0.1/",  # multicast
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://public.example:8080/",  # port not allowed, on a name that would look public
    "https://public.example:22/",
    "http://public.example:0/",
    "file:///etc/passwd",
    "file://127.0.0.1:{P}/",
    "gopher://127.0.0.1:{P}/_GET%20/",
    "ftp://127.0.0.1:{P}/",
    "dict://127.0.0.1:{P}/",
    "http://user:pass@example.com/",
    "http://user@127.0.0.1:{P}/",
    "http://example.com@127.0.0.1:{P}/",
    "http://127.0.0.1:{P}\\@example.com/",
]


@pytest.mark.parametrize("vector", DIRECT_VECTORS)
def test_direct_vectors_are_blocked_before_connecting(net: Network, vector: str) -> None:
    with pytest.raises(FetchError) as raised:
        fetch(vector.format(P=net.port), net.limits, resolver=fake_dns())
    assert (raised.value.code, raised.value.retryable) == ("blocked_address", False)
    assert net.canary.paths == []


def test_the_canaries_would_notice_a_request(net: Network) -> None:
    # Proves the canaries are reachable: the blocks above are not vacuous.
    loopback = FetchLimits(
        allowed_ports=frozenset({net.port}),
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
    )
    fetch(f"http://127.0.0.1:{net.port}/probe", loopback)
    if net.ipv6_canary:
        fetch(f"http://[::1]:{net.port}/probe6", loopback)
    assert net.canary.paths == ["/probe", "/probe6"][: 1 + net.ipv6_canary]


REDIRECT_TARGETS = [
    "http://127.0.0.1:{P}/",
    "//127.0.0.1:{P}/",  # scheme-relative
    "http://2130706433:{P}/",
    "http://localhost:{P}/",
    "http://internal.test:{P}/",
    "http://[::1]:{P}/",
    "http://[::ffff:127.0.0.1]:{P}/",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.test/computeMetadata/v1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{P}/_x",
    "http://user:pass@127.0.0.1:{P}/",
]


@pytest.mark.parametrize("target", REDIRECT_TARGETS)
def test_redirects_into_internal_addresses_are_blocked(net: Network, target: str) -> None:
    location = target.format(P=net.port)
    url = net.origin_url(f"/redirect?to={location}")
    with pytest.raises(FetchError) as raised:
        fetch(url, net.origin_limits, resolver=fake_dns())
    assert raised.value.code == "blocked_address"
    assert len(net.origin.paths) == 1  # the allowed first hop was made...
    assert net.canary.paths == []  # ...and the redirect never was


def test_connects_to_the_checked_address_without_resolving_again(net: Network) -> None:
    # A rebinding resolver: the allowed origin first, the canary on every later lookup.
    resolver = TableResolver({"rebind.test": [[ORIGIN_ADDRESS], ["127.0.0.1"]]})
    page = fetch(f"http://rebind.test:{net.port}/page", net.origin_limits, resolver=resolver)
    assert "reached" in page.text
    assert resolver.calls == ["rebind.test"]
    assert net.origin.paths == ["/page"]
    assert net.canary.paths == []


def test_rebinding_between_hops_is_caught_on_the_next_hop(net: Network) -> None:
    resolver = TableResolver({"rebind.test": [[ORIGIN_ADDRESS], ["127.0.0.1"]]})
    url = f"http://rebind.test:{net.port}/redirect?to=/page"
    with pytest.raises(FetchError) as raised:
        fetch(url, net.origin_limits, resolver=resolver)
    assert raised.value.code == "blocked_address"
    assert resolver.calls == ["rebind.test", "rebind.test"]  # once per hop
    assert net.origin.paths == ["/redirect?to=/page"]
    assert net.canary.paths == []


def test_mixed_answer_is_blocked_after_a_single_lookup(net: Network) -> None:
    resolver = TableResolver({"mixed.test": [[ORIGIN_ADDRESS, "127.0.0.1"]]})
    with pytest.raises(FetchError) as raised:
        fetch(f"http://mixed.test:{net.port}/", net.origin_limits, resolver=resolver)
    assert raised.value.code == "blocked_address"
    assert resolver.calls == ["mixed.test"]
    assert net.origin.paths == net.canary.paths == []
