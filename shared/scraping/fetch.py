"""Fetching one user-supplied URL safely: every hop checked, bounded in time and size.

Each hop (the URL and every redirect target, followed by hand) goes through
shared.scraping.netpolicy: the URL is checked, the host resolved once, every address checked, and
PinnedAdapter connects to that same address, so DNS rebinding between check and connect
cannot work. The body is streamed and decompressed chunk by chunk and abandoned as soon as
it passes ``max_bytes``, so compression bombs cost at most one chunk over the cap; a
DeadlineGuard enforces ``total_timeout`` across all hops because requests' own timeouts
only bound single socket operations.

Every way a page can fail ends in a FetchError with a stable code, a message that names the
host only (paths and queries of scraped URLs carry secrets) and never an internal class name,
and a ``retryable`` that is True only for conditions that can pass: timeouts, refused or
dropped connections, 429 and 5xx. A malformed response is permanent.
"""

import http.client
import ipaddress
import logging
import re
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import InvalidChunkLength, ReadTimeoutError
from urllib3.response import HTTPResponse

from shared.domain.retry_policy import retry_after_seconds
from shared.scraping.html_charset import decode_html, strip_nul
from shared.scraping.netpolicy import (
    BlockedTarget,
    InvalidTarget,
    Resolver,
    Target,
    UnresolvableHost,
    parse_target,
    resolve_checked,
    resolve_with_getaddrinfo,
)
from shared.scraping.pinned_adapter import DeadlineGuard, PinnedAdapter

__all__ = ["FetchError", "FetchLimits", "FetchedPage", "Resolver", "fetch", "read_capped"]

logger = logging.getLogger(f"trawl.{__name__}")

FetchErrorCode = Literal[
    "blocked_address",
    "invalid_url",
    "too_large",
    "timeout",
    "connection_error",
    "tls_error",
    "http_error",
    "unsupported_content_type",
    "unsupported_encoding",
    "invalid_body",
    "invalid_response",
    "invalid_redirect",
    "too_many_redirects",
]

HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
CHUNK_BYTES = 64 * 1024
ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
# Content codings urllib3 can decode here; any other would hand compressed bytes to the parser.
SUPPORTED_CODINGS = frozenset(HTTPResponse.CONTENT_DECODERS) | {"identity"}
# Servers apply one coding; each extra layer only multiplies what a bomb's bytes inflate to.
MAX_CODINGS = 2
# With 5xx, the statuses that say "not now" rather than "not this"; anything else is the page's answer.
RETRYABLE_STATUSES = frozenset({408, 429})

_CHARSET_PARAM = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.I)


@dataclass(frozen=True)
class FetchLimits:
    """Everything that bounds one fetch; built from settings by the caller."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    # Overall deadline per URL including redirects: requests' timeouts are per socket op.
    total_timeout: float = 30.0
    # Cap on decompressed body bytes, enforced while streaming.
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    # The submit limit (Settings.max_url_length): no redirect target or extracted link may be longer.
    max_url_length: int = 2048
    allowed_ports: frozenset[int] = frozenset({80, 443})
    # Explicit opt-in for non-public ranges (tests, local demos); empty in production.
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    user_agent: str = "Trawl/0.1 (+https://github.com/trawl)"


class FetchError(Exception):
    """A fetch that did not produce an HTML page; ``retryable`` says whether to try again.

    fetch() adds what it knew when it failed: ``final_url``, the last hop it requested (None if
    none), and ``elapsed_ms``."""

    def __init__(
        self,
        code: FetchErrorCode,
        message: str,
        *,
        retryable: bool = False,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.code = code
        self.message = strip_nul(message)
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.final_url: str | None = None
        self.elapsed_ms: int | None = None
        super().__init__(f"{code}: {self.message}")


@dataclass(frozen=True)
class FetchedPage:
    """A successfully fetched HTML page, already decoded to text."""

    url: str
    final_url: str
    status: int
    content_type: str
    charset: str
    text: str
    content_language: str | None
    elapsed_ms: int
    redirects: int


class _ManualRedirectSession(requests.Session):
    """A Session that leaves redirects alone: fetch() follows them itself, hop by hop.

    Even with allow_redirects=False, requests prepares ``response.next`` through
    resolve_redirects, which reads the whole redirect body into memory first: no byte cap,
    no deadline, so a redirect carrying a compression bomb would inflate in full.
    """

    def resolve_redirects(
        self, resp: requests.Response, req: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> Generator[requests.Response, None, None]:
        """Yield no redirects."""
        yield from ()


@dataclass(frozen=True)
class _Final:
    """What fetch keeps of the last hop's response once its connection is closed."""

    url: str
    redirects: int
    status: int
    media_type: str
    charset: str | None
    content_language: str | None
    body: bytearray


@dataclass
class _Trail:
    """The hop being requested, so that a failure can say where the fetch ended."""

    url: str | None = None


def fetch(url: str, limits: FetchLimits, *, resolver: Resolver | None = None) -> FetchedPage:
    """Fetch one HTML page within ``limits``, refusing any hop that leaves the public internet.

    Raises FetchError; every blocked hop is refused before a connection is made.
    """
    started = time.monotonic()
    trail = _Trail()
    try:
        final = _fetch_final(url, limits, resolver or resolve_with_getaddrinfo, started, trail)
    except FetchError as error:
        error.final_url, error.elapsed_ms = trail.url, _elapsed_ms(started)
        raise
    text, encoding = decode_html(final.body, final.charset)
    return FetchedPage(
        url=url,
        final_url=final.url,
        status=final.status,
        content_type=final.media_type,
        charset=encoding,
        text=text,
        content_language=final.content_language,
        elapsed_ms=_elapsed_ms(started),
        redirects=final.redirects,
    )


def _fetch_final(url: str, limits: FetchLimits, resolver: Resolver, started: float, trail: _Trail) -> _Final:
    with DeadlineGuard(started + limits.total_timeout) as guard:
        try:
            return _follow_redirects(url, limits, resolver, guard, trail)
        except requests.RequestException as exc:
            raise _request_error(exc, guard, _host(trail.url)) from exc


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _follow_redirects(
    url: str, limits: FetchLimits, resolver: Resolver, guard: DeadlineGuard, trail: _Trail
) -> _Final:
    with _ManualRedirectSession() as session:
        # Proxies and .netrc from the environment would bypass the pinned connection.
        session.trust_env = False
        for redirects in range(limits.max_redirects + 1):
            target, address = _check_hop(url, limits, resolver, redirects)
            trail.url = target.url
            with _send(session, target, address, limits, guard) as response:
                location = _redirect_location(response)
                if location is None:
                    return _read_final(response, limits, guard, target.url, redirects)
            url = _redirect_url(target.url, location, limits.max_url_length)
    raise FetchError("too_many_redirects", f"more than {limits.max_redirects} redirects")


def _redirect_location(response: requests.Response) -> str | None:
    """The Location of a redirect, as UTF-8 (http.client reads headers as Latin-1); None if not a redirect."""
    if not response.is_redirect:
        return None
    try:
        return response.headers["location"].encode("latin-1").decode("utf-8")
    except UnicodeError as exc:
        raise FetchError("invalid_redirect", "the redirect location is not valid UTF-8",
                         http_status=response.status_code) from exc


def _redirect_url(current: str, location: str, max_length: int) -> str:
    try:
        url = urljoin(current, location.strip())
    except ValueError as exc:
        raise FetchError("invalid_redirect", "the redirect location is not a valid URL") from exc
    if len(url) > max_length:
        raise FetchError("invalid_redirect", f"the redirect location is longer than {max_length} characters")
    return url


def _check_hop(url: str, limits: FetchLimits, resolver: Resolver, hop: int) -> tuple[Target, str]:
    try:
        target = parse_target(url, limits.allowed_ports)
        return target, resolve_checked(target, resolver, limits.allowed_networks)
    except InvalidTarget as exc:
        if hop:
            raise FetchError("invalid_redirect", f"the redirect location is not a valid URL: {exc}") from exc
        raise FetchError("invalid_url", str(exc)) from exc
    except BlockedTarget as exc:
        logger.warning("Blocked fetch of a URL on host %s: %s", _host(url), exc)
        raise FetchError("blocked_address", str(exc)) from exc
    except UnresolvableHost as exc:
        raise FetchError("connection_error", str(exc), retryable=True) from exc


@contextmanager
def _send(
    session: _ManualRedirectSession,
    target: Target,
    address: str,
    limits: FetchLimits,
    guard: DeadlineGuard,
) -> Iterator[requests.Response]:
    if guard.expired:
        raise FetchError("timeout", "total timeout exceeded before the request", retryable=True)
    adapter = PinnedAdapter(target, address, guard)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    remaining = guard.remaining()
    timeout = (min(limits.connect_timeout, remaining), min(limits.read_timeout, remaining))
    headers = {"User-Agent": limits.user_agent, "Accept": ACCEPT}
    try:
        with session.get(
            target.url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
        ) as response:
            yield response
    finally:
        adapter.close()


def _read_final(
    response: requests.Response, limits: FetchLimits, guard: DeadlineGuard, url: str, redirects: int
) -> _Final:
    status = response.status_code
    if not 200 <= status < 300:
        raise _http_error(response)
    media_type, charset = _content_type(response)
    if media_type not in HTML_MEDIA_TYPES:
        raise FetchError("unsupported_content_type", f"content type {media_type or 'missing'!r}",
                         http_status=status)
    _reject_codings(_header(response, "content-encoding"), status)
    _reject_declared_oversize(response, limits.max_bytes)
    body = read_capped(response.iter_content(CHUNK_BYTES), limits.max_bytes, guard)
    return _Final(url, redirects, status, media_type, charset, _header(response, "content-language"), body)


def _http_error(response: requests.Response) -> FetchError:
    status = response.status_code
    retryable = status in RETRYABLE_STATUSES or 500 <= status < 600
    retry_after = retry_after_seconds(_header(response, "retry-after")) if retryable else None
    return FetchError("http_error", f"HTTP {status}", retryable=retryable, http_status=status,
                      retry_after_s=retry_after)


def _reject_codings(header: str | None, status: int) -> None:
    """Refuse Content-Encoding chains the fetcher cannot decode: they are the page's, so permanent."""
    codings = [coding.strip().lower() for coding in (header or "").split(",") if coding.strip()]
    unsupported = sorted(set(codings) - SUPPORTED_CODINGS)
    if unsupported:
        raise FetchError("unsupported_encoding", f"unsupported Content-Encoding {unsupported[0][:40]!r}",
                         http_status=status)
    if len([coding for coding in codings if coding != "identity"]) > MAX_CODINGS:
        raise FetchError("unsupported_encoding", f"{len(codings)} content codings; at most {MAX_CODINGS} are "
                                                 "decoded", http_status=status)


def _reject_declared_oversize(response: requests.Response, max_bytes: int) -> None:
    # Only meaningful without Content-Encoding: then Content-Length is the decoded size.
    length = _header(response, "content-length") or ""
    encoded = _header(response, "content-encoding") is not None
    if not encoded and length.isdigit() and int(length) > max_bytes:
        raise FetchError("too_large", f"Content-Length {length} exceeds {max_bytes} bytes",
                         http_status=response.status_code)


def read_capped(chunks: Iterable[bytes], max_bytes: int, guard: DeadlineGuard) -> bytearray:
    """Join decoded body chunks, stopping as soon as they exceed ``max_bytes`` or time runs out. The
    buffer itself is returned: a copy into ``bytes`` would double a large page's memory for a moment."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise FetchError("too_large", f"body exceeds {max_bytes} bytes")
        if guard.expired:
            break
    # The guard ends a stalled read by shutting the socket, which can look like a normal end.
    if guard.expired:
        raise FetchError("timeout", "total timeout exceeded while reading the body", retryable=True)
    return body


def _content_type(response: requests.Response) -> tuple[str, str | None]:
    header = _header(response, "content-type") or ""
    media_type, _, params = header.partition(";")
    charset = _CHARSET_PARAM.search(params)
    return media_type.strip().lower(), charset.group(1) if charset else None


def _header(response: requests.Response, name: str) -> str | None:
    value = response.headers.get(name)
    return strip_nul(value.strip()) if value else None


def _request_error(exc: requests.RequestException, guard: DeadlineGuard, host: str) -> FetchError:
    """A stable code and a message naming the host only: requests' own texts hold the URL's path and
    query and the adapter's class names."""
    if guard.expired:
        return FetchError("timeout", "total timeout exceeded", retryable=True)
    if isinstance(exc, requests.Timeout) or isinstance(_first_arg(exc), ReadTimeoutError):
        return FetchError("timeout", f"{host} did not answer in time", retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return FetchError("tls_error", f"TLS with {host} failed: {_tls_reason(exc)}")
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return FetchError("invalid_body", "the body could not be decoded as its Content-Encoding says")
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return FetchError("invalid_response", f"{host} sent an invalid header")
    if isinstance(exc, requests.exceptions.InvalidURL):
        return FetchError("invalid_url", "the URL cannot be requested")
    return _connection_error(exc, host)


def _connection_error(exc: requests.RequestException, host: str) -> FetchError:
    for cause in _causes(exc):
        if isinstance(cause, http.client.RemoteDisconnected):
            return FetchError("connection_error", f"{host} closed the connection without answering", retryable=True)
        if isinstance(cause, http.client.IncompleteRead) and not isinstance(cause, InvalidChunkLength):
            return FetchError("connection_error", f"the connection to {host} ended before the body did",
                              retryable=True)
        if isinstance(cause, http.client.HTTPException):
            return FetchError("invalid_response", f"{host} sent a malformed HTTP response ({_malformation(cause)})")
        if isinstance(cause, OSError) and cause.strerror:
            return FetchError("connection_error", f"connection to {host} failed: {cause.strerror}", retryable=True)
    return FetchError("connection_error", f"connection to {host} failed", retryable=True)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: requests and urllib3 nest the socket's or http.client's
    error in ``args``, ``reason`` and ``__cause__``."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args)
        pending += [inner for inner in wrapped if isinstance(inner, BaseException)]


def _malformation(cause: BaseException) -> str:
    if isinstance(cause, http.client.LineTooLong):
        return "a header line is too long"
    if isinstance(cause, InvalidChunkLength):
        return "an invalid chunk length"
    if isinstance(cause, http.client.BadStatusLine):
        return "an invalid status line"
    return "too many headers" if "headers" in str(cause) else "a protocol error"


def _tls_reason(exc: BaseException) -> str:
    for cause in _causes(exc):
        verify_message, reason = getattr(cause, "verify_message", None), getattr(cause, "reason", None)
        if verify_message:
            return str(verify_message)
        if reason and isinstance(reason, str):
            return reason.replace("_", " ").lower()
    return "handshake failed"


def _host(url: str | None) -> str:
    """Only the host of a URL, for messages and logs: paths, queries and user-info may hold secrets."""
    try:
        return (urlsplit(url).hostname if url else None) or "an unparsable URL"
    except ValueError:
        return "an unparsable URL"


def _first_arg(exc: BaseException) -> object:
    return exc.args[0] if exc.args else None
