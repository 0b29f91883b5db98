"""The job orchestration's activities as plain functions over PostgreSQL and the item queue."""
from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from opentelemetry.trace import SpanKind

from shared.adapters.db import ConnectionPool, in_transaction, read
from shared.adapters.item_queue import ItemQueue
from shared.adapters.telemetry import JOBS_FINISHED, current_traceparent, span
from shared.domain.messages import ItemMessage
from shared.domain.models import SYSTEM_ACTOR, JobOutcome

log = logging.getLogger(f"trawl.{__name__}")


def start_job(pool: ConnectionPool, job_id: UUID) -> dict[str, Any]:
    """Mark the job running (idempotent) and report its status and size."""
    def step(tx: Any) -> dict[str, Any]:
        tx.jobs.mark_job_running(job_id)
        progress = tx.jobs.progress(job_id)
        return {"status": progress.status.value, "total": progress.total}
    return in_transaction(pool, step)


def enqueue_items(pool: ConnectionPool, queue: ItemQueue, job_id: UUID, start: int, end: int,
                  traceparent: str | None = None) -> int:
    """Send a message for each pending item with seq in [start, end) that was never sent one, then
    record them as sent. A restarted orchestration therefore re-sends nothing already in the queue
    or waiting for a retry; a crash between sending and recording re-sends that batch once, which
    workers absorb as duplicates.

    The span continues the submission's trace; each message carries this span as its parent."""
    attributes: dict[str, str | int | bool] = {"trawl.job.id": str(job_id), "trawl.batch.start": start, "trawl.batch.end": end}
    with span("enqueue items", traceparent=traceparent, kind=SpanKind.PRODUCER, attributes=attributes):
        seqs = read(pool, lambda tx: tx.jobs.unsent_item_seqs(job_id, start, end))
        parent = current_traceparent()
        sent = queue.send([ItemMessage(job_id=job_id, seq=seq, traceparent=parent) for seq in seqs])
        if seqs:
            in_transaction(pool, lambda tx: tx.jobs.mark_sent(job_id, seqs, 0))
        return sent


def job_progress(pool: ConnectionPool, job_id: UUID) -> dict[str, Any]:
    """The job's counters and flags, as the orchestrator reads them (models.Progress)."""
    return read(pool, lambda tx: tx.jobs.progress(job_id)).model_dump(mode="json")


def finalise_job(pool: ConnectionPool, job_id: UUID, outcome: JobOutcome) -> str:
    """End the job with `outcome` (idempotent) and return its final status."""
    result = in_transaction(pool, lambda tx: tx.jobs.finalise_job(job_id, outcome, SYSTEM_ACTOR))
    log.info("job %s finalised as %s (changed=%s)", job_id, result.job.status, result.changed,
             extra={"trawl.job.id": str(job_id)})
    if result.changed:
        JOBS_FINISHED.add(1, {"status": result.job.status.value})
    return result.job.status.value
