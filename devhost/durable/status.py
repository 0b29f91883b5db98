"""Orchestration status in the JSON shape of the Durable extension's HTTP API (StatusResponsePayload)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import durabletask.internal.orchestrator_service_pb2 as pb

from devhost.durable.history import current_execution, event_kind, iso_timestamp, parse_json_text

RUNTIME_STATUS: dict[pb.OrchestrationStatus, str] = {
    pb.ORCHESTRATION_STATUS_RUNNING: "Running",
    pb.ORCHESTRATION_STATUS_COMPLETED: "Completed",
    pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW: "ContinuedAsNew",
    pb.ORCHESTRATION_STATUS_FAILED: "Failed",
    pb.ORCHESTRATION_STATUS_CANCELED: "Canceled",
    pb.ORCHESTRATION_STATUS_TERMINATED: "Terminated",
    pb.ORCHESTRATION_STATUS_PENDING: "Pending",
    pb.ORCHESTRATION_STATUS_SUSPENDED: "Suspended",
}
STATUS_BY_NAME = {name.lower(): value for value, name in RUNTIME_STATUS.items()}
ENDED = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
_EPISODE_MARKERS = frozenset({"orchestratorStarted", "orchestratorCompleted"})
_SCHEDULING = frozenset({"taskScheduled", "subOrchestrationInstanceCreated"})
_COMPLETIONS = frozenset({"taskCompleted", "taskFailed", "subOrchestrationInstanceCompleted",
                          "subOrchestrationInstanceFailed"})


def runtime_status(state: pb.OrchestrationState) -> str:
    """The status name the extension reports, e.g. "Running"."""
    return RUNTIME_STATUS[state.orchestrationStatus]


def status_payload(state: pb.OrchestrationState, *, show_input: bool = True,
                   history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The status object: payloads as parsed JSON, times to the second with a Z (the extension's "s" format)."""
    payload = {
        "name": state.name,
        "instanceId": state.instanceId,
        "runtimeStatus": runtime_status(state),
        "input": _json(state, "input") if show_input else None,
        "customStatus": _json(state, "customStatus"),
        "output": _json(state, "output"),
        "createdTime": iso_timestamp(state.createdTimestamp, fraction=False),
        "lastUpdatedTime": iso_timestamp(state.lastUpdatedTimestamp, fraction=False),
    }
    if history is not None:
        payload["historyEvents"] = history
    return payload


def history_payload(events: Sequence[pb.HistoryEvent], *, show_output: bool) -> list[dict[str, Any]]:
    """The `historyEvents` of a status, as the extension's DurableClient lists them.

    Episode markers are left out and a scheduling event is folded into its completion once there is
    one (timers stay: TimerCreated is listed, then TimerFired); outputs only when asked for.
    """
    live, _ = current_execution(events, [])
    scheduled = {e.eventId: e for e in live if event_kind(e) in _SCHEDULING}
    folded = {getattr(e, kind).taskScheduledId for e in live if (kind := event_kind(e)) in _COMPLETIONS}
    return [_history_entry(e, scheduled, show_output) for e in live if _listed(e, folded)]


def _listed(event: pb.HistoryEvent, folded: set[int]) -> bool:
    kind = event_kind(event)
    return kind not in _EPISODE_MARKERS and (kind not in _SCHEDULING or event.eventId not in folded)


def _history_entry(event: pb.HistoryEvent, scheduled: dict[int, pb.HistoryEvent], show_output: bool) -> dict[str, Any]:
    kind = event_kind(event)
    payload = getattr(event, kind)
    entry: dict[str, Any] = {"EventType": kind[0].upper() + kind[1:], "Timestamp": _known_time(event)}
    if kind == "executionStarted":
        entry["FunctionName"] = payload.name
    elif kind == "executionCompleted":
        entry["OrchestrationStatus"] = RUNTIME_STATUS[payload.orchestrationStatus]
    elif kind in ("eventRaised", "taskScheduled"):
        entry["Name"] = payload.name
    elif kind == "subOrchestrationInstanceCreated":
        entry |= {"Name": payload.name, "InstanceId": payload.instanceId}
    elif kind in ("timerCreated", "timerFired"):
        entry["FireAt"] = iso_timestamp(payload.fireAt)
    _add_origin(entry, payload, scheduled)
    if show_output:
        _add_output(entry, kind, payload)
    return entry


def _add_origin(entry: dict[str, Any], payload: Any, scheduled: dict[int, pb.HistoryEvent]) -> None:
    origin = scheduled.get(getattr(payload, "taskScheduledId", -1))
    if origin is not None:
        entry["FunctionName"] = getattr(origin, event_kind(origin)).name
        entry["ScheduledTime"] = _known_time(origin)


def _add_output(entry: dict[str, Any], kind: str, payload: Any) -> None:
    if kind in ("taskCompleted", "subOrchestrationInstanceCompleted", "executionCompleted"):
        entry["Result"] = parse_json_text(payload.result.value if payload.HasField("result") else None)
    elif kind in ("taskFailed", "subOrchestrationInstanceFailed"):
        entry["Reason"] = payload.failureDetails.errorMessage
    elif kind in ("eventRaised", "executionTerminated"):
        entry["Input"] = parse_json_text(payload.input.value if payload.HasField("input") else None)


def _json(state: pb.OrchestrationState, field: str) -> Any:
    return parse_json_text(getattr(state, field).value) if state.HasField(field) else None


def _known_time(event: pb.HistoryEvent) -> str | None:
    """The event's time; null where the engine left it unset (it stamps only some events)."""
    return iso_timestamp(event.timestamp) if event.timestamp.seconds or event.timestamp.nanos else None
