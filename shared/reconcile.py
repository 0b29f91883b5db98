"""The reconciler's decision: what to do with an unfinished job given its orchestration's state.

Orchestrations can vanish (the local engine keeps them in memory; a host restart loses them) or end
without finalising the job (failed, terminated). Each case gets one idempotent repair.
"""
from __future__ import annotations

from enum import StrEnum

from shared.models import Job

ALIVE = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})


class Repair(StrEnum):
    NONE = "none"
    RESTART = "restart"
    FAIL_JOB = "fail_job"


def repair_for(job: Job, runtime_status: str | None) -> Repair:
    """Restart a lost or prematurely ended orchestration; fail the job when it failed or was terminated,
    so that a persistent bug ends the job instead of restarting it forever."""
    if job.status.is_final or runtime_status in ALIVE:
        return Repair.NONE
    if runtime_status in ("Failed", "Terminated", "Canceled"):
        return Repair.FAIL_JOB
    return Repair.RESTART  # missing, or completed without finalising the job
