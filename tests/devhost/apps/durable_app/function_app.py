"""Sample app for devhost's Durable Functions fidelity tests.

HTTP starters (and one queue starter) drive the orchestrators through the real
DurableOrchestrationClient; each orchestrator exercises one Durable feature. The queue name comes
from the START_QUEUE setting, so a test run uses its own queue; the `flaky` activity logs its
attempts under the ATTEMPT_LOG_DIR setting.
"""
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def _json_response(payload: object, status_code: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status_code, mimetype="application/json")


def _body(req: func.HttpRequest) -> object:
    raw = req.get_body()
    return json.loads(raw) if raw else None


# --- clients ---------------------------------------------------------------------------------------

@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start orchestrator {name} with the JSON body as input (?id= picks the instance id); 202 + links."""
    instance_id = await client.start_new(req.route_params["name"], req.params.get("id"), _body(req))
    return client.create_check_status_response(req, instance_id)


@app.route(route="run/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start {name} and wait up to ?timeout_ms=: 200 with its output, or the check-status 202."""
    instance_id = await client.start_new(req.route_params["name"], None, _body(req))
    return await client.wait_for_completion_or_create_check_status_response(
        req, instance_id, timeout_in_milliseconds=int(req.params.get("timeout_ms", "10000")),
        retry_interval_in_milliseconds=100)


@app.route(route="instances/{id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """client.get_status, with ?history=true for show_history (and its outputs)."""
    history = req.params.get("history") == "true"
    status = await client.get_status(req.route_params["id"], show_history=history, show_history_output=history,
                                     show_input=True)
    if not status:
        return _json_response({"found": False}, 404)
    payload = status.to_json()
    if history:
        payload["historyEvents"] = getattr(status, "historyEvents", None)
    return _json_response(payload)


@app.route(route="instances", methods=["GET"])
@app.durable_client_input(client_name="client")
async def list_instances(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """client.get_status_by(?status=Completed,Failed&prefix=...), or get_status_all without filters."""
    statuses = [df.OrchestrationRuntimeStatus(s) for s in req.params.get("status", "").split(",") if s]
    prefix = req.params.get("prefix")
    if statuses or prefix:
        found = await client.get_status_by(runtime_status=statuses or None, instance_id_prefix=prefix)
    else:
        found = await client.get_status_all()
    return _json_response([s.to_json() for s in found])


@app.route(route="instances/{id}", methods=["DELETE"])
@app.durable_client_input(client_name="client")
async def purge(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """client.purge_instance_history."""
    result = await client.purge_instance_history(req.route_params["id"])
    return _json_response({"deleted": result.instances_deleted})


@app.route(route="instances", methods=["DELETE"])
@app.durable_client_input(client_name="client")
async def purge_completed(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """client.purge_instance_history_by: completed instances created since ?since= (ISO 8601)."""
    since = datetime.fromisoformat(req.params["since"])
    result = await client.purge_instance_history_by(
        created_time_from=since, runtime_status=[df.OrchestrationRuntimeStatus.Completed])
    return _json_response({"deleted": result.instances_deleted})


@app.route(route="instances/{id}/events/{event}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def raise_event(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """client.raise_event with the JSON body as the event data."""
    await client.raise_event(req.route_params["id"], req.route_params["event"], _body(req))
    return func.HttpResponse(status_code=202)


@app.route(route="instances/{id}/terminate", methods=["POST"])
@app.durable_client_input(client_name="client")
async def terminate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """client.terminate with ?reason=."""
    await client.terminate(req.route_params["id"], req.params.get("reason", "no reason"))
    return func.HttpResponse(status_code=202)


@app.queue_trigger(arg_name="msg", queue_name="%START_QUEUE%", connection="AzureWebJobsStorage")
@app.durable_client_input(client_name="client")
async def start_from_queue(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Start {"name", "id", "input"} from a queue message."""
    request = json.loads(msg.get_body())
    await client.start_new(request["name"], request["id"], request.get("input"))


# --- orchestrators ---------------------------------------------------------------------------------

@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    """Doubles 0..n-1 in parallel and returns the sum."""
    results = yield context.task_all([context.call_activity(double, i) for i in range(context.get_input())])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Races an "approval" event against a timer of {"timeout": seconds}; cancels the timer if the event wins."""
    deadline = context.current_utc_datetime + timedelta(seconds=context.get_input()["timeout"])
    timer = context.create_timer(deadline)
    event = context.wait_for_external_event("approval")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
        return {"winner": "event", "data": event.result}
    return {"winner": "timer"}


@app.orchestration_trigger(context_name="context")
def early_event(context: df.DurableOrchestrationContext):
    """Waits on a timer first, so a "go" event raised right after the start arrives before the wait."""
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    data = yield context.wait_for_external_event("go")
    return {"data": data}


@app.orchestration_trigger(context_name="context")
def status_reporter(context: df.DurableOrchestrationContext):
    """Reports its stage in the custom status while it waits for "go"."""
    context.set_custom_status({"stage": "waiting"})
    yield context.wait_for_external_event("go")
    context.set_custom_status({"stage": "done"})
    return "finished"


@app.orchestration_trigger(context_name="context")
def wait_forever(context: df.DurableOrchestrationContext):
    """Waits for an event nobody sends (to be terminated)."""
    yield context.wait_for_external_event("never")


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    """Calls `child` as a sub-orchestration."""
    result = yield context.call_sub_orchestrator("child", context.get_input())
    return {"child": result, "parent": context.instance_id}


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext):
    """Doubles its input in an activity and reports who its parent is."""
    doubled = yield context.call_activity(double, context.get_input())
    return {"doubled": doubled, "parent_instance_id": context.parent_instance_id}


@app.orchestration_trigger(context_name="context")
def parent_of_failing(context: df.DurableOrchestrationContext):
    """Returns the message of its failed sub-orchestration."""
    try:
        yield context.call_sub_orchestrator("failing")
    except Exception as exc:
        return str(exc)
    return "no failure"


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    """Counts to 5 with one activity per execution, continuing as new in between."""
    value = yield context.call_activity(increment, context.get_input() or 0)
    if value >= 5:
        return value
    context.continue_as_new(value)


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext):
    """Raises after one activity."""
    yield context.call_activity(double, 1)
    raise ValueError("the input was rejected on purpose")


@app.orchestration_trigger(context_name="context")
def catches_activity_failure(context: df.DurableOrchestrationContext):
    """Returns the message of a failed activity's exception."""
    try:
        yield context.call_activity(explode, "kaboom")
    except Exception as exc:
        return str(exc)
    return "no failure"


@app.orchestration_trigger(context_name="context")
def calls_http(context: df.DurableOrchestrationContext):
    """Uses the Durable HTTP feature, which devhost does not support."""
    response = yield context.call_http("GET", "http://127.0.0.1:9/unreachable")
    return response.status_code


class BackoffRetryOptions(df.RetryOptions):
    """RetryOptions plus the backoff fields the extension reads, which azure-functions-durable 1.7.0 cannot send."""

    def __init__(self, first_retry_interval_in_milliseconds: int, max_number_of_attempts: int, *,
                 backoff_coefficient: float, max_retry_interval_in_milliseconds: int | None = None) -> None:
        super().__init__(first_retry_interval_in_milliseconds, max_number_of_attempts)
        self._backoff = {"backoffCoefficient": backoff_coefficient}
        if max_retry_interval_in_milliseconds is not None:
            self._backoff["maxRetryIntervalInMilliseconds"] = max_retry_interval_in_milliseconds

    def to_json(self) -> dict:
        return {**super().to_json(), **self._backoff}


def _retry_options(spec: dict) -> df.RetryOptions:
    """{"first_ms", "attempts"} for the SDK's own RetryOptions, plus "backoff" (and "max_ms") for backoff."""
    if "backoff" not in spec:
        return df.RetryOptions(spec["first_ms"], spec["attempts"])
    return BackoffRetryOptions(spec["first_ms"], spec["attempts"], backoff_coefficient=spec["backoff"],
                               max_retry_interval_in_milliseconds=spec.get("max_ms"))


@app.orchestration_trigger(context_name="context")
def retried_flaky(context: df.DurableOrchestrationContext):
    """Calls `flaky`, failing its first {"failures"} attempts, with the retry options of its input."""
    spec = context.get_input()
    call = {"key": context.instance_id, "failures": spec["failures"], "value": "recovered"}
    return (yield context.call_activity_with_retry(flaky, _retry_options(spec), call))


@app.orchestration_trigger(context_name="context")
def retried_pair(context: df.DurableOrchestrationContext):
    """Retries two flaky calls in parallel (failing once and twice), then calls `double`."""
    options = df.RetryOptions(100, 3)
    calls = [{"key": f"{context.instance_id}-{n}", "failures": n, "value": n} for n in (1, 2)]
    results = yield context.task_all([context.call_activity_with_retry(flaky, options, c) for c in calls])
    doubled = yield context.call_activity(double, 21)
    return [*results, doubled]


@app.orchestration_trigger(context_name="context")
def retried_child(context: df.DurableOrchestrationContext):
    """Retries `flaky_child`, which fails its first {"failures"} runs, as {"child_id"} if given."""
    spec = context.get_input()
    call = {"key": context.instance_id, "failures": spec["failures"], "value": "child recovered"}
    return (yield context.call_sub_orchestrator_with_retry("flaky_child", df.RetryOptions(100, 3), call,
                                                          spec.get("child_id")))


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    """Calls `flaky` once, without retries, so it fails while `flaky` does."""
    return (yield context.call_activity(flaky, context.get_input()))


@app.orchestration_trigger(context_name="context")
def calls_entity(context: df.DurableOrchestrationContext):
    """Calls a Durable Entity, which devhost does not support."""
    value = yield context.call_entity(df.EntityId("tally", "one"), "get")
    return value


# --- activities ------------------------------------------------------------------------------------

@app.activity_trigger(input_name="value")
def double(value: int) -> int:
    return 2 * value


@app.activity_trigger(input_name="value")
def increment(value: int) -> int:
    return value + 1


@app.activity_trigger(input_name="reason")
def explode(reason: str) -> None:
    raise RuntimeError(reason)


@app.activity_trigger(input_name="call")
def flaky(call: dict) -> object:
    """Fails the first call["failures"] attempts for call["key"], like a database that is down, then returns
    call["value"].

    Each attempt appends its start time (epoch seconds) to <ATTEMPT_LOG_DIR>/<key>.log.
    """
    attempts = Path(os.environ["ATTEMPT_LOG_DIR"]) / f"{call['key']}.log"
    with attempts.open("a") as log:
        log.write(f"{time.time()}\n")
    attempt = len(attempts.read_text().splitlines())
    if attempt <= call["failures"]:
        raise ConnectionError(f"database unavailable (attempt {attempt})")
    return call["value"]
