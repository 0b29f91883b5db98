"""Blocking work of async functions runs on pools sized for it, never on asyncio's default executor."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from shared.adapters.executors import Executors, Work, executor_sizes, queue_concurrency

REPO = Path(__file__).resolve().parents[2]


def test_scrape_workers_get_as_many_threads_as_the_queue_trigger_runs_messages(tmp_path: Path) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"extensions": {"queues": {"batchSize": 32, "newBatchThreshold": 16}}}))

    assert queue_concurrency(host_json, {}) == 48
    assert queue_concurrency(host_json, {"AzureFunctionsJobHost__extensions__queues__batchSize": "8"}) == 24
    assert queue_concurrency(tmp_path / "missing.json", {}) == 16 + 8  # the extension's defaults
    assert executor_sizes(REPO / "host.json", api_threads=8, environ={})[Work.SCRAPE] == 48


def test_each_kind_of_work_runs_on_its_own_pool() -> None:
    executors = Executors({Work.SCRAPE: 3, Work.API: 2, Work.POISON: 1, Work.MAINTENANCE: 1})

    async def both() -> tuple[str, str]:
        return (await executors.run(Work.SCRAPE, lambda: threading.current_thread().name),
                await executors.run(Work.API, lambda: threading.current_thread().name))

    scrape, api = asyncio.run(both())

    assert scrape.startswith("trawl-scrape") and api.startswith("trawl-api")
    assert executors.pool(Work.SCRAPE)._max_workers == 3
