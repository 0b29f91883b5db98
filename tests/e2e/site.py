"""A local website for end-to-end scraping tests: known pages, flaky and failing URLs, slow pages, hit counts."""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def page_html(n: int) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Page {n}</title><meta name="description" content="Description of page {n}">
<link rel="canonical" href="/page/{n}"><meta property="og:title" content="OG page {n}"></head>
<body><h1>Heading {n}</h1><h2>Sub {n}</h2><p>Words on page number {n} for the test.</p>
<a href="/page/{n + 1}">next</a> <a href="https://example.org/x" rel="nofollow">out</a></body></html>"""


class TestSite:
    __test__ = False  # a helper, not a test class

    """Serves on 127.0.0.1; `hits` counts requests per path; `flaky_failures` sets 503s before success;
    `/busy/<n>/...` answers 429 with `Retry-After: n` once, then the page; `/held/...` waits for
    `released` (`held_now` and `held_most` count such requests in flight); `/redirect/...?to=<location>`
    redirects there; `/latin1-location/...` redirects to a Location that is not UTF-8; `/encodings/<n>/...`
    declares n gzip codings; `pages` maps more exact paths to the (status, body, headers) to answer."""

    def __init__(self, flaky_failures: int = 2, slow_seconds: float = 1.0, hang_seconds: float = 8.0) -> None:
        self.hits: Counter[str] = Counter()
        self.flaky_failures = flaky_failures
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self.released = threading.Event()
        self.held_now = 0
        self.held_most = 0
        self.pages: dict[str, tuple[int, str, dict[str, str]]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> TestSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, target: str) -> tuple[int, str, dict[str, str]]:
        path = target.split("?", 1)[0]
        with self._lock:
            self.hits[path] += 1
            count = self.hits[path]
        if match := re.fullmatch(r"/page/(\d+)", path):
            return 200, page_html(int(match[1])), {}
        if path.startswith("/flaky/"):
            return (503, "busy", {}) if count <= self.flaky_failures else (200, page_html(0), {})
        if path.startswith("/always500/"):
            return 500, "broken", {}
        if match := re.fullmatch(r"/busy/(\d+)/.*", path):
            return (429, "slow down", {"Retry-After": match[1]}) if count == 1 else (200, page_html(2), {})
        if path.startswith("/held/"):
            return self._hold()
        if path.startswith("/latin1-location/"):
            return 302, "", {"Location": "/caf\xe9"}  # sent as the single byte 0xE9
        if match := re.fullmatch(r"/encodings/(\d+)/.*", path):
            return 200, page_html(5), {"Content-Encoding": ", ".join(["gzip"] * int(match[1]))}
        if path in self.pages:
            return self.pages[path]
        if path.startswith("/redirect/"):  # `/redirect/...?to=<location>` answers 302 to that location
            return 302, "moved", {"Location": parse_qs(urlsplit(target).query)["to"][0]}
        if path.startswith("/slow/") or path.startswith("/hang/"):
            time.sleep(self.slow_seconds if path.startswith("/slow/") else self.hang_seconds)
            return 200, page_html(1), {}
        return 404, "not found", {}

    def _hold(self) -> tuple[int, str, dict[str, str]]:
        """Answer only once `released` is set, counting requests held at once."""
        with self._lock:
            self.held_now += 1
            self.held_most = max(self.held_most, self.held_now)
        try:
            self.released.wait(60)
            return 200, page_html(3), {}
        finally:
            with self._lock:
                self.held_now -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, headers = site.respond(self.path)
                payload = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
