"""A job's event stream as pure logic: which events a reader gets after its cursor, and the cursor after them.

The stream is computed from the job's row and its final items, never from process memory, so any instance
serves any job's stream. A cursor is `"<rank>.<phase>"`:

- `rank` counts the job's final items already delivered. Items become final with consecutive ranks
  (migration 0005), so "the items after rank r" loses and repeats nothing.
- `phase` is the last state the reader was told of: pending, running, cancel requested, final. A job
  passes them in that order, skipping some, so the status events a reader missed while disconnected
  can be replayed from the job's row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any
from urllib.parse import urlsplit

from shared.domain.errors import BadRequest
from shared.domain.models import ItemStatus, Job, JobStatus


class Phase(IntEnum):
    """The states a stream reports, in the only order a job can pass them."""

    PENDING = 0
    RUNNING = 1
    CANCEL_REQUESTED = 2
    FINAL = 3


class ItemFilter(StrEnum):
    """Which item events a reader wants (`?items=`)."""

    ALL = "all"
    FAILED = "failed"
    NONE = "none"

    def admits(self, outcome: ItemStatus) -> bool:
        return self is ItemFilter.ALL or (self is ItemFilter.FAILED and outcome is ItemStatus.FAILED)


@dataclass(frozen=True)
class StreamCursor:
    """What a reader has seen: items up to `rank`, states up to `phase` (None: nothing yet)."""

    rank: int = 0
    phase: Phase | None = None

    def __str__(self) -> str:
        return f"{self.rank}.{'' if self.phase is None else int(self.phase)}"

    @classmethod
    def parse(cls, text: str | None) -> StreamCursor:
        """The cursor of a `Last-Event-ID`; none (or empty, which EventSource sends to mean none) is the start."""
        if not text:
            return cls()
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise BadRequest("Last-Event-ID is not an event id of this stream", parameter="Last-Event-ID")
        rank, phase = match.groups()
        return cls(int(rank), None if phase == "" else Phase(int(phase)))


_CURSOR = re.compile(r"(0|[1-9][0-9]{0,9})\.([0-3]?)")


@dataclass(frozen=True)
class FinalItem:
    """An item that became final, as the stream reports it."""

    rank: int
    seq: int
    url: str
    final_url: str | None
    outcome: ItemStatus
    error_code: str | None
    http_status: int | None
    duration_ms: int | None


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event: its type, its JSON-able data and the cursor after it."""

    kind: str
    data: dict[str, Any]
    cursor: StreamCursor


@dataclass(frozen=True)
class ItemBatch:
    """The job's final items after a cursor, as one read found them: those the reader wants, in rank
    order, up to `end_rank`; `unread` counts the outcomes of the items beyond `end_rank` when the read
    stopped at its limit (it is empty when `end_rank` is the job's count)."""

    items: list[FinalItem]
    end_rank: int
    unread: dict[ItemStatus, int]

    @property
    def more(self) -> bool:
        """Whether items are waiting beyond this batch: answer again at once."""
        return any(self.unread.values())


def phases_passed(job: Job) -> list[Phase]:
    """The phases a job has been in, oldest first."""
    phases = [Phase.PENDING]
    if job.started_at is not None:
        phases.append(Phase.RUNNING)
    if job.cancel_requested_at is not None:
        phases.append(Phase.CANCEL_REQUESTED)
    if job.status.is_final:
        phases.append(Phase.FINAL)
    return phases


def done_count(job: Job) -> int:
    """How many of the job's items are final: the highest rank given so far."""
    return job.succeeded + job.failed + job.skipped


def events_after(job: Job, batch: ItemBatch, cursor: StreamCursor, items_wanted: ItemFilter) -> list[StreamEvent]:
    """The events a reader at `cursor` has not had, given the job's row and its final items after
    `cursor.rank`, read in one snapshot. Order: states before the final one, items, progress, then the
    final state once every item is delivered."""
    events: list[StreamEvent] = []
    phase = cursor.phase
    missed = [p for p in phases_passed(job) if phase is None or p > phase]
    for passed in (p for p in missed if p is not Phase.FINAL):
        phase = passed
        events.append(StreamEvent("status", status_data(job, passed), StreamCursor(cursor.rank, phase)))
    for item in batch.items:
        if items_wanted.admits(item.outcome):
            events.append(StreamEvent("item", item_data(item), StreamCursor(item.rank, phase)))
    if batch.end_rank != cursor.rank or cursor.phase is None:
        # Items the filter leaves out still move the cursor: the progress event carries it.
        events.append(StreamEvent("progress", progress_data(job, batch.unread), StreamCursor(batch.end_rank, phase)))
    if Phase.FINAL in missed and not batch.more:
        events.append(StreamEvent("status", status_data(job, Phase.FINAL), StreamCursor(batch.end_rank, Phase.FINAL)))
    return events


def is_finished(cursor: StreamCursor) -> bool:
    """True once the reader has had the final state: the stream has nothing more to say."""
    return cursor.phase is Phase.FINAL


def state_token(job: Job) -> tuple[int, str, bool]:
    """What a change of the job, as the stream sees it, changes."""
    return done_count(job), job.status.value, job.cancel_requested_at is not None


def status_data(job: Job, phase: Phase) -> dict[str, Any]:
    """A `status` event: the state `phase` stands for, with the job's counters now."""
    if phase is Phase.FINAL:
        status = job.status
    elif phase is Phase.PENDING or (phase is Phase.CANCEL_REQUESTED and job.started_at is None):
        status = JobStatus.PENDING
    else:
        status = JobStatus.RUNNING
    return {
        "job_id": str(job.id),
        "status": status.value,
        "final": phase is Phase.FINAL,
        "cancel_requested": phase >= Phase.CANCEL_REQUESTED and job.cancel_requested_at is not None,
        "at": _iso(_phase_time(job, phase)),
        "total": job.total,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "skipped": job.skipped,
    }


def progress_data(job: Job, unread: dict[ItemStatus, int]) -> dict[str, Any]:
    """A `progress` event: the job's counters without the items not yet delivered, so they never run
    ahead of the item events."""
    succeeded = job.succeeded - unread.get(ItemStatus.SUCCEEDED, 0)
    failed = job.failed - unread.get(ItemStatus.FAILED, 0)
    skipped = job.skipped - unread.get(ItemStatus.SKIPPED, 0)
    return {"total": job.total, "succeeded": succeeded, "failed": failed, "skipped": skipped,
            "remaining": job.total - succeeded - failed - skipped}


def item_data(item: FinalItem) -> dict[str, Any]:
    return {
        "seq": item.seq,
        "host": urlsplit(item.final_url or item.url).hostname,
        "outcome": item.outcome.value,
        # A succeeded item's stored error is an earlier attempt's, already reported in the log.
        "error_code": None if item.outcome is ItemStatus.SUCCEEDED else item.error_code,
        "http_status": item.http_status,
        "duration_ms": item.duration_ms,
    }


def _phase_time(job: Job, phase: Phase) -> datetime | None:
    return {Phase.PENDING: job.created_at, Phase.RUNNING: job.started_at,
            Phase.CANCEL_REQUESTED: job.cancel_requested_at, Phase.FINAL: job.finished_at}[phase]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
