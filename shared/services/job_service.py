"""What the job API does, in plain Python: submit, list, read, cancel and retry jobs, read their
results and audit logs, all scoped to their owner."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from shared.adapters.db import ConnectionPool, UnitOfWork, in_transaction, uow
from shared.adapters.redaction import url_origin
from shared.contract.schemas import (
    MERGED_DUPLICATES,
    JobListQuery,
    LogsQuery,
    RefusedUrl,
    ResultsQuery,
    RetryJobRequest,
    SubmitJobRequest,
    UrlRules,
    normalised_url,
    url_refusal,
)
from shared.domain.cursors import (
    decode_job_cursor,
    decode_seq_cursor,
    encode_job_cursor,
    encode_seq_cursor,
    filter_digest,
)
from shared.domain.errors import Conflict, NotFound, ValidationFailed
from shared.domain.job_rules import OrchestrationInput
from shared.domain.models import (
    CancelResult,
    IdempotencyKeyConflictError,
    ItemStatus,
    Job,
    JobEvent,
    JobItem,
    JobPageKey,
    JobSubmission,
    Owner,
)
from shared.settings import Settings


class IdempotencyKeyReused(ValidationFailed):
    """An Idempotency-Key the owner used in the last 24 h came back with a different request."""

    slug, title = "idempotency-key-reused", "Idempotency key reused with a different request"


class NothingToRetry(ValidationFailed):
    """A retry was asked of a job none of whose items failed (or were skipped, if asked)."""

    slug, title = "nothing-to-retry", "Nothing to retry"


@dataclass(frozen=True)
class JobListing:
    """One page of jobs, the retries of each, and the cursor of the next page (None: last)."""

    jobs: list[Job]
    children: dict[UUID, list[UUID]]
    next_cursor: str | None


@dataclass(frozen=True)
class ItemListing:
    """One page of a job's items and the cursor of the next page (None: last)."""

    items: list[JobItem]
    next_cursor: str | None


@dataclass(frozen=True)
class EventListing:
    """One page of a job's audit log, the id to continue after, and whether more exist now."""

    events: list[JobEvent]
    next_after: int
    has_more: bool


@dataclass(frozen=True)
class SubmissionPlan:
    """What a submission will create: its URLs, each page once, and what was left out of the request's."""

    request: SubmitJobRequest
    urls: list[str]
    refused: list[RefusedUrl]
    merged_duplicates: int


def plan_submission(request: SubmitJobRequest, settings: Settings) -> SubmissionPlan:
    """Check the service's limits, set aside the URLs that cannot be scraped (only present when the request
    asked to skip them) and merge duplicates; 422 when nothing is left to scrape. No I/O, so the caller can
    apply the submission quota to the URLs that will really be fetched."""
    _check_limits(request, settings)
    rules = UrlRules.of(settings)
    accepted: dict[str, str] = {}
    refused: list[RefusedUrl] = []
    for index, url in enumerate(request.urls):
        refusal = url_refusal(url, rules)
        if refusal is not None:
            refused.append(RefusedUrl(index=index, url=url_origin(url), reason=refusal.reason, type=refusal.code))
        else:
            accepted.setdefault(normalised_url(url), url)
    if not accepted:
        errors = [{"loc": ["urls", r.index], "msg": r.reason, "type": r.type} for r in refused]
        raise ValidationFailed("none of the URLs can be scraped", errors=errors)
    merged = len(request.urls) - len(refused) - len(accepted)
    return SubmissionPlan(request, list(accepted.values()), refused, merged)


def submit_job(pool: ConnectionPool, owner: Owner, plan: SubmissionPlan, settings: Settings,
               idempotency_key: str | None = None) -> JobSubmission:
    """Create the job and its items (pending) in one transaction; the caller starts its orchestration."""
    deadline_seconds = plan.request.options.deadline_seconds or settings.default_deadline_seconds
    deadline_at = datetime.now(UTC) + timedelta(seconds=deadline_seconds)
    requested = plan.request.options
    options: dict[str, Any] = {"deadline_seconds": deadline_seconds,
                               "formats": [str(kind) for kind in requested.formats],
                               "main_content_only": requested.main_content_only}
    if requested.max_age_seconds is not None:
        options["max_age_seconds"] = requested.max_age_seconds
    if plan.merged_duplicates:
        options[MERGED_DUPLICATES] = plan.merged_duplicates
    with _key_conflicts_as_problems(), uow(pool) as tx:
        submission = tx.jobs.create_job(owner, plan.urls, options, deadline_at, idempotency_key=idempotency_key,
                                        request_hash=request_hash(plan.request) if idempotency_key else None)
        tx.commit()
    return submission


@dataclass(frozen=True)
class RetryPlan:
    """What a retry would resubmit: the final parent job and its failed (and maybe skipped) URLs."""

    parent: Job
    urls: list[str]
    request: RetryJobRequest


def plan_retry(pool: ConnectionPool, job_id: UUID, owner: Owner | None, request: RetryJobRequest) -> RetryPlan:
    """Check the parent can be retried and collect its URLs; 409 while it runs, 422 when nothing is left.

    Read-only, so the caller can apply the submission quota to the URL count before creating anything."""
    statuses = [ItemStatus.FAILED, ItemStatus.SKIPPED] if request.include_skipped else [ItemStatus.FAILED]
    with uow(pool) as tx:
        parent = _require_final_job(tx, job_id, owner)
        urls = tx.jobs.item_urls(job_id, statuses)
    if not urls:
        raise NothingToRetry(f"job {job_id} has no {' or '.join(statuses)} items to retry", job_id=str(job_id))
    return RetryPlan(parent, urls, request)


# The job options a worker reads (shared.domain.content.ContentRequest).
CONTENT_OPTIONS = ("formats", "main_content_only", "max_age_seconds")


def create_retry(pool: ConnectionPool, plan: RetryPlan, settings: Settings,
                 idempotency_key: str | None = None) -> JobSubmission:
    """The new job, linked to its parent and owned by the parent's owner; the caller starts its orchestration.
    A final parent's items never change, so the plan cannot go stale."""
    parent, urls = plan.parent, plan.urls
    fingerprint = _fingerprint({"retry_of": str(parent.id), **plan.request.model_dump(mode="json")})
    with _key_conflicts_as_problems(), uow(pool) as tx:
        deadline_seconds = min(int(parent.options.get("deadline_seconds", settings.default_deadline_seconds)),
                               settings.max_deadline_seconds)
        deadline_at = datetime.now(UTC) + timedelta(seconds=deadline_seconds)
        # A retry keeps what its parent asked of each page.
        options = {"deadline_seconds": deadline_seconds,
                   **{name: parent.options[name] for name in CONTENT_OPTIONS if name in parent.options}}
        submission = tx.jobs.create_job(parent.owner, urls, options, deadline_at,
                                        idempotency_key=idempotency_key,
                                        request_hash=fingerprint if idempotency_key else None,
                                        parent_job_id=parent.id)
        tx.commit()
    return submission


def orchestration_input(job: Job, settings: Settings, traceparent: str | None = None) -> dict[str, object]:
    """The orchestration's input for this job: ids and small numbers only, plus the trace to continue."""
    return OrchestrationInput(job_id=job.id, deadline_at=job.deadline_at, tick_seconds=settings.progress_tick_seconds,
                              batch_size=settings.enqueue_batch_size, traceparent=traceparent).model_dump(mode="json")


def get_job(pool: ConnectionPool, job_id: UUID, owner: Owner | None) -> Job:
    """The job if it exists and belongs to `owner` (None: any owner); another owner's job is NotFound."""
    job = in_transaction(pool, lambda tx: tx.jobs.get_job(job_id, owner))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def child_job_ids(pool: ConnectionPool, job_id: UUID, owner: Owner | None) -> list[UUID]:
    """The jobs created by retrying `job_id`, oldest first."""
    return in_transaction(pool, lambda tx: tx.queries.child_job_ids([job_id], owner)).get(job_id, [])


def list_jobs(pool: ConnectionPool, owner: Owner | None, query: JobListQuery) -> JobListing:
    """One page of the owner's jobs, newest first: keyset on (created_at, id), so jobs created while
    a caller pages never shift the pages it has yet to read."""
    digest = filter_digest("jobs", {"status": query.status, "created_after": _utc(query.created_after),
                                    "created_before": _utc(query.created_before)})
    after = None if query.cursor is None else decode_job_cursor(query.cursor, digest)
    with uow(pool) as tx:
        jobs = tx.queries.list_jobs(owner, query.status, query.created_after, query.created_before, after,
                                    query.limit + 1)
        page = jobs[:query.limit]
        children = tx.queries.child_job_ids([job.id for job in page], owner) if page else {}
    more = len(jobs) > query.limit
    return JobListing(page, children, encode_job_cursor(JobPageKey.after(page[-1]), digest) if more else None)


def list_results(pool: ConnectionPool, job_id: UUID, owner: Owner | None, query: ResultsQuery) -> ItemListing:
    """One page of a job's items in submission order (seq), at most `query.limit` items and about 4 MiB
    (`ITEM_PAGE_MAX_BYTES`); NotFound for another owner's job."""
    digest = filter_digest("items", {"job_id": str(job_id), "status": query.status})
    after_seq = -1 if query.cursor is None else decode_seq_cursor(query.cursor, digest)
    with uow(pool) as tx:
        _require_job(tx, job_id, owner)
        page = tx.queries.list_items(job_id, owner, query.status, after_seq, query.limit)
    return ItemListing(page.items, encode_seq_cursor(page.items[-1].seq, digest) if page.has_more else None)


def list_events(pool: ConnectionPool, job_id: UUID, owner: Owner | None, query: LogsQuery) -> EventListing:
    """A page of a job's audit log, oldest first, after event `query.after`."""
    with uow(pool) as tx:
        _require_job(tx, job_id, owner)
        events = tx.queries.list_events(job_id, owner, query.after, query.limit + 1)
    page = events[:query.limit]
    return EventListing(page, page[-1].id if page else query.after, len(events) > query.limit)


def require_job(pool: ConnectionPool, job_id: UUID, owner: Owner | None) -> None:
    """NotFound unless the job exists and `owner` may see it."""
    with uow(pool) as tx:
        _require_job(tx, job_id, owner)


def cancel_job(pool: ConnectionPool, job_id: UUID, owner: Owner | None, actor: str, reason: str | None) -> Job:
    """Record the cancel request (once); a repeat while the job runs is accepted, a final job is a conflict."""
    with uow(pool) as tx:
        outcome = tx.jobs.request_cancel(job_id, owner, actor, reason)
        tx.commit()
    if outcome.result is CancelResult.NOT_FOUND or outcome.job is None:
        raise NotFound(f"job {job_id} not found")
    if outcome.job.status.is_final and outcome.result is not CancelResult.REQUESTED:
        raise Conflict(f"job {job_id} is already {outcome.job.status}", status_of_job=outcome.job.status)
    return outcome.job


def request_hash(request: SubmitJobRequest) -> str:
    """A stable fingerprint of a submission, to tell a replay from a different request under one key."""
    return _fingerprint(request.model_dump(mode="json"))


def _fingerprint(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@contextmanager
def _key_conflicts_as_problems() -> Iterator[None]:
    """Turns the repository's IdempotencyKeyConflictError into the API's 422 naming the original job."""
    try:
        yield
    except IdempotencyKeyConflictError as exc:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {exc.idempotency_key!r} was used for a different request in the last 24 hours; "
            "use a new key for a new request", job_id=str(exc.job_id), job=f"/api/jobs/{exc.job_id}") from exc


def _require_job(tx: UnitOfWork, job_id: UUID, owner: Owner | None) -> Job:
    job = tx.jobs.get_job(job_id, owner)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def _require_final_job(tx: UnitOfWork, job_id: UUID, owner: Owner | None) -> Job:
    job = _require_job(tx, job_id, owner)
    if not job.status.is_final:
        raise Conflict(f"job {job_id} is still {job.status}: retry it once it is final", status_of_job=job.status)
    return job


def _utc(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _check_limits(request: SubmitJobRequest, settings: Settings) -> None:
    """The job's size and deadline; each URL's length is checked with the URL (`url_refusal`)."""
    errors = []
    if len(request.urls) > settings.max_urls_per_job:
        errors.append({"loc": ["urls"], "msg": f"at most {settings.max_urls_per_job} URLs per job",
                       "type": "too_long"})
    deadline = request.options.deadline_seconds
    if deadline is not None and deadline > settings.max_deadline_seconds:
        errors.append({"loc": ["options", "deadline_seconds"],
                       "msg": f"at most {settings.max_deadline_seconds} seconds", "type": "less_than_equal"})
    if errors:
        raise ValidationFailed("the job exceeds this service's limits", errors=errors)
