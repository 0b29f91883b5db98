"""Shared fixtures: one embedded PostgreSQL (pgserver) per test session, a fresh migrated database
per test, cloned from a template migrated once, so tests never see each other's rows; and Azurite."""

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from uuid import uuid4

import psycopg2
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg2 import sql
from psycopg2.extras import RealDictCursor, register_uuid

from devhost.services import Azurite
from shared.adapters.db.connection import ConnectionPool, UrlDatabase
from shared.adapters.db.jobs import JobRepository
from shared.adapters.db.migrate import migrate
from shared.adapters.db.queries import JobQueries
from shared.adapters.db.unit_of_work import in_transaction
from shared.domain.models import Job, Owner
from tests.owners import ANONYMOUS_OWNER

if TYPE_CHECKING:
    # Imported where used: pgserver warns at import time, which unit-only runs need not see.
    from pgserver import PostgresServer

TEMPLATE_DB = "trawl_template"


# Durability is worthless for throw-away test data and slows every CREATE DATABASE.
_FAST_UNSAFE_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")

# Cloning a database creates a few hundred files: ~15 ms on tmpfs, ~300 ms on a VM's disk.
_TMPFS = Path("/dev/shm")
_TMPFS_NEEDED_BYTES = 2 * 1024**3


@pytest.fixture(scope="session")
def pg_data_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the test server keeps its data: tmpfs when it has room (not in a small Docker
    /dev/shm), else the session's tmp dir."""
    if not (_TMPFS.is_dir() and shutil.disk_usage(_TMPFS).free >= _TMPFS_NEEDED_BYTES):
        yield tmp_path_factory.mktemp("pg")
        return
    root = Path(tempfile.mkdtemp(prefix="trawl-tests-pg-", dir=_TMPFS))
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="session")
def pg_server(pg_data_root: Path) -> Iterator["PostgresServer"]:
    """An embedded PostgreSQL server for the session, its data deleted at the end."""
    import pgserver

    server = pgserver.get_server(pg_data_root / "data", cleanup_mode="delete")
    for setting in _FAST_UNSAFE_SETTINGS:
        _admin_execute(server, sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
    _admin_execute(server, sql.SQL("SELECT pg_reload_conf()"))
    yield server
    server.cleanup()


def _admin_execute(server: "PostgresServer", statement: sql.Composable) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with closing(psycopg2.connect(server.get_uri())) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)


def create_database(server: "PostgresServer", template: str | None = None) -> str:
    """Create an empty (or cloned) database with a unique name; returns its name."""
    name = f"test_{uuid4().hex[:16]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {} STRATEGY FILE_COPY").format(
            statement, sql.Identifier(template)
        )
    _admin_execute(server, statement)
    return name


@pytest.fixture(scope="session")
def template_db(pg_server: "PostgresServer") -> str:
    """A database migrated once per session, the template of every test's database."""
    _admin_execute(pg_server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    with closing(psycopg2.connect(pg_server.get_uri(database=TEMPLATE_DB))) as conn:
        migrate(conn)
    return TEMPLATE_DB


@pytest.fixture
def empty_db_url(pg_server: "PostgresServer") -> Iterator[str]:
    """URL of a fresh database with no schema at all, for migration tests."""
    name = create_database(pg_server)
    yield pg_server.get_uri(database=name)
    _admin_execute(pg_server, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_url(pg_server: "PostgresServer", template_db: str) -> Iterator[str]:
    """URL of a fresh, fully migrated database for this test only."""
    name = create_database(pg_server, template=template_db)
    yield pg_server.get_uri(database=name)
    _admin_execute(pg_server, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    """A connection pool on this test's database, big enough for the concurrency tests."""
    connection_pool = ConnectionPool(UrlDatabase(db_url), maxconn=25)
    yield connection_pool
    connection_pool.closeall()


@pytest.fixture
def fetch_rows(db_url: str) -> Callable[..., list[dict[str, Any]]]:
    """Runs a query on its own committed connection, outside any unit of work, so tests see
    exactly what other sessions see: `fetch_rows("SELECT ... WHERE id = %s", (job.id,))`."""

    def fetch(query: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        with closing(psycopg2.connect(db_url, cursor_factory=RealDictCursor)) as conn:
            register_uuid(conn_or_curs=conn)
            with conn.cursor() as cur:
                cur.execute(query, params)
                return [dict(row) for row in cur.fetchall()]

    return fetch


@pytest.fixture
def execute_sql(db_url: str) -> Callable[..., None]:
    """Runs and commits one statement on its own connection, e.g. to age a row for a test."""

    def execute(statement: str, params: Sequence[object] = ()) -> None:
        with closing(psycopg2.connect(db_url)) as conn, conn, conn.cursor() as cur:
            cur.execute(statement, params)

    return execute


@pytest.fixture
def other_owner() -> Owner:
    """An owner who must never see ANONYMOUS_OWNER's jobs."""
    return Owner(tenant_id="tenant-b", object_id="user-b")


class _Committing:
    """Runs each method call of a repository in its own committed unit of work: how the
    pipeline calls it (one operation, one transaction) without boilerplate in every test."""

    def __init__(self, pool: ConnectionPool, repository: str) -> None:
        self._pool = pool
        self._repository = repository

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return in_transaction(
                self._pool, lambda tx: getattr(getattr(tx, self._repository), method)(*args, **kwargs)
            )

        return call


@pytest.fixture
def jobs(pool: ConnectionPool) -> JobRepository:
    """The job repository, each call committed on its own (use `uow` for multi-call tests)."""
    return cast(JobRepository, _Committing(pool, "jobs"))


@pytest.fixture
def queries(pool: ConnectionPool) -> JobQueries:
    """The read queries, each call on its own (not for `iter_items`, which needs an open
    unit of work while it is consumed)."""
    return cast(JobQueries, _Committing(pool, "queries"))


@pytest.fixture
def submit_job(pool: ConnectionPool) -> Callable[..., Job]:
    """Creates (and commits) a job of `count` URLs: `submit_job(count=3, owner=..., **kwargs)`."""

    def submit(count: int = 3, owner: Owner = ANONYMOUS_OWNER, **kwargs: Any) -> Job:
        urls = [f"https://example.test/page/{seq}" for seq in range(count)]
        kwargs.setdefault("deadline_at", datetime.now(UTC) + timedelta(hours=1))
        submission = in_transaction(
            pool, lambda tx: tx.jobs.create_job(owner, urls, {"render": False}, **kwargs)
        )
        return submission.job

    return submit


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Azurite on its standard ports (started if nothing listens there); yields the connection string."""
    service = Azurite(state_dir=Path(__file__).resolve().parents[1] / ".devhost")
    service.start()
    yield "UseDevelopmentStorage=true"
    service.stop()


def memory_span_exporter() -> InMemorySpanExporter:
    """A new in-memory exporter of this process's spans, on the SDK tracer provider (installed on first use:
    OpenTelemetry takes one per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def span_exporter() -> InMemorySpanExporter:
    """The spans this test module's code records, in memory."""
    return memory_span_exporter()
