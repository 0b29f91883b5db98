"""fetch() against a real HTTP server on 127.0.0.1: redirects, caps, deadlines and statuses.

The server is opted in with ``allowed_networks`` and its port with ``allowed_ports``, which
is the only way fetch() will connect to a loopback address.
"""

import datetime
import gzip
import ipaddress
import json
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.scraping.fetch import FetchError, FetchLimits, fetch, read_capped
from shared.scraping.netpolicy import parse_target
from shared.scraping.pinned_adapter import DeadlineGuard, PinnedAdapter
from shared.scraping.scrape import scrape
from tests.devhost.conftest import wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "html"
HTML = "text/html; charset=utf-8"
PAGE = "<html><head><title>Local page</title></head><body><p>Hello</p></body></html>"
MIB = 1024 * 1024
FIXTURE_CONTENT_TYPES = {
    "html": "text/html",
    "html-utf8": "text/html; charset=utf-8",
    "xhtml": "application/xhtml+xml",
}


@dataclass
class ServerLog:
    """What the test server saw: request paths and the headers of each request."""

    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class RouteHandler(BaseHTTPRequestHandler):
    """Routes by path prefix; each route exercises one fetch behaviour."""

    log: ServerLog
    bomb: dict[str, bytes]
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.log.paths.append(self.path)
        self.log.headers.append(dict(self.headers.items()))
        name, _, arg = self.path.strip("/").partition("/")
        route: Callable[[str], None] = getattr(
            self, f"route_{name.replace('-', '_')}", self.route_missing
        )
        route(arg)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""

    def send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def route_missing(self, _: str) -> None:
        self.send(404, b"not found", {"Content-Type": "text/plain"})

    def route_page(self, _: str) -> None:
        self.send(200, PAGE.encode(), {"Content-Type": HTML, "Content-Language": "en"})

    def route_redirect(self, arg: str) -> None:
        remaining = int(arg)
        location = "../page" if remaining == 0 else f"{remaining - 1}"  # relative Locations
        self.send(302, b"", {"Location": location})

    def route_location(self, arg: str) -> None:
        self.send(302, b"", {"Location": unquote(arg)})

    def route_status(self, arg: str) -> None:
        self.send(int(arg), b"<html>status</html>", {"Content-Type": HTML})

    def route_typed(self, arg: str) -> None:
        headers = {"Content-Type": arg.replace("~", "/")} if arg else {}
        self.send(200, b'{"not": "html"}', headers)

    def route_fixture(self, arg: str) -> None:
        name, _, content_type = arg.partition("/")
        body = (FIXTURES / name).read_bytes()
        self.send(200, body, {"Content-Type": FIXTURE_CONTENT_TYPES[content_type]})

    def route_big(self, arg: str) -> None:
        body = b"<html><body>" + b"word " * (int(arg) // 5) + b"</body></html>"
        self.send(200, body, {"Content-Type": HTML})

    def route_big_chunked(self, arg: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", HTML)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 65536
        for _ in range(int(arg) // len(chunk)):
            if not self.write_quietly(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
                return
        self.write_quietly(b"0\r\n\r\n")

    def route_bomb(self, arg: str) -> None:
        self.send(200, self.bomb[arg], {"Content-Type": HTML, "Content-Encoding": arg})

    def route_redirect_bomb(self, arg: str) -> None:
        headers = {"Location": "/page", "Content-Type": HTML, "Content-Encoding": arg}
        self.send(302, self.bomb[arg], headers)

    def route_drip(self, _: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", HTML)
        self.end_headers()
        self.drip(b"<html><body>" + b"x" * 40)

    def route_drip_headers(self, _: str) -> None:
        self.drip(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Padding: " + b"x" * 40)

    def drip(self, data: bytes) -> None:
        for index in range(len(data)):
            if not self.write_quietly(data[index : index + 1]):
                return
            time.sleep(0.5)

    def write_quietly(self, data: bytes) -> bool:
        """Write and flush; False once the client has gone away (expected in these tests)."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True


@dataclass
class LocalSite:
    """A running test server and the limits that let fetch() reach it."""

    url: str
    port: int
    log: ServerLog
    limits: FetchLimits


def compressed_zeros(encoding: str, size: int) -> bytes:
    """``size`` zero bytes compressed with gzip or deflate: a decompression bomb."""
    if encoding == "gzip":
        return gzip.compress(bytes(size), compresslevel=9)
    return zlib.compress(bytes(size), 9)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {encoding: compressed_zeros(encoding, 50 * MIB) for encoding in ("gzip", "deflate")}


@pytest.fixture
def site(bombs: dict[str, bytes]) -> Iterator[LocalSite]:
    log = ServerLog()
    handler = type("Handler", (RouteHandler,), {"log": log, "bomb": bombs})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = server.server_address[1]
    limits = FetchLimits(
        allowed_ports=frozenset({port}),
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        max_bytes=1 * MIB,
    )
    yield LocalSite(f"http://127.0.0.1:{port}", port, log, limits)
    server.shutdown()
    server.server_close()


def fetch_error(url: str, limits: FetchLimits) -> FetchError:
    with pytest.raises(FetchError) as raised:
        fetch(url, limits)
    return raised.value


def test_fetches_and_decodes_a_page(site: LocalSite) -> None:
    page = fetch(f"{site.url}/page#fragment", site.limits)
    assert (page.status, page.content_type, page.charset) == (200, "text/html", "utf-8")
    assert page.text == PAGE
    assert page.final_url == f"{site.url}/page"
    assert (page.redirects, page.content_language) == (0, "en")
    assert page.elapsed_ms >= 0


def test_sends_host_header_and_user_agent(site: LocalSite) -> None:
    limits = replace(site.limits, user_agent="TrawlTest/1")
    fetch(f"http://site.test:{site.port}/page", limits, resolver=lambda host, port: ["127.0.0.1"])
    sent = site.log.headers[0]
    assert (sent["Host"], sent["User-Agent"]) == (f"site.test:{site.port}", "TrawlTest/1")


def test_follows_up_to_max_redirects_with_relative_locations(site: LocalSite) -> None:
    page = fetch(f"{site.url}/redirect/4", site.limits)
    assert (page.redirects, page.final_url, page.text) == (5, f"{site.url}/page", PAGE)
    assert site.log.paths == [f"/redirect/{n}" for n in (4, 3, 2, 1, 0)] + ["/page"]


def test_one_redirect_too_many_fails_permanently(site: LocalSite) -> None:
    error = fetch_error(f"{site.url}/redirect/5", site.limits)
    assert (error.code, error.retryable) == ("too_many_redirects", False)
    assert len(site.log.paths) == 6  # the first request and five redirects, no more


def test_max_redirects_zero_refuses_any_redirect(site: LocalSite) -> None:
    error = fetch_error(f"{site.url}/redirect/0", replace(site.limits, max_redirects=0))
    assert error.code == "too_many_redirects"


@pytest.mark.parametrize("location", ["http://%5B", "//%5Bx%5D/", "http://exa%00mple.test/"])
def test_malformed_redirect_location_is_invalid(site: LocalSite, location: str) -> None:
    error = fetch_error(f"{site.url}/location/{location}", site.limits)
    assert (error.code, error.retryable) == ("invalid_redirect", False)


def test_resolves_each_hop_exactly_once(site: LocalSite) -> None:
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    fetch(f"http://site.test:{site.port}/redirect/2", site.limits, resolver=resolver)
    assert calls == ["site.test"] * 4


@pytest.mark.parametrize("route", ["big", "big-chunked"])
def test_body_over_the_cap_is_too_large(site: LocalSite, route: str) -> None:
    error = fetch_error(f"{site.url}/{route}/{3 * MIB}", site.limits)
    assert (error.code, error.retryable) == ("too_large", False)


def test_body_at_the_cap_is_accepted(site: LocalSite) -> None:
    page = fetch(f"{site.url}/big/{MIB - 100}", site.limits)
    assert len(page.text) <= MIB


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_decompression_bomb_is_cut_off_at_the_cap(site: LocalSite, encoding: str) -> None:
    tracemalloc.start()
    try:
        error = fetch_error(f"{site.url}/bomb/{encoding}", site.limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "too_large"
    # 50 MiB inflated would show up here; stopping at the 1 MiB cap keeps the peak small.
    assert peak < 8 * MIB


def test_redirect_bodies_are_not_read(site: LocalSite) -> None:
    tracemalloc.start()
    try:
        page = fetch(f"{site.url}/redirect-bomb/gzip", site.limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (page.redirects, page.text) == (1, PAGE)
    assert peak < 8 * MIB  # the 50 MiB the redirect's body inflates to was never produced


def test_slow_drip_body_is_cut_off_by_the_total_timeout(site: LocalSite) -> None:
    started = time.monotonic()
    error = fetch_error(f"{site.url}/drip", replace(site.limits, total_timeout=2.0))
    assert (error.code, error.retryable) == ("timeout", True)
    # Without the overall deadline this would take 20 s (one byte every 0.5 s).
    assert time.monotonic() - started < 3.0


def test_slow_drip_headers_are_cut_off_by_the_total_timeout(site: LocalSite) -> None:
    started = time.monotonic()
    error = fetch_error(f"{site.url}/drip-headers", replace(site.limits, total_timeout=1.0))
    assert error.code == "timeout"
    assert time.monotonic() - started < 2.0


def test_concurrent_fetches_share_one_deadline_thread(site: LocalSite) -> None:
    limits = replace(site.limits, total_timeout=2.0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = [pool.submit(fetch_error, f"{site.url}/drip/{n}", limits) for n in range(4)]
        wait_until(lambda: sum(path.startswith("/drip/") for path in site.log.paths) == 4)
        deadline_threads = [thread.name for thread in threading.enumerate()
                            if isinstance(thread, threading.Timer) or thread.name == "fetch-deadlines"]
        codes = [error.result().code for error in errors]
    # A timer thread per fetch was one more thread start and stop per item on the workers' path.
    assert deadline_threads == ["fetch-deadlines"]
    assert codes == ["timeout"] * 4


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(404, False), (403, False), (410, False), (400, False), (429, True), (500, True), (503, True)],
)
def test_http_errors_carry_status_and_retryability(
    site: LocalSite, status: int, retryable: bool
) -> None:
    error = fetch_error(f"{site.url}/status/{status}", site.limits)
    assert (error.code, error.http_status, error.retryable) == ("http_error", status, retryable)


@pytest.mark.parametrize("content_type", ["application~json", "image~png", "text~plain", ""])
def test_non_html_content_types_are_refused(site: LocalSite, content_type: str) -> None:
    error = fetch_error(f"{site.url}/typed/{content_type}", site.limits)
    assert (error.code, error.retryable) == ("unsupported_content_type", False)


def test_xhtml_is_accepted(site: LocalSite) -> None:
    page = fetch(f"{site.url}/fixture/article.html/xhtml", site.limits)
    assert page.content_type == "application/xhtml+xml"


def test_utf8_declared_only_by_the_http_header(site: LocalSite) -> None:
    page = fetch(f"{site.url}/fixture/utf8_header_only.html/html-utf8", site.limits)
    assert page.charset == "utf-8"
    assert "Grüße aus Köln – 日本語 – Ελληνικά" in page.text


def test_windows_1252_declared_only_by_meta(site: LocalSite) -> None:
    page = fetch(f"{site.url}/fixture/cp1252_meta.html/html", site.limits)
    assert page.charset == "cp1252"
    assert "Café crème à 5 €" in page.text


def test_connection_refused_is_retryable(site: LocalSite) -> None:
    with_closed_port = replace(site.limits, allowed_ports=frozenset({1}))
    error = fetch_error("http://127.0.0.1:1/", with_closed_port)
    assert (error.code, error.retryable) == ("connection_error", True)


def test_unresolvable_host_is_retryable(site: LocalSite) -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(FetchError) as raised:
        fetch(f"http://nowhere.test:{site.port}/", site.limits, resolver=resolver)
    assert (raised.value.code, raised.value.retryable) == ("connection_error", True)


def test_scrape_composes_fetch_and_extract_into_a_json_ready_result(site: LocalSite) -> None:
    result = scrape(f"{site.url}/redirect/0", site.limits)
    stored = json.loads(json.dumps(result.model_dump(mode="json")))
    assert stored["url"] == f"{site.url}/redirect/0"
    assert (stored["final_url"], stored["status"], stored["redirects"]) == (
        f"{site.url}/page",
        200,
        1,
    )
    assert (stored["title"], stored["lang"], stored["excerpt"]) == ("Local page", "en", "Hello")
    assert (stored["charset"], stored["content_type"]) == ("utf-8", "text/html")


def test_read_capped_stops_pulling_chunks_at_the_cap() -> None:
    pulled = 0

    def endless_chunks() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 1000

    with pytest.raises(FetchError) as raised:
        read_capped(endless_chunks(), 10_000, DeadlineGuard(time.monotonic() + 60))
    assert raised.value.code == "too_large"
    assert pulled == 11


def test_read_capped_reports_a_passed_deadline_even_if_the_body_ended() -> None:
    with pytest.raises(FetchError) as raised:
        read_capped([b"partial"], 10_000, DeadlineGuard(time.monotonic() - 1))
    assert raised.value.code == "timeout"


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate it signed for ``trawl.test``."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def issue_certificates(directory: Path) -> TlsFiles:
    """Write a CA and a ``trawl.test`` server certificate signed by it (EC keys: fast)."""
    ca_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    ca_name = _name("Trawl test CA")
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, CA_EXTENSION)
    server_cert = _certificate(
        _name("trawl.test"), ca_name, server_key.public_key(), ca_key, TRAWL_TEST_SAN
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_format = serialization.PrivateFormat.PKCS8
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, key_format, serialization.NoEncryption()
    )
    files.server_key.write_bytes(key_pem)
    return files


CA_EXTENSION = (x509.BasicConstraints(ca=True, path_length=None), True)
TRAWL_TEST_SAN = (x509.SubjectAlternativeName([x509.DNSName("trawl.test")]), False)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    extension: tuple[x509.ExtensionType, bool],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(*extension)
        .sign(signing_key, hashes.SHA256())
    )


@dataclass
class TlsSite:
    """An HTTPS server on 127.0.0.1 that records the SNI names clients send."""

    port: int
    files: TlsFiles
    log: ServerLog
    server_names: list[str | None]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return issue_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_site(tls_files: TlsFiles) -> Iterator[TlsSite]:
    log, server_names = ServerLog(), list[str | None]()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    handler = type("Handler", (RouteHandler,), {"log": log, "bomb": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield TlsSite(server.server_address[1], tls_files, log, server_names)
    server.shutdown()
    server.server_close()


def pinned_get(url: str, address: str, port: int, ca_cert: Path) -> requests.Response:
    """GET through a PinnedAdapter, trusting the test CA (fetch() only trusts the system's)."""
    target = parse_target(url, frozenset({port}))
    with requests.Session() as session, DeadlineGuard(time.monotonic() + 10) as guard:
        adapter = PinnedAdapter(target, address, guard)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session.get(url, verify=str(ca_cert), timeout=5)


def test_https_to_a_pinned_address_uses_the_real_host_for_sni_and_certificate(
    tls_site: TlsSite,
) -> None:
    url = f"https://trawl.test:{tls_site.port}/page"
    response = pinned_get(url, "127.0.0.1", tls_site.port, tls_site.files.ca_cert)
    assert (response.status_code, response.text) == (200, PAGE)
    assert tls_site.server_names == ["trawl.test"]
    assert tls_site.log.headers[0]["Host"] == f"trawl.test:{tls_site.port}"


def test_https_to_a_pinned_address_rejects_a_certificate_for_another_host(
    tls_site: TlsSite,
) -> None:
    url = f"https://other.test:{tls_site.port}/page"
    with pytest.raises(requests.exceptions.SSLError):
        pinned_get(url, "127.0.0.1", tls_site.port, tls_site.files.ca_cert)
    assert tls_site.log.paths == []


def test_pinned_adapter_refuses_urls_other_than_its_target(site: LocalSite) -> None:
    target = parse_target(f"http://site.test:{site.port}/", frozenset({site.port}))
    with requests.Session() as session, DeadlineGuard(time.monotonic() + 10) as guard:
        session.mount("http://", PinnedAdapter(target, "127.0.0.1", guard))
        with pytest.raises(requests.exceptions.InvalidURL):
            session.get(f"http://elsewhere.test:{site.port}/page", timeout=5)
    assert site.log.paths == []
