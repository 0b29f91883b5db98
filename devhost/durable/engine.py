"""durabletask's in-memory orchestration engine, served over gRPC on a free loopback port."""
from __future__ import annotations

from concurrent import futures

import grpc
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.testing import InMemoryOrchestrationBackend

# Azure Storage puts no cap on history; the engine's default (10,000 events) would fail a
# 5,000-activity fan-out that works on Azure.
MAX_HISTORY_EVENTS = 1_000_000

# Histories travel whole in every orchestrator work item; gRPC's 4 MB default would cap fan-out size.
GRPC_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class LoopbackEngine(InMemoryOrchestrationBackend):
    """The in-memory backend, bound to 127.0.0.1 on a port the OS picks.

    The base class binds every interface on a fixed port; a dev host must not expose its task hub
    to the network, and two hosts (or a test run next to a dev session) must not collide.
    """

    def __init__(self) -> None:
        super().__init__(max_history_size=MAX_HISTORY_EVENTS, port=0)

    def start(self) -> str:
        """Start serving; return the address to connect to."""
        self._shutdown_event.clear()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="durable-engine"),
                             options=GRPC_OPTIONS)
        stubs.add_TaskHubSidecarServiceServicer_to_server(self, server)
        self._port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return f"127.0.0.1:{self._port}"
