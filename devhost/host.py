"""Assembles devhost: settings, embedded services, indexing, then HTTP, queue, timer and Durable runtimes.

Stopping is bounded: intake stops at once, running invocations get DRAIN_SECONDS to finish, then the
messages of queue invocations still running are made visible again and async invocations are cancelled.
A sync function still running cannot be interrupted; `stop()` reports it so the caller can exit anyway.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from devhost.config import ConfigError, HostConfig, apply_local_settings
from devhost.devauth import JWKS_PATH, TOKEN_PATH, jwks_handler, token_handler
from devhost.http_server import HttpHost
from devhost.indexing import FunctionSpec, enabled_functions, load_functions
from devhost.invoker import THREAD_COUNT_SETTING, Invoker, check_single_worker_process
from devhost.services import DEV_STORAGE, Azurite, Postgres

if TYPE_CHECKING:
    from devhost.queues import QueueTriggers

log = logging.getLogger("devhost")

DURABLE_TYPES = {"orchestrationTrigger", "activityTrigger", "durableClient"}
DRAIN_SECONDS = 5.0


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
    services: list[Runtime] = field(default_factory=list)
    runtimes: list[Runtime] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    invoker: Invoker | None = None
    queues: QueueTriggers | None = None

    def start(self) -> None:
        root = self.options.script_root.resolve()
        os.chdir(root)
        apply_local_settings(root)
        check_single_worker_process()
        config = HostConfig.load(root)
        functions = enabled_functions(load_functions(root, os.environ.get("PYTHON_SCRIPT_FILE_NAME", "function_app.py")),
                                      os.environ)
        self._start_services(functions, self.options.state_dir or root / ".devhost")
        invoker = Invoker(config.function_timeout)
        for spec in functions:
            invoker.validate(spec)
        self.invoker = invoker
        log.info("Python worker: sync functions run on a pool of %d threads (%s), async functions on one event loop",
                 invoker.sync_threads, THREAD_COUNT_SETTING)
        http = HttpHost(functions, invoker, config.route_prefix, self.options.port)
        http.add_system_route(JWKS_PATH, jwks_handler(self.options.state_dir or root / ".devhost"))
        http.add_system_route(TOKEN_PATH, token_handler(self.options.state_dir or root / ".devhost"))
        self._start_durable(functions, invoker, http, config)
        self._start_queues_and_timers(functions, invoker, config)
        http.start()
        self.runtimes.append(http)
        log.info("devhost: function auth levels are not enforced locally (as in Core Tools)")
        log.info("devhost is running %d functions from %s on %s", len(functions), root, http.base_url)

    def stop(self) -> bool:
        """Stop everything within about DRAIN_SECONDS; False if function code is still running."""
        drain_by = time.monotonic() + DRAIN_SECONDS
        _stop_all(self.runtimes)
        idle = True
        if self.invoker is not None:
            if not self.invoker.drain(drain_by):
                log.warning("devhost: invocations still running after %.0f s; cancelling them", DRAIN_SECONDS)
            if self.queues is not None:
                self.queues.release_unfinished()
            idle = self.invoker.close()
        _stop_all(self.services)
        self.stopped.set()
        return idle

    def _start(self, runtime: Runtime) -> None:
        runtime.start()
        self.runtimes.append(runtime)

    def _start_service(self, service: Runtime) -> None:
        service.start()
        self.services.append(service)

    def _start_services(self, functions: list[FunctionSpec], state_dir: Path) -> None:
        connections = {"AzureWebJobsStorage"} | {b["connection"] for f in functions for b in f.bindings if b.get("connection")}
        if any(os.environ.get(name) == DEV_STORAGE for name in connections):
            self._start_service(Azurite(state_dir))
        setting = self.options.postgres_setting
        if setting in os.environ and not os.environ[setting]:
            postgres = Postgres(state_dir)
            self._start_service(postgres)
            os.environ[setting] = postgres.uri
            log.info("%s is empty: using embedded PostgreSQL %s", setting, os.environ[setting])

    def _start_durable(self, functions: list[FunctionSpec], invoker: Invoker, http: HttpHost, config: HostConfig) -> None:
        if not any(b["type"] in DURABLE_TYPES for f in functions for b in f.bindings):
            return
        from devhost.durable import DurableRuntime  # gRPC and durabletask load only for Durable apps
        from devhost.taskhub_lock import TaskHubLock

        durable = DurableRuntime(functions, invoker, base_url=http.base_url, hub_name=config.durable_hub_name)
        invoker.inputs["durableClient"] = durable.client_input
        http.add_system_route("/runtime/webhooks/durabletask/", durable.handle_webhook)
        self._start(TaskHubLock(config.durable_hub_name, config.durable_connection, on_lost=self.stopped.set))
        self._start(durable)

    def _start_queues_and_timers(self, functions: list[FunctionSpec], invoker: Invoker, config: HostConfig) -> None:
        kinds = {b["type"] for f in functions for b in f.bindings}
        if kinds & {"queueTrigger", "queue"}:
            from devhost.queues import QueueTriggers

            queues = QueueTriggers(functions, invoker, config.queues, lease_seconds=queue_lease_seconds(os.environ))
            invoker.outputs["queue"] = queues.send_output
            self._start(queues)
            self.queues = queues
        if "timerTrigger" in kinds:
            from devhost.timers import TimerTriggers

            self._start(TimerTriggers(functions, invoker))


def _stop_all(runtimes: list[Runtime]) -> None:
    """Stop in reverse start order; one that fails to stop does not keep the others running."""
    for runtime in reversed(runtimes):
        try:
            runtime.stop()
        except Exception:
            log.exception("stopping %s failed", type(runtime).__name__)
    runtimes.clear()


def queue_lease_seconds(environ: Mapping[str, str]) -> float:
    """How long a received message stays leased between renewals: DEVHOST_QUEUE_LEASE_SECONDS, else 60 s. A
    devhost-only knob (the extension leases for 10 minutes): tests that kill a host shorten the wait for its
    messages to come back."""
    from devhost.queues import LEASE_SECONDS

    value = environ.get("DEVHOST_QUEUE_LEASE_SECONDS")
    if value is None:
        return LEASE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds < 2:
        raise ConfigError(f"DEVHOST_QUEUE_LEASE_SECONDS must be a number of seconds, at least 2 (got {value!r})")
    return seconds
