"""Deleting data: one job's on request (`DELETE /api/jobs/{id}/data`), and every job's past the retention period.

Jobs and their audit logs stay (the log is append-only, and it records who deleted what); results, bodies and
the page versions nothing else uses go. A body's blob goes last, by the retention timer: noted when its last
row let go of it, deleted once the note is older than BLOB_GRACE and still no row names it. A worker about to
store a body first removes its note (`forget_garbage`, which waits for a sweep deleting it right now), and
records its row within seconds of storing it, far inside the grace: no blob is deleted under a new reference.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from shared.adapters.db import ConnectionPool, in_transaction, uow
from shared.domain.content import DeletedData
from shared.domain.errors import Conflict, NotFound
from shared.domain.models import Owner

log = logging.getLogger(f"trawl.{__name__}")

RETENTION_ACTOR = "retention"
# A body noted as unreferenced waits this long before its blob is deleted: longer than any worker takes between
# storing a body and recording the row that names it.
BLOB_GRACE = timedelta(hours=1)
JOBS_PER_SWEEP = 50
BLOBS_PER_SWEEP = 1000


class BlobSweeper(Protocol):
    def delete(self, sha256: str) -> None:
        """Delete the body's blob (gone already is fine)."""


@dataclass(frozen=True)
class Sweep:
    """What one retention run deleted."""

    jobs: int
    blobs: int


def delete_job_data(pool: ConnectionPool, job_id: UUID, owner: Owner | None, actor: str) -> DeletedData:
    """Delete a final job's results and bodies; 404 for a job the caller cannot see, 409 while it runs."""
    job = in_transaction(pool, lambda tx: tx.jobs.get_job(job_id, owner))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if not job.status.is_final:
        raise Conflict(f"job {job_id} is still {job.status}: cancel it first, then delete its data",
                       status_of_job=job.status)
    return in_transaction(pool, lambda tx: tx.jobs.delete_job_data(job_id, actor))


def sweep(pool: ConnectionPool, blobs: BlobSweeper, retention_days: int, now: datetime) -> Sweep:
    """One bounded run: the data of up to JOBS_PER_SWEEP jobs that finished more than `retention_days` ago (0:
    keep forever), then up to BLOBS_PER_SWEEP blobs no row has named for BLOB_GRACE."""
    jobs = 0
    if retention_days > 0:
        expired = in_transaction(pool, lambda tx: tx.jobs.expired_jobs(now - timedelta(days=retention_days),
                                                                        JOBS_PER_SWEEP))
        reason = f"finished more than {retention_days} days ago"
        for job_id in expired:
            _delete_expired(pool, job_id, reason)
        jobs = len(expired)
    with uow(pool) as tx:
        due = tx.jobs.lock_garbage(now - BLOB_GRACE, BLOBS_PER_SWEEP)
        for sha256 in due:
            blobs.delete(sha256)
        tx.jobs.drop_garbage(due)
        tx.commit()
    if jobs or due:
        log.info("retention: deleted the data of %d jobs and %d blobs", jobs, len(due))
    return Sweep(jobs, len(due))


def _delete_expired(pool: ConnectionPool, job_id: UUID, reason: str) -> DeletedData:
    return in_transaction(pool, lambda tx: tx.jobs.delete_job_data(job_id, RETENTION_ACTOR, reason))
