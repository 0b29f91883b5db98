"""What the scrape worker records, on a real PostgreSQL and a real local website: whatever a page does, the item
ends on its first delivery with a precise code when trying again cannot help; an item's error is its final one,
earlier attempts are in the job's log; failed items keep what was learnt; skipped items carry a reason code."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.queries import JobQueries
from shared.adapters.db.unit_of_work import in_transaction
from shared.contract.schemas import ItemView
from shared.domain.content import ContentRequest
from shared.domain.messages import ItemMessage
from shared.domain.models import SYSTEM_ACTOR, Job, JobOutcome
from shared.scraping.fetch import FetchLimits
from shared.scraping.scrape import ScrapedPage, scrape, scrape_page
from shared.services.exports import CSV_COLUMNS, csv_row
from shared.services.item_worker import Scraper, WorkerConfig, process_item
from tests.e2e.site import TestSite
from tests.integration.workers import RecordingSender, item

pytestmark = pytest.mark.integration

FetchRows = Callable[..., list[dict[str, Any]]]
ExecuteSql = Callable[..., None]












def deliver(pool: ConnectionPool, job: Job, config: WorkerConfig, sender: RecordingSender,
            scraper: Scraper = scrape_page) -> str:
    message = sender.sent[-1][0] if sender.sent else ItemMessage(job_id=job.id, seq=0)
    return process_item(pool, sender, message, config, scraper).action


@pytest.mark.parametrize(("path", "code", "http_status"), [
    ("/latin1-location/a", "invalid_redirect", 302),
    ("/encodings/6/a", "unsupported_encoding", 200),
    ("/encodings/3/a", "unsupported_encoding", 200),
])
def test_a_page_that_can_never_work_fails_on_its_first_delivery(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows, site: TestSite,
    path: str, code: str, http_status: int,
) -> None:
    job = job_of(path)
    sender = RecordingSender()

    assert deliver(pool, job, config, sender) == "failed"

    row = item(fetch_rows, job)
    assert (row["status"], row["last_error_code"], row["attempts"], row["http_status"]) == ("failed", code, 1,
                                                                                           http_status)
    assert (sender.sent, site.hits[path]) == ([], 1)


def test_a_result_the_database_refuses_fails_the_item_at_once_with_what_was_fetched(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
) -> None:
    job = job_of("/page/1")
    sender = RecordingSender()

    def nul_in_title(url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:  # JSONB refuses \u0000
        return ScrapedPage(scrape(url, limits).model_copy(update={"title": "a\x00b"}))

    assert deliver(pool, job, config, sender, nul_in_title) == "failed"

    row = item(fetch_rows, job)
    assert (row["status"], row["last_error_code"], row["attempts"], row["result"]) == (
        "failed", "result_not_storable", 1, None)
    assert "SQLSTATE 22P05" in row["last_error_message"]
    assert (row["http_status"], row["final_url"]) == (200, job_url(fetch_rows, job))
    assert row["duration_ms"] is not None and sender.sent == []


def test_a_result_that_is_not_unicode_fails_the_item_at_once(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
) -> None:
    job = job_of("/page/4")

    def lone_surrogate(url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
        return ScrapedPage(scrape(url, limits).model_copy(update={"title": "a\ud800b"}))

    assert deliver(pool, job, config, RecordingSender(), lone_surrogate) == "failed"
    row = item(fetch_rows, job)
    assert (row["last_error_code"], row["last_error_message"]) == (
        "result_not_storable", "the database refused the result (the result is not valid Unicode text)")


def job_url(fetch_rows: FetchRows, job: Job) -> str:
    return str(fetch_rows("SELECT url FROM job_items WHERE job_id = %s", (job.id,))[0]["url"])


def test_an_unexpected_exception_fails_the_item_with_its_type_and_logs_the_traceback(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = job_of("/page/2")
    sender = RecordingSender()

    def broken(url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, f"in {url}?token=SECRET")

    with caplog.at_level(logging.ERROR, logger="shared.services.item_worker"):
        assert deliver(pool, job, config, sender, broken) == "failed"

    row = item(fetch_rows, job)
    assert (row["last_error_code"], row["last_error_message"], row["attempts"]) == (
        "internal_error", "unexpected UnicodeDecodeError while scraping", 1)
    assert sender.sent == []
    [record] = [r for r in caplog.records if r.exc_info]
    assert f"job {job.id} item 0" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is UnicodeDecodeError


def test_a_failed_item_keeps_its_status_final_url_and_duration(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows, site: TestSite,
) -> None:
    site.pages["/moved-away"] = (302, "", {"Location": "/missing"})
    job = job_of("/moved-away")

    assert deliver(pool, job, config, RecordingSender()) == "failed"

    row = item(fetch_rows, job)
    assert (row["last_error_code"], row["http_status"], row["final_url"]) == ("http_error", 404,
                                                                              site.url("/missing"))
    assert row["duration_ms"] is not None


def test_retries_that_end_in_failure_keep_the_last_attempts_status_and_url(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows, site: TestSite,
) -> None:
    job = job_of("/always500/kept")
    sender = RecordingSender()
    actions = [deliver(pool, job, config, sender) for _ in range(3)]

    row = item(fetch_rows, job)
    assert actions == ["retry_scheduled", "retry_scheduled", "failed"]
    assert (row["http_status"], row["final_url"]) == (500, site.url("/always500/kept"))
    assert row["duration_ms"] is not None


def test_a_succeeded_item_shows_no_error_and_its_failed_attempt_is_in_the_log(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    queries: JobQueries,
) -> None:
    job = job_of("/flaky/once")
    sender = RecordingSender()
    actions = [deliver(pool, job, config, sender) for _ in range(2)]

    assert actions == ["retry_scheduled", "succeeded"]
    [stored] = queries.list_items(job.id, None).items
    assert stored.last_error_code == "http_error", "kept in the row as history"
    assert ItemView.of(stored).error is None
    row = dict(zip(CSV_COLUMNS, csv_row(stored), strict=True))
    assert (row["error_code"], row["error_message"]) == (None, None)
    retried = fetch_rows("SELECT reason, data FROM job_events WHERE job_id = %s AND event = 'item_retried'",
                         (job.id,))
    assert retried == [{"reason": "HTTP 503", "data": {"seq": 0, "attempt": 1, "code": "http_error",
                                                       "http_status": 503}}]


def test_skipped_items_carry_a_reason_code(
    pool: ConnectionPool, job_of: Callable[[str], Job], config: WorkerConfig, fetch_rows: FetchRows,
    execute_sql: ExecuteSql, queries: Any,
) -> None:
    job = job_of("/page/3")
    execute_sql("UPDATE jobs SET cancel_requested_at = now() WHERE id = %s", (job.id,))

    assert deliver(pool, job, config, RecordingSender()) == "skipped"

    [stored] = queries.list_items(job.id, None).items
    error = ItemView.of(stored).error
    assert error is not None and (error.code, error.message) == ("job_cancel_requested",
                                                                 "job cancellation was requested")


def test_items_skipped_when_a_job_ends_carry_the_jobs_outcome_as_code(
    pool: ConnectionPool, submit_job: Callable[..., Job], fetch_rows: FetchRows,
) -> None:
    job = submit_job(count=2)
    in_transaction(pool, lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.CANCELLED, SYSTEM_ACTOR))

    rows = fetch_rows("SELECT last_error_code, last_error_message FROM job_items WHERE job_id = %s", (job.id,))
    assert rows == [{"last_error_code": "job_cancelled", "last_error_message": "job cancelled"}] * 2
