"""Read side for the caller API: owner-scoped listings of jobs, items and events.

Every listing pages by keyset (the last row's key, never OFFSET), so a page costs the same at
row 100,000 as at row 0 and the API can hand the key back as an opaque cursor.
"""

from collections.abc import Collection, Iterator
from datetime import datetime
from uuid import UUID

from psycopg2.extras import RealDictCursor

from shared.db.rows import OWNER_SCOPE, event_from_row, item_from_row, job_from_row, owner_params, status_values
from shared.models import ItemStatus, Job, JobEvent, JobItem, JobPageKey, JobStatus, Owner

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

_LIST_ITEMS = f"""
SELECT i.* FROM job_items i JOIN jobs j ON j.id = i.job_id
 WHERE i.job_id = %(job_id)s AND {OWNER_SCOPE}
   AND (%(statuses)s::text[] IS NULL OR i.status = ANY(%(statuses)s))
   AND i.seq > %(after_seq)s
 ORDER BY i.seq
 LIMIT %(limit)s
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
    ) -> list[JobItem]:
        """One page of a job's items in seq order, after `after_seq` (owner None: admin)."""
        params = {
            **owner_params(owner),
            "job_id": job_id,
            "statuses": status_values(statuses),
            "after_seq": after_seq,
            "limit": limit,
        }
        self._cur.execute(_LIST_ITEMS, params)
        return [item_from_row(row) for row in self._cur.fetchall()]

    def iter_items(
        self,
        job_id: UUID,
        owner: Owner | None,
        statuses: Collection[ItemStatus] | None = None,
        page_size: int = 1000,
    ) -> Iterator[JobItem]:
        """All of a job's items in seq order, fetched a page at a time so an export of 100k
        items holds one page in memory."""
        after_seq = -1
        while True:
            page = self.list_items(job_id, owner, statuses, after_seq, page_size)
            yield from page
            if len(page) < page_size:
                return
            after_seq = page[-1].seq

    def list_events(
        self, job_id: UUID, owner: Owner | None, after_id: int = 0, limit: int = 100
    ) -> list[JobEvent]:
        """One page of a job's audit log in order, after event `after_id` (owner None: admin)."""
        params = {**owner_params(owner), "job_id": job_id, "after_id": after_id, "limit": limit}
        self._cur.execute(_LIST_EVENTS, params)
        return [event_from_row(row) for row in self._cur.fetchall()]

    def child_job_ids(self, parent_ids: Collection[UUID], owner: Owner | None) -> dict[UUID, list[UUID]]:
        """The ids of the jobs created by retrying each of `parent_ids`, oldest first; parents
        without retries are left out (owner None: admin)."""
        params = {**owner_params(owner), "parent_ids": [str(job_id) for job_id in parent_ids]}
        self._cur.execute(_CHILD_JOBS, params)
        children: dict[UUID, list[UUID]] = {}
        for row in self._cur.fetchall():
            children.setdefault(UUID(str(row["parent_job_id"])), []).append(UUID(str(row["id"])))
        return children
