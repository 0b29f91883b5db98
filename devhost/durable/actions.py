"""Turns the SDK's OrchestratorState actions into durabletask OrchestratorActions, as the extension's shim does.

The extension replays the whole action list against DTFx on every episode (see replay.py for the
order in which tasks take sequence ids, including the attempts and timers of ...WithRetry calls);
ids already scheduled in history are matched against it, and only the rest is scheduled. Devhost
runs activities, timers, external events, sub-orchestrations, continue_as_new and the ...WithRetry
calls (DTFx's RetryInterceptor); actions it cannot honour (entities, Durable HTTP) fail the instance.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
from azure.durable_functions.models.actions.ActionType import ActionType

from devhost.durable.catalog import FunctionCatalog, UnknownFunctionError
from devhost.durable.replay import NonDeterminismError, Request, ShimReplay
from devhost.durable.retries import RetryOptionsError

_SUPPORTED = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR,
              ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY, ActionType.CREATE_TIMER,
              ActionType.WAIT_FOR_EXTERNAL_EVENT, ActionType.CONTINUE_AS_NEW}
_COMPOUND = {ActionType.WHEN_ALL, ActionType.WHEN_ANY}
_ACTIVITY_CALLS = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY}
_UNSUPPORTED_API = {
    ActionType.CALL_ENTITY: "CallEntity (context.call_entity)",
    ActionType.CALL_HTTP: "CallHttp (context.call_http)",
    ActionType.SIGNAL_ENTITY: "SignalEntity (context.signal_entity)",
}


class OrchestrationRejected(Exception):
    """The orchestration must fail; the message is the reason shown in its status."""


@dataclass(frozen=True)
class Plan:
    """What one episode asks of the engine: new actions, and whether (with what input) it continues as new."""

    actions: list[pb.OrchestratorAction]
    continues_as_new: bool = False
    next_input: str | None = None


def plan_actions(state: dict[str, Any], *, instance_id: str, execution_id: str,
                 history: Sequence[pb.HistoryEvent], catalog: FunctionCatalog) -> Plan:
    """Replay the episode's actions against the execution's history and translate the new ones.

    Raises OrchestrationRejected for actions devhost does not support, calls to unknown
    functions, retry options the extension refuses, and replays that no longer match history
    (non-determinism).
    """
    if state.get("schemaVersion") != 2:
        raise OrchestrationRejected(f"unexpected orchestrator state schema {state.get('schemaVersion')!r}; "
                                    "devhost speaks replay schema 2")
    actions = list(itertools.chain.from_iterable(state.get("actions", [])))
    continued = [a for a in _leaves(actions) if a["actionType"] == ActionType.CONTINUE_AS_NEW]

    def request(task_id: int, action: dict[str, Any]) -> Request:
        return _request(task_id, action, instance_id, execution_id, catalog)

    try:
        new = [r.build() for r in ShimReplay(request, instance_id).replay(actions, history)]
    except (NonDeterminismError, RetryOptionsError, UnknownFunctionError) as exc:
        raise OrchestrationRejected(str(exc)) from exc
    if continued:
        return Plan(new, continues_as_new=True, next_input=_instance_input(continued[-1].get("input")))
    return Plan(new)


def _leaves(actions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The actions under WhenAll/WhenAny, depth first; OrchestrationRejected for any devhost cannot run."""
    for action in actions:
        kind = action["actionType"]
        if kind in _COMPOUND:
            yield from _leaves(action["compoundActions"])
        elif kind in _UNSUPPORTED_API:
            raise OrchestrationRejected(
                f"devhost does not support {_UNSUPPORTED_API[kind]}: it runs activities, timers, external events, "
                "sub-orchestrations, retries and continue_as_new, and fails anything else rather than skip it"
            )
        elif kind not in _SUPPORTED:
            raise OrchestrationRejected(f"unknown orchestrator action type {kind!r}")
        else:
            yield action


def _request(task_id: int, action: dict[str, Any], instance_id: str, execution_id: str,
             catalog: FunctionCatalog) -> Request:
    """The activity or sub-orchestration an action calls, at `task_id` (the extension checks the function exists)."""
    name = action["functionName"]
    if action["actionType"] in _ACTIVITY_CALLS:
        catalog.activity(name)
        return Request("taskScheduled", name,
                       lambda: helpers.new_schedule_task_action(task_id, name, action.get("input"), tags=None))
    catalog.orchestrator(name)
    return Request("subOrchestrationInstanceCreated", name,
                   lambda: _sub_orchestration(task_id, action, instance_id, execution_id))


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

