"""`GET /api/health`: liveness plus reachability of PostgreSQL and the item queue. Anonymous, no details leaked.

Answers within about 4 s whatever is down: each probe opens its own short-timeout connection (not the
pool, whose borrowers may wait 30 s) with no SDK retries, both probes run at once, and a probe still
running at the deadline is reported as failing.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import closing
from functools import lru_cache

import azure.functions as func

from api.http import json_response
from shared.adapters.db import connect
from shared.adapters.item_queue import ItemQueue
from shared.adapters.storage import queue_client
from shared.composition import database_config
from shared.settings import get_settings

bp = func.Blueprint()
log = logging.getLogger(f"trawl.{__name__}")

PROBE_TIMEOUT_S = 2
DEADLINE_S = 4.0
# Probes that hang past the deadline keep their thread until their own timeouts end them.
_probes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    started = time.monotonic()
    running = {name: _probes.submit(_timed, probe) for name, probe in (("database", _database), ("storage", _storage))}
    checks = {name: _outcome(name, future, started + DEADLINE_S) for name, future in running.items()}
    healthy = all(c["status"] == "ok" for c in checks.values())
    return json_response({"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503,
                         {} if healthy else {"Retry-After": "5"})


def _database() -> None:
    with closing(connect(database_config(get_settings()), timeout_s=PROBE_TIMEOUT_S)) as conn, conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (PROBE_TIMEOUT_S * 1000,))
        cur.execute("SELECT 1")


@lru_cache(maxsize=1)
def _probe_queue() -> ItemQueue:
    settings = get_settings()
    return ItemQueue(queue_client(settings, settings.queue_name, retry_total=0,
                                  connection_timeout=PROBE_TIMEOUT_S, read_timeout=PROBE_TIMEOUT_S))


def _storage() -> None:
    queue = _probe_queue()
    queue.ensure_exists()
    queue.client.get_queue_properties()


def _timed(probe: Callable[[], None]) -> float:
    started = time.monotonic()
    probe()
    return time.monotonic() - started


def _outcome(name: str, future: Future[float], deadline: float) -> dict[str, object]:
    try:
        duration = future.result(timeout=max(deadline - time.monotonic(), 0))
    except FutureTimeout:
        log.warning("health check %s did not answer within %.0f s", name, DEADLINE_S)
        return {"status": "failing", "error": "Timeout"}
    except Exception as exc:  # a failing dependency is the answer here, logged for operators
        log.warning("health check %s failed: %s", name, exc)
        return {"status": "failing", "error": type(exc).__name__}
    return {"status": "ok", "duration_ms": int(duration * 1000)}
