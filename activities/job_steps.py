"""Durable activities of the job orchestration: thin adapters over shared.services.orchestration_steps."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import azure.durable_functions as df

from shared.composition import get_item_queue, get_pool
from shared.domain.models import JobOutcome
from shared.services import orchestration_steps

bp = df.Blueprint()

# Binding names are camelCase: the Functions host accepts only letters and digits in them. Binding
# annotations are plain types (`dict`, not `dict[str, Any]`): the worker refuses generic aliases.


@bp.activity_trigger(input_name="jobId")
def start_job(jobId: str) -> dict[str, Any]:
    return orchestration_steps.start_job(get_pool(), UUID(jobId))


@bp.activity_trigger(input_name="batch")
def enqueue_items(batch: dict) -> int:  # type: ignore[type-arg]  # the worker refuses dict[str, Any] (see above)
    return orchestration_steps.enqueue_items(get_pool(), get_item_queue(), UUID(batch["job_id"]), int(batch["start"]),
                                             int(batch["end"]), batch.get("traceparent"))


@bp.activity_trigger(input_name="jobId")
def job_progress(jobId: str) -> dict[str, Any]:
    return orchestration_steps.job_progress(get_pool(), UUID(jobId))


@bp.activity_trigger(input_name="request")
def finalise_job(request: dict) -> str:  # type: ignore[type-arg]  # the worker refuses dict[str, Any] (see above)
    return orchestration_steps.finalise_job(get_pool(), UUID(request["job_id"]), JobOutcome(request["outcome"]))
