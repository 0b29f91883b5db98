"""`GET /api/health`: liveness plus reachability of PostgreSQL and the item queue. Anonymous, no details leaked."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import azure.functions as func

from api.http import json_response
from shared.db import in_transaction
from shared.resources import get_item_queue, get_pool

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    checks = {"database": _check(_database), "storage": _check(_storage)}
    healthy = all(c["status"] == "ok" for c in checks.values())
    return json_response({"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503)


def _database() -> None:
    in_transaction(get_pool(), lambda tx: tx.jobs.ping())


def _storage() -> None:
    queue = get_item_queue()
    queue.ensure_exists()
    queue.client.get_queue_properties()


def _check(probe: Callable[[], None]) -> dict[str, object]:
    started = time.monotonic()
    try:
        probe()
    except Exception as exc:  # a failing dependency is the answer here, logged for operators
        log.warning("health check %s failed: %s", probe.__name__, exc)
        return {"status": "failing", "error": type(exc).__name__}
    return {"status": "ok", "duration_ms": int((time.monotonic() - started) * 1000)}
