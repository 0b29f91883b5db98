"""Timer-triggered retention: the data of jobs finished more than `TRAWL_RETENTION_DAYS` ago, and the blobs of
bodies no row names any more, deleted in bounded batches (shared.services.retention)."""
from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.adapters.executors import Work
from shared.composition import get_content_store, get_executors, get_pool
from shared.services import retention
from shared.settings import get_settings

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%TRAWL_RETENTION_SCHEDULE%")
async def enforce_retention(timer: func.TimerRequest) -> None:
    await get_executors().run(Work.MAINTENANCE, retention.sweep, get_pool(), get_content_store(),
                              get_settings().retention_days, datetime.now(UTC))
