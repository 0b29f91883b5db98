"""What the job API does, in plain Python: submit, read and cancel jobs, scoped to their owner."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from uuid import UUID

from shared.db import ConnectionPool, in_transaction, uow
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.job_rules import OrchestrationInput
from shared.models import CancelResult, Job, JobSubmission, Owner
from shared.schemas import SubmitJobRequest
from shared.settings import Settings


def submit_job(pool: ConnectionPool, owner: Owner, request: SubmitJobRequest, settings: Settings,
               idempotency_key: str | None = None) -> JobSubmission:
    """Create the job and its items (pending) in one transaction; the caller starts its orchestration."""
    _check_limits(request, settings)
    deadline_seconds = request.options.deadline_seconds or settings.default_deadline_seconds
    deadline_at = datetime.now(timezone.utc) + timedelta(seconds=deadline_seconds)
    options = {"deadline_seconds": deadline_seconds}
    with uow(pool) as tx:
        submission = tx.jobs.create_job(owner, request.urls, options, deadline_at, idempotency_key=idempotency_key,
                                        request_hash=request_hash(request) if idempotency_key else None)
        tx.commit()
    return submission


def orchestration_input(job: Job, settings: Settings) -> dict[str, object]:
    """The orchestration's input for this job: ids and small numbers only."""
    return OrchestrationInput(job_id=job.id, deadline_at=job.deadline_at, tick_seconds=settings.progress_tick_seconds,
                              batch_size=settings.enqueue_batch_size).model_dump(mode="json")


def get_job(pool: ConnectionPool, job_id: UUID, owner: Owner | None) -> Job:
    """The job if it exists and belongs to `owner` (None: any owner); another owner's job is NotFound."""
    job = in_transaction(pool, lambda tx: tx.jobs.get_job(job_id, owner))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


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
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_limits(request: SubmitJobRequest, settings: Settings) -> None:
    errors = []
    if len(request.urls) > settings.max_urls_per_job:
        errors.append({"loc": ["urls"], "msg": f"at most {settings.max_urls_per_job} URLs per job",
                       "type": "too_long"})
    errors += [{"loc": ["urls", i], "msg": f"longer than {settings.max_url_length} characters", "type": "too_long"}
               for i, url in enumerate(request.urls) if len(url) > settings.max_url_length]
    deadline = request.options.deadline_seconds
    if deadline is not None and deadline > settings.max_deadline_seconds:
        errors.append({"loc": ["options", "deadline_seconds"],
                       "msg": f"at most {settings.max_deadline_seconds} seconds", "type": "less_than_equal"})
    if errors:
        raise ValidationFailed("the job exceeds this service's limits", errors=errors)
