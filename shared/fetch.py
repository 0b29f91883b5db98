"""Fetching one user-supplied URL safely: every hop checked, bounded in time and size.

Each hop (the URL and every redirect target, followed by hand) goes through
shared.netpolicy: the URL is checked, the host resolved once, every address checked, and
PinnedAdapter connects to that same address, so DNS rebinding between check and connect
cannot work. The body is streamed and decompressed chunk by chunk and abandoned as soon as
it passes ``max_bytes``, so compression bombs cost at most one chunk over the cap; a
DeadlineGuard enforces ``total_timeout`` across all hops because requests' own timeouts
only bound single socket operations.
"""

import ipaddress
import logging
import re
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin

import requests
from urllib3.exceptions import ReadTimeoutError

from shared.html_charset import decode_html, strip_nul
from shared.netpolicy import (
    BlockedTarget,
    InvalidTarget,
    Resolver,
    Target,
    UnresolvableHost,
    parse_target,
    resolve_checked,
    resolve_with_getaddrinfo,
)
from shared.pinned_adapter import DeadlineGuard, PinnedAdapter
from shared.retry_policy import retry_after_seconds

__all__ = ["FetchError", "FetchLimits", "FetchedPage", "Resolver", "fetch", "read_capped"]

logger = logging.getLogger(__name__)

FetchErrorCode = Literal[
    "blocked_address",
    "invalid_url",
    "too_large",
    "timeout",
    "connection_error",
    "tls_error",
    "http_error",
    "unsupported_content_type",
    "too_many_redirects",
]

HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
CHUNK_BYTES = 64 * 1024
ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"

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
    allowed_ports: frozenset[int] = frozenset({80, 443})
    # Explicit opt-in for non-public ranges (tests, local demos); empty in production.
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    user_agent: str = "Trawl/0.1 (+https://github.com/trawl)"


class FetchError(Exception):
    """A fetch that did not produce an HTML page; ``retryable`` says whether to try again."""

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

    status: int
    media_type: str
    charset: str | None
    content_language: str | None
    body: bytes


def fetch(url: str, limits: FetchLimits, *, resolver: Resolver | None = None) -> FetchedPage:
    """Fetch one HTML page within ``limits``, refusing any hop that leaves the public internet.

    Raises FetchError; every blocked hop is refused before a connection is made.
    """
    started = time.monotonic()
    with DeadlineGuard(started + limits.total_timeout) as guard:
        try:
            final_url, redirects, final = _follow_redirects(
                url, limits, resolver or resolve_with_getaddrinfo, guard
            )
        except requests.RequestException as exc:
            raise _request_error(exc, guard) from exc
    text, encoding = decode_html(final.body, final.charset)
    return FetchedPage(
        url=url,
        final_url=final_url,
        status=final.status,
        content_type=final.media_type,
        charset=encoding,
        text=text,
        content_language=final.content_language,
        elapsed_ms=round((time.monotonic() - started) * 1000),
        redirects=redirects,
    )


def _follow_redirects(
    url: str, limits: FetchLimits, resolver: Resolver, guard: DeadlineGuard
) -> tuple[str, int, _Final]:
    with _ManualRedirectSession() as session:
        # Proxies and .netrc from the environment would bypass the pinned connection.
        session.trust_env = False
        for redirects in range(limits.max_redirects + 1):
            target, address = _check_hop(url, limits, resolver)
            with _send(session, target, address, limits, guard) as response:
                location = session.get_redirect_target(response)
                if location is None:
                    return target.url, redirects, _read_final(response, limits, guard)
            url = _redirect_url(target.url, location)
    raise FetchError("too_many_redirects", f"more than {limits.max_redirects} redirects")


def _redirect_url(current: str, location: str) -> str:
    try:
        return urljoin(current, location)
    except ValueError as exc:
        raise FetchError("invalid_url", f"invalid redirect location {location!r}") from exc


def _check_hop(url: str, limits: FetchLimits, resolver: Resolver) -> tuple[Target, str]:
    try:
        target = parse_target(url, limits.allowed_ports)
        return target, resolve_checked(target, resolver, limits.allowed_networks)
    except InvalidTarget as exc:
        raise FetchError("invalid_url", str(exc)) from exc
    except BlockedTarget as exc:
        logger.warning("Blocked fetch of %s: %s", url, exc)
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


def _read_final(response: requests.Response, limits: FetchLimits, guard: DeadlineGuard) -> _Final:
    status = response.status_code
    if not 200 <= status < 300:
        retryable = status == 429 or status >= 500
        raise FetchError("http_error", f"HTTP {status}", retryable=retryable, http_status=status,
                         retry_after_s=retry_after_seconds(_header(response, "retry-after")) if retryable else None)
    media_type, charset = _content_type(response)
    if media_type not in HTML_MEDIA_TYPES:
        raise FetchError("unsupported_content_type", f"content type {media_type or 'missing'!r}")
    _reject_declared_oversize(response, limits.max_bytes)
    body = read_capped(response.iter_content(CHUNK_BYTES), limits.max_bytes, guard)
    return _Final(status, media_type, charset, _header(response, "content-language"), body)


def _reject_declared_oversize(response: requests.Response, max_bytes: int) -> None:
    # Only meaningful without Content-Encoding: then Content-Length is the decoded size.
    length = _header(response, "content-length") or ""
    encoded = _header(response, "content-encoding") is not None
    if not encoded and length.isdigit() and int(length) > max_bytes:
        raise FetchError("too_large", f"Content-Length {length} exceeds {max_bytes} bytes")


def read_capped(chunks: Iterable[bytes], max_bytes: int, guard: DeadlineGuard) -> bytes:
    """Join decoded body chunks, stopping as soon as they exceed ``max_bytes`` or time runs out."""
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
    return bytes(body)


def _content_type(response: requests.Response) -> tuple[str, str | None]:
    header = _header(response, "content-type") or ""
    media_type, _, params = header.partition(";")
    charset = _CHARSET_PARAM.search(params)
    return media_type.strip().lower(), charset.group(1) if charset else None


def _header(response: requests.Response, name: str) -> str | None:
    value = response.headers.get(name)
    return strip_nul(value.strip()) if value else None


def _request_error(exc: requests.RequestException, guard: DeadlineGuard) -> FetchError:
    if guard.expired:
        return FetchError("timeout", "total timeout exceeded", retryable=True)
    if isinstance(exc, requests.Timeout) or isinstance(_first_arg(exc), ReadTimeoutError):
        return FetchError("timeout", str(exc), retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return FetchError("tls_error", str(exc))
    if isinstance(exc, requests.exceptions.InvalidURL):
        return FetchError("invalid_url", str(exc))
    return FetchError("connection_error", str(exc), retryable=True)


def _first_arg(exc: BaseException) -> object:
    return exc.args[0] if exc.args else None
