"""The connection pool and unit of work on a real PostgreSQL, including Entra ID mode.

pgserver trusts local sockets and ignores passwords, and libpq never negotiates TLS on a Unix
socket, so Entra mode connects for real while a fake credential records each token request.
"""

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import azure.functions as func
import psycopg2
import psycopg2.extensions
import psycopg2.pool
import pytest
from azure.core.credentials import AccessToken, TokenCredential

from api.http import handles_errors, json_response
from shared.adapters.db.connection import (
    ENTRA_SCOPE,
    ConnectionPool,
    EntraDatabase,
    UrlDatabase,
    connect_kwargs,
)
from shared.adapters.db.unit_of_work import in_transaction, is_connection_error, read, uow
from shared.domain.errors import DatabaseUnavailable
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration


class FakeCredential(TokenCredential):
    """Hands out numbered tokens and records the scopes of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.requests.append(scopes)
        return AccessToken(f"token-{len(self.requests)}", int(time.time()) + 3600)


def entra_database(db_url: str, credential: TokenCredential) -> EntraDatabase:
    """Entra mode aimed at the test server's socket directory and database."""
    url = urlsplit(db_url)
    return EntraDatabase(
        host=parse_qs(url.query)["host"][0],
        database=url.path.lstrip("/"),
        user="postgres",
        credential=credential,
    )


def backend_pid(pool: ConnectionPool) -> int:
    """The server process of the connection the pool hands out next (it keeps one idle)."""
    conn = pool.getconn()
    try:
        return int(conn.info.backend_pid)
    finally:
        pool.putconn(conn)


def test_entra_kwargs_carry_a_fresh_token_and_require_tls() -> None:
    credential = FakeCredential()
    config = EntraDatabase(host="trawl.postgres.database.azure.com", database="trawl", user="trawl-func",
                           credential=credential)

    first, second = connect_kwargs(config), connect_kwargs(config)

    assert credential.requests == [(ENTRA_SCOPE,), (ENTRA_SCOPE,)]
    assert (first["password"], second["password"]) == ("token-1", "token-2")
    assert {key: first[key] for key in ("host", "port", "dbname", "user", "sslmode")} == {
        "host": "trawl.postgres.database.azure.com",
        "port": 5432,
        "dbname": "trawl",
        "user": "trawl-func",
        "sslmode": "require",
    }


def test_url_kwargs_pass_the_url_through() -> None:
    assert connect_kwargs(UrlDatabase("postgresql://u@h/db"))["dsn"] == "postgresql://u@h/db"


def test_entra_pool_requests_a_token_per_physical_connection(db_url: str) -> None:
    credential = FakeCredential()
    pool = ConnectionPool(entra_database(db_url, credential), maxconn=3)
    try:
        borrowed = [pool.getconn() for _ in range(3)]
        passwords = sorted(conn.info.password for conn in borrowed)
        sslmodes = {conn.get_dsn_parameters()["sslmode"] for conn in borrowed}
        for conn in borrowed:
            pool.putconn(conn)
        reused = pool.getconn()
        pool.putconn(reused)
    finally:
        pool.closeall()

    assert len(credential.requests) == 3 and set(credential.requests) == {(ENTRA_SCOPE,)}
    assert passwords == ["token-1", "token-2", "token-3"]
    assert sslmodes == {"require"}


def test_a_connection_that_broke_is_discarded(pool: ConnectionPool, db_url: str) -> None:
    doomed = backend_pid(pool)
    with closing(psycopg2.connect(db_url)) as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (doomed,))

    with pytest.raises(DatabaseUnavailable) as lost, uow(pool) as tx:
        tx.jobs.ping()

    assert isinstance(lost.value.__cause__, psycopg2.OperationalError)
    assert backend_pid(pool) != doomed
    in_transaction(pool, lambda tx: tx.jobs.ping())


def test_an_idle_connection_found_closed_is_replaced(pool: ConnectionPool) -> None:
    idle = pool.getconn()
    pool.putconn(idle)
    idle.close()

    conn = pool.getconn()
    try:
        assert conn is not idle and not conn.closed
    finally:
        pool.putconn(conn)
    assert in_transaction(pool, lambda tx: tx.jobs.unfinished_jobs()) == []


def test_an_exhausted_pool_waits_for_a_connection(db_url: str) -> None:
    pool = ConnectionPool(UrlDatabase(db_url), maxconn=1, acquire_timeout_s=5)
    held = pool.getconn()
    releaser = threading.Timer(0.2, pool.putconn, args=(held,))
    releaser.start()
    try:
        started = time.monotonic()
        conn = pool.getconn()
        waited = time.monotonic() - started
        pool.putconn(conn)
    finally:
        releaser.join()
        pool.closeall()

    assert waited >= 0.15


def test_an_exhausted_pool_gives_up_after_its_timeout(db_url: str) -> None:
    pool = ConnectionPool(UrlDatabase(db_url), maxconn=1, acquire_timeout_s=0.1)
    held = pool.getconn()
    try:
        with pytest.raises(psycopg2.pool.PoolError, match="no database connection free"):
            pool.getconn()
    finally:
        pool.putconn(held)
        pool.closeall()


def test_the_pool_keeps_its_connections(pool: ConnectionPool) -> None:
    pids = {backend_pid(pool) for _ in range(50)}

    assert pids == {backend_pid(pool)} and pool.opened == 1


def test_concurrent_borrowers_open_no_more_sessions_than_they_need(db_url: str) -> None:
    pool = ConnectionPool(UrlDatabase(db_url), maxconn=4)
    try:
        with ThreadPoolExecutor(max_workers=8) as workers:
            list(workers.map(lambda _: in_transaction(pool, lambda tx: tx.jobs.ping()), range(400)))
    finally:
        pool.closeall()

    assert pool.opened <= 4


def test_a_connection_idle_too_long_is_replaced(db_url: str) -> None:
    pool = ConnectionPool(UrlDatabase(db_url), max_idle_s=0)
    try:
        first = backend_pid(pool)
        assert backend_pid(pool) != first and pool.opened == 2
    finally:
        pool.closeall()


def test_an_unreachable_server_is_unavailable_not_an_error() -> None:
    pool = ConnectionPool(UrlDatabase("postgresql://trawl@127.0.0.1:1/trawl"))

    with pytest.raises(DatabaseUnavailable) as refused:
        read(pool, lambda tx: tx.jobs.ping())

    assert refused.value.status == 503 and refused.value.retry_after > 0


def test_reads_run_in_autocommit_without_a_transaction(pool: ConnectionPool) -> None:
    def state(tx: Any) -> tuple[bool, int]:
        tx.jobs.ping()
        conn = tx.jobs._cur.connection
        return conn.autocommit, conn.info.transaction_status

    assert read(pool, state) == (True, psycopg2.extensions.TRANSACTION_STATUS_IDLE)
    assert in_transaction(pool, state) == (False, psycopg2.extensions.TRANSACTION_STATUS_INTRANS)


def test_unit_of_work_rolls_back_on_error_and_commits_only_when_asked(
    pool: ConnectionPool, fetch_rows: Any
) -> None:
    def submit(tx: Any) -> None:
        tx.jobs.create_job(ANONYMOUS_OWNER, ["https://a.test/"], {}, datetime(2030, 1, 1, tzinfo=UTC))

    with pytest.raises(RuntimeError, match="boom"), uow(pool) as tx:
        submit(tx)
        raise RuntimeError("boom")
    with uow(pool) as tx:
        submit(tx)
    with uow(pool) as tx:
        submit(tx)
        tx.commit()

    assert len(fetch_rows("SELECT id FROM jobs")) == 1


@pytest.mark.parametrize(("error", "outage"), [
    (psycopg2.DatabaseError("server closed the connection unexpectedly"), True),
    (psycopg2.OperationalError("could not connect to server"), True),
    (psycopg2.InterfaceError("connection already closed"), True),
    (psycopg2.pool.PoolError("no database connection free"), True),
    (psycopg2.DataError("invalid input syntax"), False),
    (psycopg2.ProgrammingError("syntax error"), False),
    (ValueError("not a database error"), False),
])
def test_what_counts_as_the_database_being_unavailable(error: BaseException, outage: bool) -> None:
    assert is_connection_error(error) is outage


@pytest.fixture
def one_connection_url(db_url: str) -> Iterator[str]:
    """A URL for a role the server admits once at a time (CONNECTION LIMIT 1): the second session is
    refused the way a server at max_connections refuses one, SQLSTATE 53300 during start-up."""
    role = f"limited_{uuid4().hex[:12]}"
    with closing(psycopg2.connect(db_url)) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    yield urlsplit(db_url)._replace(netloc=f"{role}@").geturl()
    with closing(psycopg2.connect(db_url)) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"DROP ROLE {role}")


def get_status(pool: ConnectionPool) -> func.HttpResponse:
    """An endpoint that reads the database, behind the app's one error translation."""
    @handles_errors
    def endpoint(req: func.HttpRequest) -> func.HttpResponse:
        read(pool, lambda tx: tx.jobs.ping())
        return json_response({"status": "ok"})

    response: func.HttpResponse = endpoint(func.HttpRequest("GET", "http://localhost/api/status", body=b""))
    return response


def test_a_server_refusing_the_session_answers_503_with_retry_after(one_connection_url: str) -> None:
    pool = ConnectionPool(UrlDatabase(one_connection_url), maxconn=2)
    held = pool.getconn()
    try:
        with pytest.raises(DatabaseUnavailable) as refused, uow(pool) as tx:
            tx.jobs.ping()
        response = get_status(pool)
    finally:
        pool.putconn(held)
        pool.closeall()

    assert "too many connections" in str(refused.value.__cause__)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/problem+json"


def test_an_exhausted_pool_answers_503_with_retry_after(db_url: str) -> None:
    pool = ConnectionPool(UrlDatabase(db_url), maxconn=1, acquire_timeout_s=0.1)
    held = pool.getconn()
    try:
        response = get_status(pool)
    finally:
        pool.putconn(held)
        pool.closeall()

    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert json.loads(response.get_body())["status"] == 503
