"""A job's event stream on the real PostgreSQL: ranks, resuming from any event id, filters, and
waiting for a change through LISTEN/NOTIFY or the recheck."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.adapters.db.connection import ConnectionPool, UrlDatabase
from shared.adapters.db.listen import JobChangeListener
from shared.adapters.db.unit_of_work import in_transaction
from shared.adapters.executors import Executors, Work
from shared.domain.errors import BadRequest, NotFound, RateLimited
from shared.domain.models import Job, JobOutcome, Owner
from shared.domain.stream import ItemFilter, StreamCursor, StreamEvent
from shared.services.job_stream import StreamSlots, StreamTiming, next_reply, read_events
from tests.owners import ANONYMOUS_OWNER

FetchRows = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def running(submit_job: Callable[..., Job], pool: ConnectionPool) -> Callable[[int], Job]:
    def create(count: int) -> Job:
        job = submit_job(count=count)
        assert in_transaction(pool, lambda tx: tx.jobs.mark_job_running(job.id))
        return job
    return create


@pytest.fixture
def listener(db_url: str) -> Iterator[JobChangeListener]:
    watcher = JobChangeListener(UrlDatabase(db_url))
    yield watcher
    watcher.close()


@pytest.fixture
def executors() -> Iterator[Executors]:
    pools = Executors({Work.API: 4})
    yield pools
    pools.pool(Work.API).shutdown()


def succeed(pool: ConnectionPool, job: Job, seq: int) -> None:
    in_transaction(pool, lambda tx: tx.jobs.complete_item(job.id, seq, {"seq": seq}, 200, None, 5))


def fail(pool: ConnectionPool, job: Job, seq: int) -> None:
    in_transaction(pool, lambda tx: tx.jobs.fail_item(job.id, seq, "http_404", "not found", "worker", 404))


START = StreamCursor()


def follow(pool: ConnectionPool, job: Job, cursor: StreamCursor = START, items: ItemFilter = ItemFilter.ALL,
           batch: int = 500) -> tuple[list[StreamEvent], StreamCursor]:
    """Every event after `cursor` up to now, reading as a reconnecting client would."""
    events: list[StreamEvent] = []
    while True:
        found = read_events(pool, job.id, ANONYMOUS_OWNER, cursor, items, batch)
        if not found.events:
            return events, cursor
        events.extend(found.events)
        cursor = found.events[-1].cursor


def kinds(events: list[StreamEvent]) -> list[str]:
    return [event.kind if event.kind != "status" else f"status:{event.data['status']}" for event in events]


def test_items_take_consecutive_ranks_in_the_order_they_became_final(
        running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows) -> None:
    job = running(5)
    succeed(pool, job, 3)
    fail(pool, job, 1)
    in_transaction(pool, lambda tx: tx.jobs.skip_item(job.id, 4, "robots", "disallowed"))
    in_transaction(pool, lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.CANCELLED, "alice"))

    rows = fetch_rows("SELECT seq, done_rank FROM job_items WHERE job_id = %s ORDER BY done_rank", (job.id,))
    assert [(row["seq"], row["done_rank"]) for row in rows] == [(3, 1), (1, 2), (4, 3), (0, 4), (2, 5)]


def test_concurrent_completions_get_distinct_consecutive_ranks(
        running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows) -> None:
    job = running(40)
    with ThreadPoolExecutor(max_workers=8) as threads:
        list(threads.map(lambda seq: succeed(pool, job, seq % 40), range(80)))  # every item delivered twice

    rows = fetch_rows("SELECT done_rank FROM job_items WHERE job_id = %s ORDER BY done_rank", (job.id,))
    assert [row["done_rank"] for row in rows] == list(range(1, 41))


def test_a_whole_job_streams_states_items_progress_and_the_final_state_last(
        running: Callable[[int], Job], pool: ConnectionPool) -> None:
    job = running(3)
    succeed(pool, job, 0)
    fail(pool, job, 2)
    succeed(pool, job, 1)
    in_transaction(pool, lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.COMPLETED, "orchestrator"))

    events, cursor = follow(pool, job)

    assert kinds(events) == ["status:pending", "status:running", "item", "item", "item", "progress",
                             "status:completed_with_errors"]
    assert [(e.data["seq"], e.data["outcome"], e.data["error_code"]) for e in events if e.kind == "item"] == [
        (0, "succeeded", None), (2, "failed", "http_404"), (1, "succeeded", None)]
    assert events[2].data["host"] == "example.test"
    assert events[-2].data == {"total": 3, "succeeded": 2, "failed": 1, "skipped": 0, "remaining": 0}
    assert events[-1].data["final"] is True
    # A progress event stands at the position of the item before it; every other event has its own id.
    positioned = [str(event.cursor) for event in events if event.kind != "progress"]
    assert len(set(positioned)) == len(positioned)
    # The reader has had everything: nothing more, ever.
    assert read_events(pool, job.id, ANONYMOUS_OWNER, cursor, ItemFilter.ALL, 500).events == []


def test_resuming_from_any_event_id_loses_and_repeats_nothing(running: Callable[[int], Job],
                                                              pool: ConnectionPool) -> None:
    job = running(6)
    for seq in (5, 0, 3):
        succeed(pool, job, seq)
    in_transaction(pool, lambda tx: tx.jobs.request_cancel(job.id, ANONYMOUS_OWNER, "alice", "enough"))
    fail(pool, job, 1)
    in_transaction(pool, lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.CANCELLED, "orchestrator"))
    everything, _ = follow(pool, job)
    items = [event.data["seq"] for event in everything if event.kind == "item"]
    assert items == [5, 0, 3, 1, 2, 4]
    assert everything[-1].data["status"] == "cancelled"

    for position, event in enumerate(everything):
        cursor = StreamCursor.parse(str(event.cursor))
        rest, _ = follow(pool, job, cursor)
        wanted = [e for e in everything[position + 1:] if e.kind != "progress"]
        assert [(e.kind, e.data) for e in rest if e.kind != "progress"] == [(e.kind, e.data) for e in wanted]


def test_a_reader_that_was_away_gets_the_states_it_missed_in_order(
        running: Callable[[int], Job], pool: ConnectionPool) -> None:
    job = running(2)
    first, cursor = follow(pool, job)
    assert kinds(first) == ["status:pending", "status:running", "progress"]

    in_transaction(pool, lambda tx: tx.jobs.request_cancel(job.id, ANONYMOUS_OWNER, "alice", None))
    in_transaction(pool, lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.CANCELLED, "orchestrator"))
    later, _ = follow(pool, job, cursor)

    assert kinds(later) == ["status:running", "item", "item", "progress", "status:cancelled"]
    assert later[0].data["cancel_requested"] is True
    assert [event.data["outcome"] for event in later if event.kind == "item"] == ["skipped", "skipped"]


def test_filters_leave_items_out_but_still_move_the_cursor(running: Callable[[int], Job],
                                                          pool: ConnectionPool) -> None:
    job = running(4)
    succeed(pool, job, 0)
    fail(pool, job, 1)
    succeed(pool, job, 2)

    failed_only, cursor = follow(pool, job, items=ItemFilter.FAILED)
    none, _ = follow(pool, job, items=ItemFilter.NONE)

    assert [event.data["seq"] for event in failed_only if event.kind == "item"] == [1]
    assert cursor.rank == 3
    assert "item" not in kinds(none)
    assert none[-1].data["succeeded"] == 2


def test_a_batch_cut_at_its_limit_keeps_progress_level_with_the_items_sent(
        running: Callable[[int], Job], pool: ConnectionPool) -> None:
    job = running(7)
    for seq in range(7):
        (fail if seq % 3 == 0 else succeed)(pool, job, seq)

    first = read_events(pool, job.id, ANONYMOUS_OWNER, StreamCursor(), ItemFilter.ALL, 3)
    progress = [event for event in first.events if event.kind == "progress"]

    assert first.more
    assert [event.data["seq"] for event in first.events if event.kind == "item"] == [0, 1, 2]
    assert progress[-1].data == {"total": 7, "succeeded": 2, "failed": 1, "skipped": 0, "remaining": 4}
    rest, cursor = follow(pool, job, first.events[-1].cursor, batch=3)
    assert [event.data["seq"] for event in rest if event.kind == "item"] == [3, 4, 5, 6]
    assert cursor.rank == 7


def test_another_callers_job_and_a_bad_cursor_are_refused(running: Callable[[int], Job], pool: ConnectionPool,
                                                         other_owner: Owner) -> None:
    job = running(1)
    with pytest.raises(NotFound):
        read_events(pool, job.id, other_owner, StreamCursor(), ItemFilter.ALL, 10)
    with pytest.raises(BadRequest):
        StreamCursor.parse("abc")
    with pytest.raises(BadRequest):
        read_events(pool, job.id, ANONYMOUS_OWNER, StreamCursor(5, None), ItemFilter.ALL, 10)


def test_a_waiting_reader_is_answered_when_the_job_changes(
        running: Callable[[int], Job], pool: ConnectionPool, listener: JobChangeListener,
        executors: Executors) -> None:
    job = running(2)
    _, cursor = follow(pool, job)
    timing = StreamTiming(heartbeat_s=60, coalesce_s=0)

    async def scenario() -> list[StreamEvent]:
        waiting = asyncio.create_task(next_reply(pool, executors, listener, job.id, ANONYMOUS_OWNER, cursor,
                                                 ItemFilter.ALL, timing))
        await asyncio.to_thread(listener.connected.wait, 10)
        await asyncio.to_thread(succeed, pool, job, 1)
        reply = await asyncio.wait_for(waiting, 30)
        return reply.events

    events = asyncio.run(scenario())
    assert [(event.kind, event.data.get("seq")) for event in events] == [("item", 1), ("progress", None)]


def test_a_missed_notification_is_caught_by_the_recheck(
        running: Callable[[int], Job], pool: ConnectionPool, db_url: str, executors: Executors) -> None:
    job = running(2)
    _, cursor = follow(pool, job)
    deaf = JobChangeListener(UrlDatabase(db_url), recheck_s=0.2, channel="nobody_notifies_this")
    timing = StreamTiming(heartbeat_s=60, coalesce_s=0)

    async def scenario() -> list[StreamEvent]:
        waiting = asyncio.create_task(next_reply(pool, executors, deaf, job.id, ANONYMOUS_OWNER, cursor,
                                                 ItemFilter.ALL, timing))
        await asyncio.to_thread(deaf.connected.wait, 10)
        await asyncio.to_thread(fail, pool, job, 0)
        reply = await asyncio.wait_for(waiting, 30)
        return reply.events

    try:
        events = asyncio.run(scenario())
    finally:
        deaf.close()
    assert [(event.kind, event.data.get("seq")) for event in events] == [("item", 0), ("progress", None)]


def test_a_quiet_job_answers_with_no_events_after_the_heartbeat(
        running: Callable[[int], Job], pool: ConnectionPool, listener: JobChangeListener,
        executors: Executors) -> None:
    job = running(1)
    _, cursor = follow(pool, job)
    reply = asyncio.run(next_reply(pool, executors, listener, job.id, ANONYMOUS_OWNER, cursor, ItemFilter.ALL,
                                   StreamTiming(heartbeat_s=0.3)))
    assert reply.events == [] and not reply.finished


def test_a_finished_stream_says_so(running: Callable[[int], Job], pool: ConnectionPool,
                                   listener: JobChangeListener, executors: Executors) -> None:
    job = running(1)
    in_transaction(pool, lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.CANCELLED, "orchestrator"))
    _, cursor = follow(pool, job)
    reply = asyncio.run(next_reply(pool, executors, listener, job.id, ANONYMOUS_OWNER, cursor, ItemFilter.ALL,
                                   StreamTiming()))
    assert reply.finished


def test_stream_slots_cap_each_caller_separately(other_owner: Owner) -> None:
    slots = StreamSlots(limit=2)
    with slots.hold(ANONYMOUS_OWNER), slots.hold(ANONYMOUS_OWNER):
        with pytest.raises(RateLimited), slots.hold(ANONYMOUS_OWNER):
            pass
        with slots.hold(other_owner):
            pass
    with slots.hold(ANONYMOUS_OWNER), slots.hold(ANONYMOUS_OWNER):
        pass


def test_concurrent_writers_and_a_following_reader_see_every_item_once(
        running: Callable[[int], Job], pool: ConnectionPool) -> None:
    job = running(60)
    seen: list[int] = []
    done = threading.Event()

    def read_along() -> None:
        cursor = StreamCursor()
        while True:
            finished = done.is_set()
            found = read_events(pool, job.id, ANONYMOUS_OWNER, cursor, ItemFilter.ALL, 7)
            seen.extend(event.data["seq"] for event in found.events if event.kind == "item")
            if found.events:
                cursor = found.events[-1].cursor
            elif finished:
                return

    reader = threading.Thread(target=read_along)
    reader.start()
    with ThreadPoolExecutor(max_workers=6) as threads:
        list(threads.map(lambda seq: (succeed if seq % 4 else fail)(pool, job, seq), range(60)))
    done.set()
    reader.join(timeout=60)

    assert sorted(seen) == list(range(60)) and len(seen) == 60
