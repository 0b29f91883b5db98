"""The API's request and response bodies: validated at the edge, and the source of the OpenAPI document."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.models import ItemStatus, Job, JobEvent, JobEventType, JobItem, JobStatus
from shared.scrape import ScrapeResult

MAX_CURSOR_CHARS = 512
MAX_EVENT_ID = 2**63 - 1


class JobOptions(BaseModel):
    """Per-job options."""

    model_config = ConfigDict(extra="forbid")

    deadline_seconds: int | None = Field(
        None, ge=10, description="Seconds from submission until the job ends `timed_out`; default and maximum from settings."
    )


class SubmitJobRequest(BaseModel):
    """`POST /api/jobs`: the URLs to scrape and the job's options."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(min_length=1, description="Absolute http(s) URLs, scraped once each.")
    options: JobOptions = Field(default_factory=JobOptions)

    @field_validator("urls")
    @classmethod
    def _absolute_http_urls(cls, urls: list[str]) -> list[str]:
        for index, url in enumerate(urls):
            parts = urlsplit(url.strip())
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"urls[{index}] is not an absolute http(s) URL")
        return [url.strip() for url in urls]


class CancelJobRequest(BaseModel):
    """`DELETE /api/jobs/{id}`: an optional reason, kept in the audit log."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class ProgressView(BaseModel):
    total: int
    succeeded: int
    failed: int
    skipped: int
    pending: int


class CancellationView(BaseModel):
    requested_at: datetime
    requested_by: str | None
    reason: str | None


class RetryJobRequest(BaseModel):
    """`POST /api/jobs/{id}/retry`: which of a finished job's items to scrape again in a new job."""

    model_config = ConfigDict(extra="forbid")

    include_skipped: bool = Field(False, description="Retry skipped items too, not only failed ones.")


class JobLinks(BaseModel):
    """Relative links to a job and what can be done with it."""

    self: str
    results: str
    logs: str
    cancel: str = Field(description="`DELETE` this to cancel the job.")
    retry: str = Field(description="`POST` here once the job is final to retry its failed items in a new job.")
    parent: str | None = Field(None, description="The job this one retries, if any.")


class JobView(BaseModel):
    """A job as callers see it."""

    id: UUID
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    options: dict[str, Any]
    progress: ProgressView
    cancellation: CancellationView | None
    parent_job_id: UUID | None = Field(None, description="The job this one retries (`POST .../retry`), if any.")
    children: list[UUID] = Field(default_factory=list,
                                 description="Jobs created by retrying this one, oldest first.")
    links: JobLinks
    statusQueryGetUri: str = Field(description="This job's own status URL (the Durable HTTP async pattern).")

    @classmethod
    def of(cls, job: Job, base_url: str, children: Sequence[UUID] = ()) -> JobView:
        """The view of `job` with absolute status URL under `base_url` and its retries' ids."""
        path = f"/api/jobs/{job.id}"
        cancellation = None
        if job.cancel_requested_at is not None:
            cancellation = CancellationView(requested_at=job.cancel_requested_at, requested_by=job.cancel_requested_by,
                                            reason=job.cancel_reason)
        parent = None if job.parent_job_id is None else f"/api/jobs/{job.parent_job_id}"
        return cls(
            id=job.id, status=job.status, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, deadline_at=job.deadline_at, options=job.options,
            progress=ProgressView(total=job.total, succeeded=job.succeeded, failed=job.failed, skipped=job.skipped,
                                  pending=job.remaining),
            cancellation=cancellation, parent_job_id=job.parent_job_id, children=list(children),
            links=JobLinks(self=path, results=f"{path}/results", logs=f"{path}/logs", cancel=path,
                           retry=f"{path}/retry", parent=parent),
            statusQueryGetUri=f"{base_url}{path}",
        )


class JobPage(BaseModel):
    """`GET /api/jobs`: one page of the caller's jobs, newest first."""

    items: list[JobView]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters) for the next page; "
                                                "null on the last page.")


class ItemError(BaseModel):
    """Why an item failed or was skipped (for a pending item: its last retryable error)."""

    code: str | None
    message: str | None


class ItemView(BaseModel):
    """One URL of a job and what scraping it produced."""

    seq: int = Field(description="Position of the URL in the submitted list, from 0.")
    url: str
    status: ItemStatus
    attempts: int
    http_status: int | None
    final_url: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    error: ItemError | None
    result: ScrapeResult | None = Field(description="The extracted page, once the item succeeded.")

    @classmethod
    def of(cls, item: JobItem) -> ItemView:
        """The view of `item`; its stored page is validated against the scraper's own model."""
        error = None
        if item.last_error_code is not None or item.last_error_message is not None:
            error = ItemError(code=item.last_error_code, message=item.last_error_message)
        return cls(seq=item.seq, url=item.url, status=item.status, attempts=item.attempts,
                   http_status=item.http_status, final_url=item.final_url, started_at=item.started_at,
                   finished_at=item.finished_at, duration_ms=item.duration_ms, error=error,
                   result=None if item.result is None else ScrapeResult.model_validate(item.result))


class ItemPage(BaseModel):
    """`GET /api/jobs/{id}/results?format=json`: one page of a job's items in submission order."""

    items: list[ItemView]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters) for the next page; "
                                                "null on the last page.")


class EventView(BaseModel):
    """One entry of a job's append-only audit log."""

    id: int = Field(description="Increasing; pass the last one seen as `after` to continue.")
    at: datetime
    actor: str = Field(description="`tenant/object` id of the caller, or `system`.")
    event: JobEventType
    reason: str | None
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: JobEvent) -> EventView:
        """The view of one audit row."""
        return cls(id=event.id, at=event.at, actor=event.actor, event=event.event, reason=event.reason,
                   data=event.data)


class EventPage(BaseModel):
    """`GET /api/jobs/{id}/logs`: audit log entries, oldest first."""

    items: list[EventView]
    next_after: int = Field(description="The last event id returned (or the `after` sent when none was): pass it "
                                        "as `after` to continue, or to follow a running job.")
    has_more: bool = Field(description="True when more events exist right now after `next_after`.")


class ProblemError(BaseModel):
    """One validation error of a request."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem; extension members (such as `errors` or `job_id`) depend on the type."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the problem type, e.g. `https://trawl.dev/problems/not-found`.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="The request path.")
    errors: list[ProblemError] | None = Field(None, description="Validation errors (400 and 422).")


class HealthCheck(BaseModel):
    """One dependency's check."""

    status: Literal["ok", "failing"]
    duration_ms: int | None = None
    error: str | None = Field(None, description="The exception type of a failing check; never details.")


class HealthView(BaseModel):
    """`GET /api/health`: liveness plus each dependency's check."""

    status: Literal["ok", "degraded"]
    checks: dict[str, HealthCheck]


# --- query parameters: validated by api/query.py and described by the OpenAPI document ------------------------

class JobListQuery(BaseModel):
    """Query of `GET /api/jobs`."""

    model_config = ConfigDict(extra="ignore")

    status: list[JobStatus] | None = Field(
        None, description="Only jobs in these statuses; repeat the parameter or separate values with commas.")
    created_after: AwareDatetime | None = Field(None, description="Only jobs created at or after this instant.")
    created_before: AwareDatetime | None = Field(None, description="Only jobs created before this instant.")
    cursor: str | None = Field(None, max_length=MAX_CURSOR_CHARS, description="`next_cursor` of the previous page.")
    limit: int = Field(20, ge=1, le=100, description="Jobs per page.")

    @field_validator("created_after", "created_before")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        """UTC, as PostgreSQL takes it: its offsets stop at ±15:59, Python's at ±23:59."""
        if moment is None:
            return None
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("the instant is out of range") from None


class ResultsQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/results`."""

    model_config = ConfigDict(extra="ignore")

    status: list[ItemStatus] | None = Field(
        None, description="Only items in these statuses; repeat the parameter or separate values with commas.")
    format: Literal["json", "ndjson", "csv"] = Field(
        "json", description="`json`: one page of items. `ndjson` (one ItemView per line) or `csv` (flattened, "
                            "spreadsheet-safe): every matching item, ignoring `cursor` and `limit`.")
    cursor: str | None = Field(None, max_length=MAX_CURSOR_CHARS,
                               description="`next_cursor` of the previous page (json only).")
    limit: int = Field(100, ge=1, le=1000, description="Items per page (json only).")


class LogsQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/logs`."""

    model_config = ConfigDict(extra="ignore")

    after: int = Field(0, ge=0, le=MAX_EVENT_ID, description="Return events after this event id (`next_after`).")
    limit: int = Field(100, ge=1, le=1000, description="Events per page.")


class OrchestrationQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/orchestration` (operators)."""

    model_config = ConfigDict(extra="ignore")

    history: bool = Field(False, description="Include the orchestration's history events.")
