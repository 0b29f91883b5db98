"""Turns the SDK's OrchestratorState actions into durabletask OrchestratorActions, as the extension's shim does.

The extension replays the whole action list against DTFx on every episode: each task-creating
action takes the next sequence id (WhenAll/WhenAny flattened depth first; waiting for an external
event takes none; a cancelled timer still takes one), ids already scheduled in history are matched
against it, and only the rest is scheduled. Actions the devhost cannot honour fail the instance.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
from azure.durable_functions.models.actions.ActionType import ActionType

from devhost.durable.catalog import FunctionCatalog, UnknownFunctionError
from devhost.durable.history import event_kind

_SCHEDULING_EVENT = {
    ActionType.CALL_ACTIVITY: "taskScheduled",
    ActionType.CREATE_TIMER: "timerCreated",
    ActionType.CALL_SUB_ORCHESTRATOR: "subOrchestrationInstanceCreated",
}
_WITHOUT_ID = {ActionType.WAIT_FOR_EXTERNAL_EVENT, ActionType.CONTINUE_AS_NEW}
_COMPOUND = {ActionType.WHEN_ALL, ActionType.WHEN_ANY}
_UNSUPPORTED_API = {
    ActionType.CALL_ACTIVITY_WITH_RETRY: "CallActivityWithRetry (context.call_activity_with_retry)",
    ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
        "CallSubOrchestratorWithRetry (context.call_sub_orchestrator_with_retry)",
    ActionType.CALL_ENTITY: "CallEntity (context.call_entity)",
    ActionType.CALL_HTTP: "CallHttp (context.call_http)",
    ActionType.SIGNAL_ENTITY: "SignalEntity (context.signal_entity)",
}


class OrchestrationRejected(Exception):
    """The orchestration must fail; the message is the reason shown in its status."""


@dataclass(frozen=True)
class Scheduled:
    """A task-creating event already in history: what it was and the name it called."""

    kind: str
    name: str


@dataclass(frozen=True)
class Plan:
    """What one episode asks of the engine: new actions, and whether (with what input) it continues as new."""

    actions: list[pb.OrchestratorAction]
    continues_as_new: bool = False
    next_input: str | None = None


def scheduled_in_history(events: Sequence[pb.HistoryEvent]) -> dict[int, Scheduled]:
    """Task-creating events by sequence id."""
    found = {}
    for event in events:
        kind = event_kind(event)
        if kind in ("taskScheduled", "subOrchestrationInstanceCreated"):
            found[event.eventId] = Scheduled(kind, getattr(event, kind).name)
        elif kind == "timerCreated":
            found[event.eventId] = Scheduled(kind, "")
    return found


def plan_actions(state: dict[str, Any], *, instance_id: str, execution_id: str,
                 history: dict[int, Scheduled], catalog: FunctionCatalog) -> Plan:
    """Match the episode's actions against history and translate the new ones.

    Raises OrchestrationRejected for actions devhost does not support, calls to unknown
    functions, and replays that no longer match history (non-determinism).
    """
    if state.get("schemaVersion") != 2:
        raise OrchestrationRejected(f"unexpected orchestrator state schema {state.get('schemaVersion')!r}; "
                                    "devhost speaks replay schema 2")
    numbered = list(_numbered(itertools.chain.from_iterable(state.get("actions", []))))
    _check_history_matches(numbered, history)
    new = [_to_proto(i, a, instance_id, execution_id, catalog) for i, a in numbered
           if i is not None and i not in history]
    continued = [a for _, a in numbered if a["actionType"] == ActionType.CONTINUE_AS_NEW]
    if continued:
        return Plan(new, continues_as_new=True, next_input=_instance_input(continued[-1].get("input")))
    return Plan(new)


def _numbered(actions: Iterator[dict[str, Any]], ids: Iterator[int] | None = None
              ) -> Iterator[tuple[int | None, dict[str, Any]]]:
    ids = ids if ids is not None else itertools.count()
    for action in actions:
        kind = action["actionType"]
        if kind in _COMPOUND:
            yield from _numbered(iter(action["compoundActions"]), ids)
        elif kind in _UNSUPPORTED_API:
            raise OrchestrationRejected(
                f"devhost does not support {_UNSUPPORTED_API[kind]}: it runs activities, timers, external "
                "events, sub-orchestrations and continue_as_new, and fails anything else rather than skip it"
            )
        elif kind not in _SCHEDULING_EVENT and kind not in _WITHOUT_ID:
            raise OrchestrationRejected(f"unknown orchestrator action type {kind!r}")
        else:
            yield (None if kind in _WITHOUT_ID else next(ids)), action


def _check_history_matches(numbered: list[tuple[int | None, dict[str, Any]]], history: dict[int, Scheduled]) -> None:
    by_id = {i: a for i, a in numbered if i is not None}
    for task_id, scheduled in history.items():
        action = by_id.get(task_id)
        if action is None:
            raise OrchestrationRejected(_nondeterminism(task_id, scheduled, "hasn't scheduled it"))
        expected = _SCHEDULING_EVENT[action["actionType"]]
        name = action.get("functionName", "")
        if expected != scheduled.kind or name.lower() != scheduled.name.lower():
            raise OrchestrationRejected(_nondeterminism(task_id, scheduled, f"asks for {expected} '{name}' instead"))


def _nondeterminism(task_id: int, scheduled: Scheduled, replay: str) -> str:
    return (f"Non-Deterministic workflow detected: a previous execution of this orchestration did {scheduled.kind} "
            f"'{scheduled.name}' with sequence ID {task_id}, but the current replay {replay}. "
            "Was a change made to the orchestrator code after this instance had already started running?")


def _to_proto(task_id: int, action: dict[str, Any], instance_id: str, execution_id: str,
              catalog: FunctionCatalog) -> pb.OrchestratorAction:
    kind = action["actionType"]
    try:
        if kind == ActionType.CALL_ACTIVITY:
            catalog.activity(action["functionName"])
            return helpers.new_schedule_task_action(task_id, action["functionName"], action.get("input"), tags=None)
        if kind == ActionType.CALL_SUB_ORCHESTRATOR:
            catalog.orchestrator(action["functionName"])
            return _sub_orchestration(task_id, action, instance_id, execution_id)
    except UnknownFunctionError as exc:
        raise OrchestrationRejected(str(exc)) from exc
    return helpers.new_create_timer_action(task_id, _parse_fire_at(action["fireAt"]))


def _sub_orchestration(task_id: int, action: dict[str, Any], instance_id: str,
                       execution_id: str) -> pb.OrchestratorAction:
    # Without an explicit id DTFx names the child "<ExecutionId>:<sequence id>", unique per execution.
    child_id = action.get("instanceId") or f"{execution_id}:{task_id}"
    if child_id == instance_id:
        raise OrchestrationRejected("The instance ID of a sub-orchestration must be different than the "
                                    "instance ID of a parent orchestration.")
    return helpers.new_create_sub_orchestration_action(
        task_id, action["functionName"], child_id, _instance_input(action.get("input")), action.get("version"))


def _instance_input(sdk_input: str | None) -> str | None:
    """How DTFx stores an orchestration input the SDK sent: the SDK's JSON text, serialised again as a string."""
    return None if sdk_input is None else json.dumps(sdk_input)


def _parse_fire_at(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
