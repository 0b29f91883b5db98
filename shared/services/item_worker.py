"""What a scrape worker does with one queue message, and what the poison handler does after it.

At-least-once delivery is the rule: a message may arrive twice, after its item is final, or after
its job ended. Each case is a harmless no-op or a skip, decided on the rows in PostgreSQL.

Retries never raise. A transient fetch failure counts one attempt in PostgreSQL and sends the item's
next message with a visibility delay (exponential backoff, or the site's Retry-After); the last
allowed attempt fails the item. An unreachable database spends no attempt: the message is put back
with a delay. What can never succeed fails the item on its first delivery with a precise code: a
permanent fetch error, a result the database refuses to store (`result_not_storable`), or an
exception the scraper was not expected to raise (`internal_error`, its type recorded, its traceback
logged). Only crashes reach the queue's dequeue count and the poison queue. Per delivery: one
autocommit read and one write transaction.
"""
from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind

from shared.adapters.db import ConnectionPool, in_one_statement, in_transaction, read
from shared.adapters.telemetry import FETCH_DURATION, ITEMS_PROCESSED, POISONED, span, url_host
from shared.contract.schemas import normalised_url
from shared.domain.content import MEDIA_TYPES, NOTHING_KEPT, ContentRequest, KeptContent, StoredBody, search_config
from shared.domain.errors import DatabaseUnavailable, StorageUnavailable
from shared.domain.messages import ItemMessage
from shared.domain.models import SYSTEM_ACTOR, ItemError, ItemOutcome, JobStatus, ResultNotStorableError, WorkItem
from shared.domain.retry_policy import RetryPolicy
from shared.scraping.fetch import FetchError, FetchLimits
from shared.scraping.scrape import ScrapedPage, scrape_page

log = logging.getLogger(f"trawl.{__name__}")

Scraper = Callable[[str, FetchLimits, ContentRequest], ScrapedPage]

# Put back while PostgreSQL is unreachable: 5 s doubling to 30 s, for about an hour; after that
# the delivery raises and the queue's own retries and poison queue take over.
OUTAGE_FIRST_DELAY_S = 5
OUTAGE_MAX_DELAY_S = 30
OUTAGE_MAX_REDELIVERIES = 128


class BodyStore(Protocol):
    """Where a worker keeps page bodies (shared.adapters.content_store)."""

    def put(self, body: bytes, media_type: str) -> StoredBody:
        """Store `body` once per content; its address either way."""


class ItemSender(Protocol):
    """Where a worker sends an item's next message (the scrape queue)."""

    def send_later(self, message: ItemMessage, delay_s: int) -> None:
        """Send `message`, invisible for `delay_s` seconds."""


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker fetches (limits) and how often it tries (policy)."""

    limits: FetchLimits
    policy: RetryPolicy


@dataclass(frozen=True)
class WorkResult:
    """What happened to the item; `finished_job` is True for exactly the call that finished its job's last item."""

    action: str
    finished_job: bool = False

    @classmethod
    def of(cls, action: str, outcome: ItemOutcome) -> WorkResult:
        return cls(action if outcome.changed else "duplicate", outcome.changed and outcome.remaining == 0)


def process_item(pool: ConnectionPool, sender: ItemSender, message: ItemMessage, config: WorkerConfig,
                 scraper: Scraper = scrape_page, bodies: BodyStore | None = None) -> WorkResult:
    """Scrape one item and record the outcome, or schedule its retry. Raises only for what the
    queue must retry: an outage that outlasted OUTAGE_MAX_REDELIVERIES, or an unexpected error.

    Runs in a consumer span that continues the trace carried by the message."""
    attributes: dict[str, str | int] = {"trawl.job.id": str(message.job_id), "trawl.item.seq": message.seq}
    with span("scrape item", traceparent=message.traceparent, kind=SpanKind.CONSUMER, attributes=attributes) as current:
        try:
            result = _Delivery(pool, sender, message, config, scraper, bodies).run()
        except (DatabaseUnavailable, StorageUnavailable):
            result = _put_back_for_outage(sender, message)
        current.set_attribute("trawl.outcome", result.action)
        ITEMS_PROCESSED.add(1, {"outcome": result.action})
        return result


def give_up_item(pool: ConnectionPool, message: ItemMessage) -> WorkResult:
    """The poison handler's step: the queue gave up on this item, so fail it with its last error."""
    work = read(pool, lambda tx: tx.jobs.item_for_work(message.job_id, message.seq))
    if work is None:
        log.error("poisoned message for missing job %s item %s; dropping it", message.job_id, message.seq,
                  extra=message.log_context())
        return WorkResult("missing")
    if work.last_error_code:
        last = f"{work.last_error_code}: {work.last_error_message}"
    else:
        last = "the worker raised on every delivery (an unexpected error or a long database outage; see its logs)"
    text = f"gave up after {work.attempts} attempts: {last}"
    outcome = in_transaction(pool, lambda tx: tx.jobs.fail_item(
        message.job_id, message.seq, "gave_up", text, SYSTEM_ACTOR, work.http_status, counts_as_attempt=False))
    if outcome.changed:
        POISONED.add(1)
    return WorkResult.of("failed", outcome)


class _Delivery:
    """One delivery of one message: read the item, decide, fetch, record."""

    def __init__(self, pool: ConnectionPool, sender: ItemSender, message: ItemMessage, config: WorkerConfig,
                 scraper: Scraper, bodies: BodyStore | None) -> None:
        self.pool, self.sender, self.message, self.config, self.scraper = pool, sender, message, config, scraper
        self.bodies = bodies
        self.job_id, self.seq = message.job_id, message.seq

    def run(self) -> WorkResult:
        work = read(self.pool, lambda tx: tx.jobs.item_for_work(self.job_id, self.seq))
        if work is None:
            log.error("job %s item %s does not exist; dropping the message", self.job_id, self.seq,
                      extra=self.message.log_context())
            return WorkResult("missing")
        if work.status.is_final:
            return WorkResult("duplicate")
        if work.attempts > self.message.attempt:
            return self._behind(work)
        reason = _skip_reason(work)
        if reason is not None:
            return WorkResult.of("skipped", in_transaction(
                self.pool, lambda tx: tx.jobs.skip_item(self.job_id, self.seq, reason.code, reason.message)))
        if not self.config.policy.has_attempts_after(work.attempts):
            return self._fail(ItemError("gave_up", f"no attempts left after {work.attempts}"), counts=False)
        return self._attempt(work)

    def _behind(self, work: WorkItem) -> WorkResult:
        """This message is older than the item's attempt count: a duplicate if the newer message
        is known to be sent; otherwise the delivery that counted the attempt died before sending
        it, so send it now."""
        if work.follow_up_sent:
            return WorkResult("duplicate")
        now = datetime.now(UTC)
        delay = max(int(((work.next_attempt_at or now) - now).total_seconds()), 0)
        self._send_next(work.attempts, delay)
        return WorkResult("retry_resent")

    def _attempt(self, work: WorkItem) -> WorkResult:
        if work.content.max_age_s is not None:
            max_age_s = work.content.max_age_s
            cached = read(self.pool, lambda tx: tx.jobs.fresh_version(
                work.owner, normalised_url(work.url), max_age_s, work.content.bodies))
            if cached is not None:
                return WorkResult.of("cached", in_one_statement(self.pool, lambda tx: tx.jobs.complete_item(
                    self.job_id, self.seq, cached.result, cached.http_status, cached.final_url, 0, cached.kept)))
        try:
            scraped = _fetch(self.scraper, work.url, self.config.limits, work.content)
        except FetchError as error:
            return self._failed_attempt(work, error)
        except Exception as exc:  # a page case nobody foresaw: the same page would raise it again on every retry
            log.exception("job %s item %s: the scraper raised %s", self.job_id, self.seq, type(exc).__name__,
                          extra=self.message.log_context())
            return self._fail(ItemError("internal_error", f"unexpected {type(exc).__name__} while scraping"),
                              counts=True)
        return self._record(scraped, work)

    def _record(self, scraped: ScrapedPage, work: WorkItem) -> WorkResult:
        result = scraped.result
        kept = self._keep(scraped, work)
        try:
            outcome = in_one_statement(self.pool, lambda tx: tx.jobs.complete_item(
                self.job_id, self.seq, result.model_dump(mode="json"), result.status, result.final_url,
                result.elapsed_ms, kept))
        except ResultNotStorableError as refused:
            log.error("job %s item %s: %s", self.job_id, self.seq, refused, extra=self.message.log_context())
            return self._fail(ItemError("result_not_storable", str(refused), result.status, result.final_url,
                                        result.elapsed_ms), counts=True)
        return WorkResult.of("succeeded", outcome)

    def _keep(self, scraped: ScrapedPage, work: WorkItem) -> KeptContent:
        """Store the page's bodies (idempotent: content-addressed), then record its version. A delivery that
        dies in between leaves only blobs no row names yet; its redelivery stores the same ones."""
        if scraped.bodies is None or self.bodies is None:
            return NOTHING_KEPT
        page = scraped.bodies
        encoded = {kind: body.encode() for kind in work.content.bodies if (body := page.of(kind)) is not None}
        digests = [hashlib.sha256(body).hexdigest() for body in encoded.values()]
        # Before storing: a body of a deleted job's data may be due for deletion (shared.services.retention).
        in_one_statement(self.pool, lambda tx: tx.jobs.forget_garbage(digests))
        stored = {kind: self.bodies.put(body, MEDIA_TYPES[kind]) for kind, body in encoded.items()}
        url = normalised_url(work.url)
        config = search_config(scraped.result.lang)
        return in_transaction(self.pool, lambda tx: tx.jobs.record_page_version(
            work.owner, url, urlsplit(url).hostname or "", page.main_text_digest, stored, self.job_id, self.seq,
            page.search_text, config))

    def _failed_attempt(self, work: WorkItem, error: FetchError) -> WorkResult:
        item_error = ItemError(error.code, error.message, error.http_status, error.final_url, error.elapsed_ms)
        attempts = work.attempts + 1
        policy = self.config.policy
        if not error.retryable:
            log.info("job %s item %s failed permanently: %s: %s", self.job_id, self.seq, error.code, error.message,
                     extra=self.message.log_context())
            return self._fail(item_error, counts=True)
        if not policy.has_attempts_after(attempts):
            log.info("job %s item %s failed after %d attempts: %s: %s", self.job_id, self.seq, attempts, error.code,
                     error.message, extra=self.message.log_context())
            return self._fail(ItemError(error.code, f"{error.message} (after {attempts} attempts)", error.http_status,
                                        error.final_url, error.elapsed_ms), counts=True)
        delay = policy.delay_s(attempts, error.retry_after_s, random.random())  # nosec B311 - jitter, not security
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        if not in_transaction(self.pool, lambda tx: tx.jobs.record_retry(
                self.job_id, self.seq, work.attempts, item_error, retry_at)):
            return WorkResult("duplicate")
        self._send_next(attempts, delay)
        log.info("job %s item %s: attempt %d failed (%s: %s); retrying in %d s", self.job_id, self.seq, attempts,
                 error.code, error.message, delay, extra=self.message.log_context())
        return WorkResult("retry_scheduled")

    def _send_next(self, attempt: int, delay_s: int) -> None:
        self.sender.send_later(self.message.model_copy(update={"attempt": attempt, "outage_redeliveries": 0}), delay_s)
        in_transaction(self.pool, lambda tx: tx.jobs.mark_sent(self.job_id, [self.seq], attempt))

    def _fail(self, error: ItemError, *, counts: bool) -> WorkResult:
        outcome = in_transaction(self.pool, lambda tx: tx.jobs.fail_item(
            self.job_id, self.seq, error.code, error.message, SYSTEM_ACTOR, error.http_status, counts_as_attempt=counts,
            final_url=error.final_url, duration_ms=error.duration_ms))
        return WorkResult.of("failed", outcome)


def _put_back_for_outage(sender: ItemSender, message: ItemMessage) -> WorkResult:
    """Send the same message again, later, without spending an attempt; past the limit, raise so
    the queue's dequeue count and poison queue take over."""
    redeliveries = message.outage_redeliveries
    if redeliveries >= OUTAGE_MAX_REDELIVERIES:
        raise DatabaseUnavailable(f"the database was unreachable for {redeliveries} redeliveries")
    delay = min(OUTAGE_FIRST_DELAY_S * 2 ** redeliveries, OUTAGE_MAX_DELAY_S)
    sender.send_later(message.model_copy(update={"outage_redeliveries": redeliveries + 1}), delay)
    log.warning("job %s item %s: the database is unreachable; trying again in %d s", message.job_id, message.seq,
                delay, extra=message.log_context())
    return WorkResult("delayed_by_outage")


def _fetch(scraper: Scraper, url: str, limits: FetchLimits, request: ContentRequest) -> ScrapedPage:
    """Fetch and parse in a client span that names the host only (paths and queries may hold secrets)."""
    started = time.monotonic()
    with span("fetch", kind=SpanKind.CLIENT, attributes={"url.host": url_host(url)}) as current:
        try:
            scraped = scraper(url, limits, request)
        except FetchError as error:
            current.set_attribute("trawl.error.code", error.code)
            if error.http_status is not None:
                current.set_attribute("http.response.status_code", error.http_status)
            raise
        finally:
            FETCH_DURATION.record((time.monotonic() - started) * 1000)
        current.set_attribute("http.response.status_code", scraped.result.status)
        return scraped


def _skip_reason(work: WorkItem) -> ItemError | None:
    """Why the item must not be scraped now, as a reason code and text; None if it may be."""
    if work.job_status is not JobStatus.RUNNING:
        return ItemError("job_not_running", f"job is {work.job_status}")
    if work.cancel_requested:
        return ItemError("job_cancel_requested", "job cancellation was requested")
    if datetime.now(UTC) >= work.deadline_at:
        return ItemError("job_deadline_passed", "job deadline passed")
    return None
