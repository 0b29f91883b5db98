"""Durable bridge overhead: a fan-out on devhost's bridge vs a native durabletask worker, same engine.

Both sides run the same orchestration (N activities that double their input, then a sum) on
devhost's LoopbackEngine (durabletask's in-memory backend). The bridge side goes through the real
azure-functions-durable SDK via DurableRuntime, exactly as `python -m devhost` runs it; the native
side is durabletask's own TaskHubGrpcWorker with default settings. Runs alternate between the two,
prints one line per run and the ratio of medians; the goal is a ratio of at most 1.5.

    .venv/bin/python bench/durable_bench.py [--activities 2000] [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from durabletask import client as dt_client
from durabletask import task, worker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devhost.durable import DurableRuntime  # noqa: E402
from devhost.durable.engine import LoopbackEngine  # noqa: E402
from devhost.http_types import RawRequest  # noqa: E402
from devhost.indexing import load_functions  # noqa: E402
from devhost.invoker import Invoker  # noqa: E402

APP = REPO / "tests" / "devhost" / "apps" / "durable_app"
WEBHOOKS = "/runtime/webhooks/durabletask"


def bridge_runner() -> tuple[Callable[[int], float], Callable[[], None]]:
    """The sample app's fan_out orchestrator on DurableRuntime; returns (run, stop)."""
    invoker = Invoker(function_timeout=None)
    runtime = DurableRuntime(load_functions(APP), invoker, base_url="http://127.0.0.1:7071", hub_name="Bench")
    runtime.start()

    def call(method: str, path: str, body: Any = None) -> Any:
        payload = b"" if body is None else json.dumps(body).encode()
        response = runtime.handle_webhook(RawRequest(method, WEBHOOKS + path, {}, {}, payload, "http://127.0.0.1"))
        return json.loads(response.body) if response.body else None

    def run(activities: int) -> float:
        began = time.perf_counter()
        instance_id = call("POST", "/orchestrators/fan_out", json.dumps(activities))["id"]
        while (status := call("GET", f"/instances/{instance_id}"))["runtimeStatus"] != "Completed":
            assert status["runtimeStatus"] in ("Pending", "Running"), status
            time.sleep(0.005)
        elapsed = time.perf_counter() - began
        assert status["output"] == 2 * sum(range(activities)), status
        return elapsed

    def stop() -> None:
        runtime.stop()
        invoker.close()

    return run, stop


def native_runner() -> tuple[Callable[[int], float], Callable[[], None]]:
    """The same orchestration written for durabletask's own worker; returns (run, stop)."""
    engine = LoopbackEngine()
    address = engine.start()

    def double(ctx: task.ActivityContext, value: int) -> int:
        return 2 * value

    def fan_out(ctx: task.OrchestrationContext, count: int) -> Any:
        results = yield task.when_all([ctx.call_activity(double, input=i) for i in range(count)])
        return sum(results)

    # Its default logger prints a line per episode; the bridge logs nothing below WARNING here either.
    quiet = logging.getLogger("durable_bench.native")
    quiet.setLevel(logging.WARNING)
    native = worker.TaskHubGrpcWorker(host_address=address, logger=quiet)
    native.add_orchestrator(fan_out)
    native.add_activity(double)
    native.start()
    client = dt_client.TaskHubGrpcClient(host_address=address, logger=quiet)

    def run(activities: int) -> float:
        began = time.perf_counter()
        instance_id = client.schedule_new_orchestration(fan_out, input=activities)
        state = client.wait_for_orchestration_completion(instance_id, timeout=300)
        elapsed = time.perf_counter() - began
        assert state is not None and state.serialized_output == str(2 * sum(range(activities))), state
        return elapsed

    def stop() -> None:
        native.stop()
        engine.stop(grace=0)

    return run, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activities", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runners = {"native": native_runner(), "bridge": bridge_runner()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    try:
        for run, _ in runners.values():
            run(10)  # warm-up: imports, thread pools, first connections
        # Alternating runs share whatever else the machine is doing at the time.
        for i in range(1, args.runs + 1):
            for name, (run, _) in runners.items():
                times[name].append(run(args.activities))
                print(f"{name:7} run {i}: {args.activities} activities in {times[name][-1]:.2f} s", flush=True)
    finally:
        for _, stop in runners.values():
            stop()
    native, bridge = statistics.median(times["native"]), statistics.median(times["bridge"])
    print(f"median: native {native:.2f} s, bridge {bridge:.2f} s, ratio {bridge / native:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
