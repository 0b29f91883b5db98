"""Thread pools for the blocking work of async functions: one per kind of work, each sized for it.

The Python worker runs async functions on one event loop and does not set the loop's default
executor, so `asyncio.to_thread` would send every blocking call to asyncio's default pool of
min(32, cpus + 4) threads (6 on a 2-core instance), shared by queue workers, HTTP handlers and
timers: six fetches in flight, and a submit waiting behind them. Here scrape workers get as many
threads as the queue trigger runs messages at once, and HTTP handlers and timers their own pools.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# The Storage Queues extension's defaults when host.json leaves them out (consumption plans).
_DEFAULT_BATCH_SIZE = 16
_DEFAULT_NEW_BATCH_THRESHOLD = 8
_HOST_OVERRIDE = "AzureFunctionsJobHost__extensions__queues__"


class Work(StrEnum):
    """Kinds of blocking work, each with its own pool."""

    SCRAPE = "scrape"
    POISON = "poison"
    API = "api"
    MAINTENANCE = "maintenance"


def queue_concurrency(host_json: Path, environ: Mapping[str, str] = os.environ) -> int:
    """How many messages one queue-triggered function runs at once on an instance:
    batchSize + newBatchThreshold from host.json, with the host's environment overrides."""
    queues = json.loads(host_json.read_text()).get("extensions", {}).get("queues", {}) if host_json.exists() else {}
    batch = int(environ.get(_HOST_OVERRIDE + "batchSize", queues.get("batchSize", _DEFAULT_BATCH_SIZE)))
    threshold = int(environ.get(_HOST_OVERRIDE + "newBatchThreshold",
                                queues.get("newBatchThreshold", _DEFAULT_NEW_BATCH_THRESHOLD)))
    return batch + threshold


class Executors:
    """Named thread pools, created on first use; `run` awaits a blocking call on one of them."""

    def __init__(self, sizes: Mapping[Work, int]) -> None:
        self._sizes = dict(sizes)
        self._pools: dict[Work, ThreadPoolExecutor] = {}

    def pool(self, work: Work) -> ThreadPoolExecutor:
        """The pool for `work`, created on first use (only ever from the event loop's thread)."""
        if work not in self._pools:
            self._pools[work] = ThreadPoolExecutor(max_workers=self._sizes[work], thread_name_prefix=f"trawl-{work}")
        return self._pools[work]

    async def run(self, work: Work, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `call` on the `work` pool without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool(work), functools.partial(call, *args, **kwargs))



def executor_sizes(host_json: Path, api_threads: int, environ: Mapping[str, str] = os.environ) -> dict[Work, int]:
    """Pool sizes for this instance: scrape workers as many as the queue trigger runs at once."""
    concurrency = queue_concurrency(host_json, environ)
    return {Work.SCRAPE: concurrency, Work.POISON: concurrency, Work.API: api_threads, Work.MAINTENANCE: 2}
