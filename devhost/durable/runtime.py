"""Durable Functions for devhost: the engine, the work-item loop, the client binding and the HTTP API."""
from __future__ import annotations

import json
import logging
from typing import Any

import durabletask.internal.orchestrator_service_pb2_grpc as stubs
import grpc

from devhost.config import ConfigError, resolve_setting_references
from devhost.durable.activities import ActivityRunner
from devhost.durable.catalog import FunctionCatalog
from devhost.durable.client_api import ClientApi
from devhost.durable.engine import GRPC_OPTIONS, LoopbackEngine
from devhost.durable.executions import ExecutionBook
from devhost.durable.orchestrations import OrchestrationRunner
from devhost.durable.urls import client_binding
from devhost.durable.worker import WorkItemLoop
from devhost.http_types import RawRequest, RawResponse
from devhost.indexing import FunctionSpec
from devhost.invoker import Invoker

log = logging.getLogger("devhost")


class DurableRuntime:
    """Runs the app's orchestrators and activities on durabletask's in-memory engine.

    Orchestrators run through the app's own DFApp handler (the azure-functions-durable SDK) with the
    JSON context the Functions host would send; clients get the real DurableOrchestrationClient,
    whose HTTP calls land in `handle_webhook`.
    """

    def __init__(self, functions: list[FunctionSpec], invoker: Invoker, *, base_url: str, hub_name: str) -> None:
        _check_client_hubs(functions, hub_name)
        self._catalog = FunctionCatalog.from_functions(functions)
        self._invoker = invoker
        self._base_url = base_url
        self._hub_name = hub_name
        self._engine = LoopbackEngine()
        self._channel: grpc.Channel | None = None
        self._loop: WorkItemLoop | None = None
        self._api: ClientApi | None = None

    def start(self) -> None:
        """Start the engine on a free loopback port and begin taking work items."""
        # The engine logs every instance it creates; devhost logs one line per state change instead.
        logging.getLogger("durabletask").setLevel(logging.WARNING)
        address = self._engine.start()
        self._channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        stub = stubs.TaskHubSidecarServiceStub(self._channel)
        book = ExecutionBook()
        self._loop = WorkItemLoop(stub, OrchestrationRunner(self._catalog, self._invoker, book),
                                  ActivityRunner(self._catalog, self._invoker), book)
        self._loop.start()
        self._api = ClientApi(stub, self._catalog, self._hub_name)
        log.info("Durable Functions: task hub '%s' on the in-memory engine at %s (%d orchestrators, %d activities)",
                 self._hub_name, address, len(self._catalog.orchestrators), len(self._catalog.activities))

    def stop(self) -> None:
        """Stop taking work and shut the engine down; all instances are lost (the engine is in memory)."""
        if self._loop is not None:
            self._loop.stop()
        if self._channel is not None:
            self._channel.close()
        self._engine.stop(grace=0)

    def client_input(self, spec: FunctionSpec, binding: dict[str, Any]) -> str:
        """The JSON value of a durableClient binding, from which DFApp builds DurableOrchestrationClient."""
        return json.dumps(client_binding(self._base_url, self._hub_name))

    def handle_webhook(self, request: RawRequest) -> RawResponse:
        """Serve a request under /runtime/webhooks/durabletask/ (client RPC calls and check-status links)."""
        if self._api is None:
            return RawResponse.json(503, {"Message": "the Durable Functions runtime is not started"})
        return self._api.handle(request)


def _check_client_hubs(functions: list[FunctionSpec], hub_name: str) -> None:
    """A client bound to another task hub would talk to orchestrations no devhost worker runs."""
    for spec in functions:
        for binding in spec.bindings_of("durableClient"):
            hub = resolve_setting_references(str(binding.get("taskHub") or hub_name))
            if hub.lower() != hub_name.lower():
                raise ConfigError(
                    f"function '{spec.name}': its durable client names task hub '{hub}', but devhost runs one task "
                    f"hub, '{hub_name}' (host.json extensions.durableTask.hubName)")
