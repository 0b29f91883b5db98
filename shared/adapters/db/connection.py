"""Connections to PostgreSQL: a URL locally, Entra ID tokens on Azure Database for PostgreSQL.

Entra tokens expire after about an hour but PostgreSQL checks the password only when a session
starts, so a fresh token is fetched for every new physical connection and never afterwards.
"""

import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from azure.core.credentials import TokenCredential
from psycopg2.pool import PoolError

ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"

# Shown in pg_stat_activity so operators can tell Trawl's sessions apart.
APPLICATION_NAME = "trawl"

# Fail fast on an unreachable server: the queue retries the message anyway.
CONNECT_TIMEOUT_S = 10

# A pooled connection whose server vanished (failover, a dropped NAT entry) is found dead within
# about a minute instead of hanging on the kernel's two-hour default.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

Connection = psycopg2.extensions.connection


@dataclass(frozen=True)
class UrlDatabase:
    """A database reached by a libpq URL or DSN (local development and tests)."""

    url: str


@dataclass(frozen=True)
class EntraDatabase:
    """Azure Database for PostgreSQL with Entra ID authentication: `user` is the PostgreSQL role
    of the managed identity and `credential` yields its tokens."""

    host: str
    database: str
    user: str
    credential: TokenCredential
    port: int = 5432


DatabaseConfig = UrlDatabase | EntraDatabase


def connect_kwargs(config: DatabaseConfig, timeout_s: int = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """Keyword arguments for `psycopg2.connect` for ONE new connection; in Entra mode this
    fetches a token, so call it once per physical connection."""
    common = {"application_name": APPLICATION_NAME, "connect_timeout": timeout_s, **_KEEPALIVES}
    if isinstance(config, UrlDatabase):
        return {"dsn": config.url, **common}
    token = config.credential.get_token(ENTRA_SCOPE)
    return {
        "host": config.host,
        "port": config.port,
        "dbname": config.database,
        "user": config.user,
        "password": token.token,
        "sslmode": "require",
        **common,
    }


def connect(config: DatabaseConfig, timeout_s: int = CONNECT_TIMEOUT_S) -> Connection:
    """Open one physical connection (migrations, probes, one-off scripts); pooled code uses the pool."""
    conn: Connection = psycopg2.connect(**connect_kwargs(config, timeout_s))
    psycopg2.extras.register_uuid(conn_or_curs=conn)  # type: ignore[no-untyped-call]  # types-psycopg2 leaves register_uuid unannotated
    return conn


def is_broken(conn: Connection) -> bool:
    """True when the connection is closed or its server link is lost, so it must not be reused."""
    if conn.closed:
        return True
    return bool(conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN)


class ConnectionPool:
    """A thread-safe pool that keeps the connections it opens, so an item costs no new session.

    Every new connection is built from `config` (a fresh Entra token each). Borrowers wait up to
    `acquire_timeout_s` for a free connection instead of failing at once. Idle connections are
    reused newest first, so the rest age out: one idle longer than `max_idle_s` is closed rather
    than trusted (Azure's gateway and NATs drop quiet TCP sessions), and one that comes back or is
    found broken is discarded.
    """

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        maxconn: int = 10,
        acquire_timeout_s: float = 30.0,
        max_idle_s: float = 300.0,
    ) -> None:
        self._config = config
        self._slots = threading.BoundedSemaphore(maxconn)
        self._acquire_timeout_s = acquire_timeout_s
        self._max_idle_s = max_idle_s
        self._idle: list[tuple[float, Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.opened = 0

    def getconn(self) -> Connection:
        """Borrow a connection, waiting for one to be returned when all are in use."""
        if not self._slots.acquire(timeout=self._acquire_timeout_s):
            raise PoolError(f"no database connection free within {self._acquire_timeout_s} s")
        try:
            return self._reuse() or self._open()
        except BaseException:
            self._slots.release()
            raise

    def putconn(self, conn: Connection, close: bool = False) -> None:
        """Return a borrowed connection; a broken one, or one left mid-transaction, is closed."""
        try:
            keep = not (close or self._closed or is_broken(conn))
            if keep and conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            if keep:
                with self._lock:
                    self._idle.append((time.monotonic(), conn))
            else:
                conn.close()
        finally:
            self._slots.release()

    def closeall(self) -> None:
        """Close every idle connection; borrowed ones are closed when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()

    def _reuse(self) -> Connection | None:
        while True:
            with self._lock:
                if self._closed:
                    raise PoolError("the connection pool is closed")
                if not self._idle:
                    return None
                since, conn = self._idle.pop()
            if time.monotonic() - since <= self._max_idle_s and not is_broken(conn):
                return conn
            conn.close()

    def _open(self) -> Connection:
        conn = connect(self._config)
        with self._lock:
            self.opened += 1
        return conn
