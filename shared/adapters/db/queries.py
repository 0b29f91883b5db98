"""Read side for the caller API: owner-scoped listings of jobs, items and events.

Every listing pages by keyset (the last row's key, never OFFSET), so a page costs the same at
row 100,000 as at row 0 and the API can hand the key back as an opaque cursor. Item pages are
bounded by bytes as well as rows: each result's JSON size is stored with it, and a page stops
before the running total passes its budget, in SQL, so rows past it are never read.
"""

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg2.extras import RealDictCursor

from shared.adapters.db.rows import (
    OWNER_SCOPE,
    event_from_row,
    item_from_row,
    job_from_row,
    owner_params,
    status_values,
)
from shared.domain.models import ItemStatus, Job, JobEvent, JobItem, JobPageKey, JobStatus, Owner
from shared.domain.stream import FinalItem, ItemBatch, done_count

_LIST_JOBS = f"""
SELECT * FROM jobs j
 WHERE {OWNER_SCOPE}
   AND (%(statuses)s::text[] IS NULL OR j.status = ANY(%(statuses)s))
   AND (%(created_after)s::timestamptz IS NULL OR j.created_at >= %(created_after)s)
   AND (%(created_before)s::timestamptz IS NULL OR j.created_at < %(created_before)s)
   AND (%(after_created_at)s::timestamptz IS NULL
        OR (j.created_at, j.id) < (%(after_created_at)s, %(after_id)s::uuid))
 ORDER BY j.created_at DESC, j.id DESC
 LIMIT %(limit)s
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

# What one item adds to a page besides its result: URL, final URL, error text and the fixed fields.
ITEM_OVERHEAD_BYTES = 512
# Results listings stop at about this many bytes of items, whatever `limit` says.
ITEM_PAGE_MAX_BYTES = 4 * 1024 * 1024

_ITEM_BYTES = f"""(coalesce(i.result_bytes, octet_length(i.result::text), 0) + octet_length(i.url)
    + coalesce(octet_length(i.final_url), 0) + coalesce(octet_length(i.last_error_message), 0)
    + {ITEM_OVERHEAD_BYTES})"""

# The window's running total and look-ahead are computed row by row as the index scan goes, so the
# outer LIMIT stops the scan; a first row is returned whatever its size, so every page moves on.
_LIST_ITEMS = f"""
SELECT * FROM (
    SELECT i.*, sum({_ITEM_BYTES}) OVER seq_order AS running_bytes,
           row_number() OVER seq_order AS position,
           lead(i.seq) OVER seq_order IS NOT NULL AS has_next
      FROM job_items i JOIN jobs j ON j.id = i.job_id
     WHERE i.job_id = %(job_id)s AND {OWNER_SCOPE}
       AND (%(statuses)s::text[] IS NULL OR i.status = ANY(%(statuses)s))
       AND i.seq > %(after_seq)s
    WINDOW seq_order AS (ORDER BY i.seq)
     ORDER BY i.seq
     LIMIT %(limit)s
) page
 WHERE position = 1 OR running_bytes <= %(max_bytes)s
 ORDER BY seq
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_CHILD_JOBS = f"""
SELECT j.parent_job_id, j.id FROM jobs j
 WHERE j.parent_job_id = ANY(%(parent_ids)s::uuid[]) AND {OWNER_SCOPE}
 ORDER BY j.created_at, j.id
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_LIST_EVENTS = f"""
SELECT e.* FROM job_events e JOIN jobs j ON j.id = e.job_id
 WHERE e.job_id = %(job_id)s AND {OWNER_SCOPE} AND e.id > %(after_id)s
 ORDER BY e.id
 LIMIT %(limit)s
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608


_ITEM = f"""
SELECT i.* FROM job_items i JOIN jobs j ON j.id = i.job_id
 WHERE i.job_id = %(job_id)s AND i.seq = %(seq)s AND {OWNER_SCOPE}
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

# A job's stream after a rank, in one statement so the job's row and its items come from one snapshot:
# the items the reader wants with ranks after `after` (every rank up to the job's count is committed,
# migration 0005), and, when the batch stopped at its limit, the outcomes of the items beyond it.
_STREAM = f"""
WITH j AS (SELECT * FROM jobs j WHERE j.id = %(job_id)s AND {OWNER_SCOPE}),
batch AS (
    SELECT i.done_rank, i.seq, i.url, i.final_url, i.status, i.last_error_code, i.http_status, i.duration_ms
      FROM job_items i
     WHERE i.job_id = %(job_id)s AND EXISTS (SELECT 1 FROM j) AND i.done_rank > %(after)s
       AND i.status = ANY(%(statuses)s)
     ORDER BY i.done_rank
     LIMIT %(limit)s
),
tail AS (
    SELECT i.status, count(*) AS n
      FROM job_items i
     WHERE i.job_id = %(job_id)s AND (SELECT count(*) FROM batch) = %(limit)s
       AND i.done_rank > (SELECT max(done_rank) FROM batch)
     GROUP BY i.status
)
SELECT j.*,
       (SELECT coalesce(json_agg(batch ORDER BY done_rank), '[]') FROM batch) AS stream_items,
       (SELECT coalesce(json_object_agg(status, n), '{{}}') FROM tail) AS stream_unread
  FROM j
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608


@dataclass(frozen=True)
class ItemSlice:
    """One page of a job's items; `has_more` is True when more items follow it."""

    items: list[JobItem]
    has_more: bool


class JobQueries:
    """Listings for the caller API inside one transaction (a RealDictCursor of the unit of work).

    Items and events of a job the owner cannot see come back empty; the API tells 404 apart
    with `JobRepository.get_job`.
    """

    def __init__(self, cursor: RealDictCursor) -> None:
        self._cur = cursor

    def list_jobs(
        self,
        owner: Owner | None,
        statuses: Collection[JobStatus] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: JobPageKey | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """The owner's jobs newest first, filtered by status and creation window
        (`created_after <= created_at < created_before`), continuing after the key `after`
        (owner None: every owner's, for admins)."""
        params = {
            **owner_params(owner),
            "statuses": status_values(statuses),
            "created_after": created_after,
            "created_before": created_before,
            "after_created_at": None if after is None else after.created_at,
            "after_id": None if after is None else after.id,
            "limit": limit,
        }
        self._cur.execute(_LIST_JOBS, params)
        return [job_from_row(row) for row in self._cur.fetchall()]

    def list_items(
        self,
        job_id: UUID,
        owner: Owner | None,
        statuses: Collection[ItemStatus] | None = None,
        after_seq: int = -1,
        limit: int = 100,
        max_bytes: int = ITEM_PAGE_MAX_BYTES,
    ) -> ItemSlice:
        """One page of a job's items in seq order after `after_seq`: at most `limit` items and about
        `max_bytes` of them, but always one if any is left (owner None: admin)."""
        params = {
            **owner_params(owner),
            "job_id": job_id,
            "statuses": status_values(statuses),
            "after_seq": after_seq,
            "limit": limit,
            "max_bytes": max_bytes,
        }
        self._cur.execute(_LIST_ITEMS, params)
        rows = self._cur.fetchall()
        items = [item_from_row(row) for row in rows]
        return ItemSlice(items, bool(rows) and rows[-1]["has_next"])

    def iter_items(
        self,
        job_id: UUID,
        owner: Owner | None,
        statuses: Collection[ItemStatus] | None = None,
        page_size: int = 1000,
        page_bytes: int = ITEM_PAGE_MAX_BYTES,
    ) -> Iterator[JobItem]:
        """All of a job's items in seq order, fetched a page at a time (`page_size` items, about
        `page_bytes`) so an export of 100k items holds one page in memory."""
        after_seq = -1
        while True:
            page = self.list_items(job_id, owner, statuses, after_seq, page_size, page_bytes)
            yield from page.items
            if not page.has_more:
                return
            after_seq = page.items[-1].seq

    def list_events(
        self, job_id: UUID, owner: Owner | None, after_id: int = 0, limit: int = 100
    ) -> list[JobEvent]:
        """One page of a job's audit log in order, after event `after_id` (owner None: admin)."""
        params = {**owner_params(owner), "job_id": job_id, "after_id": after_id, "limit": limit}
        self._cur.execute(_LIST_EVENTS, params)
        return [event_from_row(row) for row in self._cur.fetchall()]

    def stream_batch(self, job_id: UUID, owner: Owner | None, after_rank: int, outcomes: Collection[ItemStatus],
                     limit: int) -> tuple[Job, ItemBatch] | None:
        """The job and its final items after `after_rank` with one of `outcomes` (at most `limit`), read in
        one snapshot; None when the owner cannot see the job (owner None: admin)."""
        params = {**owner_params(owner), "job_id": job_id, "after": after_rank,
                  "statuses": [outcome.value for outcome in outcomes], "limit": limit}
        self._cur.execute(_STREAM, params)
        row = self._cur.fetchone()
        if row is None:
            return None
        fields = dict(row)
        items = [FinalItem(rank=item["done_rank"], seq=item["seq"], url=item["url"], final_url=item["final_url"],
                           outcome=ItemStatus(item["status"]), error_code=item["last_error_code"],
                           http_status=item["http_status"], duration_ms=item["duration_ms"])
                 for item in fields.pop("stream_items")]
        unread = {ItemStatus(status): int(count) for status, count in fields.pop("stream_unread").items()}
        job = job_from_row(fields)
        end_rank = items[-1].rank if unread else done_count(job)
        return job, ItemBatch(items, end_rank, unread)

    def item(self, job_id: UUID, seq: int, owner: Owner | None) -> JobItem | None:
        """One item of a job the owner can see (owner None: admin)."""
        self._cur.execute(_ITEM, {**owner_params(owner), "job_id": job_id, "seq": seq})
        row = self._cur.fetchone()
        return None if row is None else item_from_row(row)

    def child_job_ids(self, parent_ids: Collection[UUID], owner: Owner | None) -> dict[UUID, list[UUID]]:
        """The ids of the jobs created by retrying each of `parent_ids`, oldest first; parents
        without retries are left out (owner None: admin)."""
        params = {**owner_params(owner), "parent_ids": [str(job_id) for job_id in parent_ids]}
        self._cur.execute(_CHILD_JOBS, params)
        children: dict[UUID, list[UUID]] = {}
        for row in self._cur.fetchall():
            children.setdefault(UUID(str(row["parent_job_id"])), []).append(UUID(str(row["id"])))
        return children
