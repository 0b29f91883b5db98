"""A requests transport that connects to an address checked in advance, within a deadline.

Why not a library: ``advocate`` (the usual answer) requires urllib3 < 2 and is
unmaintained; ``requests-hardened`` 1.3.0 pins the connection the same way as here, but it
checks only the first address getaddrinfo returns, calls getaddrinfo itself (no resolver
to inject, so DNS rebinding cannot be tested), allows only loopback as an exception, and
misses ranges such as fec0::/10. So fetch.py checks every address with netpolicy and this
adapter only makes sure the socket goes to the address that was checked.

urllib3 is handed the IP as the pool host, so it never resolves the name again; the Host
header, TLS SNI and certificate checks still use the real host name. requests' timeouts
apply per socket operation, so a server dripping a byte at a time never trips them: a
DeadlineGuard shuts the sockets down when the overall deadline passes, which makes any
blocked read return at once.
"""

import contextlib
import heapq
import itertools
import socket
import threading
import time
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from requests import PreparedRequest
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.scraping.netpolicy import ALLOWED_SCHEMES, Target


class DeadlineGuard:
    """Shuts down every watched socket once the deadline passes, interrupting blocked I/O."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._expired = False
        self._finished = False

    def __enter__(self) -> "DeadlineGuard":
        _WATCHDOG.watch(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._finished = True
            self._sockets.clear()

    @property
    def expired(self) -> bool:
        """True once the deadline has passed, even if the watchdog has not fired yet."""
        return self._expired or time.monotonic() >= self.deadline

    def remaining(self) -> float:
        """Seconds left before the deadline, never negative."""
        return max(self.deadline - time.monotonic(), 0.0)

    def watch(self, sock: socket.socket) -> None:
        """Track a new socket; one opened after the deadline is shut down immediately."""
        with self._lock:
            self._sockets.append(sock)
            if self._expired:
                _shutdown(sock)

    def expire(self) -> None:
        """Shut down the watched sockets, unless the guarded block has already ended."""
        with self._lock:
            if self._finished:
                return
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)


class _Watchdog:
    """One thread that expires every DeadlineGuard of the process at its deadline. A timer thread
    per guard cost every fetch a thread start and stop, on the workers' busiest path."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, DeadlineGuard]] = []
        self._order = itertools.count()  # breaks ties between equal deadlines; guards do not compare
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, guard: DeadlineGuard) -> None:
        with self._changed:
            heapq.heappush(self._due, (guard.deadline, next(self._order), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-deadlines", daemon=True)
                self._thread.start()
            if self._due[0][2] is guard:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            self._next_expired().expire()

    def _next_expired(self) -> DeadlineGuard:
        with self._changed:
            while True:
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    return heapq.heappop(self._due)[2]
                self._changed.wait(self._due[0][0] - now if self._due else None)


_WATCHDOG = _Watchdog()


def _shutdown(sock: socket.socket) -> None:
    # A socket its owner already closed has nothing left to interrupt.
    with contextlib.suppress(OSError):
        # The plain socket method: SSLSocket.shutdown would also drop TLS state that the
        # reading thread is still using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedConnectionMixin:
    """Registers each new socket with the connection's DeadlineGuard."""

    def __init__(self, *args: Any, deadline_guard: DeadlineGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline_guard = deadline_guard

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]  # a mixin: the urllib3 HTTP(S)Connection after it defines _new_conn
        self._deadline_guard.watch(sock)
        return sock


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """Sends requests for one checked target to one checked address, nowhere else."""

    def __init__(self, target: Target, address: str, guard: DeadlineGuard) -> None:
        super().__init__(max_retries=0)
        self._target = target
        self._address = address
        self._guard = guard
        self._pool: HTTPConnectionPool | None = None

    def get_connection_with_tls_context(
        self,
        request: PreparedRequest,
        verify: bool | str | None,
        proxies: dict[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> HTTPConnectionPool:
        """Return the pool bound to the checked address, refusing any other target."""
        self._require_target(request.url or "")
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool

    def add_headers(self, request: PreparedRequest, **kwargs: Any) -> None:
        """Name the real host, since the connection itself only knows the IP."""
        request.headers["Host"] = self._target.host_header

    def close(self) -> None:
        """Close the pinned pool along with requests' own pools."""
        super().close()
        if self._pool is not None:
            self._pool.close()

    def _require_target(self, url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or ALLOWED_SCHEMES.get(parts.scheme)
        if (parts.scheme, parts.hostname, port) != (
            self._target.scheme,
            self._target.host,
            self._target.port,
        ):
            # Hosts only: a URL's path and query may hold secrets.
            raise InvalidURL(f"a URL on {parts.hostname} is not the checked target on {self._target.host}")

    def _new_pool(self) -> HTTPConnectionPool:
        common: dict[str, Any] = {"maxsize": 1, "retries": 0, "deadline_guard": self._guard}
        if self._target.scheme == "http":
            return _PinnedHTTPPool(self._address, self._target.port, **common)
        return _PinnedHTTPSPool(
            self._address,
            self._target.port,
            server_hostname=self._target.host,
            assert_hostname=self._target.host,
            **common,
        )
