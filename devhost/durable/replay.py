"""The extension's replay of an SDK action list on DTFx: which sequence id each task takes, and when.

On every episode the extension's OutOfProcOrchestrationShim re-runs the SDK's action list against
DTFx's orchestration context while DTFx plays the history in order (ProcessAsyncActionsV2): it
starts each action and awaits it before starting the next, and every continuation runs as soon as
the event that ends a task is played. A task takes the next sequence id when it starts: WhenAll and
WhenAny start their children in order, a cancelled timer still takes one (and ends at once), waiting
for an external event takes none. A ...WithRetry action runs DTFx's RetryInterceptor: after each
failed attempt it creates a timer and, when that fires, the next attempt, each taking the next id
when the failure (or the timer) is played, so they interleave with whatever else runs.

Scheduling events in history must meet an id the replay has already reached, with the same kind
and name, or the orchestration is non-deterministic. Ids the replay asked for that history does not
hold yet are the episode's new actions.
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
from azure.durable_functions.models.actions.ActionType import ActionType

from devhost.durable.history import event_kind
from devhost.durable.retries import RetryPolicy

log = logging.getLogger("devhost")

# Events that end a task, and whether they fail it.
_COMPLETIONS = {
    "taskCompleted": False, "taskFailed": True,
    "subOrchestrationInstanceCompleted": False, "subOrchestrationInstanceFailed": True,
    "timerFired": False,
}
_SCHEDULING = frozenset({"taskScheduled", "timerCreated", "subOrchestrationInstanceCreated"})


class NonDeterminismError(Exception):
    """History scheduled something the replay does not (the message is shown in the instance's status)."""


@dataclass(frozen=True)
class Request:
    """What the replay asks for at one sequence id: the scheduling event history must hold, and its action.

    The action is built only for the requests history does not hold yet (most are replays).
    """

    kind: str
    name: str
    build: Callable[[], pb.OrchestratorAction]


# Builds the request for an activity or sub-orchestration action (plain or ...WithRetry) at a sequence id.
RequestBuilder = Callable[[int, dict[str, Any]], Request]


@dataclass
class _Task:
    """A task the shim awaits: it ends once, succeeded or failed, and then runs its continuations in order."""

    done: bool = False
    failed: bool = False
    _continuations: list[Callable[[], None]] = field(default_factory=list)

    def then(self, continuation: Callable[[], None]) -> None:
        if self.done:
            continuation()
        else:
            self._continuations.append(continuation)

    def end(self, *, failed: bool = False) -> None:
        if self.done:
            return
        self.done, self.failed = True, failed
        continuations, self._continuations = self._continuations, []
        for continuation in continuations:
            continuation()


class ShimReplay:
    """One replay of an execution: run `replay(actions, history)` once, get the new requests."""

    def __init__(self, build: RequestBuilder, instance_id: str) -> None:
        self._build = build
        self._instance_id = instance_id
        self._now = datetime.min.replace(tzinfo=UTC)
        self._next_id = 0
        self._requested: dict[int, Request] = {}
        self._open: dict[int, _Task] = {}
        self._waiters: defaultdict[str, list[_Task]] = defaultdict(list)
        self._buffered: Counter[str] = Counter()
        self._pending: Iterator[dict[str, Any]] = iter(())

    def replay(self, actions: Sequence[dict[str, Any]], history: Sequence[pb.HistoryEvent]) -> list[Request]:
        """Play `history` with the shim awaiting `actions`; the requests history does not hold yet, by id."""
        self._pending = iter(actions)
        for event in history:
            self._play(event)
        return [self._requested[i] for i in sorted(self._requested)]

    @property
    def now(self) -> datetime:
        """DTFx's CurrentUtcDateTime: the start time of the episode whose events are being played."""
        return self._now

    def _play(self, event: pb.HistoryEvent) -> None:
        kind = event_kind(event)
        if kind == "orchestratorStarted":
            self._now = event.timestamp.ToDatetime(tzinfo=UTC)
        elif kind == "executionStarted":
            self._await_next()
        elif kind in _SCHEDULING:
            self._match(kind, event)
        elif kind in _COMPLETIONS:
            payload = getattr(event, kind)
            task_id = payload.timerId if kind == "timerFired" else payload.taskScheduledId
            # DTFx ignores the completion of a task it no longer waits for (a cancelled timer, a duplicate).
            task = self._open.pop(task_id, None)
            if task is not None:
                task.end(failed=_COMPLETIONS[kind])
        elif kind == "eventRaised":
            self._raise(event.eventRaised.name)

    def _await_next(self) -> None:
        """Start actions in turn until one has to wait for history (the shim awaits each before the next)."""
        for action in self._pending:
            task = self._start(action)
            if not task.done:
                task.then(self._await_next)
                return

    def _match(self, kind: str, event: pb.HistoryEvent) -> None:
        name = "" if kind == "timerCreated" else getattr(event, kind).name
        request = self._requested.pop(event.eventId, None)
        if request is None:
            raise NonDeterminismError(_nondeterminism(event.eventId, kind, name, "hasn't scheduled it"))
        if request.kind != kind or request.name.lower() != name.lower():
            raise NonDeterminismError(_nondeterminism(
                event.eventId, kind, name, f"asks for {request.kind} '{request.name}' instead"))

    def _start(self, action: dict[str, Any]) -> _Task:
        kind = action["actionType"]
        if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_SUB_ORCHESTRATOR):
            return self.call(action)
        if kind in (ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
            retry = _RetryInterceptor(self, RetryPolicy.from_json(action.get("retryOptions") or {}), action, self._now)
            retry.invoke()
            return retry.outcome
        if kind == ActionType.CREATE_TIMER:
            return self.timer(_parse_fire_at(action["fireAt"]), cancelled=bool(action.get("isCanceled")))
        if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            return self._wait_for(action["externalEventName"])
        if kind == ActionType.WHEN_ALL:
            return _when_all([self._start(a) for a in action["compoundActions"]])
        if kind == ActionType.WHEN_ANY:
            return _when_any([self._start(a) for a in action["compoundActions"]])
        return _Task(done=True)  # ContinueAsNew (the caller rejected every other type): the caller records it

    def call(self, action: dict[str, Any]) -> _Task:
        """Schedule the activity or sub-orchestration an action calls (once per attempt of a ...WithRetry action)."""
        return self._schedule(lambda i: self._build(i, action))[1]

    def timer(self, fire_at: datetime, *, cancelled: bool = False) -> _Task:
        """Create a timer; the shim cancels a cancelled one at once: it keeps its id and action, and ends."""
        task_id, task = self._schedule(
            lambda i: Request("timerCreated", "", lambda: helpers.new_create_timer_action(i, fire_at)))
        if cancelled:
            del self._open[task_id]
            task.end()
        return task

    def warn_stuck(self, action: dict[str, Any], why: str) -> None:
        """DTFx ended a retried call where the SDK still waits: on Azure the instance waits for ever."""
        log.warning("Orchestration %s: retried call to '%s': %s; on Azure this instance stays Running",
                    self._instance_id, action.get("functionName"), why)

    def _schedule(self, request_at: Callable[[int], Request]) -> tuple[int, _Task]:
        task_id = self._next_id
        self._next_id += 1
        self._requested[task_id] = request_at(task_id)
        task = self._open[task_id] = _Task()
        return task_id, task

    def _wait_for(self, name: str) -> _Task:
        # The extension stacks waiters per name (case-insensitive): the newest takes the next event,
        # and an event nobody waits for yet is buffered for the next waiter.
        task = _Task()
        self._waiters[name.lower()].append(task)
        if self._buffered[name.lower()]:
            self._buffered[name.lower()] -= 1
            self._raise(name)
        return task

    def _raise(self, name: str) -> None:
        waiters = self._waiters[name.lower()]
        if waiters:
            waiters.pop().end()
        else:
            self._buffered[name.lower()] += 1


@dataclass
class _RetryInterceptor:
    """DurableTask.Core's RetryInterceptor.Invoke, played step by step as history ends each attempt and timer."""

    replay: ShimReplay
    policy: RetryPolicy
    action: dict[str, Any]
    first_attempt: datetime
    failed_attempts: int = 0
    outcome: _Task = field(default_factory=_Task)

    def invoke(self) -> None:
        if self.policy.max_attempts < 1:
            # The loop never runs and Invoke returns default(T): no attempt, no failure.
            self.replay.warn_stuck(self.action, "maxNumberOfAttempts is below 1, so the extension never makes it, "
                                                "while azure-functions-durable waits for its result")
            self.outcome.end()
            return
        self._try()

    def _try(self) -> None:
        attempt = self.replay.call(self.action)
        attempt.then(lambda: self._after(attempt))

    def _after(self, attempt: _Task) -> None:
        if not attempt.failed:
            self.outcome.end()
            return
        now = self.replay.now
        if self.failed_attempts + 1 == self.policy.max_attempts:
            # DTFx (since 2.7) keeps the extra timer older versions created after the last attempt, for
            # replay compatibility, but fires it at once; the SDK waits for it before raising.
            self.replay.timer(now).then(lambda: self.outcome.end(failed=True))
            return
        delay = self.policy.next_delay(self.failed_attempts, self.first_attempt, now)
        if not delay:
            self.replay.warn_stuck(self.action, "its retry timeout has passed, so the extension stops retrying "
                                                "without the retry timer azure-functions-durable waits for")
            self.outcome.end(failed=True)
            return
        self.replay.timer(now + delay).then(self._retry)

    def _retry(self) -> None:
        self.failed_attempts += 1
        self._try()


def _when_all(children: list[_Task]) -> _Task:
    """Task.WhenAll: ends when every child has ended (even after one failed, unlike the SDK's task_all)."""
    task = _Task()
    running = len(children)

    def child_ended() -> None:
        nonlocal running
        running -= 1
        if running == 0:
            task.end()

    for child in children:
        child.then(child_ended)
    if not children:
        task.end()
    return task


def _when_any(children: list[_Task]) -> _Task:
    """Task.WhenAny: ends (never failed) when the first child ends."""
    task = _Task()
    for child in children:
        child.then(task.end)
    return task


def _nondeterminism(task_id: int, kind: str, name: str, replay: str) -> str:
    return (f"Non-Deterministic workflow detected: a previous execution of this orchestration did {kind} "
            f"'{name}' with sequence ID {task_id}, but the current replay {replay}. "
            "Was a change made to the orchestrator code after this instance had already started running?")


def _parse_fire_at(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
