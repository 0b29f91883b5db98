"""Connections to PostgreSQL: a URL locally, Entra ID tokens on Azure Database for PostgreSQL.

Entra tokens expire after about an hour but PostgreSQL checks the password only when a session
starts, so a fresh token is fetched for every new physical connection and never afterwards.
"""

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from azure.core.credentials import TokenCredential
from psycopg2.pool import PoolError, ThreadedConnectionPool

ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"

# Shown in pg_stat_activity so operators can tell Trawl's sessions apart.
APPLICATION_NAME = "trawl"

# Fail fast on an unreachable server: the queue retries the message anyway.
CONNECT_TIMEOUT_S = 10

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


def connect_kwargs(config: DatabaseConfig) -> dict[str, Any]:
    """Keyword arguments for `psycopg2.connect` for ONE new connection; in Entra mode this
    fetches a token, so call it once per physical connection."""
    common = {"application_name": APPLICATION_NAME, "connect_timeout": CONNECT_TIMEOUT_S}
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


def connect(config: DatabaseConfig) -> Connection:
    """Open one physical connection (migrations, one-off scripts); pooled code uses the pool."""
    conn: Connection = psycopg2.connect(**connect_kwargs(config))
    psycopg2.extras.register_uuid(conn_or_curs=conn)  # type: ignore[no-untyped-call]
    return conn


def is_broken(conn: Connection) -> bool:
    """True when the connection is closed or its server link is lost, so it must not be reused."""
    if conn.closed:
        return True
    return bool(conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN)


class ConnectionPool(ThreadedConnectionPool):
    """A thread-safe pool that builds every new connection from `config` (fresh Entra token),
    waits up to `acquire_timeout_s` for a free connection instead of failing at once, and
    discards connections that come back broken.

    Keeps up to `minconn` idle connections; `maxconn` caps connections in use.
    """

    # The base class's bookkeeping, which the `_connect` override must keep up to date.
    _pool: list[Connection]
    _used: dict[Hashable, Connection]
    _rused: dict[int, Hashable]

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        minconn: int = 1,
        maxconn: int = 10,
        acquire_timeout_s: float = 30.0,
    ) -> None:
        self._config = config
        self._slots = threading.BoundedSemaphore(maxconn)
        self._acquire_timeout_s = acquire_timeout_s
        super().__init__(minconn, maxconn)

    def _connect(self, key: Hashable | None = None) -> Connection:
        # Overrides the base class so connection arguments (and the token) are built per
        # connection rather than once at pool creation.
        conn = connect(self._config)
        if key is None:
            self._pool.append(conn)
        else:
            self._used[key] = conn
            self._rused[id(conn)] = key
        return conn

    def getconn(self, key: Hashable | None = None) -> Connection:
        """Borrow a connection, waiting for one to be returned when all are in use."""
        if not self._slots.acquire(timeout=self._acquire_timeout_s):
            raise PoolError(f"no database connection free within {self._acquire_timeout_s} s")
        try:
            conn: Connection = super().getconn(key)
            while is_broken(conn):
                # Found dead while idle in the pool (e.g. the server restarted): replace it.
                super().putconn(conn, key, close=True)
                conn = super().getconn(key)
            return conn
        except BaseException:
            self._slots.release()
            raise

    def putconn(
        self, conn: Connection | None = None, key: Hashable | None = None, close: bool = False
    ) -> None:
        """Return a borrowed connection; a broken one is closed rather than pooled."""
        if conn is None:
            raise ValueError("putconn needs the connection to return")
        try:
            super().putconn(conn, key, close or is_broken(conn))
        finally:
            self._slots.release()
