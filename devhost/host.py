"""Assembles devhost: settings, embedded services, indexing, then HTTP, queue, timer and Durable runtimes."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from devhost.config import HostConfig, apply_local_settings
from devhost.devauth import JWKS_PATH, jwks_handler
from devhost.http_server import HttpHost
from devhost.indexing import FunctionSpec, load_functions
from devhost.invoker import Invoker
from devhost.services import DEV_STORAGE, Azurite, Postgres

log = logging.getLogger("devhost")

DURABLE_TYPES = {"orchestrationTrigger", "activityTrigger", "durableClient"}


class Runtime(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class HostOptions:
    script_root: Path
    port: int = 7071
    postgres_setting: str = "TRAWL_DATABASE_URL"
    state_dir: Path | None = None


@dataclass
class Host:
    """One running devhost. `start()` returns once every trigger listens; `stop()` undoes it all."""

    options: HostOptions
    runtimes: list[Runtime] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        root = self.options.script_root.resolve()
        os.chdir(root)
        apply_local_settings(root)
        config = HostConfig.load(root)
        functions = load_functions(root, os.environ.get("PYTHON_SCRIPT_FILE_NAME", "function_app.py"))
        self._start_services(functions, self.options.state_dir or root / ".devhost")
        invoker = Invoker(config.function_timeout)
        for spec in functions:
            invoker.validate(spec)
        self.invoker = invoker
        http = HttpHost(functions, invoker, config.route_prefix, self.options.port)
        http.add_system_route(JWKS_PATH, jwks_handler(self.options.state_dir or root / ".devhost"))
        self._start_durable(functions, invoker, http, config)
        self._start_queues_and_timers(functions, invoker, config)
        http.start()
        self.runtimes.append(http)
        log.info("devhost: function auth levels are not enforced locally (as in Core Tools)")
        log.info("devhost is running %d functions from %s on %s", len(functions), root, http.base_url)

    def stop(self) -> None:
        for runtime in reversed(self.runtimes):
            try:
                runtime.stop()
            except Exception:
                log.exception("stopping %s failed", type(runtime).__name__)
        if hasattr(self, "invoker"):
            self.invoker.close()
        self.runtimes.clear()
        self.stopped.set()

    def _start(self, runtime: Runtime) -> None:
        runtime.start()
        self.runtimes.append(runtime)

    def _start_services(self, functions: list[FunctionSpec], state_dir: Path) -> None:
        connections = {"AzureWebJobsStorage"} | {b["connection"] for f in functions for b in f.bindings if b.get("connection")}
        if any(os.environ.get(name) == DEV_STORAGE for name in connections):
            self._start(Azurite(state_dir))
        setting = self.options.postgres_setting
        if setting in os.environ and not os.environ[setting]:
            postgres = Postgres(state_dir)
            self._start(postgres)
            os.environ[setting] = postgres.uri
            log.info("%s is empty: using embedded PostgreSQL %s", setting, os.environ[setting])

    def _start_durable(self, functions: list[FunctionSpec], invoker: Invoker, http: HttpHost, config: HostConfig) -> None:
        if not any(b["type"] in DURABLE_TYPES for f in functions for b in f.bindings):
            return
        from devhost.durable import DurableRuntime  # gRPC and durabletask load only for Durable apps

        durable = DurableRuntime(functions, invoker, base_url=http.base_url, hub_name=config.durable_hub_name)
        invoker.inputs["durableClient"] = durable.client_input
        http.add_system_route("/runtime/webhooks/durabletask/", durable.handle_webhook)
        self._start(durable)

    def _start_queues_and_timers(self, functions: list[FunctionSpec], invoker: Invoker, config: HostConfig) -> None:
        kinds = {b["type"] for f in functions for b in f.bindings}
        if kinds & {"queueTrigger", "queue"}:
            from devhost.queues import QueueTriggers

            queues = QueueTriggers(functions, invoker, config.queues)
            invoker.outputs["queue"] = queues.send_output
            self._start(queues)
        if "timerTrigger" in kinds:
            from devhost.timers import TimerTriggers

            self._start(TimerTriggers(functions, invoker))
