"""Trawl's domain: job and item status machines, owners, and the records the database returns.

Plain pydantic models with no I/O, shared by the API, the orchestration and the workers.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.domain.content import METADATA_ONLY, ContentFormat, ContentRequest, PageChange, StoredBody


class JobStatus(StrEnum):
    """Where a job is in `pending -> running -> final`; pending may also go straight to
    cancelled or failed."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        """True once the job can no longer change."""
        return self not in (JobStatus.PENDING, JobStatus.RUNNING)


class ItemStatus(StrEnum):
    """Where one URL of a job is: `pending -> succeeded | failed | skipped`."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        """True once the item can no longer change."""
        return self is not ItemStatus.PENDING


class JobOutcome(StrEnum):
    """What ends a job; `finalise_job` turns it into a final `JobStatus`."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


# The job statuses each outcome may leave: the status machine's final edges.
OUTCOME_SOURCES: dict[JobOutcome, frozenset[JobStatus]] = {
    JobOutcome.COMPLETED: frozenset({JobStatus.RUNNING}),
    JobOutcome.TIMED_OUT: frozenset({JobStatus.RUNNING}),
    JobOutcome.FAILED: frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
    JobOutcome.CANCELLED: frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
}


class JobEventType(StrEnum):
    """The audit log's vocabulary (enforced by a check constraint on `job_events.event`).

    submitted         job and items created (data: total, idempotency_key, parent_job_id)
    started           pending -> running
    item_failed       an item failed permanently (data: seq, code, http_status)
    item_retried      an attempt failed and the item will be tried again (reason: the error; data: seq,
                      attempt, code, http_status)
    item_skipped      one item skipped (data: seq)
    cancel_requested  a caller asked to cancel (actor, reason)
    cancelled         job finalised as cancelled (data: skipped)
    timed_out         job finalised at its deadline (data: skipped)
    finished          job completed (data: status and counters)
    failed            job-level failure (reason; data: skipped)
    data_deleted      the job's results and bodies were deleted (actor: the caller or `retention`; data: items,
                      versions, bodies)
    """

    SUBMITTED = "submitted"
    STARTED = "started"
    ITEM_FAILED = "item_failed"
    ITEM_RETRIED = "item_retried"
    ITEM_SKIPPED = "item_skipped"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FINISHED = "finished"
    FAILED = "failed"
    DATA_DELETED = "data_deleted"


class Owner(BaseModel):
    """The Entra ID principal a job belongs to: every caller-facing query is scoped to it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    object_id: str

    @property
    def actor(self) -> str:
        """How this owner appears as `actor` in the audit log."""
        return f"{self.tenant_id}/{self.object_id}"


# Actor of audit rows written by the service itself rather than a caller.
SYSTEM_ACTOR = "system"


class Job(BaseModel):
    """One submitted scraping job with its item counters."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    owner: Owner
    status: JobStatus
    options: dict[str, Any]
    total: int
    succeeded: int
    failed: int
    skipped: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime
    cancel_requested_at: datetime | None
    cancel_requested_by: str | None
    cancel_reason: str | None
    parent_job_id: UUID | None
    idempotency_key: str | None
    error: str | None

    @property
    def remaining(self) -> int:
        """Items not yet final."""
        return self.total - self.succeeded - self.failed - self.skipped


class JobItem(BaseModel):
    """One URL of a job and what scraping it produced."""

    model_config = ConfigDict(frozen=True)

    job_id: UUID
    seq: int
    url: str
    status: ItemStatus
    attempts: int
    last_error_code: str | None
    last_error_message: str | None
    http_status: int | None
    final_url: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    result: dict[str, Any] | None
    markdown_sha256: str | None = None
    markdown_bytes: int | None = None
    text_sha256: str | None = None
    text_bytes: int | None = None
    html_sha256: str | None = None
    html_bytes: int | None = None
    page_id: UUID | None = None
    page_version_id: int | None = None
    change: PageChange | None = None
    cached: bool = False

    def body(self, kind: ContentFormat) -> StoredBody | None:
        """Where the item's `kind` body is stored, if it kept one."""
        sha256, size = getattr(self, f"{kind}_sha256", None), getattr(self, f"{kind}_bytes", None)
        return None if sha256 is None or size is None else StoredBody(sha256, size)

    @property
    def final_error(self) -> tuple[str | None, str | None]:
        """The item's error code and message as its outcome: none once it succeeded (the last error
        kept from a failed earlier attempt is history, in the job's log as `item_retried`)."""
        if self.status is ItemStatus.SUCCEEDED:
            return None, None
        return self.last_error_code, self.last_error_message


class JobEvent(BaseModel):
    """One row of a job's append-only audit log."""

    model_config = ConfigDict(frozen=True)

    id: int
    job_id: UUID
    at: datetime
    actor: str
    event: JobEventType
    reason: str | None
    data: dict[str, Any] | None


class Progress(BaseModel):
    """A job's status and counters: what the orchestrator polls."""

    model_config = ConfigDict(frozen=True)

    job_id: UUID
    status: JobStatus
    total: int
    succeeded: int
    failed: int
    skipped: int
    cancel_requested: bool
    deadline_at: datetime

    @property
    def remaining(self) -> int:
        """Items not yet final."""
        return self.total - self.succeeded - self.failed - self.skipped


@dataclass(frozen=True)
class JobSubmission:
    """The result of `create_job`: `replayed` is True when an idempotency key returned an
    existing job instead of creating one."""

    job: Job
    replayed: bool


@dataclass(frozen=True)
class WorkItem:
    """What a worker needs to decide on and scrape one item: its job's state and the item's
    dispatch state, never its stored result."""

    job_status: JobStatus
    cancel_requested: bool
    deadline_at: datetime
    url: str
    status: ItemStatus
    attempts: int
    queued_attempt: int | None
    next_attempt_at: datetime | None
    last_error_code: str | None
    last_error_message: str | None
    http_status: int | None
    owner: Owner
    content: ContentRequest = METADATA_ONLY

    @property
    def follow_up_sent(self) -> bool:
        """True when the message for the item's current attempt count is known to be in the queue."""
        return self.queued_attempt is not None and self.queued_attempt >= self.attempts


@dataclass(frozen=True)
class ItemError:
    """Why one attempt at an item failed (or why it was skipped): a stable code, a readable message,
    and what the attempt learnt before it failed: the HTTP status, the URL it ended at, how long it took."""

    code: str
    message: str
    http_status: int | None = None
    final_url: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class ItemOutcome:
    """The result of an item transition: `changed` is False when it was already final (a
    repeated delivery); `remaining` counts the job's non-final items after this call."""

    changed: bool
    job_status: JobStatus
    remaining: int


class CancelResult(StrEnum):
    """How a cancel request landed."""

    NOT_FOUND = "not_found"
    ALREADY_FINAL = "already_final"
    REQUESTED = "requested"
    ALREADY_REQUESTED = "already_requested"


@dataclass(frozen=True)
class CancelOutcome:
    """The result of `request_cancel`, with the job as it now is (None when not found)."""

    result: CancelResult
    job: Job | None


@dataclass(frozen=True)
class FinaliseOutcome:
    """The result of `finalise_job`: `changed` is False when the job was already final or the
    outcome is not allowed yet; `job` always shows the current state."""

    changed: bool
    job: Job


@dataclass(frozen=True)
class JobPageKey:
    """Keyset position in a newest-first job listing: the last job of the previous page."""

    created_at: datetime
    id: UUID

    @classmethod
    def after(cls, job: Job) -> "JobPageKey":
        """The key that continues a listing after `job`."""
        return cls(created_at=job.created_at, id=job.id)


class JobNotFoundError(LookupError):
    """An internal caller (orchestrator, worker) named a job that does not exist."""

    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class ItemNotFoundError(LookupError):
    """A worker named an item that does not exist: a permanent error, never retried."""

    def __init__(self, job_id: UUID, seq: int) -> None:
        super().__init__(f"item {seq} of job {job_id} not found")
        self.job_id = job_id
        self.seq = seq


class ResultNotStorableError(ValueError):
    """The database refused an item's result as data (too large for JSONB, a NUL, a value out of range):
    storing it again would fail the same way, so the item fails instead. `reason` names the error, never
    the data."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the database refused the result ({reason})")
        self.reason = reason


class IdempotencyKeyConflictError(Exception):
    """The owner reused a live idempotency key with a different request. Not an HTTP error: the
    service answers it as the API's 422 (`IdempotencyKeyReused`), naming the original job."""

    def __init__(self, idempotency_key: str, job_id: UUID) -> None:
        super().__init__(f"idempotency key {idempotency_key!r} was used for a different request")
        self.idempotency_key = idempotency_key
        self.job_id = job_id
