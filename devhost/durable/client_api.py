"""The Durable HTTP API under /runtime/webhooks/durabletask/, mirroring the extension's HttpApiHandler.

DurableOrchestrationClient calls it (its rpcBaseUrl points here) and the check-status links point
at it, so status codes, bodies and payload encodings follow the extension: a start body is one
JSON value, stored as DTFx would serialise it; event data is stored the same way.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
import durabletask.internal.orchestrator_service_pb2_grpc as stubs
import grpc
from google.protobuf import timestamp_pb2, wrappers_pb2

from devhost.durable.catalog import FunctionCatalog, UnknownFunctionError
from devhost.durable.status import ENDED, STATUS_BY_NAME, history_payload, runtime_status, status_payload
from devhost.durable.urls import WEBHOOK_PATH, management_links
from devhost.http_types import RawRequest, RawResponse

_IN_PROGRESS = frozenset({"Running", "Pending", "ContinuedAsNew", "Suspended"})
_NOT_SUPPORTED = frozenset({"rewind", "restart", "suspend", "resume"})
_REPLACEABLE = [pb.ORCHESTRATION_STATUS_COMPLETED, pb.ORCHESTRATION_STATUS_FAILED,
                pb.ORCHESTRATION_STATUS_TERMINATED, pb.ORCHESTRATION_STATUS_CANCELED]


@dataclass
class ClientApi:
    """Routes webhook requests to the engine over its gRPC client API."""

    stub: stubs.TaskHubSidecarServiceStub
    catalog: FunctionCatalog
    hub_name: str

    def handle(self, request: RawRequest) -> RawResponse:
        """Answer one request; errors from the engine become the extension's 500 error payload."""
        try:
            return self._route(request.method.upper(), _segments(request.path), request)
        except grpc.RpcError as exc:
            return _error(500, "Something went wrong while processing your request", str(exc.details()))

    def _route(self, method: str, segments: list[str], request: RawRequest) -> RawResponse:
        match segments:
            case ["orchestrators", name] if method == "POST":
                return self._start(request, name, None)
            case ["orchestrators", name, instance_id] if method == "POST":
                return self._start(request, name, instance_id)
            case ["instances"] if method in ("GET", "DELETE"):
                return self._list(request) if method == "GET" else self._purge_matching(request)
            case ["instances", instance_id] if method in ("GET", "DELETE"):
                return self._status(request, instance_id) if method == "GET" else self._purge(instance_id)
            case ["instances", instance_id, operation] if method == "POST" and operation.lower() == "terminate":
                return self._terminate(request, instance_id)
            case ["instances", instance_id, operation, event_name] if (
                    method == "POST" and operation.lower() == "raiseevent"):
                return self._raise_event(request, instance_id, event_name)
            case ["instances", _, operation] if method == "POST" and operation.lower() in _NOT_SUPPORTED:
                return _not_supported(f"the '{operation}' operation")
            case ["entities", *_]:
                return _not_supported("Durable Entities")
        return RawResponse(404)

    def _start(self, request: RawRequest, name: str, instance_id: str | None) -> RawResponse:
        try:
            self.catalog.orchestrator(name)
            payload = _json_body(request)
        except UnknownFunctionError as exc:
            return _error(400, "One or more of the arguments submitted is incorrect", str(exc),
                          "System.ArgumentException")
        except ValueError as exc:
            return _error(400, "Invalid JSON content", str(exc))
        instance_id = instance_id or uuid.uuid4().hex
        existing = self._get(instance_id)
        if existing is not None and runtime_status(existing) in _IN_PROGRESS:
            return _error(500, "Something went wrong while processing your request",
                          f"An Orchestration instance with the status {runtime_status(existing)} already exists.",
                          "System.InvalidOperationException")
        return self._create(request, name, instance_id, payload)

    def _create(self, request: RawRequest, name: str, instance_id: str, payload: Any) -> RawResponse:
        # An ended instance with the same id is replaced, as the extension's StartNewAsync does.
        self.stub.StartInstance(pb.CreateInstanceRequest(
            instanceId=instance_id, name=name, input=_stored(payload),
            version=helpers.get_string_value(request.query_value("version")),
            orchestrationIdReusePolicy=pb.OrchestrationIdReusePolicy(replaceableStatus=_REPLACEABLE)))
        timeout, interval = _number(request, "timeout"), _number(request, "pollingInterval")
        if timeout is not None and interval is not None:
            return self._wait_for_completion(request, instance_id, timeout, interval)
        return self._check_status(request, instance_id)

    def _wait_for_completion(self, request: RawRequest, instance_id: str, timeout: float,
                             interval: float) -> RawResponse:
        deadline = time.monotonic() + timeout
        while True:
            state = self._get(instance_id)
            status = runtime_status(state) if state is not None else None
            if state is not None and status == "Completed":
                return RawResponse.json(200, status_payload(state)["output"])
            if status in ENDED:
                return self._status(request, instance_id)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._check_status(request, instance_id)
            time.sleep(min(interval, remaining))

    def _check_status(self, request: RawRequest, instance_id: str) -> RawResponse:
        links = management_links(request.base_url, self.hub_name, instance_id)
        return RawResponse.json(202, links, {"Location": links["statusQueryGetUri"], "Retry-After": "10"})

    def _status(self, request: RawRequest, instance_id: str) -> RawResponse:
        state = self._get(instance_id)
        if state is None:
            return RawResponse(404)
        history = self._history(request, instance_id) if _flag(request, "showHistory", False) else None
        payload = status_payload(state, show_input=_flag(request, "showInput", True), history=history)
        status = payload["runtimeStatus"]
        if status in _IN_PROGRESS:
            return RawResponse.json(202, payload, {"Location": _request_url(request), "Retry-After": "5"})
        if status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure", False):
            return RawResponse.json(500, payload)
        return RawResponse.json(200, payload)

    def _history(self, request: RawRequest, instance_id: str) -> list[dict[str, Any]]:
        chunks = self.stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId=instance_id))
        events = [event for chunk in chunks for event in chunk.events]
        return history_payload(events, show_output=_flag(request, "showHistoryOutput", False))

    def _list(self, request: RawRequest) -> RawResponse:
        query = pb.InstanceQuery(
            runtimeStatus=_statuses(request), fetchInputsAndOutputs=True,
            createdTimeFrom=_timestamp(request, "createdTimeFrom"), createdTimeTo=_timestamp(request, "createdTimeTo"),
            instanceIdPrefix=helpers.get_string_value(request.query_value("instanceIdPrefix")),
            maxInstanceCount=int(_number(request, "top") or 0),
            continuationToken=helpers.get_string_value(request.header("x-ms-continuation-token")))
        result = self.stub.QueryInstances(pb.QueryInstancesRequest(query=query))
        show_input = _flag(request, "showInput", True)
        headers = {"x-ms-continuation-token": result.continuationToken.value} \
            if result.HasField("continuationToken") else {}
        return RawResponse.json(200, [status_payload(s, show_input=show_input) for s in result.orchestrationState],
                                headers)

    def _purge(self, instance_id: str) -> RawResponse:
        if self._get(instance_id) is None:
            return RawResponse(404)
        result = self.stub.PurgeInstances(pb.PurgeInstancesRequest(instanceId=instance_id))
        return RawResponse.json(200, {"instancesDeleted": result.deletedInstanceCount})

    def _purge_matching(self, request: RawRequest) -> RawResponse:
        created_from = _timestamp(request, "createdTimeFrom")
        if created_from is None:
            return RawResponse.json(400, "Please provide value for 'createdTimeFrom' parameter.")
        created_to = _timestamp(request, "createdTimeTo") or helpers.new_timestamp(datetime.now(UTC))
        purge_filter = pb.PurgeInstanceFilter(createdTimeFrom=created_from, createdTimeTo=created_to,
                                              runtimeStatus=_statuses(request))
        result = self.stub.PurgeInstances(pb.PurgeInstancesRequest(purgeInstanceFilter=purge_filter))
        if result.deletedInstanceCount == 0:
            return RawResponse(404)
        return RawResponse.json(200, {"instancesDeleted": result.deletedInstanceCount})

    def _terminate(self, request: RawRequest, instance_id: str) -> RawResponse:
        state = self._get(instance_id)
        if state is None:
            return RawResponse(404)
        if runtime_status(state) in ENDED:
            return RawResponse(410)
        reason = request.query_value("reason")
        self.stub.TerminateInstance(pb.TerminateRequest(instanceId=instance_id, output=_stored(reason)))
        return RawResponse(202)

    def _raise_event(self, request: RawRequest, instance_id: str, event_name: str) -> RawResponse:
        state = self._get(instance_id)
        if state is None:
            return RawResponse(404)
        if runtime_status(state) in ENDED:
            return RawResponse(410)
        if (request.header("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            return _error(400, "Only application/json request content is supported")
        try:
            data = _json_body(request)
        except ValueError as exc:
            return _error(400, "Invalid JSON content", str(exc))
        self.stub.RaiseEvent(pb.RaiseEventRequest(instanceId=instance_id, name=event_name,
                                                  input=None if data is None else _stored(data)))
        return RawResponse(202)

    def _get(self, instance_id: str) -> pb.OrchestrationState | None:
        response = self.stub.GetInstance(pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True))
        return response.orchestrationState if response.exists else None


def _segments(path: str) -> list[str]:
    relative = path.split("?", 1)[0][len(WEBHOOK_PATH):] if path.startswith(WEBHOOK_PATH) else path
    return [unquote_plus(s) for s in relative.strip("/").split("/") if s]


def _json_body(request: RawRequest) -> Any:
    """The body as one JSON value (None when empty); ValueError when it is not JSON."""
    text = request.body.decode("utf-8").strip()
    return json.loads(text) if text else None


def _stored(value: Any) -> wrappers_pb2.StringValue:
    """A payload as DTFx stores it: the JSON serialisation of the parsed value."""
    return wrappers_pb2.StringValue(value=json.dumps(value))


def _flag(request: RawRequest, name: str, default: bool) -> bool:
    value = (request.query_value(name) or "").lower()
    return {"true": True, "false": False}.get(value, default)


def _number(request: RawRequest, name: str) -> float | None:
    """A numeric query parameter; None when absent or not a number (the extension ignores bad values)."""
    try:
        return float(request.query_value(name) or "")
    except ValueError:
        return None


def _timestamp(request: RawRequest, name: str) -> timestamp_pb2.Timestamp | None:
    value = request.query_value(name)
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if parsed is None:
        return None
    return helpers.new_timestamp(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _statuses(request: RawRequest) -> list[pb.OrchestrationStatus]:
    names = ",".join(request.query.get("runtimeStatus", [])).split(",")
    return [STATUS_BY_NAME[n.strip().lower()] for n in names if n.strip().lower() in STATUS_BY_NAME]


def _request_url(request: RawRequest) -> str:
    url = f"{request.base_url.rstrip('/')}{request.path}"
    return f"{url}?{request.raw_query}" if request.raw_query else url


def _error(status: int, message: str, exception_message: str | None = None,
           exception_type: str | None = None) -> RawResponse:
    payload: dict[str, Any] = {"Message": message}
    if exception_message is not None:
        payload |= {"ExceptionMessage": exception_message, "ExceptionType": exception_type or "System.Exception"}
    return RawResponse.json(status, payload)


def _not_supported(what: str) -> RawResponse:
    return _error(501, f"devhost does not support {what}; it runs orchestrations, activities, timers, external "
                       "events, sub-orchestrations, retries and continue_as_new")
