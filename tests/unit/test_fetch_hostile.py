"""fetch() against responses a hostile or broken site can send, from a raw socket server on 127.0.0.1.

Each ends in one FetchError with a precise code, retryable only when trying again can help, and a
message that names the host only and never an internal class name.
"""

import gzip
import ipaddress
import logging
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from shared.scraping.fetch import MAX_CODINGS, FetchError, FetchLimits, fetch
from shared.scraping.netpolicy import is_address_allowed
from tests.unit.test_fetch import fetch_error

HTML = b"<html><title>ok</title></html>"
SECRET_PATH = "/private/SECRET-PATH-TOKEN"
SECRET_QUERY = "?api_key=SECRET-KEY&sig=SECRET-SIG"
INTERNAL_NAMES = ("_Pinned", "_Watched", "object at 0x", "HTTPConnectionPool", "Max retries")


def response(status: str, headers: list[bytes], body: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def html(headers: list[bytes], body: bytes = HTML) -> bytes:
    return response("200 OK", [b"Content-Type: text/html", b"Content-Length: %d" % len(body), *headers], body)


RAW_ROUTES: dict[str, bytes] = {
    "latin1-location": response("302 Found", [b"Location: /caf\xe9", b"Content-Length: 0"]),
    "long-location": response("302 Found", [b"Location: /" + b"a" * 3000, b"Content-Length: 0"]),
    "six-codings": html([b"Content-Encoding: " + b", ".join([b"gzip"] * 6)]),
    "unknown-coding": html([b"Content-Encoding: compress"]),
    "stacked-codings": html([b"Content-Encoding: " + b", ".join([b"gzip"] * (MAX_CODINGS + 1))]),
    "corrupt-gzip": html([b"Content-Encoding: gzip"], b"\x1f\x8b\x08\x00 definitely not gzip"),
    "long-header": html([b"X-Long: " + b"x" * 70_000]),
    "many-headers": html([b"X-H%d: 1" % n for n in range(120)]),
    "bad-chunk": response("200 OK", [b"Content-Type: text/html", b"Transfer-Encoding: chunked"],
                                       b"zz\r\nhello\r\n0\r\n\r\n"),
    "bad-status-line": b"HTTP/1.1 two hundred OK\r\n\r\n",
    "hang-up": b"",
    "408": response("408 Request Timeout", [b"Content-Length: 0"]),
    "999": response("999 Nonsense", [b"Content-Length: 0"]),
    "redirect-then-404": response("302 Found", [b"Location: /gone" + SECRET_QUERY.encode(),
                                                             b"Content-Length: 0"]),
    "gone": response("404 Not Found", [b"Content-Type: text/html", b"Content-Length: 2"], b"no"),
    "gzip-ok": html([b"Content-Encoding: gzip"], gzip.compress(HTML)),
}


class RawHandler(socketserver.StreamRequestHandler):
    """Reads one request head and answers the bytes of the route named by the path's first segment."""

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1")
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        route = request_line.split(" ")[1].lstrip("/").split("/")[0].split("?")[0]
        self.wfile.write(RAW_ROUTES[route])


@dataclass
class RawSite:
    port: int
    limits: FetchLimits

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}/{route}{SECRET_PATH}{SECRET_QUERY}"


@pytest.fixture(scope="module")
def raw_site() -> Iterator[RawSite]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), RawHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    port = server.server_address[1]
    yield RawSite(port, FetchLimits(allowed_ports=frozenset({port}),
                                    allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)))
    server.shutdown()
    server.server_close()


def assert_names_the_host_only(error: FetchError) -> None:
    for text in (error.message, str(error)):
        assert "SECRET" not in text
        assert not any(name in text for name in INTERNAL_NAMES), text


@pytest.mark.parametrize(
    ("route", "code", "retryable"),
    [
        ("latin1-location", "invalid_redirect", False),
        ("long-location", "invalid_redirect", False),
        ("six-codings", "unsupported_encoding", False),
        ("unknown-coding", "unsupported_encoding", False),
        ("stacked-codings", "unsupported_encoding", False),
        ("corrupt-gzip", "invalid_body", False),
        ("long-header", "invalid_response", False),
        ("many-headers", "invalid_response", False),
        ("bad-chunk", "invalid_response", False),
        ("bad-status-line", "invalid_response", False),
        ("hang-up", "connection_error", True),
        ("408", "http_error", True),
        ("999", "http_error", False),
    ],
)
def test_every_hostile_response_ends_in_one_precise_error(raw_site: RawSite, route: str, code: str,
                                                          retryable: bool) -> None:
    error = fetch_error(raw_site.url(route), raw_site.limits)

    assert (error.code, error.retryable) == (code, retryable), error.message
    assert_names_the_host_only(error)


def test_a_decodable_gzip_page_still_works(raw_site: RawSite) -> None:
    assert fetch(raw_site.url("gzip-ok"), raw_site.limits).text == HTML.decode()


def test_a_refused_connection_names_the_host_and_the_reason_only(raw_site: RawSite) -> None:
    limits = replace(raw_site.limits, allowed_ports=frozenset({1}))
    error = fetch_error(f"http://127.0.0.1:1{SECRET_PATH}{SECRET_QUERY}", limits)

    assert (error.code, error.retryable) == ("connection_error", True)
    assert error.message == "connection to 127.0.0.1 failed: Connection refused"


def test_a_failed_fetch_keeps_where_it_ended_its_status_and_duration(raw_site: RawSite) -> None:
    error = fetch_error(raw_site.url("redirect-then-404"), raw_site.limits)

    assert (error.code, error.http_status, error.retryable) == ("http_error", 404, False)
    assert error.final_url == f"http://127.0.0.1:{raw_site.port}/gone{SECRET_QUERY}"
    assert error.elapsed_ms is not None and error.elapsed_ms >= 0


def test_a_url_refused_before_any_request_has_no_final_url(raw_site: RawSite) -> None:
    error = fetch_error("http://[broken/", raw_site.limits)

    assert (error.code, error.final_url) == ("invalid_url", None)


def test_a_blocked_fetch_is_logged_with_its_host_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.scraping.fetch"):
        error = fetch_error(f"http://user:SECRET-PASSWORD@10.0.0.7{SECRET_PATH}{SECRET_QUERY}#SECRET-FRAGMENT",
                            FetchLimits())

    assert error.code == "blocked_address"
    assert "SECRET" not in caplog.text and "SECRET" not in error.message


@pytest.mark.parametrize("address", ["168.63.129.16", "::ffff:168.63.129.16"])
def test_the_azure_platform_address_is_denied_like_instance_metadata(address: str) -> None:
    assert not is_address_allowed(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    assert fetch_error(f"http://{host}/machine?comp=goalstate", FetchLimits()).code == "blocked_address"
