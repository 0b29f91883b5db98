"""The scrape worker's decisions on a real PostgreSQL and a real local website: what one delivery
reads and writes, how retries are scheduled and counted, and how an outage is ridden out."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2.extras import register_uuid

from shared.db.connection import Connection, ConnectionPool, UrlDatabase
from shared.errors import DatabaseUnavailable
from shared.item_worker import OUTAGE_MAX_REDELIVERIES, WorkerConfig, give_up_item, process_item
from shared.messages import ItemMessage
from shared.models import Job
from tests.e2e.site import TestSite
from tests.integration.workers import RecordingSender, item

pytestmark = pytest.mark.integration

FetchRows = Callable[..., list[dict[str, Any]]]
ExecuteSql = Callable[..., None]


class CountingConnection(psycopg2.extensions.connection):
    """Counts statements and commits, so a test can state what one delivery costs the database."""

    statements = 0
    commits = 0

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        cursor = super().cursor(*args, **kwargs)
        execute = cursor.execute

        def counted(*call: Any, **named: Any) -> Any:
            CountingConnection.statements += 1
            return execute(*call, **named)

        cursor.execute = counted
        return cursor

    def commit(self) -> None:
        CountingConnection.commits += 1
        super().commit()


class CountingPool(ConnectionPool):
    def __init__(self, url: str) -> None:
        super().__init__(UrlDatabase(url), maxconn=4)
        self._url = url

    def _open(self) -> Connection:
        conn: Connection = psycopg2.connect(self._url, connection_factory=CountingConnection)
        register_uuid(conn_or_curs=conn)
        return conn


def test_a_delivery_costs_two_statements_each_its_own_transaction(
    db_url: str, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows
) -> None:
    job = job_of("/page/1")
    pool = CountingPool(db_url)
    CountingConnection.statements = CountingConnection.commits = 0
    try:
        result = process_item(pool, RecordingSender(), ItemMessage(job_id=job.id, seq=0), config)
    finally:
        pool.closeall()

    assert (result.action, result.finished_job) == ("succeeded", True)
    # The write is one autocommit statement: the job's row lock is held only while the server runs and commits
    # it, never across a round trip to this process and a COMMIT (which serialised a job's items at ~50 a second).
    assert (CountingConnection.statements, CountingConnection.commits) == (2, 0)
    assert item(fetch_rows, job)["result"]["title"] == "Page 1"


def test_a_transient_failure_schedules_the_next_attempt_without_raising(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows
) -> None:
    job = job_of("/always500/a")
    sender = RecordingSender()

    result = process_item(pool, sender, ItemMessage(job_id=job.id, seq=0), config)

    assert result.action == "retry_scheduled"
    assert [(m.attempt, delay) for m, delay in sender.sent] == [(1, 4)]
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["queued_attempt"], row["last_error_code"]) == (
        "pending", 1, 1, "http_error")
    assert row["next_attempt_at"] is not None


def test_retries_back_off_and_the_last_attempt_fails_the_item(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows, site: TestSite
) -> None:
    job = job_of("/always500/b")
    sender = RecordingSender()
    message = ItemMessage(job_id=job.id, seq=0)
    actions = []
    for _ in range(3):
        actions.append(process_item(pool, sender, message, config).action)
        message = sender.sent[-1][0]

    assert actions == ["retry_scheduled", "retry_scheduled", "failed"]
    assert [delay for _, delay in sender.sent] == [4, 8]
    assert site.hits["/always500/b"] == 3
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("failed", 3, "http_error")
    assert row["last_error_message"] == "HTTP 500 (after 3 attempts)"


def test_retry_after_is_honoured(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig
) -> None:
    job = job_of("/busy/30/x")
    sender = RecordingSender()

    process_item(pool, sender, ItemMessage(job_id=job.id, seq=0), config)

    assert [delay for _, delay in sender.sent] == [30]


def test_a_stale_duplicate_is_dropped_without_fetching(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, site: TestSite
) -> None:
    job = job_of("/always500/stale")
    sender = RecordingSender()
    original = ItemMessage(job_id=job.id, seq=0)
    process_item(pool, sender, original, config)

    duplicate = process_item(pool, sender, original, config)

    assert duplicate.action == "duplicate"
    assert site.hits["/always500/stale"] == 1 and len(sender.sent) == 1


def test_a_delivery_that_died_before_sending_its_retry_is_completed_by_the_redelivery(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows, site: TestSite
) -> None:
    job = job_of("/always500/crash")
    original = ItemMessage(job_id=job.id, seq=0)
    crashing = RecordingSender(failures=1)
    with pytest.raises(ConnectionError):
        process_item(pool, crashing, original, config)

    redelivered = process_item(pool, crashing, original, config)

    assert redelivered.action == "retry_resent"
    assert [m.attempt for m, _ in crashing.sent] == [1]
    assert site.hits["/always500/crash"] == 1, "the counted attempt is not fetched again"
    assert (item(fetch_rows, job)["attempts"], item(fetch_rows, job)["queued_attempt"]) == (1, 1)


def test_a_database_outage_puts_the_message_back_without_spending_an_attempt(config: WorkerConfig) -> None:
    unreachable = ConnectionPool(UrlDatabase("postgresql://trawl@127.0.0.1:1/trawl"), acquire_timeout_s=1)
    sender = RecordingSender()
    message = ItemMessage(job_id="6f9619ff-8b86-d011-b42d-00c04fc964ff", seq=3, attempt=2)

    first = process_item(unreachable, sender, message, config)
    second = process_item(unreachable, sender, sender.sent[-1][0], config)

    assert (first.action, second.action) == ("delayed_by_outage", "delayed_by_outage")
    assert [(m.attempt, m.outage_redeliveries, delay) for m, delay in sender.sent] == [(2, 1, 5), (2, 2, 10)]
    exhausted = message.model_copy(update={"outage_redeliveries": OUTAGE_MAX_REDELIVERIES})
    with pytest.raises(DatabaseUnavailable):
        process_item(unreachable, sender, exhausted, config)


def test_the_poison_handler_names_the_last_error(
    pool: ConnectionPool, job_of: Callable[[str], Job], fetch_rows: FetchRows, execute_sql: ExecuteSql
) -> None:
    job = job_of("/always500/poison")
    execute_sql("UPDATE job_items SET attempts = 2, last_error_code = 'timeout', last_error_message = 'slow' "
                "WHERE job_id = %s", (job.id,))
    never_recorded = job_of("/always500/never")

    give_up_item(pool, ItemMessage(job_id=job.id, seq=0))
    give_up_item(pool, ItemMessage(job_id=never_recorded.id, seq=0))

    assert item(fetch_rows, job)["last_error_message"] == "gave up after 2 attempts: timeout: slow"
    assert "no error was recorded" not in item(fetch_rows, never_recorded)["last_error_message"]
    assert item(fetch_rows, job)["last_error_code"] == "gave_up"
