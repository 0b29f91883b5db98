"""The reconciler's decision: what to do with an unfinished job given its orchestration's state.

Orchestrations can vanish (the local engine keeps them in memory; a host restart loses them) or end
without finalising the job (failed, terminated). Each case gets one idempotent repair. An
orchestration that failed only because a dependency stayed unreachable longer than its activities'
retries is restarted, not failed: an outage delays a job, it never fails it.
"""
from __future__ import annotations

from enum import StrEnum

from shared.domain.models import Job

ALIVE = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})

# Exception names that, in a failed orchestration's output, mean "a dependency was unreachable";
# the Python worker reports an activity's exception as "<TypeName>: <message>".
OUTAGE_ERRORS = ("DatabaseUnavailable", "StorageUnavailable")


class Repair(StrEnum):
    NONE = "none"
    RESTART = "restart"
    FAIL_JOB = "fail_job"


def repair_for(job: Job, runtime_status: str | None, output: object = None) -> Repair:
    """Restart a lost or prematurely ended orchestration, or one failed by an outage; fail the job when
    it failed otherwise or was terminated, so that a persistent bug ends the job instead of restarting
    it forever."""
    if job.status.is_final or runtime_status in ALIVE:
        return Repair.NONE
    if runtime_status == "Failed" and any(name in str(output) for name in OUTAGE_ERRORS):
        return Repair.RESTART
    if runtime_status in ("Failed", "Terminated", "Canceled"):
        return Repair.FAIL_JOB
    return Repair.RESTART  # missing, or completed without finalising the job
