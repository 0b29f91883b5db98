"""HTTP triggers on 127.0.0.1: routing, request/response conversion through the worker's converters."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.functions import meta

from devhost.config import ConfigError
from devhost.http_types import RawRequest, RawResponse, SystemHandler
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionFailedError, FunctionTimeoutError, InvocationCancelledError, Invoker
from devhost.routes import RouteTemplate

log = logging.getLogger("devhost")

MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's default request body limit
HTTP_REASON = "This function was programmatically called via the host APIs."


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str] | None

    @classmethod
    def for_function(cls, spec: FunctionSpec, prefix: str) -> HttpRoute:
        trigger = spec.trigger
        route = trigger.get("route") or spec.name
        if route.strip("/").lower().startswith("admin"):
            # The host reserves these for its own admin API, whatever the routePrefix.
            raise ConfigError(f"function '{spec.name}': the specified route '{route}' conflicts with one or more "
                              "built in routes")
        full = f"{prefix}/{route.strip('/')}" if prefix else route
        methods = trigger.get("methods")
        return cls(spec, RouteTemplate.parse(full), frozenset(m.upper() for m in methods) if methods else None)


class Router:
    """Finds the function for a path and method with ASP.NET-like precedence (literals first)."""

    def __init__(self, functions: Iterable[FunctionSpec], prefix: str) -> None:
        routes = [HttpRoute.for_function(f, prefix) for f in functions if f.trigger_type == "httpTrigger"]
        self.routes = sorted(routes, key=lambda r: r.template.precedence)

    def resolve(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | int:
        """Return the route and its params, or 404 (no route) / 405 (route exists, method doesn't)."""
        path_matched = False
        for route in self.routes:
            params = route.template.match(path)
            if params is None:
                continue
            if route.methods is None or method in route.methods:
                return route, params
            path_matched = True
        return 405 if path_matched else 404


class HttpHost:
    """A threading HTTP server that dispatches to HTTP-triggered functions and devhost system routes."""

    def __init__(self, functions: list[FunctionSpec], invoker: Invoker, prefix: str, port: int) -> None:
        self.router = Router(functions, prefix)
        self.invoker = invoker
        self.system: dict[str, SystemHandler] = {}
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.host = self
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_system_route(self, prefix: str, handler: SystemHandler) -> None:
        self.system[prefix] = handler

    def start(self) -> None:
        self._thread.start()
        log.info("HTTP functions on %s:", self.base_url)
        for route in self.router.routes:
            methods = ",".join(sorted(route.methods)) if route.methods else "all"
            # Paths apart from the origin: an app that redacts URLs in log records (Trawl does) would
            # otherwise reduce every line to the origin.
            log.info("  %s: [%s] /%s", route.spec.name, methods, route.template.template)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: RawRequest) -> RawResponse:
        for prefix, handler in self.system.items():
            if request.path.startswith(prefix):
                return handler(request)
        if request.path == "/admin/host/status":
            return RawResponse.json(200, {"state": "Running", "version": "devhost"})
        found = self.router.resolve(request.method, request.path)
        if isinstance(found, int):
            return RawResponse(found)
        route, params = found
        return self._invoke(route, params, request)

    def _invoke(self, route: HttpRoute, params: dict[str, str], request: RawRequest) -> RawResponse:
        try:
            datum = self.invoker.invoke(route.spec, _request_datum(request, params), reason=HTTP_REASON)
        except InvocationCancelledError:
            return RawResponse(503)  # the host is stopping
        except (FunctionFailedError, FunctionTimeoutError):
            return RawResponse(500)
        return _response(datum)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    host: HttpHost


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devhost"
    server: _Server

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            self._send(RawResponse.json(413, {"title": "Request body too large"}))
            return
        parts = urlsplit(self.path)
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        request = RawRequest(
            method=self.command.upper(),
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=_merged_headers(self.headers.items()),
            body=body,
            base_url=f"http://{host}",
            raw_query=parts.query,
        )
        try:
            response = self.server.host.handle(request)
        except Exception:
            log.exception("devhost failed to handle %s %s", self.command, parts.path)
            response = RawResponse(500)
        self._send(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: RawResponse) -> None:
        self.send_response(response.status)
        names = {k.lower() for k in response.headers}
        for name, value in response.headers.items():
            for line in value if isinstance(value, list) else [value]:
                self.send_header(name, line)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


def _merged_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in items:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _request_datum(request: RawRequest, params: dict[str, str]) -> meta.Datum:
    """Build the 'http' datum the worker builds from the host's RpcHttp message."""
    url = request.base_url + request.path
    # The host flattens a repeated query parameter into one comma-joined value (StringValues.ToString).
    query = {k: meta.Datum(",".join(vs), "string") for k, vs in request.query.items()}
    return meta.Datum(type="http", value={
        "method": meta.Datum(request.method, "string"),
        "url": meta.Datum(f"{url}?{request.raw_query}" if request.raw_query else url, "string"),
        "headers": {k.lower(): meta.Datum(v, "string") for k, v in request.headers.items()},
        "query": query,
        "params": {k: meta.Datum(v, "string") for k, v in params.items()},
        "body": meta.Datum(request.body, "bytes"),
    })


def _response(datum: meta.Datum | None) -> RawResponse:
    if datum is None:
        return RawResponse(204)
    if datum.type == "http":
        value = datum.value
        headers: dict[str, str | list[str]] = {k: v.value for k, v in value["headers"].items()}
        cookies = value.get("cookies") or []
        if cookies:
            headers["Set-Cookie"] = [morsel.OutputString() for c in cookies for morsel in c.values()]
        return RawResponse(int(value["status_code"].value), headers, value["body"].value or b"")
    if datum.type == "string":
        return RawResponse(200, {"Content-Type": "text/plain; charset=utf-8"}, datum.value.encode())
    if datum.type == "bytes":
        return RawResponse(200, {"Content-Type": "application/octet-stream"}, datum.value)
    return RawResponse(200, {"Content-Type": "application/json; charset=utf-8"}, str(datum.value).encode())
