"""The work-item loop: streams work from the engine and answers it on bounded thread pools."""
from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import durabletask.internal.orchestrator_service_pb2 as pb
import durabletask.internal.orchestrator_service_pb2_grpc as stubs
import grpc

from devhost.durable.activities import ActivityRunner, failed_activity
from devhost.durable.executions import ExecutionBook
from devhost.durable.orchestrations import OrchestrationRunner, failed_response

log = logging.getLogger("devhost")

Request = TypeVar("Request", pb.OrchestratorRequest, pb.ActivityRequest)

# The extension's defaults (maxConcurrentActivityFunctions / maxConcurrentOrchestratorFunctions):
# ten per processor. These threads only wait; the functions themselves run on the invoker's pool.
CONCURRENCY = 10 * (os.cpu_count() or 1)
_RECONNECT_DELAY = 0.5
# How long an episode that only brings activity results may wait for the instance's other running
# activities, so one replay takes many results instead of many replays a few each. The SDK replays
# the whole history every episode (~0.1 ms per event), so this is what makes large fan-outs fast.
# Azure's own queue polling delays episodes by more than this.
BATCH_WINDOW = 0.5
_ACTIVITY_RESULTS = frozenset({"orchestratorStarted", "taskCompleted", "taskFailed"})


class RunningActivities:
    """Counts activity work items taken but not yet answered, per instance."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._changed = threading.Condition()

    def started(self, instance_id: str) -> None:
        with self._changed:
            self._counts[instance_id] += 1

    def finished(self, instance_id: str) -> None:
        with self._changed:
            self._counts[instance_id] -= 1
            if self._counts[instance_id] <= 0:
                del self._counts[instance_id]
                self._changed.notify_all()

    def any_for(self, instance_id: str) -> bool:
        with self._changed:
            return self._counts[instance_id] > 0

    def wait_until_none(self, instance_id: str, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._counts[instance_id] <= 0, timeout)


class WorkItemLoop:
    """Reads GetWorkItems and runs each item on its pool; activities in parallel, orchestrations per instance."""

    def __init__(self, stub: stubs.TaskHubSidecarServiceStub, orchestrations: OrchestrationRunner,
                 activities: ActivityRunner, book: ExecutionBook) -> None:
        self._stub = stub
        self._orchestrations = orchestrations
        self._activities = activities
        self._book = book
        self._running = RunningActivities()
        self._stopping = threading.Event()
        self._stream: grpc._CallIterator[pb.WorkItem] | None = None  # types-grpcio's server-streaming call
        self._orchestration_pool = concurrent.futures.ThreadPoolExecutor(CONCURRENCY, "durable-orchestrator")
        self._activity_pool = concurrent.futures.ThreadPoolExecutor(CONCURRENCY, "durable-activity")
        self._thread = threading.Thread(target=self._read, name="durable-work-items", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and drop queued items; invocations already running finish on their own."""
        self._stopping.set()
        if self._stream is not None:
            self._stream.cancel()
        self._orchestration_pool.shutdown(wait=False, cancel_futures=True)
        self._activity_pool.shutdown(wait=False, cancel_futures=True)
        self._thread.join(timeout=5)

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                self._stream = self._stub.GetWorkItems(pb.GetWorkItemsRequest())
                for item in self._stream:
                    self._dispatch(item)
            except grpc.RpcError as exc:
                if self._stopping.is_set():
                    return
                log.warning("Durable work-item stream broke (%s); reconnecting", exc.code())
            self._stopping.wait(_RECONNECT_DELAY)

    def _dispatch(self, item: pb.WorkItem) -> None:
        token = item.completionToken
        if item.HasField("orchestratorRequest"):
            self._submit(self._orchestration_pool, self._answer_orchestration, item.orchestratorRequest, token)
        elif item.HasField("activityRequest"):
            self._running.started(item.activityRequest.orchestrationInstance.instanceId)
            self._submit(self._activity_pool, self._answer_activity, item.activityRequest, token)

    def _submit(self, pool: concurrent.futures.ThreadPoolExecutor,
                answer: Callable[[Request, str], None], request: Request, token: str) -> None:
        try:
            pool.submit(answer, request, token)
        except RuntimeError:
            if not self._stopping.is_set():
                raise

    def _answer_orchestration(self, request: pb.OrchestratorRequest, token: str) -> None:
        if self._wait_for_more_results(request, token):
            return
        try:
            response = self._orchestrations.respond(request, token)
        except Exception as exc:
            # A bridge bug must not leave the instance in flight forever; fail it where it can be seen.
            log.exception("devhost could not run orchestration %s", request.instanceId)
            self._book.execution_ended(request.instanceId, instance_done=True)
            message = f"devhost internal error: {type(exc).__name__}: {exc}"
            response = failed_response(request.instanceId, token, message)
        self._send(self._stub.CompleteOrchestratorTask, response)

    def _wait_for_more_results(self, request: pb.OrchestratorRequest, token: str) -> bool:
        """Hand the episode back (after waiting) if more of its activities' results are on the way.

        The engine re-dispatches an abandoned episode with everything that arrived meanwhile, still
        opened by its first OrchestratorStarted, so the window counts from the first dispatch.
        """
        instance_id = request.instanceId
        if not self._running.any_for(instance_id) or not _only_activity_results(request.newEvents):
            return False
        opened = request.newEvents[0].timestamp.ToDatetime(tzinfo=UTC)
        remaining = BATCH_WINDOW - (datetime.now(UTC) - opened).total_seconds()
        if remaining <= 0:
            return False
        self._running.wait_until_none(instance_id, remaining)
        self._send(self._stub.AbandonTaskOrchestratorWorkItem,
                   pb.AbandonOrchestrationTaskRequest(completionToken=token))
        return True

    def _answer_activity(self, request: pb.ActivityRequest, token: str) -> None:
        try:
            response = self._activities.respond(request, token)
        except Exception as exc:
            log.exception("devhost could not run activity '%s'", request.name)
            response = failed_activity(request, token, f"devhost internal error: {type(exc).__name__}: {exc}")
        try:
            if self._book.activity_result_is_current(token):
                self._send(self._stub.CompleteActivityTask, response)
            else:
                log.debug("Dropping result of activity '%s' for an ended execution of %s",
                          request.name, response.instanceId)
        finally:
            self._running.finished(response.instanceId)

    def _send(self, call: Callable[[object], object], message: object) -> None:
        try:
            call(message)
        except grpc.RpcError as exc:
            if not self._stopping.is_set():
                log.error("Durable engine rejected a work-item result: %s %s", exc.code(), exc.details())


def _only_activity_results(events: Sequence[pb.HistoryEvent]) -> bool:
    return bool(events) and all(e.WhichOneof("eventType") in _ACTIVITY_RESULTS for e in events)
