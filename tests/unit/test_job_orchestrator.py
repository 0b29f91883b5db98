"""The job orchestrator replayed through the real azure-functions-durable SDK with built histories."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrators.job import job_orchestrator
from shared.domain.job_rules import LOOPS_PER_GENERATION
from tests.unit.durable_replay import Replay

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
JOB = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _input(**overrides: Any) -> dict[str, Any]:
    base = {"job_id": JOB, "deadline_at": (T0 + timedelta(minutes=10)).isoformat(), "tick_seconds": 5,
            "batch_size": 2, "enqueued": False, "traceparent": TRACEPARENT}
    return {**base, **overrides}


def _progress(snapshots: list[dict[str, Any]]) -> Any:
    stream: Iterator[dict[str, Any]] = iter(snapshots)
    last: dict[str, Any] = {}

    def answer(_: Any) -> dict[str, Any]:
        nonlocal last
        last = next(stream, last)
        return {"job_id": JOB, "status": "running", "total": 3, "succeeded": 0, "failed": 0, "skipped": 0,
                "cancel_requested": False, "deadline_at": (T0 + timedelta(minutes=10)).isoformat(), **last}
    return answer


def _replay(progress: list[dict[str, Any]], wakeups: list[str], **input_overrides: Any) -> Replay:
    activities = {
        "start_job": lambda _: {"status": "running", "total": 3},
        "enqueue_items": lambda batch: batch["end"] - batch["start"],
        "job_progress": _progress(progress),
        "finalise_job": lambda request: {"completed": "succeeded"}.get(request["outcome"], request["outcome"]),
    }
    return Replay(job_orchestrator, _input(**input_overrides), activities, wakeups, T0)


def test_fans_out_in_batches_then_completes_when_items_done_arrives() -> None:
    replay = _replay([{}, {"succeeded": 2, "failed": 1}], wakeups=["items_done"])
    state = replay.run()
    assert state["isDone"] and state["output"] == "succeeded"
    names = [name for name, _ in replay.calls]
    assert names == ["start_job", "enqueue_items", "enqueue_items", "job_progress", "job_progress", "finalise_job"]
    assert [payload for name, payload in replay.calls if name == "enqueue_items"] == [
        {"job_id": JOB, "start": 0, "end": 2, "traceparent": TRACEPARENT},
        {"job_id": JOB, "start": 2, "end": 3, "traceparent": TRACEPARENT}]
    assert replay.calls[-1] == ("finalise_job", {"job_id": JOB, "outcome": "completed"})
    assert replay.custom_statuses[-1] == {"total": 3, "succeeded": 2, "failed": 1, "skipped": 0}


def test_a_lost_items_done_event_is_caught_by_the_next_tick() -> None:
    replay = _replay([{}, {}, {"succeeded": 3}], wakeups=["timer", "timer"])
    state = replay.run()
    assert state["output"] == "succeeded"
    assert replay.now == T0 + timedelta(seconds=10)  # two ticks of five seconds
    assert [n for n, _ in replay.calls].count("job_progress") == 3


def test_cancel_event_finalises_as_cancelled_when_the_database_says_so() -> None:
    replay = _replay([{}, {"succeeded": 1, "cancel_requested": True}], wakeups=["cancel"])
    state = replay.run()
    assert state["output"] == "cancelled"
    assert replay.calls[-1] == ("finalise_job", {"job_id": JOB, "outcome": "cancelled"})


def test_deadline_finalises_as_timed_out() -> None:
    deadline = T0 + timedelta(seconds=7)
    replay = _replay([{}], wakeups=[], deadline_at=deadline.isoformat())
    state = replay.run()
    assert state["output"] == "timed_out"
    assert replay.now == deadline  # the second timer fires at the deadline, not a full tick later
    assert replay.calls[-1] == ("finalise_job", {"job_id": JOB, "outcome": "timed_out"})


def test_a_job_already_final_is_not_enqueued() -> None:
    replay = _replay([], wakeups=[])
    replay.activities["start_job"] = lambda _: {"status": "cancelled", "total": 3}
    state = replay.run()
    assert state["output"] == "cancelled"
    assert [n for n, _ in replay.calls] == ["start_job"]


def test_long_jobs_continue_as_new_without_enqueueing_again() -> None:
    replay = _replay([{}], wakeups=[], deadline_at=(T0 + timedelta(days=1)).isoformat())
    state = replay.run()
    continued = [a for a in state["new_actions"] if a["actionType"] == 4]
    assert len(continued) == 1
    assert [n for n, _ in replay.calls].count("job_progress") == LOOPS_PER_GENERATION
    assert json.loads(continued[0]["input"])["enqueued"] is True
    assert len(replay.history) < 200


def test_a_refused_completion_is_decided_again_and_the_cancel_wins() -> None:
    replay = _replay([{"succeeded": 3}, {"succeeded": 3, "cancel_requested": True}], wakeups=[])
    finalised = iter(["running", "cancelled"])  # the database refused completion: a cancel had landed
    replay.activities["finalise_job"] = lambda _: next(finalised)

    state = replay.run()

    assert state["output"] == "cancelled"
    assert [p for n, p in replay.calls if n == "finalise_job"] == [
        {"job_id": JOB, "outcome": "completed"}, {"job_id": JOB, "outcome": "cancelled"}]


def test_every_activity_is_called_with_backoff_retries_that_outlast_a_failover() -> None:
    replay = _replay([{"succeeded": 3}], wakeups=[])
    replay.run()

    options = [action.get("retryOptions") for action in replay.scheduled if "functionName" in action]
    assert len(options) == 5 and all(o == options[0] for o in options)  # start, 2 enqueues, progress, finalise
    retry = options[0]
    waits = [min(retry["firstRetryIntervalInMilliseconds"] * retry["backoffCoefficient"] ** n,
                 retry["maxRetryIntervalInMilliseconds"]) for n in range(retry["maxNumberOfAttempts"] - 1)]
    assert sum(waits) / 1000 >= 240, "longer than a 2-minute failover, with margin"
