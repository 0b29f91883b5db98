"""The Durable bridge without the engine: protobuf histories replayed through the real SDK handler.

Each test builds the history durabletask's engine would send, runs OrchestrationRunner (the app's
Orchestrator.create handle on devhost's Invoker) and checks the OrchestratorResponse it would send back.
"""
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
import pytest

from devhost.config import ConfigError
from devhost.durable import DurableRuntime
from devhost.durable.catalog import FunctionCatalog
from devhost.durable.executions import ExecutionBook
from devhost.durable.history import execution_id, orchestration_context
from devhost.durable.orchestrations import OrchestrationRunner
from devhost.indexing import FunctionSpec
from devhost.invoker import Invoker

pytestmark = pytest.mark.devhost

T0 = datetime(2030, 1, 1, tzinfo=UTC)
INSTANCE = "instance-1"


def fan_out(context: df.DurableOrchestrationContext):
    results = yield context.task_all([context.call_activity("double", i) for i in range(context.get_input())])
    return sum(results)


def event_or_timer_then_activity(context: df.DurableOrchestrationContext):
    timer = context.create_timer(context.current_utc_datetime + timedelta(minutes=5))
    event = context.wait_for_external_event("approval")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
    return (yield context.call_activity("double", 1))


def activity_then_event(context: df.DurableOrchestrationContext):
    yield context.call_activity("double", 1)
    return (yield context.wait_for_external_event("go"))


def waits_on_timer(context: df.DurableOrchestrationContext):
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
    return "fired"


def calls_http(context: df.DurableOrchestrationContext):
    return (yield context.call_http("GET", "http://example.invalid/"))


def raises(context: df.DurableOrchestrationContext):
    yield context.call_activity("double", 1)
    raise ValueError("boom")


def continues(context: df.DurableOrchestrationContext):
    yield context.call_activity("double", 1)
    context.continue_as_new({"n": 2})


def reports_status(context: df.DurableOrchestrationContext):
    context.set_custom_status(context.get_input())
    yield context.wait_for_external_event("go")


def calls_child(context: df.DurableOrchestrationContext):
    return (yield context.call_sub_orchestrator("fan_out", 2))


ORCHESTRATORS = [fan_out, event_or_timer_then_activity, activity_then_event, waits_on_timer, calls_http, raises,
                 continues, reports_status, calls_child]


def _spec(name: str, trigger: str, function: Any) -> FunctionSpec:
    return FunctionSpec(name, ({"type": trigger, "name": "context", "direction": "IN"},), function)


@pytest.fixture
def runner() -> Iterator[OrchestrationRunner]:
    specs = [_spec(f.__name__, "orchestrationTrigger", df.Orchestrator.create(f)) for f in ORCHESTRATORS]
    specs.append(_spec("double", "activityTrigger", lambda context: 2 * context))
    invoker = Invoker(function_timeout=30)
    yield OrchestrationRunner(FunctionCatalog.from_functions(specs), invoker, ExecutionBook())
    invoker.close()


def started(name: str, payload: Any = None) -> list[pb.HistoryEvent]:
    """A new execution as the engine creates it; inputs stored as the client API stores them."""
    stored = None if payload is None else json.dumps(json.dumps(payload))
    return [helpers.new_orchestrator_started_event(T0), helpers.new_execution_started_event(name, INSTANCE, stored)]


def episode(*events: pb.HistoryEvent) -> list[pb.HistoryEvent]:
    return [helpers.new_orchestrator_started_event(T0 + timedelta(seconds=1)), *events]


def respond(runner: OrchestrationRunner, past: list[pb.HistoryEvent], new: list[pb.HistoryEvent]
            ) -> pb.OrchestratorResponse:
    request = pb.OrchestratorRequest(instanceId=INSTANCE, pastEvents=past, newEvents=new)
    return runner.respond(request, "token-1")


def completion(response: pb.OrchestratorResponse) -> pb.CompleteOrchestrationAction | None:
    done = [a.completeOrchestration for a in response.actions if a.HasField("completeOrchestration")]
    return done[0] if done else None


def scheduled(response: pb.OrchestratorResponse) -> list[tuple[int, str, str]]:
    return [(a.id, a.scheduleTask.name, a.scheduleTask.input.value) for a in response.actions
            if a.HasField("scheduleTask")]


def test_first_episode_schedules_the_fan_out_with_sequential_ids(runner: OrchestrationRunner) -> None:
    response = respond(runner, [], started("fan_out", 3))

    assert scheduled(response) == [(0, "double", "0"), (1, "double", "1"), (2, "double", "2")]
    assert completion(response) is None


def test_replay_schedules_nothing_twice_and_completes_with_all_results(runner: OrchestrationRunner) -> None:
    past = [*started("fan_out", 3), *(helpers.new_task_scheduled_event(i, "double", str(i)) for i in range(3)),
            helpers.new_orchestrator_completed_event()]
    partial = respond(runner, past, episode(helpers.new_task_completed_event(1, "2")))
    done = respond(runner, past, episode(*(helpers.new_task_completed_event(i, str(2 * i)) for i in range(3))))

    assert list(partial.actions) == []
    assert scheduled(done) == []
    assert completion(done).orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert completion(done).result.value == "6"


def test_a_cancelled_timer_keeps_its_sequence_id_and_the_event_takes_none(runner: OrchestrationRunner) -> None:
    past = [*started("event_or_timer_then_activity"), helpers.new_timer_created_event(0, T0 + timedelta(minutes=5)),
            helpers.new_orchestrator_completed_event()]

    response = respond(runner, past, episode(helpers.new_event_raised_event("approval", '"yes"')))

    assert scheduled(response) == [(1, "double", "1")]


def test_event_raised_before_the_wait_is_delivered_to_it(runner: OrchestrationRunner) -> None:
    past = [*started("activity_then_event"), helpers.new_task_scheduled_event(0, "double", "1"),
            helpers.new_orchestrator_completed_event()]
    new = episode(helpers.new_event_raised_event("go", '"early"'), helpers.new_task_completed_event(0, "2"))

    response = respond(runner, past, new)

    assert completion(response).result.value == '"early"'


def test_a_timer_of_an_earlier_execution_does_not_fire_this_one(runner: OrchestrationRunner) -> None:
    past = [*started("waits_on_timer"), helpers.new_timer_created_event(0, T0 + timedelta(minutes=1)),
            helpers.new_orchestrator_completed_event()]
    stale = helpers.new_timer_fired_event(0, T0 - timedelta(minutes=9))
    current = helpers.new_timer_fired_event(0, T0 + timedelta(minutes=1))

    assert completion(respond(runner, past, episode(stale))) is None
    assert completion(respond(runner, past, episode(stale, current))).result.value == '"fired"'


def test_unsupported_action_fails_the_instance_naming_it(runner: OrchestrationRunner) -> None:
    response = respond(runner, [], started("calls_http"))

    assert completion(response).orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert "devhost does not support CallHttp (context.call_http)" in completion(response).failureDetails.errorMessage
    assert scheduled(response) == []


def test_a_replay_that_no_longer_matches_history_fails_as_nondeterministic(runner: OrchestrationRunner) -> None:
    past = [*started("fan_out", 1), helpers.new_task_scheduled_event(0, "triple", "0"),
            helpers.new_orchestrator_completed_event()]

    response = respond(runner, past, episode(helpers.new_task_completed_event(0, "0")))

    assert completion(response).orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert "Non-Deterministic workflow detected" in completion(response).failureDetails.errorMessage


def test_orchestrator_exception_fails_the_instance_with_its_message(runner: OrchestrationRunner) -> None:
    past = [*started("raises"), helpers.new_task_scheduled_event(0, "double", "1"),
            helpers.new_orchestrator_completed_event()]

    response = respond(runner, past, episode(helpers.new_task_completed_event(0, "2")))

    assert completion(response).orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert json.loads(completion(response).result.value) == "Orchestrator function 'raises' failed: boom"


def test_termination_ends_the_instance_without_running_the_orchestrator(runner: OrchestrationRunner) -> None:
    new = [*started("raises"), helpers.new_terminated_event(encoded_output='"enough"')]

    response = respond(runner, [], new)

    assert completion(response).orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
    assert completion(response).result.value == '"enough"'
    assert scheduled(response) == []


def test_continue_as_new_input_round_trips_to_the_next_execution(runner: OrchestrationRunner) -> None:
    past = [*started("continues"), helpers.new_task_scheduled_event(0, "double", "1"),
            helpers.new_orchestrator_completed_event()]

    done = completion(respond(runner, past, episode(helpers.new_task_completed_event(0, "2"))))
    next_start = [helpers.new_orchestrator_started_event(T0),
                  helpers.new_execution_started_event("continues", INSTANCE, done.result.value)]
    context = df.DurableOrchestrationContext.from_json(orchestration_context(INSTANCE, [], next_start, None))

    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
    assert context.get_input() == {"n": 2}


def test_custom_status_is_kept_when_the_sdk_leaves_it_out(runner: OrchestrationRunner) -> None:
    first = respond(runner, [], started("reports_status", {"stage": 1}))
    # A falsy custom status is not serialised by the SDK; the extension then keeps the previous one.
    second = respond(runner, [], started("reports_status", 0))

    assert json.loads(first.customStatus.value) == {"stage": 1}
    assert json.loads(second.customStatus.value) == {"stage": 1}


def test_sub_orchestration_gets_an_id_per_execution_and_its_parent(runner: OrchestrationRunner) -> None:
    new = started("calls_child")

    [action] = respond(runner, [], new).actions
    child = action.createSubOrchestration

    assert (child.name, child.instanceId) == ("fan_out", f"{execution_id(INSTANCE, new)}:0")
    assert json.loads(json.loads(child.input.value)) == 2
    assert runner.book.parent_of(child.instanceId) == INSTANCE


def test_context_marks_replayed_events_and_always_carries_a_version() -> None:
    past = [*started("fan_out", 1), helpers.new_orchestrator_completed_event()]
    context = json.loads(orchestration_context(INSTANCE, past, episode(), None))
    del context["history"][1]["Version"]

    assert [e["IsPlayed"] for e in context["history"]] == [True, True, True, False]
    assert context["upperSchemaVersion"] == 2
    with pytest.raises(AttributeError, match="Version"):
        df.DurableOrchestrationContext.from_json(json.dumps(context))


def test_results_of_an_ended_execution_are_dropped() -> None:
    book = ExecutionBook()
    book.activities_scheduled(INSTANCE, "token-1", 2)
    book.activities_scheduled(INSTANCE, "token-2", 1)

    assert book.activity_result_is_current("token-1")
    book.execution_ended(INSTANCE, instance_done=False)
    assert not book.activity_result_is_current("token-1")
    assert not book.activity_result_is_current("token-2")


def test_a_client_bound_to_another_task_hub_is_refused_at_start() -> None:
    bindings = ({"type": "durableClient", "name": "client", "direction": "IN", "taskHub": "OtherHub"},
                {"type": "httpTrigger", "name": "req", "direction": "IN"})
    invoker = Invoker(function_timeout=1)

    with pytest.raises(ConfigError, match="task hub 'OtherHub'"):
        DurableRuntime([FunctionSpec("starter", bindings, lambda req, client: None)], invoker,
                       base_url="http://127.0.0.1:7071", hub_name="MyHub")
    invoker.close()
