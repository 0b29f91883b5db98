"""What a scrape worker does with one queue message, and what the poison handler does after it.

At-least-once delivery is the rule: a message may arrive twice, after its item is final, or after
its job ended. Each case is a harmless no-op or a skip, decided on the rows in PostgreSQL.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from opentelemetry.trace import SpanKind

from shared.db import ConnectionPool, in_transaction
from shared.fetch import FetchError, FetchLimits
from shared.messages import ItemMessage
from shared.models import SYSTEM_ACTOR, ItemOutcome, JobStatus, WorkItem
from shared.scrape import ScrapeResult, scrape
from shared.telemetry import FETCH_DURATION, ITEMS_PROCESSED, POISONED, span, url_host

log = logging.getLogger(__name__)

Scraper = Callable[[str, FetchLimits], ScrapeResult]


class RetryableItemError(Exception):
    """A transient failure, already recorded on the item: raised so the queue redelivers the message."""


@dataclass(frozen=True)
class WorkResult:
    """What happened to the item; `finished_job` is True for exactly the call that finished its job's last item."""

    action: str
    finished_job: bool = False

    @classmethod
    def of(cls, action: str, outcome: ItemOutcome) -> WorkResult:
        return cls(action if outcome.changed else "duplicate", outcome.changed and outcome.remaining == 0)


def process_item(pool: ConnectionPool, message: ItemMessage, limits: FetchLimits, scraper: Scraper = scrape) -> WorkResult:
    """Scrape one item and record the outcome; raises RetryableItemError for transient failures.

    Runs in a consumer span that continues the trace carried by the message."""
    attributes = {"trawl.job.id": str(message.job_id), "trawl.item.seq": message.seq}
    with span("scrape item", traceparent=message.traceparent, kind=SpanKind.CONSUMER, attributes=attributes) as current:
        try:
            result = _process(pool, message, limits, scraper)
        except RetryableItemError:
            current.set_attribute("trawl.outcome", "retry")
            ITEMS_PROCESSED.add(1, {"outcome": "retry"})
            raise
        current.set_attribute("trawl.outcome", result.action)
        ITEMS_PROCESSED.add(1, {"outcome": result.action})
        return result


def _process(pool: ConnectionPool, message: ItemMessage, limits: FetchLimits, scraper: Scraper) -> WorkResult:
    work = in_transaction(pool, lambda tx: tx.jobs.item_for_work(message.job_id, message.seq))
    if work is None:
        log.error("job %s item %s does not exist; dropping the message", message.job_id, message.seq,
                  extra=message.log_context())
        return WorkResult("missing")
    if work.item.status.is_final:
        return WorkResult("duplicate")
    reason = _skip_reason(work)
    if reason is not None:
        return WorkResult.of("skipped", in_transaction(pool, lambda tx: tx.jobs.skip_item(message.job_id, message.seq, reason)))
    try:
        result = _fetch(scraper, work.item.url, limits)
    except FetchError as error:
        return _record_failure(pool, message, error)
    outcome = in_transaction(pool, lambda tx: tx.jobs.complete_item(
        message.job_id, message.seq, result.model_dump(mode="json"), result.status, result.final_url, result.elapsed_ms))
    return WorkResult.of("succeeded", outcome)


def give_up_item(pool: ConnectionPool, message: ItemMessage) -> WorkResult:
    """The poison handler's step: the queue gave up on this item, so fail it with its last error."""
    work = in_transaction(pool, lambda tx: tx.jobs.item_for_work(message.job_id, message.seq))
    if work is None:
        log.error("poisoned message for missing job %s item %s; dropping it", message.job_id, message.seq,
                  extra=message.log_context())
        return WorkResult("missing")
    item = work.item
    last = f"{item.last_error_code}: {item.last_error_message}" if item.last_error_code else "no error was recorded"
    text = f"gave up after {item.attempts} attempts: {last}"
    outcome = in_transaction(pool, lambda tx: tx.jobs.fail_item(
        message.job_id, message.seq, "gave_up", text, SYSTEM_ACTOR, item.http_status, counts_as_attempt=False))
    if outcome.changed:
        POISONED.add(1)
    return WorkResult.of("failed", outcome)


def _fetch(scraper: Scraper, url: str, limits: FetchLimits) -> ScrapeResult:
    """Fetch and parse in a client span that names the host only (paths and queries may hold secrets)."""
    started = time.monotonic()
    with span("fetch", kind=SpanKind.CLIENT, attributes={"url.host": url_host(url)}) as current:
        try:
            result = scraper(url, limits)
        except FetchError as error:
            current.set_attribute("trawl.error.code", error.code)
            if error.http_status is not None:
                current.set_attribute("http.response.status_code", error.http_status)
            raise
        finally:
            FETCH_DURATION.record((time.monotonic() - started) * 1000)
        current.set_attribute("http.response.status_code", result.status)
        return result


def _skip_reason(work: WorkItem) -> str | None:
    if work.job_status is not JobStatus.RUNNING:
        return f"job is {work.job_status}"
    if work.cancel_requested:
        return "job cancellation was requested"
    if datetime.now(timezone.utc) >= work.deadline_at:
        return "job deadline passed"
    return None


def _record_failure(pool: ConnectionPool, message: ItemMessage, error: FetchError) -> WorkResult:
    job_id, seq = message.job_id, message.seq
    if error.retryable:
        in_transaction(pool, lambda tx: tx.jobs.record_retryable_failure(job_id, seq, error.code, error.message,
                                                                          error.http_status))
        log.warning("job %s item %s: retryable %s: %s", job_id, seq, error.code, error.message,
                    extra=message.log_context())
        raise RetryableItemError(f"{error.code}: {error.message}") from error
    log.info("job %s item %s failed permanently: %s: %s", job_id, seq, error.code, error.message,
             extra=message.log_context())
    return WorkResult.of("failed", in_transaction(pool, lambda tx: tx.jobs.fail_item(
        job_id, seq, error.code, error.message, SYSTEM_ACTOR, error.http_status)))
