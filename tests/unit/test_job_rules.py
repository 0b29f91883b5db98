"""The orchestration's pure decisions and the reconciler's repairs."""
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from shared.domain.job_rules import decide, enqueue_batches, next_wake
from shared.domain.models import Job, JobOutcome, JobStatus, Owner, Progress
from shared.domain.reconcile import Repair, repair_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _progress(**fields: object) -> Progress:
    base = {"job_id": uuid4(), "status": "running", "total": 4, "succeeded": 0, "failed": 0, "skipped": 0,
            "cancel_requested": False, "deadline_at": NOW}
    return Progress.model_validate({**base, **fields})


@pytest.mark.parametrize(("fields", "now", "expected"), [
    ({}, NOW, None),
    ({"succeeded": 3, "failed": 1}, NOW, JobOutcome.COMPLETED),
    ({"cancel_requested": True, "succeeded": 4}, NOW, JobOutcome.CANCELLED),
    ({"succeeded": 1}, NOW + timedelta(hours=1), JobOutcome.TIMED_OUT),
    ({"succeeded": 4}, NOW + timedelta(hours=1), JobOutcome.COMPLETED),
])
def test_decide(fields: dict[str, object], now: datetime, expected: JobOutcome | None) -> None:
    assert decide(_progress(**fields), now, NOW + timedelta(minutes=5)) == expected


def test_enqueue_batches_cover_every_item_once() -> None:
    assert enqueue_batches(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert enqueue_batches(0, 2) == []
    covered = [seq for start, end in enqueue_batches(1001, 250) for seq in range(start, end)]
    assert covered == list(range(1001))


def test_next_wake_never_passes_the_deadline() -> None:
    assert next_wake(NOW, NOW + timedelta(seconds=60), 15) == NOW + timedelta(seconds=15)
    assert next_wake(NOW, NOW + timedelta(seconds=3), 15) == NOW + timedelta(seconds=3)


def _job(status: JobStatus) -> Job:
    return Job(id=uuid4(), owner=Owner(tenant_id="t", object_id="o"), status=status, options={}, total=1,
               succeeded=0, failed=0, skipped=0, created_at=NOW, started_at=None, finished_at=None,
               deadline_at=NOW, cancel_requested_at=None, cancel_requested_by=None, cancel_reason=None,
               parent_job_id=None, idempotency_key=None, error=None)


@pytest.mark.parametrize(("status", "runtime", "expected"), [
    (JobStatus.RUNNING, "Running", Repair.NONE),
    (JobStatus.RUNNING, "ContinuedAsNew", Repair.NONE),
    (JobStatus.RUNNING, None, Repair.RESTART),
    (JobStatus.PENDING, None, Repair.RESTART),
    (JobStatus.RUNNING, "Completed", Repair.RESTART),
    (JobStatus.RUNNING, "Failed", Repair.FAIL_JOB),
    (JobStatus.RUNNING, "Terminated", Repair.FAIL_JOB),
    (JobStatus.SUCCEEDED, None, Repair.NONE),
])
def test_repair_for(status: JobStatus, runtime: str | None, expected: Repair) -> None:
    assert repair_for(_job(status), runtime) == expected
