"""Translates durabletask's protobuf history into the JSON orchestration context the Functions host sends.

The Durable Functions extension hands an out-of-process orchestrator its DTFx history serialised as
JSON (numeric EventType, PascalCase fields); the Python SDK's TaskOrchestrationExecutor replays it.
This module is the one place that knows both shapes.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import durabletask.internal.orchestrator_service_pb2 as pb
from google.protobuf import timestamp_pb2

# ReplaySchema.V3: flat action lists with WhenAll/WhenAny compound actions. The long-timer settings
# that V3 also allows are left out, as the extension does for backends without timer limits.
UPPER_SCHEMA_VERSION = 2

_COMPLETING_EVENTS = {
    "taskCompleted": "taskScheduled",
    "taskFailed": "taskScheduled",
    "subOrchestrationInstanceCompleted": "subOrchestrationInstanceCreated",
    "subOrchestrationInstanceFailed": "subOrchestrationInstanceCreated",
    "timerFired": "timerCreated",
}


class UnsupportedHistoryError(Exception):
    """The history holds an event the Functions protocol has no JSON form for."""


def event_kind(event: pb.HistoryEvent) -> str:
    """The name of the event's payload field, e.g. "taskScheduled"."""
    return str(event.WhichOneof("eventType"))


def iso_timestamp(ts: timestamp_pb2.Timestamp, *, fraction: bool = True) -> str:
    """A protobuf timestamp as ISO-8601 UTC with a Z suffix (to the second when fraction is false)."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts.seconds))
    return f"{seconds}.{ts.nanos // 1000:06d}Z" if fraction else f"{seconds}Z"


def parse_json_text(text: str | None) -> Any:
    """A stored payload as the JSON token the extension would hand out (raw text if it is not JSON)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def current_execution(past: Sequence[pb.HistoryEvent], new: Sequence[pb.HistoryEvent]
                      ) -> tuple[list[pb.HistoryEvent], list[pb.HistoryEvent]]:
    """Drop completions whose task was never scheduled in this execution.

    The engine delivers a late activity result, timer or sub-orchestration outcome to whatever
    execution the instance is in; after continue_as_new that is a new one, where the task id may
    mean something else. DTFx discards such messages by execution id; this does the same by checking
    that the scheduling event is earlier in the (per-execution) history.
    """
    scheduled: set[tuple[str, int, int]] = set()

    def keep(event: pb.HistoryEvent) -> bool:
        kind = event_kind(event)
        if kind in ("taskScheduled", "subOrchestrationInstanceCreated", "timerCreated"):
            scheduled.add(_scheduling_key(kind, event))
        return kind not in _COMPLETING_EVENTS or _completion_key(kind, event) in scheduled

    return [e for e in past if keep(e)], [e for e in new if keep(e)]


def _scheduling_key(kind: str, event: pb.HistoryEvent) -> tuple[str, int, int]:
    fire_at = event.timerCreated.fireAt.ToNanoseconds() if kind == "timerCreated" else 0
    return kind, event.eventId, fire_at


def _completion_key(kind: str, event: pb.HistoryEvent) -> tuple[str, int, int]:
    payload = getattr(event, kind)
    if kind == "timerFired":
        return "timerCreated", payload.timerId, payload.fireAt.ToNanoseconds()
    return _COMPLETING_EVENTS[kind], payload.taskScheduledId, 0


def execution_started(events: Iterable[pb.HistoryEvent]) -> pb.ExecutionStartedEvent:
    """The ExecutionStarted payload of a history (each execution's history holds exactly one)."""
    for event in events:
        if event.HasField("executionStarted"):
            return event.executionStarted
    raise UnsupportedHistoryError("history has no executionStarted event")


def execution_id(instance_id: str, events: Sequence[pb.HistoryEvent]) -> str:
    """A stable id for the current execution, like DTFx's ExecutionId.

    The engine does not report one; the first OrchestratorStarted of an execution is stamped when
    the execution is created, so it tells executions of one instance apart and never changes on replay.
    """
    first = iso_timestamp(events[0].timestamp) if events else ""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{instance_id}/{first}").hex


def orchestration_context(instance_id: str, past: Sequence[pb.HistoryEvent], new: Sequence[pb.HistoryEvent],
                          parent_instance_id: str | None) -> str:
    """The JSON context the extension sends to a Python orchestrator (its trigger payload)."""
    started = execution_started([*past, *new])
    return json.dumps({
        "history": [*(v1_event(e, True) for e in past), *(v1_event(e, False) for e in new)],
        "instanceId": instance_id,
        "isReplaying": bool(past),
        "parentInstanceId": parent_instance_id,
        "input": parse_json_text(started.input.value if started.HasField("input") else None),
        "upperSchemaVersion": UPPER_SCHEMA_VERSION,
    })


def v1_event(event: pb.HistoryEvent, is_played: bool) -> dict[str, Any]:
    """One history event in the extension's JSON form; IsPlayed marks events from earlier episodes."""
    kind = event_kind(event)
    converter = _CONVERTERS.get(kind)
    if converter is None:
        raise UnsupportedHistoryError(f"history event '{kind}' has no Durable Functions equivalent")
    event_type, fields = converter
    return {"EventType": event_type, "EventId": event.eventId, "IsPlayed": is_played,
            "Timestamp": iso_timestamp(event.timestamp), **fields(getattr(event, kind))}


def _text(message: Any, field: str) -> str | None:
    return getattr(message, field).value if message.HasField(field) else None


def _failure(e: Any) -> dict[str, Any]:
    details = e.failureDetails
    return {"TaskScheduledId": e.taskScheduledId, "Reason": details.errorMessage,
            "Details": details.stackTrace.value if details.HasField("stackTrace") else None}


_CONVERTERS: dict[str, tuple[int, Callable[[Any], dict[str, Any]]]] = {
    # ExecutionStarted must carry Version (null is fine): the SDK reads it unconditionally.
    "executionStarted": (0, lambda e: {"Name": e.name, "Version": _text(e, "version"), "Input": _text(e, "input")}),
    "executionCompleted": (1, lambda e: {"OrchestrationStatus": e.orchestrationStatus, "Result": _text(e, "result")}),
    "executionTerminated": (3, lambda e: {"Input": _text(e, "input")}),
    "taskScheduled": (4, lambda e: {"Name": e.name, "Input": _text(e, "input")}),
    "taskCompleted": (5, lambda e: {"TaskScheduledId": e.taskScheduledId, "Result": _text(e, "result")}),
    "taskFailed": (6, _failure),
    "subOrchestrationInstanceCreated": (
        7, lambda e: {"Name": e.name, "InstanceId": e.instanceId, "Input": _text(e, "input")}),
    "subOrchestrationInstanceCompleted": (
        8, lambda e: {"TaskScheduledId": e.taskScheduledId, "Result": _text(e, "result")}),
    "subOrchestrationInstanceFailed": (9, _failure),
    "timerCreated": (10, lambda e: {"FireAt": iso_timestamp(e.fireAt)}),
    "timerFired": (11, lambda e: {"TimerId": e.timerId, "FireAt": iso_timestamp(e.fireAt)}),
    "orchestratorStarted": (12, lambda e: {}),
    "orchestratorCompleted": (13, lambda e: {}),
    "eventSent": (14, lambda e: {"InstanceId": e.instanceId, "Name": e.name, "Input": _text(e, "input")}),
    "eventRaised": (15, lambda e: {"Name": e.name, "Input": _text(e, "input")}),
    "continueAsNew": (16, lambda e: {"Input": _text(e, "input")}),
    "executionSuspended": (19, lambda e: {"Reason": _text(e, "input")}),
    "executionResumed": (20, lambda e: {"Reason": _text(e, "input")}),
}
