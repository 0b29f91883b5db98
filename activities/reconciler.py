"""Timer-triggered reconciler: no unfinished job is left without a live orchestration.

Runs on `TRAWL_RECONCILE_SCHEDULE` (every minute by default). Jobs younger than the grace period are
left alone so that a submission still starting its orchestration is not restarted twice.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

from orchestrators.job import ORCHESTRATOR_NAME
from shared.adapters.db import in_transaction, read
from shared.adapters.executors import Work
from shared.composition import get_executors, get_pool
from shared.domain.models import SYSTEM_ACTOR, Job, JobOutcome
from shared.domain.reconcile import Repair, repair_for
from shared.services.job_service import orchestration_input
from shared.settings import get_settings

bp = df.Blueprint()
log = logging.getLogger(f"trawl.{__name__}")


@bp.timer_trigger(arg_name="timer", schedule="%TRAWL_RECONCILE_SCHEDULE%")
@bp.durable_client_input(client_name="client")
async def reconcile_jobs(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    grace = timedelta(seconds=get_settings().reconcile_grace_seconds)
    jobs = await get_executors().run(Work.MAINTENANCE, read, get_pool(),
                                     lambda tx: tx.jobs.unfinished_jobs(older_than=grace))
    for job in jobs:
        status = await client.get_status(str(job.id))
        runtime_status = status.runtime_status.value if status.runtime_status else None
        await _repair(client, job, repair_for(job, runtime_status, status.output), status.output)


async def _repair(client: df.DurableOrchestrationClient, job: Job, repair: Repair, output: object) -> None:
    if repair is Repair.RESTART:
        log.warning("job %s is %s without a live orchestration: restarting it (last output: %s)", job.id, job.status,
                    output)
        await client.start_new(ORCHESTRATOR_NAME, str(job.id), orchestration_input(job, get_settings()))
    elif repair is Repair.FAIL_JOB:
        log.error("job %s: its orchestration ended without finalising it (%s): failing the job", job.id, output)
        reason = f"orchestration ended abnormally: {output}"
        await get_executors().run(Work.MAINTENANCE, in_transaction, get_pool(),
                                  lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.FAILED, SYSTEM_ACTOR, reason))
