"""The scrape worker's decisions on a real PostgreSQL and a real local website: what one delivery
reads and writes, how retries are scheduled and counted, and how an outage is ridden out."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2.extras import register_uuid

from shared.adapters.db.connection import APPLICATION_NAME, Connection, ConnectionPool, UrlDatabase
from shared.domain.content import ContentRequest
from shared.domain.errors import DatabaseUnavailable
from shared.domain.messages import ItemMessage
from shared.domain.models import SYSTEM_ACTOR, Job
from shared.domain.pages import ScrapeResult
from shared.scraping.extract import extract
from shared.scraping.fetch import FetchedPage, FetchError, FetchErrorCode, FetchLimits
from shared.scraping.scrape import ScrapedPage
from shared.services.item_worker import (
    OUTAGE_MAX_REDELIVERIES,
    Scraper,
    WorkerConfig,
    WorkResult,
    give_up_item,
    process_item,
)
from tests.e2e.site import TestSite, page_html
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


# --- every branch of a delivery, with scrapers that fetch nothing ---------------------------------------------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def page_result(url: str) -> ScrapeResult:
    """What scraping the test site's page 7 gives, as if it had been served at `url`."""
    page = FetchedPage(url=url, final_url=url, status=200, content_type="text/html", charset="utf-8",
                       text=page_html(7), content_language=None, elapsed_ms=12, redirects=0)
    return ScrapeResult(**extract(page).model_dump(), url=url, charset="utf-8", redirects=0, elapsed_ms=12)


def fetch_error(code: FetchErrorCode, message: str, *, retryable: bool = False, http_status: int | None = None,
                final_url: str | None = None) -> FetchError:
    """A FetchError as fetch() raises it, with what the attempt learnt."""
    error = FetchError(code, message, retryable=retryable, http_status=http_status)
    error.final_url, error.elapsed_ms = final_url, 40
    return error


class ScriptedScraper:
    """A Scraper that fetches nothing: each call plays its next outcome, an exception to raise or None for a page."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.urls: list[str] = []

    def __call__(self, url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
        self.urls.append(url)
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return ScrapedPage(page_result(url))


def unstorable(url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
    """A page whose title holds NUL, which JSONB refuses."""
    return ScrapedPage(page_result(url).model_copy(update={"title": "a\x00b"}))


def events(fetch_rows: FetchRows, job: Job) -> list[tuple[str, str, str | None, Any]]:
    """The job's audit log after its submission: (event, actor, reason, data)."""
    rows = fetch_rows("SELECT event, actor, reason, data FROM job_events WHERE job_id = %s AND event <> 'submitted' "
                      "ORDER BY id", (job.id,))
    return [(row["event"], row["actor"], row["reason"], row["data"]) for row in rows]


def counters(fetch_rows: FetchRows, job: Job) -> tuple[str, int, int, int]:
    [row] = fetch_rows("SELECT status, succeeded, failed, skipped FROM jobs WHERE id = %s", (job.id,))
    return row["status"], row["succeeded"], row["failed"], row["skipped"]


def end_pool_sessions(execute_sql: ExecuteSql) -> None:
    """Terminate every session of the app's pools on this database and wait until they are gone: an outage."""
    execute_sql("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s", (APPLICATION_NAME,))


def test_a_message_for_a_missing_job_or_item_is_dropped(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows
) -> None:
    job = job_of("/page/1")
    scraper, sender = ScriptedScraper(), RecordingSender()

    no_job = process_item(pool, sender, ItemMessage(job_id=uuid4(), seq=0), config, scraper)
    no_item = process_item(pool, sender, ItemMessage(job_id=job.id, seq=1), config, scraper)

    assert no_job == no_item == WorkResult("missing")
    assert (scraper.urls, sender.sent, events(fetch_rows, job)) == ([], [], [])
    assert (item(fetch_rows, job)["status"], counters(fetch_rows, job)) == ("pending", ("running", 0, 0, 0))


def test_a_delivery_after_the_item_is_final_is_a_duplicate(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows
) -> None:
    job = job_of("/page/1")
    scraper, sender = ScriptedScraper(None, None), RecordingSender()
    message = ItemMessage(job_id=job.id, seq=0)

    first = process_item(pool, sender, message, config, scraper)
    again = process_item(pool, sender, message, config, scraper)

    assert (first, again) == (WorkResult("succeeded", finished_job=True), WorkResult("duplicate"))
    assert len(scraper.urls) == 1 and sender.sent == []
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["result"]["title"]) == ("succeeded", 1, "Page 7")
    assert counters(fetch_rows, job) == ("running", 1, 0, 0)


@pytest.mark.parametrize(("change", "code", "reason"), [
    ("UPDATE jobs SET status = 'pending', started_at = NULL WHERE id = %s", "job_not_running", "job is pending"),
    ("UPDATE jobs SET status = 'timed_out', finished_at = now() WHERE id = %s", "job_not_running",
     "job is timed_out"),
    ("UPDATE jobs SET cancel_requested_at = now() WHERE id = %s", "job_cancel_requested",
     "job cancellation was requested"),
    ("UPDATE jobs SET deadline_at = now() - interval '1 second' WHERE id = %s", "job_deadline_passed",
     "job deadline passed"),
], ids=["job-not-started", "job-finished", "cancel-requested", "deadline-passed"])
def test_an_item_its_job_no_longer_wants_is_skipped_with_the_reason_without_fetching(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    execute_sql: ExecuteSql, change: str, code: str, reason: str,
) -> None:
    job = job_of("/page/1")
    execute_sql(change, (job.id,))
    scraper, sender = ScriptedScraper(), RecordingSender()

    result = process_item(pool, sender, ItemMessage(job_id=job.id, seq=0), config, scraper)

    assert result == WorkResult("skipped", finished_job=True)
    assert (scraper.urls, sender.sent) == ([], [])
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["last_error_code"], row["last_error_message"]) == (
        "skipped", 0, code, reason)
    assert counters(fetch_rows, job)[1:] == (0, 0, 1)
    assert events(fetch_rows, job) == [("item_skipped", SYSTEM_ACTOR, reason, {"seq": 0, "code": code})]


def test_a_retryable_failure_is_tried_again_and_the_next_delivery_succeeds(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows
) -> None:
    job = job_of("/page/1")
    scraper = ScriptedScraper(fetch_error("timeout", "read timed out", retryable=True), None)
    sender = RecordingSender()

    first = process_item(pool, sender, ItemMessage(job_id=job.id, seq=0, traceparent=TRACEPARENT), config, scraper)
    [(retry, delay)] = sender.sent
    second = process_item(pool, sender, retry, config, scraper)

    assert (first, second) == (WorkResult("retry_scheduled"), WorkResult("succeeded", finished_job=True))
    assert (retry.attempt, retry.outage_redeliveries, retry.traceparent, delay) == (1, 0, TRACEPARENT, 4)
    assert len(sender.sent) == 1 and len(scraper.urls) == 2
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["queued_attempt"], row["result"]["title"]) == (
        "succeeded", 2, 1, "Page 7")
    assert counters(fetch_rows, job) == ("running", 1, 0, 0)
    assert events(fetch_rows, job) == [
        ("item_retried", SYSTEM_ACTOR, "read timed out", {"seq": 0, "attempt": 1, "code": "timeout",
                                                           "http_status": None})]


def test_an_item_whose_attempts_in_postgresql_are_spent_fails_without_fetching(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    execute_sql: ExecuteSql,
) -> None:
    """The budget is the count in PostgreSQL, not the message: here three attempts were counted under a policy
    that allowed more, and this worker's allows three."""
    job = job_of("/page/1")
    execute_sql("UPDATE job_items SET attempts = 3, queued_attempt = 3, http_status = 503, "
                "last_error_code = 'http_error', last_error_message = 'HTTP 503' WHERE job_id = %s", (job.id,))
    scraper, sender = ScriptedScraper(), RecordingSender()

    result = process_item(pool, sender, ItemMessage(job_id=job.id, seq=0, attempt=3), config, scraper)

    assert result == WorkResult("failed", finished_job=True)
    assert (scraper.urls, sender.sent) == ([], [])
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["last_error_code"], row["last_error_message"], row["http_status"]) == (
        "failed", 3, "gave_up", "no attempts left after 3", 503)
    assert counters(fetch_rows, job) == ("running", 0, 1, 0)


@pytest.mark.parametrize(("scraper", "code", "message", "http_status"), [
    (lambda: ScriptedScraper(fetch_error("http_error", "HTTP 404", http_status=404, final_url="https://x.test/gone")),
     "http_error", "HTTP 404", 404),
    (lambda: ScriptedScraper(KeyError("og:title")), "internal_error", "unexpected KeyError while scraping", None),
    (lambda: unstorable, "result_not_storable",
     "the database refused the result (UntranslatableCharacter, SQLSTATE 22P05)", 200),
], ids=["permanent-fetch-error", "unexpected-exception", "result-not-storable"])
def test_what_can_never_succeed_fails_the_item_on_its_first_delivery(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    scraper: Callable[[], Scraper], code: str, message: str, http_status: int | None,
) -> None:
    job = job_of("/page/1")
    sender = RecordingSender()

    result = process_item(pool, sender, ItemMessage(job_id=job.id, seq=0), config, scraper())

    assert result == WorkResult("failed", finished_job=True)
    assert sender.sent == []
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["last_error_code"], row["last_error_message"], row["http_status"],
            row["result"]) == ("failed", 1, code, message, http_status, None)
    assert counters(fetch_rows, job) == ("running", 0, 1, 0)
    assert events(fetch_rows, job) == [("item_failed", SYSTEM_ACTOR, message, {"seq": 0, "code": code,
                                                                               "http_status": http_status})]


def test_of_two_deliveries_failing_the_same_attempt_only_the_first_to_record_it_counts(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows
) -> None:
    job = job_of("/page/1")
    message = ItemMessage(job_id=job.id, seq=0)
    sender = RecordingSender()
    overtaking: list[WorkResult] = []

    def overtaken(url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
        # While this delivery fetches, a duplicate of its message is delivered, fails and records the attempt first.
        duplicate = ScriptedScraper(fetch_error("timeout", "read timed out", retryable=True))
        overtaking.append(process_item(pool, sender, message, config, duplicate))
        raise fetch_error("connection_error", "connection reset", retryable=True)

    result = process_item(pool, sender, message, config, overtaken)

    assert (overtaking, result) == ([WorkResult("retry_scheduled")], WorkResult("duplicate"))
    assert [m.attempt for m, _ in sender.sent] == [1]
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("pending", 1, "timeout")
    assert [event for event, *_ in events(fetch_rows, job)] == ["item_retried"]


@pytest.mark.parametrize(("retry_in_s", "delays"), [
    (3600, range(3590, 3601)),
    (-60, [0]),
    (None, [0]),
], ids=["retry-due-later", "retry-overdue", "no-retry-time"])
def test_a_stale_message_whose_follow_up_was_never_sent_sends_it_for_the_scheduled_time(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    execute_sql: ExecuteSql, retry_in_s: int | None, delays: range | list[int],
) -> None:
    job = job_of("/page/1")
    # The delivery that counted attempt 1 died after recording it and before sending its message.
    execute_sql("UPDATE job_items SET attempts = 1, queued_attempt = 0, "
                "next_attempt_at = now() + make_interval(secs => %s) WHERE job_id = %s", (retry_in_s, job.id))
    scraper, sender = ScriptedScraper(), RecordingSender()
    stale = ItemMessage(job_id=job.id, seq=0, attempt=0, outage_redeliveries=2, traceparent=TRACEPARENT)

    resent = process_item(pool, sender, stale, config, scraper)
    again = process_item(pool, sender, stale, config, scraper)

    assert (resent, again) == (WorkResult("retry_resent"), WorkResult("duplicate"))
    [(follow_up, delay)] = sender.sent
    assert (follow_up.attempt, follow_up.outage_redeliveries, follow_up.traceparent) == (1, 0, TRACEPARENT)
    assert delay in delays
    assert scraper.urls == []
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["queued_attempt"]) == ("pending", 1, 1)


def test_a_database_lost_during_the_fetch_puts_the_message_back_without_spending_an_attempt(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    execute_sql: ExecuteSql,
) -> None:
    job = job_of("/page/1")
    sender = RecordingSender()

    def outage_while_fetching(url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
        end_pool_sessions(execute_sql)
        return ScrapedPage(page_result(url))

    lost = process_item(pool, sender, ItemMessage(job_id=job.id, seq=0, traceparent=TRACEPARENT), config,
                        outage_while_fetching)

    assert lost == WorkResult("delayed_by_outage")
    [(put_back, delay)] = sender.sent
    assert (put_back.attempt, put_back.outage_redeliveries, put_back.traceparent, delay) == (0, 1, TRACEPARENT, 5)
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["result"]) == ("pending", 0, None)

    assert process_item(pool, sender, put_back, config, ScriptedScraper(None)) == WorkResult("succeeded", True)
    assert (item(fetch_rows, job)["status"], item(fetch_rows, job)["attempts"]) == ("succeeded", 1)


@pytest.mark.parametrize(("redeliveries", "delay"), [
    (0, 5), (2, 20), (3, 30), (OUTAGE_MAX_REDELIVERIES - 1, 30), (OUTAGE_MAX_REDELIVERIES, None),
])
def test_outage_put_backs_double_their_delay_up_to_a_cap_and_raise_past_their_limit(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    execute_sql: ExecuteSql, redeliveries: int, delay: int | None,
) -> None:
    job = job_of("/page/1")
    sender = RecordingSender()
    message = ItemMessage(job_id=job.id, seq=0, attempt=0, outage_redeliveries=redeliveries)

    def outage_while_fetching(url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
        end_pool_sessions(execute_sql)
        raise fetch_error("timeout", "read timed out", retryable=True)

    if delay is None:
        with pytest.raises(DatabaseUnavailable, match=f"unreachable for {redeliveries} redeliveries"):
            process_item(pool, sender, message, config, outage_while_fetching)
        assert sender.sent == []
    else:
        assert process_item(pool, sender, message, config, outage_while_fetching) == WorkResult("delayed_by_outage")
        assert [(m.outage_redeliveries, d) for m, d in sender.sent] == [(redeliveries + 1, delay)]
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("pending", 0, None)


def test_exactly_one_of_the_workers_racing_on_a_jobs_last_items_sees_it_finished(
    pool: ConnectionPool, submit_job: Callable[..., Job], config: WorkerConfig, fetch_rows: FetchRows,
    execute_sql: ExecuteSql,
) -> None:
    size = 8
    for _ in range(5):
        job = submit_job(count=size)
        execute_sql("UPDATE jobs SET status = 'running' WHERE id = %s", (job.id,))
        all_fetched = threading.Barrier(size, timeout=60)

        def scraper(url: str, limits: FetchLimits, request: ContentRequest,
                    all_fetched: threading.Barrier = all_fetched) -> ScrapedPage:
            all_fetched.wait()  # every worker has read its item and fetched before any records an outcome
            if int(url.rsplit("/", 1)[1]) % 2:
                raise fetch_error("http_error", "HTTP 410", http_status=410)
            return ScrapedPage(page_result(url))

        def deliver(seq: int, job: Job = job, scraper: Scraper = scraper) -> WorkResult:
            return process_item(pool, RecordingSender(), ItemMessage(job_id=job.id, seq=seq), config, scraper)

        with ThreadPoolExecutor(max_workers=size) as executor:
            results = list(executor.map(deliver, range(size)))

        assert sorted(result.action for result in results) == ["failed"] * 4 + ["succeeded"] * 4
        assert [result.finished_job for result in results].count(True) == 1
        assert counters(fetch_rows, job) == ("running", 4, 4, 0)


def test_the_poison_handler_fails_the_item_once_with_its_last_error_without_counting_an_attempt(
    pool: ConnectionPool, job_of: Callable[[str], Job], fetch_rows: FetchRows, execute_sql: ExecuteSql
) -> None:
    job = job_of("/page/1")
    execute_sql("UPDATE job_items SET attempts = 2, http_status = 503, last_error_code = 'http_error', "
                "last_error_message = 'HTTP 503' WHERE job_id = %s", (job.id,))
    crashed = job_of("/page/2")
    message = ItemMessage(job_id=job.id, seq=0, attempt=2)

    first, again = give_up_item(pool, message), give_up_item(pool, message)
    never_recorded = give_up_item(pool, ItemMessage(job_id=crashed.id, seq=0))
    missing = give_up_item(pool, ItemMessage(job_id=uuid4(), seq=0))

    assert (first, again, never_recorded, missing) == (
        WorkResult("failed", finished_job=True), WorkResult("duplicate"), WorkResult("failed", finished_job=True),
        WorkResult("missing"))
    text = "gave up after 2 attempts: http_error: HTTP 503"
    row = item(fetch_rows, job)
    assert (row["status"], row["attempts"], row["last_error_code"], row["last_error_message"], row["http_status"]) == (
        "failed", 2, "gave_up", text, 503)
    assert events(fetch_rows, job) == [("item_failed", SYSTEM_ACTOR, text, {"seq": 0, "code": "gave_up",
                                                                            "http_status": 503})]
    assert counters(fetch_rows, job) == ("running", 0, 1, 0)
    assert item(fetch_rows, crashed)["last_error_message"] == (
        "gave up after 0 attempts: the worker raised on every delivery (an unexpected error or a long database "
        "outage; see its logs)")
