"""The job orchestration: one instance per job (instance id = job id), sequencing only.

Marks the job running, fans its items out to the scrape queue in parallel batches, then waits for
`items_done`, `cancel` or the next progress tick (whichever comes first), reads progress from
PostgreSQL, and finalises. Events only wake it up: every decision is taken on what PostgreSQL says,
so a lost or duplicated event costs at most one tick. Deterministic: no I/O, clock or randomness.

Every activity is called with retries spanning several minutes, so a database failover or restart
delays the job instead of failing the orchestration. A finalisation the database refuses (a cancel
arrived after progress was read) is decided again on fresh rows.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.domain.job_rules import (
    ACTIVITY_RETRY_ATTEMPTS,
    ACTIVITY_RETRY_BACKOFF,
    ACTIVITY_RETRY_FIRST_INTERVAL_MS,
    ACTIVITY_RETRY_MAX_INTERVAL_MS,
    LOOPS_PER_GENERATION,
    OrchestrationInput,
    custom_status,
    decide,
    enqueue_batches,
    next_wake,
)
from shared.domain.models import JobStatus, Progress

bp = df.Blueprint()


class BackoffRetryOptions(df.RetryOptions):
    """RetryOptions with the backoff fields the Durable extension reads (`RetryOptionsConverter`:
    backoffCoefficient, maxRetryIntervalInMilliseconds), which azure-functions-durable 1.7.0 cannot send."""

    def __init__(self, first_ms: int, attempts: int, *, backoff: float, max_interval_ms: int) -> None:
        super().__init__(first_retry_interval_in_milliseconds=first_ms, max_number_of_attempts=attempts)
        self._backoff = {"backoffCoefficient": backoff, "maxRetryIntervalInMilliseconds": max_interval_ms}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self._backoff}


ACTIVITY_RETRY = BackoffRetryOptions(ACTIVITY_RETRY_FIRST_INTERVAL_MS, ACTIVITY_RETRY_ATTEMPTS,
                                     backoff=ACTIVITY_RETRY_BACKOFF, max_interval_ms=ACTIVITY_RETRY_MAX_INTERVAL_MS)

ORCHESTRATOR_NAME = "job_orchestrator"
ITEMS_DONE_EVENT = "items_done"
CANCEL_EVENT = "cancel"


@bp.orchestration_trigger(context_name="context")
def job_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    state = OrchestrationInput.model_validate(context.get_input())
    job_id = str(state.job_id)
    if not state.enqueued:
        started = yield context.call_activity_with_retry("start_job", ACTIVITY_RETRY, job_id)
        if started["status"] != "running":
            return started["status"]
        yield context.task_all([
            context.call_activity_with_retry("enqueue_items", ACTIVITY_RETRY, {
                "job_id": job_id, "start": start, "end": end, "traceparent": state.traceparent})
            for start, end in enqueue_batches(started["total"], state.batch_size)
        ])
    for _ in range(LOOPS_PER_GENERATION):
        progress = Progress.model_validate((yield context.call_activity_with_retry("job_progress", ACTIVITY_RETRY,
                                                                                   job_id)))
        context.set_custom_status(custom_status(progress))
        outcome = decide(progress, context.current_utc_datetime, state.deadline_at)
        if outcome is None:
            yield from _wait_for_wake_up(context, state)
            continue
        status = yield context.call_activity_with_retry("finalise_job", ACTIVITY_RETRY,
                                                        {"job_id": job_id, "outcome": outcome.value})
        if JobStatus(status).is_final:
            return status
    context.continue_as_new(state.model_copy(update={"enqueued": True}).model_dump(mode="json"))
    return None


def _wait_for_wake_up(context: df.DurableOrchestrationContext, state: OrchestrationInput) -> Generator[Any, Any, None]:
    timer = context.create_timer(next_wake(context.current_utc_datetime, state.deadline_at, state.tick_seconds))
    woken_by = yield context.task_any([
        context.wait_for_external_event(ITEMS_DONE_EVENT),
        context.wait_for_external_event(CANCEL_EVENT),
        timer,
    ])
    if woken_by is not timer:
        timer.cancel()  # type: ignore[attr-defined]  # create_timer says TaskBase; it returns a TimerTask or LongTimerTask

