"""A job's event stream, one bounded response at a time (long-poll server-sent events).

A response carries the events that exist after the reader's cursor. When there are none it waits
for the job to change (woken by the process's `JobChangeListener`), lets a burst of changes settle
for `coalesce_s`, and answers; after `heartbeat_s` of quiet it answers with no events, so no response
outlives the platform's 230 s limit and the reader's reconnect doubles as the heartbeat. Events
are read from PostgreSQL, never from memory: any instance serves any job's stream.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

from shared.adapters.db import ConnectionPool, read
from shared.adapters.db.listen import JobChangeListener
from shared.adapters.executors import Executors, Work
from shared.domain.errors import BadRequest, NotFound, RateLimited
from shared.domain.models import ItemStatus, Job, Owner
from shared.domain.stream import (
    ItemFilter,
    StreamCursor,
    StreamEvent,
    done_count,
    events_after,
    is_finished,
    state_token,
)

_OUTCOMES = {
    ItemFilter.ALL: (ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.SKIPPED),
    ItemFilter.FAILED: (ItemStatus.FAILED,),
    ItemFilter.NONE: (),
}


@dataclass(frozen=True)
class StreamTiming:
    """How a response waits. `retry_ms` is the reconnect delay readers are told: it also caps how
    often one reader asks, so progress reaches it a few times a second at most."""

    heartbeat_s: float = 15.0
    coalesce_s: float = 0.25
    retry_ms: int = 500
    batch_items: int = 500


@dataclass(frozen=True)
class StreamReply:
    """One response: its events; `finished` when the reader already had the final state (HTTP 204);
    `more` when items are waiting beyond this response (reconnect at once)."""

    events: list[StreamEvent]
    finished: bool = False
    more: bool = False


@dataclass(frozen=True)
class StreamRead:
    job: Job
    events: list[StreamEvent]
    more: bool


class StreamSlots:
    """Counts the stream requests each caller has open on this instance and refuses one over `limit`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[Owner, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, caller: Owner) -> Iterator[None]:
        with self._lock:
            held = self._open.get(caller, 0)
            if held >= self._limit:
                raise RateLimited(f"{held} event streams are already open for this caller here; the limit is "
                                  f"{self._limit}: close one or wait", retry_after=5)
            self._open[caller] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._open[caller] - 1
                if left:
                    self._open[caller] = left
                else:
                    del self._open[caller]


def read_events(pool: ConnectionPool, job_id: UUID, scope: Owner | None, cursor: StreamCursor,
                items_wanted: ItemFilter, batch_items: int) -> StreamRead:
    """The events after `cursor`, from one snapshot of the job. NotFound for a job the scope cannot see."""
    found = read(pool, lambda tx: tx.queries.stream_batch(job_id, scope, cursor.rank, _OUTCOMES[items_wanted],
                                                          batch_items))
    if found is None:
        raise NotFound(f"job {job_id} was not found")
    job, batch = found
    if cursor.rank > done_count(job):
        raise BadRequest("Last-Event-ID is ahead of this job's events", parameter="Last-Event-ID")
    return StreamRead(job, events_after(job, batch, cursor, items_wanted), batch.more)


async def next_reply(pool: ConnectionPool, executors: Executors, listener: JobChangeListener, job_id: UUID,
                     scope: Owner | None, cursor: StreamCursor, items_wanted: ItemFilter,
                     timing: StreamTiming) -> StreamReply:
    """The next response of a reader at `cursor`: at once when events exist, else when the job changes,
    else empty after `timing.heartbeat_s`."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + timing.heartbeat_s
    with listener.watch(job_id) as watch:
        while True:
            # Cleared before reading: a change committed during the read still ends the wait below.
            watch.changed.clear()
            found = await executors.run(Work.API, read_events, pool, job_id, scope, cursor, items_wanted,
                                        timing.batch_items)
            if found.events:
                return StreamReply(found.events, more=found.more)
            if is_finished(cursor):
                return StreamReply([], finished=True)
            watch.seen = state_token(found.job)
            left = give_up_at - loop.time()
            if left <= 0:
                return StreamReply([])
            try:
                await asyncio.wait_for(watch.changed.wait(), timeout=left)
            except TimeoutError:
                return StreamReply([])
            await asyncio.sleep(timing.coalesce_s)
