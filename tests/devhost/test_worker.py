"""The Python worker's concurrency on devhost: one thread pool for sync functions, one event loop for async ones.

What is asserted is what azure-functions-python-worker does (devhost/invoker.py cites its source):
PYTHON_THREADPOOL_THREAD_COUNT sizes the pool sync functions run on (unset: min(32, CPUs + 4)), every async
function runs on the same loop, asyncio.to_thread uses that loop's default executor rather than the sync
pool, and FUNCTIONS_WORKER_PROCESS_COUNT is refused rather than ignored. The sample app is apps/worker_app.
"""
from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.config import ConfigError
from devhost.invoker import check_single_worker_process, configured_sync_threads
from tests.devhost.conftest import DevhostProcess, wait_until

pytestmark = pytest.mark.devhost


def worker_app_settings(azurite: str, tmp_path: Path, **settings: str) -> dict[str, str]:
    """Settings the sample app needs, with queues of its own."""
    token = f"w{uuid.uuid4().hex[:10]}"
    return {"AzureWebJobsStorage": azurite, "HOLD_QUEUE": f"{token}-hold", "AWAIT_QUEUE": f"{token}-await",
            "WORKER_APP_RECORD": str(tmp_path / "record.jsonl"), **settings}


def state(host: DevhostProcess) -> dict[str, Any]:
    response = requests.get(f"{host.base_url}/api/state", timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def hold_more_than_the_pool(host: DevhostProcess, pool_size: int) -> tuple[dict[str, Any], set[str]]:
    """Send pool_size + 1 `hold` calls; the state once the pool is full and the last one is queued, and
    the threads that served them all once released."""
    calls = pool_size + 1
    with ThreadPoolExecutor(calls) as callers:
        holds = [callers.submit(requests.get, f"{host.base_url}/api/hold", timeout=60) for _ in range(calls)]
        try:
            wait_until(lambda: len(state(host)["holding"]) == pool_size)
            wait_until(lambda: host.logs().count("Executing 'Functions.hold'") == calls)
            full = state(host)
        finally:
            assert requests.post(f"{host.base_url}/api/release", timeout=10).status_code == 204
        served_by = {hold.result().text for hold in holds}
    return full, served_by


def test_sync_functions_run_on_a_pool_of_python_threadpool_thread_count_threads(
        devhost: Callable[..., DevhostProcess], azurite: str, tmp_path: Path) -> None:
    host = devhost("worker_app", env=worker_app_settings(azurite, tmp_path, PYTHON_THREADPOOL_THREAD_COUNT="3"))

    full, served_by = hold_more_than_the_pool(host, 3)

    assert len(full["holding"]) == 3
    assert sorted(full["pool"]) == sorted(full["holding"])  # no fourth thread for the fourth call
    assert served_by == set(full["holding"])
    assert "sync functions run on a pool of 3 threads (PYTHON_THREADPOOL_THREAD_COUNT)" in host.logs()


def test_the_sync_pool_defaults_to_min_32_or_cpus_plus_4_threads(
        devhost: Callable[..., DevhostProcess], azurite: str, tmp_path: Path) -> None:
    assert "PYTHON_THREADPOOL_THREAD_COUNT" not in os.environ  # devhost inherits the test's environment
    host = devhost("worker_app", env=worker_app_settings(azurite, tmp_path))
    default = min(32, (os.cpu_count() or 1) + 4)

    full, served_by = hold_more_than_the_pool(host, default)

    assert len(full["pool"]) == default
    assert served_by == set(full["pool"])


def test_async_functions_share_one_event_loop_apart_from_the_sync_pool(
        devhost: Callable[..., DevhostProcess], azurite: str, tmp_path: Path) -> None:
    host = devhost("worker_app", env=worker_app_settings(azurite, tmp_path))

    with ThreadPoolExecutor(1) as caller:
        waiting = caller.submit(requests.get, f"{host.base_url}/api/wait", timeout=30)
        wait_until(lambda: state(host)["waiting"] == 1)
        notified = requests.post(f"{host.base_url}/api/notify", timeout=10).json()
        woken = waiting.result()
    first, second = (requests.get(f"{host.base_url}/api/where", timeout=10).json() for _ in range(2))

    # An asyncio.Event awaited by one invocation and set by another: they ran on the same loop.
    assert woken.status_code == 200
    assert woken.json()["loop"] == notified["loop"] == first["loop"] == second["loop"]
    assert first["thread"] == second["thread"]
    # The worker sets no default executor: to_thread work goes to the loop's own pool, not the sync pool.
    assert first["to_thread"].startswith("asyncio_")


def test_more_than_one_worker_process_is_refused_at_start(
        devhost: Callable[..., DevhostProcess], azurite: str, tmp_path: Path) -> None:
    settings = worker_app_settings(azurite, tmp_path, FUNCTIONS_WORKER_PROCESS_COUNT="2")
    host = devhost("worker_app", env=settings, wait=False)

    assert host.process.wait(timeout=60) == 1
    assert "devhost cannot start: FUNCTIONS_WORKER_PROCESS_COUNT=2: devhost runs one Python worker" in host.logs()


def test_worker_settings_are_read_as_the_worker_reads_them(caplog: pytest.LogCaptureFixture) -> None:
    assert configured_sync_threads({}) is None
    assert configured_sync_threads({"PYTHON_THREADPOOL_THREAD_COUNT": "12"}) == 12
    with caplog.at_level(logging.WARNING, logger="devhost"):
        assert configured_sync_threads({"PYTHON_THREADPOOL_THREAD_COUNT": "many"}) is None
        assert configured_sync_threads({"PYTHON_THREADPOOL_THREAD_COUNT": "0"}) is None
    assert "PYTHON_THREADPOOL_THREAD_COUNT must be an integer" in caplog.text
    assert "Reverting to default value for max_workers" in caplog.text
    check_single_worker_process({})
    check_single_worker_process({"FUNCTIONS_WORKER_PROCESS_COUNT": "1"})
    with pytest.raises(ConfigError, match="FUNCTIONS_WORKER_PROCESS_COUNT=4"):
        check_single_worker_process({"FUNCTIONS_WORKER_PROCESS_COUNT": "4"})
