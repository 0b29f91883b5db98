"""The unit of work: one pooled connection, one transaction, committed only when asked.

Usage (cosmicpython's `service_layer/unit_of_work.py`):

    with uow(pool) as tx:
        outcome = tx.jobs.complete_item(job_id, seq, ...)
        tx.commit()

Leaving the block without `commit()`, normally or by an exception, rolls everything back.
"""

from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import TypeVar

from opentelemetry.trace import SpanKind
from psycopg2.extras import RealDictCursor

from shared.db.connection import Connection, ConnectionPool, is_broken
from shared.db.jobs import JobRepository
from shared.db.queries import JobQueries
from shared.telemetry import span

T = TypeVar("T")


class UnitOfWork:
    """A transaction on a connection borrowed from `pool`, exposing the repositories."""

    jobs: JobRepository
    queries: JobQueries

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: Connection | None = None
        self._span = ExitStack()

    def __enter__(self) -> "UnitOfWork":
        # One client span per transaction: enough to see database time in a trace, no SQL text.
        self._span.enter_context(span("postgresql transaction", kind=SpanKind.CLIENT,
                                      attributes={"db.system": "postgresql"}))
        self._conn = self._pool.getconn()
        cursor = self._conn.cursor(cursor_factory=RealDictCursor)
        self.jobs = JobRepository(cursor)
        self.queries = JobQueries(cursor)
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
            if conn is not None and not is_broken(conn):
                conn.rollback()
        finally:
            if conn is not None:
                self._pool.putconn(conn)
            self._span.close()

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
