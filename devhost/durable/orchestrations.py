"""Runs one orchestrator work item through the app's DFApp handler, as the extension's out-of-proc shim does."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
from azure.functions import meta

from devhost.durable.actions import OrchestrationRejected, Plan, plan_actions
from devhost.durable.catalog import FunctionCatalog, UnknownFunctionError
from devhost.durable.executions import ExecutionBook
from devhost.durable.history import (
    UnsupportedHistoryError,
    current_execution,
    execution_id,
    execution_started,
    orchestration_context,
)
from devhost.invoker import FunctionFailedError, FunctionTimeoutError, Invoker

log = logging.getLogger("devhost")

# How the SDK appends its state to the exception it raises when the orchestrator function fails.
OUT_OF_PROC_DATA = "\n\n$OutOfProcData$:"


@dataclass(frozen=True)
class Episode:
    """The outcome of one replay: actions for the engine, the completion if any, and a log verb."""

    actions: list[pb.OrchestratorAction]
    completion: pb.OrchestratorAction | None = None
    custom_status: str | None = None
    outcome: str | None = None


def failed_episode(message: str, actions: Sequence[pb.OrchestratorAction] = (),
                   custom_status: str | None = None) -> Episode:
    """An episode that fails the instance with `message` as its output, like an OrchestrationFailureException."""
    details = pb.TaskFailureDetails(errorType="OrchestrationFailureException", errorMessage=message)
    completion = helpers.new_complete_orchestration_action(
        -1, pb.ORCHESTRATION_STATUS_FAILED, json.dumps(message), failure_details=details)
    return Episode(list(actions), completion, custom_status, f"failed: {message}")


def failed_response(instance_id: str, completion_token: str, message: str) -> pb.OrchestratorResponse:
    """A response that only fails the instance (when devhost itself could not run the episode)."""
    completion = failed_episode(message).completion
    return pb.OrchestratorResponse(instanceId=instance_id, completionToken=completion_token,
                                   actions=[completion] if completion else [])


@dataclass
class OrchestrationRunner:
    """Turns an OrchestratorRequest into an OrchestratorResponse by invoking the orchestrator function."""

    catalog: FunctionCatalog
    invoker: Invoker
    book: ExecutionBook

    def respond(self, request: pb.OrchestratorRequest, completion_token: str) -> pb.OrchestratorResponse:
        """Replay the instance and answer with the new actions (the engine runs one per instance at a time)."""
        past, new = current_execution(request.pastEvents, request.newEvents)
        name = execution_started([*past, *new]).name
        if past and past[-1].HasField("executionCompleted"):
            log.warning("Orchestration '%s' (%s) has ended; ignoring late events", name, request.instanceId)
            return pb.OrchestratorResponse(instanceId=request.instanceId, completionToken=completion_token)
        if not past:
            log.info("Orchestration '%s' (%s) started", name, request.instanceId)
        episode = self._episode(request.instanceId, name, past, new)
        self._record(request.instanceId, completion_token, episode)
        if episode.outcome:
            log.info("Orchestration '%s' (%s) %s", name, request.instanceId, episode.outcome)
        status = self.book.custom_status(request.instanceId, episode.custom_status)
        return pb.OrchestratorResponse(
            instanceId=request.instanceId, completionToken=completion_token,
            actions=[*episode.actions, *([episode.completion] if episode.completion else [])],
            customStatus=helpers.get_string_value(status))

    def _episode(self, instance_id: str, name: str, past: list[pb.HistoryEvent],
                 new: list[pb.HistoryEvent]) -> Episode:
        terminated = next((e.executionTerminated for e in new if e.HasField("executionTerminated")), None)
        if terminated is not None:
            # The extension ends a terminated instance without running the orchestrator again.
            reason = terminated.input.value if terminated.HasField("input") else None
            completion = helpers.new_complete_orchestration_action(-1, pb.ORCHESTRATION_STATUS_TERMINATED, reason)
            return Episode([], completion, outcome="terminated")
        try:
            state = self._invoke(instance_id, name, past, new)
        except (UnknownFunctionError, UnsupportedHistoryError, FunctionTimeoutError) as exc:
            return failed_episode(f"Orchestrator function '{name}' failed: {exc}")
        return self._decide(instance_id, name, state, [*past, *new])

    def _invoke(self, instance_id: str, name: str, past: list[pb.HistoryEvent],
                new: list[pb.HistoryEvent]) -> dict[str, Any]:
        spec = self.catalog.orchestrator(name)
        context = orchestration_context(instance_id, past, new, self.book.parent_of(instance_id))
        try:
            datum = self.invoker.invoke(spec, meta.Datum(type="json", value=context), reason="(null)")
        except FunctionFailedError as exc:
            return _state_from_failure(str(exc))
        if datum is None:
            return _state_from_failure("the orchestrator function returned no state")
        state: dict[str, Any] = json.loads(datum.value)
        return state

    def _decide(self, instance_id: str, name: str, state: dict[str, Any],
                history: list[pb.HistoryEvent]) -> Episode:
        custom_status = json.dumps(state["customStatus"]) if "customStatus" in state else None
        error = state.get("error")
        try:
            plan = plan_actions(state, instance_id=instance_id, execution_id=execution_id(instance_id, history),
                                history=history, catalog=self.catalog)
        except OrchestrationRejected as exc:
            # The orchestrator's own exception is the better explanation when there is one.
            return failed_episode(f"Orchestrator function '{name}' failed: {error or exc}", (), custom_status)
        if error:
            return failed_episode(f"Orchestrator function '{name}' failed: {error}", plan.actions, custom_status)
        if not state.get("isDone"):
            return Episode(plan.actions, None, custom_status)
        return Episode(plan.actions, _completion(state, plan), custom_status,
                       "continued as new" if plan.continues_as_new else "completed")

    def _record(self, instance_id: str, completion_token: str, episode: Episode) -> None:
        for action in episode.actions:
            if action.HasField("createSubOrchestration"):
                self.book.add_child(instance_id, action.createSubOrchestration.instanceId)
        activities = sum(1 for a in episode.actions if a.HasField("scheduleTask"))
        self.book.activities_scheduled(instance_id, completion_token, activities)
        if episode.completion is not None:
            status = episode.completion.completeOrchestration.orchestrationStatus
            self.book.execution_ended(instance_id, instance_done=status != pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW)


def _state_from_failure(message: str) -> dict[str, Any]:
    """Split the SDK's "<message>\\n\\n$OutOfProcData$:<state json>" (just a message if the SDK failed early)."""
    error, marker, data = message.partition(OUT_OF_PROC_DATA)
    if not marker:
        return {"error": message, "actions": [], "schemaVersion": 2}
    state: dict[str, Any] = json.loads(data)
    # The state's own error falls back to the exception type when the message is empty.
    state["error"] = state.get("error") or error
    return state


def _completion(state: dict[str, Any], plan: Plan) -> pb.OrchestratorAction:
    if plan.continues_as_new:
        return helpers.new_complete_orchestration_action(
            -1, pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, plan.next_input)
    output = json.dumps(state["output"]) if "output" in state else None
    return helpers.new_complete_orchestration_action(-1, pb.ORCHESTRATION_STATUS_COMPLETED, output)
