"""Retries in the Durable bridge without the engine: the exact sequence ids and fire times DTFx would use.

Each test plays an instance episode by episode as durabletask's engine would (the history grows by
the episode's events, the scheduling events of the actions devhost answered with, and
OrchestratorCompleted) through OrchestrationRunner and the real SDK handler, and checks what devhost
asks for: on Azure DTFx's RetryInterceptor gives every attempt and every retry timer the next
sequence id when the failure (or the timer) is played, and sets a retry timer to the episode's
CurrentUtcDateTime plus the delay. Those ids also depend on the shim awaiting each action before
starting the next, which one test pins down for task_all.
"""
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
import pytest

from devhost.durable.catalog import FunctionCatalog
from devhost.durable.executions import ExecutionBook
from devhost.durable.history import execution_id
from devhost.durable.orchestrations import OrchestrationRunner
from devhost.indexing import FunctionSpec
from devhost.invoker import Invoker

pytestmark = pytest.mark.devhost

T0 = datetime(2030, 1, 1, tzinfo=UTC)
INSTANCE = "instance-1"
Step = tuple[str, int, Any]


class JsonRetryOptions(df.RetryOptions):
    """RetryOptions sent as the given JSON, with fields azure-functions-durable 1.7.0 cannot set itself."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options["firstRetryIntervalInMilliseconds"], options["maxNumberOfAttempts"])
        self._options = options

    def to_json(self) -> dict[str, Any]:
        return self._options


def retried(context: df.DurableOrchestrationContext):
    return (yield context.call_activity_with_retry("flaky", JsonRetryOptions(context.get_input()), "x"))


def retried_pair(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(100, 3)
    results = yield context.task_all([context.call_activity_with_retry("flaky", options, n) for n in ("a", "b")])
    return [*results, (yield context.call_activity("flaky", "after"))]


def retried_child(context: df.DurableOrchestrationContext):
    return (yield context.call_sub_orchestrator_with_retry("child", df.RetryOptions(100, 3)))


def catches_fan_out_failure(context: df.DurableOrchestrationContext):
    with contextlib.suppress(Exception):  # the SDK raises at the first failure; the call below comes next
        yield context.task_all([context.call_activity("flaky", n) for n in ("a", "b")])
    return (yield context.call_activity("flaky", "after"))


def too_long_retry_interval(context: df.DurableOrchestrationContext):
    seven_days_ms = 7 * 24 * 3600 * 1000
    return (yield context.call_activity_with_retry("flaky", df.RetryOptions(seven_days_ms, 3), "x"))


def child(context: df.DurableOrchestrationContext):
    return "child"


ORCHESTRATORS = [retried, retried_pair, retried_child, catches_fan_out_failure, too_long_retry_interval, child]


@pytest.fixture
def runner() -> Iterator[OrchestrationRunner]:
    specs = [FunctionSpec(f.__name__, ({"type": "orchestrationTrigger", "name": "context", "direction": "IN"},),
                          df.Orchestrator.create(f)) for f in ORCHESTRATORS]
    specs.append(FunctionSpec("flaky", ({"type": "activityTrigger", "name": "value", "direction": "IN"},),
                              lambda value: value))
    invoker = Invoker(function_timeout=30)
    yield OrchestrationRunner(FunctionCatalog.from_functions(specs), invoker, ExecutionBook())
    invoker.close()


class Instance:
    """One instance played as the engine plays it: each episode's events and scheduled actions join the history."""

    def __init__(self, runner: OrchestrationRunner, name: str, payload: Any = None) -> None:
        self.runner = runner
        self.past: list[pb.HistoryEvent] = []
        # Inputs stored as devhost's client API stores them.
        stored = None if payload is None else json.dumps(json.dumps(payload))
        self.first = self.episode(T0, helpers.new_execution_started_event(name, INSTANCE, stored))

    def episode(self, at: datetime, *events: pb.HistoryEvent) -> pb.OrchestratorResponse:
        new = [helpers.new_orchestrator_started_event(at), *events]
        request = pb.OrchestratorRequest(instanceId=INSTANCE, pastEvents=self.past, newEvents=new)
        response = self.runner.respond(request, "token-1")
        scheduled = [_scheduling_event(a) for a in response.actions if not a.HasField("completeOrchestration")]
        self.past = [*self.past, *new, *scheduled, helpers.new_orchestrator_completed_event()]
        return response


def _scheduling_event(action: pb.OrchestratorAction) -> pb.HistoryEvent:
    if action.HasField("scheduleTask"):
        return helpers.new_task_scheduled_event(action.id, action.scheduleTask.name, action.scheduleTask.input.value)
    if action.HasField("createTimer"):
        return helpers.new_timer_created_event(action.id, action.createTimer.fireAt.ToDatetime(tzinfo=UTC))
    sub = action.createSubOrchestration
    return helpers.new_sub_orchestration_created_event(action.id, sub.name, sub.instanceId, sub.input.value)


def steps(response: pb.OrchestratorResponse) -> list[Step]:
    """What an episode asks for: ("task", id, name), ("timer", id, fire at), ("child", id, instance id)."""
    found: list[Step] = []
    for action in response.actions:
        if action.HasField("scheduleTask"):
            found.append(("task", action.id, action.scheduleTask.name))
        elif action.HasField("createTimer"):
            found.append(("timer", action.id, action.createTimer.fireAt.ToDatetime(tzinfo=UTC)))
        elif action.HasField("createSubOrchestration"):
            found.append(("child", action.id, action.createSubOrchestration.instanceId))
    return found


def completion(response: pb.OrchestratorResponse) -> pb.CompleteOrchestrationAction | None:
    done = [a.completeOrchestration for a in response.actions if a.HasField("completeOrchestration")]
    return done[0] if done else None


def failed(task_id: int) -> pb.HistoryEvent:
    return helpers.new_task_failed_event(task_id, ConnectionError("database unavailable"))


def fired(task_id: int, fire_at: datetime) -> pb.HistoryEvent:
    return helpers.new_timer_fired_event(task_id, fire_at)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_each_failure_waits_for_a_backoff_timer_capped_at_the_max_interval(runner: OrchestrationRunner) -> None:
    options = {"firstRetryIntervalInMilliseconds": 100, "maxNumberOfAttempts": 5, "backoffCoefficient": 3,
               "maxRetryIntervalInMilliseconds": 500}
    instance = Instance(runner, "retried", options)

    played = [steps(instance.first)]
    for attempt, (failed_at, delay_ms) in enumerate([(1, 100), (3, 300), (5, 500)]):
        task_id = 2 * attempt
        timer_at = at(failed_at) + timedelta(milliseconds=delay_ms)
        played.append(steps(instance.episode(at(failed_at), failed(task_id))))
        played.append(steps(instance.episode(at(failed_at + 1), fired(task_id + 1, timer_at))))
    done = instance.episode(at(7), helpers.new_task_completed_event(6, '"ok"'))

    assert played == [
        [("task", 0, "flaky")],
        [("timer", 1, at(1) + timedelta(milliseconds=100))], [("task", 2, "flaky")],
        [("timer", 3, at(3) + timedelta(milliseconds=300))], [("task", 4, "flaky")],
        [("timer", 5, at(5) + timedelta(milliseconds=500))], [("task", 6, "flaky")],  # 900 ms capped at 500 ms
    ]
    assert completion(done).orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert completion(done).result.value == '"ok"'


def test_after_the_last_attempt_a_timer_fires_at_once_then_the_orchestrator_sees_the_failure(
        runner: OrchestrationRunner) -> None:
    instance = Instance(runner, "retried", {"firstRetryIntervalInMilliseconds": 100, "maxNumberOfAttempts": 2})
    instance.episode(at(1), failed(0))
    instance.episode(at(2), fired(1, at(1) + timedelta(milliseconds=100)))

    last = instance.episode(at(3), failed(2))
    done = instance.episode(at(3.01), fired(3, at(3)))

    assert steps(last) == [("timer", 3, at(3))]
    assert completion(last) is None
    assert completion(done).orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert json.loads(completion(done).result.value).startswith(
        "Orchestrator function 'retried' failed: database unavailable")


def test_once_the_retry_timeout_has_passed_the_extension_stops_without_the_timer_the_sdk_awaits(
        runner: OrchestrationRunner, caplog: pytest.LogCaptureFixture) -> None:
    instance = Instance(runner, "retried", {"firstRetryIntervalInMilliseconds": 100, "maxNumberOfAttempts": 5,
                                            "retryTimeoutInMilliseconds": 2000})
    in_time = instance.episode(at(1), failed(0))
    instance.episode(at(1.5), fired(1, at(1.1)))

    with caplog.at_level(logging.WARNING, logger="devhost"):
        too_late = instance.episode(at(2), failed(2))

    assert steps(in_time) == [("timer", 1, at(1.1))]
    # DTFx throws into the shim, but the SDK still waits for a timer: on Azure the instance hangs.
    assert list(too_late.actions) == []
    assert "its retry timeout has passed" in caplog.text


def test_no_attempts_allowed_means_the_extension_never_calls_the_activity(
        runner: OrchestrationRunner, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="devhost"):
        instance = Instance(runner, "retried", {"firstRetryIntervalInMilliseconds": 100, "maxNumberOfAttempts": 0})

    # RetryInterceptor's loop never runs; the SDK still waits for the attempt it scheduled.
    assert list(instance.first.actions) == []
    assert "maxNumberOfAttempts is below 1" in caplog.text


def test_parallel_retries_take_ids_in_the_order_history_plays_their_failures(runner: OrchestrationRunner) -> None:
    instance = Instance(runner, "retried_pair")

    timers = instance.episode(at(1), failed(1), failed(0))
    attempts = instance.episode(at(2), fired(3, at(1.1)), fired(2, at(1.1)))
    after = instance.episode(at(3), helpers.new_task_completed_event(5, '"b"'),
                             helpers.new_task_completed_event(4, '"a"'))
    done = instance.episode(at(4), helpers.new_task_completed_event(6, '"after"'))

    assert steps(instance.first) == [("task", 0, "flaky"), ("task", 1, "flaky")]
    assert steps(timers) == [("timer", 2, at(1.1)), ("timer", 3, at(1.1))]  # b failed first
    assert steps(attempts) == [("task", 4, "flaky"), ("task", 5, "flaky")]  # a's timer fired first
    assert steps(after) == [("task", 6, "flaky")]
    assert completion(done).result.value == '["a", "b", "after"]'


def test_after_a_failed_task_all_the_next_call_waits_for_its_other_tasks_as_the_shim_does(
        runner: OrchestrationRunner) -> None:
    instance = Instance(runner, "catches_fan_out_failure")

    # The shim awaits Task.WhenAll, which ends only when every child has: the sequence id the next
    # call takes depends on it once retries add timers and attempts.
    one_failed = instance.episode(at(1), failed(0))
    all_ended = instance.episode(at(2), helpers.new_task_completed_event(1, '"b"'))

    assert list(one_failed.actions) == []
    assert steps(all_ended) == [("task", 2, "flaky")]


def test_each_attempt_of_a_sub_orchestration_gets_its_own_child_id(runner: OrchestrationRunner) -> None:
    instance = Instance(runner, "retried_child")
    execution = execution_id(INSTANCE, instance.past)

    instance.episode(at(1), helpers.new_sub_orchestration_failed_event(0, RuntimeError("child failed")))
    again = instance.episode(at(2), fired(1, at(1.1)))
    done = instance.episode(at(3), helpers.new_sub_orchestration_completed_event(2, '"child"'))

    assert steps(instance.first) == [("child", 0, f"{execution}:0")]
    assert steps(again) == [("child", 2, f"{execution}:2")]
    assert completion(done).result.value == '"child"'


def test_retry_interval_beyond_the_storage_limit_fails_the_instance_as_the_extension_does(
        runner: OrchestrationRunner) -> None:
    instance = Instance(runner, "too_long_retry_interval")

    assert completion(instance.first).orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert ("The Azure Storage provider supports a maximum of 6 days for time-based delays "
            "(Parameter 'FirstRetryInterval')") in completion(instance.first).failureDetails.errorMessage
    assert steps(instance.first) == []
