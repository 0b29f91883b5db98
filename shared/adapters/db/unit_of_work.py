"""The unit of work: one pooled connection, one transaction, committed only when asked.

Usage (cosmicpython's `service_layer/unit_of_work.py`):

    with uow(pool) as tx:
        outcome = tx.jobs.complete_item(job_id, seq, ...)
        tx.commit()

Leaving the block without `commit()`, normally or by an exception, rolls everything back.
Reads that need no transaction use `read(pool, ...)`: one statement each in autocommit, no
BEGIN/ROLLBACK round trips; a write that is a single statement uses `in_one_statement`. A lost or refused connection surfaces as `DatabaseUnavailable`
(HTTP 503, a delay for queue workers), never as a bare driver error.
"""

from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import TypeVar

import psycopg2
from opentelemetry.trace import SpanKind
from psycopg2.extras import RealDictCursor
from psycopg2.pool import PoolError

from shared.adapters.db.connection import Connection, ConnectionPool, is_broken
from shared.adapters.db.jobs import JobRepository
from shared.adapters.db.pages import PageQueries
from shared.adapters.db.queries import JobQueries
from shared.adapters.telemetry import span
from shared.domain.errors import DatabaseUnavailable

T = TypeVar("T")


class UnitOfWork:
    """A transaction on a connection borrowed from `pool`, exposing the repositories."""

    jobs: JobRepository
    queries: JobQueries
    pages: PageQueries

    def __init__(self, pool: ConnectionPool, *, autocommit: bool = False) -> None:
        self._pool = pool
        self._autocommit = autocommit
        self._conn: Connection | None = None
        self._span = ExitStack()

    def __enter__(self) -> "UnitOfWork":
        # One client span per transaction: enough to see database time in a trace, no SQL text.
        name = "postgresql read" if self._autocommit else "postgresql transaction"
        self._span.enter_context(span(name, kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}))
        try:
            self._conn = self._pool.getconn()
            # A client-side flag: setting it costs no round trip.
            self._conn.autocommit = self._autocommit
        except BaseException as exc:
            self._span.__exit__(type(exc), exc, exc.__traceback__)
            _raise_if_unavailable(exc)
            raise
        cursor = self._conn.cursor(cursor_factory=RealDictCursor)
        self.jobs = JobRepository(cursor)
        self.queries = JobQueries(cursor)
        self.pages = PageQueries(cursor)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        try:
            # A lost connection cannot roll back; the server already discarded its work.
            if conn is not None and not is_broken(conn) and not self._autocommit:
                conn.rollback()
        finally:
            if conn is not None:
                self._pool.putconn(conn)
            # The span sees the exception, so a failed read or transaction is a failed dependency in traces.
            self._span.__exit__(exc_type, exc, tb)
        if exc is not None:
            _raise_if_unavailable(exc)

    def commit(self) -> None:
        """Make everything done in this unit of work durable."""
        self._connection().commit()

    def rollback(self) -> None:
        """Undo everything done since the last commit."""
        self._connection().rollback()

    def _connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use it in a `with` block")
        return self._conn


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that say the server cannot be reached or took the session away, which a
    later attempt can survive; False for errors in the statement or the data."""
    if isinstance(exc, (PoolError, psycopg2.InterfaceError)):
        return True
    if not isinstance(exc, psycopg2.DatabaseError):
        return False
    # A socket lost mid-statement (a crashed or killed server) may surface as a bare DatabaseError.
    cursor = getattr(exc, "cursor", None)
    if cursor is not None and cursor.connection.closed:
        return True
    code = exc.pgcode
    if code is None:
        # No SQLSTATE: libpq could not connect or lost the socket.
        return type(exc) in (psycopg2.DatabaseError, psycopg2.OperationalError)
    # 08: connection exception; 57P: operator intervention (shutdown, crash recovery); 53300: too many connections.
    return isinstance(exc, psycopg2.OperationalError) and (code.startswith(("08", "57P")) or code == "53300")


def _raise_if_unavailable(exc: BaseException) -> None:
    if isinstance(exc, DatabaseUnavailable):
        return
    if is_connection_error(exc):
        raise DatabaseUnavailable() from exc


def uow(pool: ConnectionPool) -> UnitOfWork:
    """A unit of work on `pool`, to use as `with uow(pool) as tx:`."""
    return UnitOfWork(pool)


def in_transaction(pool: ConnectionPool, operation: Callable[[UnitOfWork], T]) -> T:
    """Run `operation` in its own unit of work and commit it: the common case of one
    repository call per transaction, e.g. `in_transaction(pool, lambda tx: tx.jobs.progress(id))`."""
    with uow(pool) as tx:
        result = operation(tx)
        tx.commit()
    return result


def read(pool: ConnectionPool, operation: Callable[[UnitOfWork], T]) -> T:
    """Run read-only `operation` in autocommit: each statement stands alone, so a single SELECT
    costs one round trip. Use it only where the reads need not see one snapshot."""
    with UnitOfWork(pool, autocommit=True) as tx:
        return operation(tx)


def in_one_statement(pool: ConnectionPool, operation: Callable[[UnitOfWork], T]) -> T:
    """Run `operation`, whose writes are ONE statement (reads may follow it), in autocommit: the
    statement is its own transaction. The row locks it takes (a job's counters, which every item of
    the job updates) are then held only while the server runs and commits it, not across a round
    trip back to a busy Python process and a COMMIT: with 30 items finishing at once, that wait
    serialised a job's completions at about 50 a second."""
    with UnitOfWork(pool, autocommit=True) as tx:
        return operation(tx)
