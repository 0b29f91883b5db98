"""Drives a DFApp orchestrator through the real azure-functions-durable replay code with built histories.

Each turn hands the SDK the whole history (v1 JSON, as the Functions host sends it), reads the
actions it returns, records the new ones as scheduled, and answers them as the scenario says.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType

ActivityAnswer = Callable[[Any], Any]
STARTED, COMPLETED_TURN = 12, 13
ACTIVITY_CALLS = (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY)


def _ts(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass
class Replay:
    """A running orchestration: `run()` plays turns until it completes or continues as new."""

    orchestrator: Any
    input: Any
    activities: dict[str, ActivityAnswer]
    wakeups: list[str]
    now: datetime
    history: list[dict[str, Any]] = field(default_factory=list)
    scheduled: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    custom_statuses: list[Any] = field(default_factory=list)

    def run(self, max_turns: int = 200) -> dict[str, Any]:
        self._event(STARTED, Timestamp=_ts(self.now))
        self._event(0, Name="job_orchestrator", Input=json.dumps(self.input), Version=None)
        for _ in range(max_turns):
            state = self._turn()
            new = self._new_actions(state)
            if state["isDone"] or any(a["actionType"] == ActionType.CONTINUE_AS_NEW for a in new):
                return {**state, "new_actions": new}
            self._schedule(new)
            self._answer(new)
        raise AssertionError("the orchestration did not finish")

    def _turn(self) -> dict[str, Any]:
        context = {"history": self.history, "instanceId": "job-1", "isReplaying": False, "parentInstanceId": None,
                   "input": json.dumps(self.input)}
        state = json.loads(self.orchestrator._function._func(json.dumps(context)))
        if state.get("customStatus") is not None:
            self.custom_statuses.append(state["customStatus"])
        for event in self.history:
            event["IsPlayed"] = True
        return state

    def _new_actions(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        flat = [a for group in state["actions"] for a in group if a["actionType"] != ActionType.WAIT_FOR_EXTERNAL_EVENT]
        return flat[len(self.scheduled):]

    def _schedule(self, new: list[dict[str, Any]]) -> None:
        for action in new:
            event_id = len(self.scheduled)
            self.scheduled.append(action)
            if action["actionType"] in ACTIVITY_CALLS:
                self._event(4, EventId=event_id, Name=action["functionName"])
            elif action["actionType"] == ActionType.CREATE_TIMER:
                self._event(10, EventId=event_id, FireAt=action["fireAt"])
            else:
                raise AssertionError(f"unexpected action {action}")
        self._event(COMPLETED_TURN)

    def _answer(self, new: list[dict[str, Any]]) -> None:
        timers = [(len(self.scheduled) - len(new) + i, a) for i, a in enumerate(new)
                  if a["actionType"] == ActionType.CREATE_TIMER]
        if timers:
            self._wake(*timers[-1])
        else:
            self._event(STARTED, Timestamp=_ts(self.now))
        for offset, action in enumerate(new):
            if action["actionType"] in ACTIVITY_CALLS:
                event_id = len(self.scheduled) - len(new) + offset
                payload = json.loads(action["input"]) if action.get("input") is not None else None
                self.calls.append((action["functionName"], payload))
                result = self.activities[action["functionName"]](payload)
                self._event(5, TaskScheduledId=event_id, Result=json.dumps(result))

    def _wake(self, timer_id: int, timer: dict[str, Any]) -> None:
        how = self.wakeups.pop(0) if self.wakeups else "timer"
        if how == "timer":
            self.now = datetime.fromisoformat(timer["fireAt"].replace("Z", "+00:00"))
            self._event(STARTED, Timestamp=_ts(self.now))
            self._event(11, TimerId=timer_id, FireAt=timer["fireAt"])
        else:
            self.now += timedelta(seconds=1)
            self._event(STARTED, Timestamp=_ts(self.now))
            self._event(15, Name=how, Input=None)

    def _event(self, event_type: int, EventId: int = -1, **fields: Any) -> None:
        self.history.append({"EventType": event_type, "EventId": EventId, "IsPlayed": False,
                             "Timestamp": fields.pop("Timestamp", _ts(self.now)), **fields})
