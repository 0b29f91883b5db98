"""The job orchestration's decisions as pure functions: no clock, no I/O, so replay stays deterministic."""
from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.domain.models import JobOutcome, Progress

# Each loop of the orchestration adds about ten history events; restarting the history every so
# many loops keeps a long job's replay cost flat (continue_as_new).
LOOPS_PER_GENERATION = 12

# Activities are retried 1 s, 2 s, 4 s ... capped at 30 s, 14 attempts: about 5 minutes, longer than an
# Azure Database for PostgreSQL HA failover or maintenance restart (~2 minutes).
ACTIVITY_RETRY_FIRST_INTERVAL_MS = 1_000
ACTIVITY_RETRY_BACKOFF = 2.0
ACTIVITY_RETRY_MAX_INTERVAL_MS = 30_000
ACTIVITY_RETRY_ATTEMPTS = 14


class OrchestrationInput(BaseModel):
    """What one orchestration generation starts from; ids and small numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: UUID
    deadline_at: datetime
    tick_seconds: int
    batch_size: int
    enqueued: bool = False
    traceparent: str | None = None


def custom_status(progress: Progress) -> dict[str, int]:
    """What the orchestration publishes as its custom status: the counters, nothing large."""
    return {"total": progress.total, "succeeded": progress.succeeded, "failed": progress.failed,
            "skipped": progress.skipped}


def enqueue_batches(total: int, batch_size: int) -> list[tuple[int, int]]:
    """Half-open seq ranges [start, end) covering all items, one enqueue activity each."""
    return [(start, min(start + batch_size, total)) for start in range(0, total, batch_size)]


def next_wake(now: datetime, deadline_at: datetime, tick_seconds: int) -> datetime:
    """When the orchestration next checks progress: the next tick, or the deadline if sooner."""
    return min(deadline_at, now + timedelta(seconds=tick_seconds))


def decide(progress: Progress, now: datetime, deadline_at: datetime) -> JobOutcome | None:
    """The outcome that ends the job now, or None to keep waiting.

    A cancel request wins over completion, so that a caller who cancelled sees `cancelled` even if
    the last item finished in the same moment; completion wins over the deadline for the same reason.
    """
    if progress.cancel_requested:
        return JobOutcome.CANCELLED
    if progress.remaining <= 0:
        return JobOutcome.COMPLETED
    if now >= deadline_at:
        return JobOutcome.TIMED_OUT
    return None
