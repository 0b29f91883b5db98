"""The job repository: every write the pipeline makes to jobs, items and the audit log.

Methods run inside the caller's transaction (see `unit_of_work`) and never commit. Each state
change is one conditional `UPDATE ... WHERE status IN (...) RETURNING`, so a repeated call (queues
and Durable deliver at least once) matches nothing and reports "no change"; its audit row is
written in the same transaction.

Counters on `jobs` change in the same statement as the item rows they count: the job row lock
that statement takes serialises the counters, so they always equal the item rows and exactly
one caller sees `remaining == 0`. Locks are taken items first, then the job row; callers that
combine several calls in one transaction should keep that order to avoid deadlocks.
"""

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg2
from psycopg2.errors import ProgramLimitExceeded
from psycopg2.extras import Json, RealDictCursor, execute_values

from shared.adapters.db.rows import (
    OWNER_SCOPE,
    Row,
    job_from_row,
    owner_params,
    progress_from_row,
    status_values,
)
from shared.domain.content import (
    BODY_FORMATS,
    NOTHING_KEPT,
    CachedPage,
    ContentFormat,
    DeletedData,
    KeptContent,
    PageChange,
    StoredBody,
    content_request,
)
from shared.domain.models import (
    OUTCOME_SOURCES,
    SYSTEM_ACTOR,
    CancelOutcome,
    CancelResult,
    FinaliseOutcome,
    IdempotencyKeyConflictError,
    ItemError,
    ItemNotFoundError,
    ItemOutcome,
    ItemStatus,
    Job,
    JobEventType,
    JobNotFoundError,
    JobOutcome,
    JobStatus,
    JobSubmission,
    Owner,
    Progress,
    ResultNotStorableError,
    WorkItem,
)

# Errors in which PostgreSQL refuses a value itself (SQLSTATE classes 22, 23 and 54): storing the same
# value again fails the same way. Deadlocks, serialisation failures and lost connections are not among them.
_REFUSED_DATA = (psycopg2.DataError, psycopg2.IntegrityError, ProgramLimitExceeded)

# A key older than this may be reused for a new job.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)

# Namespace of the two-key advisory locks that serialise submissions per idempotency key.
_IDEMPOTENCY_LOCK_NAMESPACE = 0x7452

# Rows per INSERT when bulk-inserting items: large enough that 100k URLs take ~100 round trips.
_ITEM_INSERT_PAGE = 1000

_OUTCOME_EVENTS = {
    JobOutcome.COMPLETED: JobEventType.FINISHED,
    JobOutcome.FAILED: JobEventType.FAILED,
    JobOutcome.CANCELLED: JobEventType.CANCELLED,
    JobOutcome.TIMED_OUT: JobEventType.TIMED_OUT,
}

_REMAINING = "jobs.total - jobs.succeeded - jobs.failed - jobs.skipped"

# An item becomes final with the job's row locked first (NO KEY UPDATE, so audit-log inserts, which
# take KEY SHARE for their foreign key, are not blocked): its `done_rank` is then the job's count of
# final items plus one, committed in rank order (migration 0005 says why streams need that). The lock
# is taken while the item row is being computed, before the item row is locked: every writer takes the
# job first, so none deadlocks with another.
_LOCK_JOB = "WITH job AS (SELECT succeeded + failed + skipped AS done FROM jobs WHERE id = %(job_id)s FOR NO KEY UPDATE)"
_NEXT_RANK = "(SELECT done + 1 FROM job)"

_SUCCEED_ITEM = f"""
{_LOCK_JOB},
item AS (
    UPDATE job_items
       SET status = 'succeeded', finished_at = now(), done_rank = {_NEXT_RANK}, attempts = attempts + 1,
           started_at = coalesce(started_at, now() - make_interval(secs => %(duration_ms)s / 1000.0)),
           result = %(result)s::jsonb, result_bytes = %(result_bytes)s, http_status = %(http_status)s,
           final_url = %(final_url)s, duration_ms = %(duration_ms)s,
           markdown_sha256 = %(markdown_sha256)s, markdown_bytes = %(markdown_bytes)s,
           text_sha256 = %(text_sha256)s, text_bytes = %(text_bytes)s,
           html_sha256 = %(html_sha256)s, html_bytes = %(html_bytes)s,
           page_id = %(page_id)s, page_version_id = %(version_id)s, change = %(change)s, cached = %(cached)s
     WHERE job_id = %(job_id)s AND seq = %(seq)s AND status = 'pending'
 RETURNING job_id
)
UPDATE jobs SET succeeded = succeeded + 1 FROM item WHERE jobs.id = item.job_id
RETURNING jobs.status AS job_status, {_REMAINING} AS remaining
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_FAIL_ITEM = f"""
{_LOCK_JOB},
item AS (
    UPDATE job_items
       SET status = 'failed', finished_at = now(), done_rank = {_NEXT_RANK}, attempts = attempts + %(attempt)s,
           started_at = coalesce(started_at, now()),
           last_error_code = %(code)s, last_error_message = %(message)s,
           http_status = coalesce(%(http_status)s, http_status), final_url = coalesce(%(final_url)s, final_url),
           duration_ms = coalesce(%(duration_ms)s, duration_ms)
     WHERE job_id = %(job_id)s AND seq = %(seq)s AND status = 'pending'
 RETURNING job_id
)
UPDATE jobs SET failed = failed + 1 FROM item WHERE jobs.id = item.job_id
RETURNING jobs.status AS job_status, {_REMAINING} AS remaining
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_SKIP_ITEM = f"""
{_LOCK_JOB},
item AS (
    UPDATE job_items
       SET status = 'skipped', finished_at = now(), done_rank = {_NEXT_RANK},
           last_error_code = %(code)s, last_error_message = %(reason)s
     WHERE job_id = %(job_id)s AND seq = %(seq)s AND status = 'pending'
 RETURNING job_id
)
UPDATE jobs SET skipped = skipped + 1 FROM item WHERE jobs.id = item.job_id
RETURNING jobs.status AS job_status, {_REMAINING} AS remaining
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

# Items are skipped only while the job may still take this outcome, in the same statement as
# the job update, so a refused finalisation never skips anything. It runs after `_LOCK_JOB_ONLY` in
# the same transaction: with no item completing meanwhile, the pending items it reads are exactly
# those left, and they take the next ranks in seq order.
_LOCK_JOB_ONLY = "SELECT 1 FROM jobs WHERE id = %(job_id)s FOR NO KEY UPDATE"

_FINALISE_JOB = """
WITH pending AS (
    SELECT i.seq, j.succeeded + j.failed + j.skipped + row_number() OVER (ORDER BY i.seq) AS rank
      FROM job_items i JOIN jobs j ON j.id = i.job_id
     WHERE i.job_id = %(job_id)s AND i.status = 'pending' AND %(skip_pending)s AND j.status = ANY(%(sources)s)
), skipped AS (
    UPDATE job_items i
       SET status = 'skipped', finished_at = now(), done_rank = p.rank, last_error_code = %(item_code)s,
           last_error_message = %(item_reason)s
      FROM pending p
     WHERE i.job_id = %(job_id)s AND i.seq = p.seq
 RETURNING 1
)
UPDATE jobs
   SET status = CASE WHEN %(completed)s
                     THEN CASE WHEN failed = 0 THEN 'succeeded' ELSE 'completed_with_errors' END
                     ELSE %(final_status)s END,
       skipped = skipped + (SELECT count(*) FROM skipped),
       finished_at = now(),
       error = CASE WHEN %(failed)s THEN %(reason)s ELSE error END
 WHERE id = %(job_id)s AND status = ANY(%(sources)s)
   AND (NOT %(completed)s OR (succeeded + failed + skipped = total AND cancel_requested_at IS NULL))
RETURNING *, (SELECT count(*) FROM skipped) AS skipped_now
"""

_REQUEST_CANCEL = f"""
UPDATE jobs j
   SET cancel_requested_at = now(), cancel_requested_by = %(actor)s, cancel_reason = %(reason)s
 WHERE j.id = %(job_id)s AND j.status IN ('pending', 'running')
   AND j.cancel_requested_at IS NULL AND {OWNER_SCOPE}
RETURNING j.*
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_ITEM_STATE = f"""
SELECT jobs.status AS job_status, {_REMAINING} AS remaining
  FROM job_items i JOIN jobs ON jobs.id = i.job_id
 WHERE i.job_id = %(job_id)s AND i.seq = %(seq)s
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608


# A job's data goes in one statement: its items' results and bodies, then the versions no item uses any more
# (pages pointing at them first move to their newest remaining version; pages left with none, and used by no
# item, go), and the bodies nothing names any more are noted for the retention timer.
_DELETE_JOB_DATA = """
WITH cleared AS (
    UPDATE job_items i
       SET result = NULL, result_bytes = NULL, markdown_sha256 = NULL, markdown_bytes = NULL, text_sha256 = NULL,
           text_bytes = NULL, html_sha256 = NULL, html_bytes = NULL, page_version_id = NULL, page_id = NULL
      FROM job_items old
     WHERE i.job_id = %(job_id)s AND old.job_id = i.job_id AND old.seq = i.seq
       AND (old.result IS NOT NULL OR old.page_version_id IS NOT NULL OR old.page_id IS NOT NULL)
 RETURNING old.page_version_id, old.page_id, old.markdown_sha256, old.text_sha256, old.html_sha256
),
unused AS (
    SELECT v.id, v.page_id, v.markdown_sha256, v.text_sha256, v.html_sha256
      FROM page_versions v
     WHERE (v.id IN (SELECT page_version_id FROM cleared) OR v.job_id = %(job_id)s)
       AND NOT EXISTS (SELECT 1 FROM job_items i WHERE i.page_version_id = v.id AND i.job_id <> %(job_id)s)
),
repointed AS (
    UPDATE pages p
       SET latest_version_id = (SELECT max(v.id) FROM page_versions v
                                 WHERE v.page_id = p.id AND v.id NOT IN (SELECT id FROM unused))
     WHERE p.id IN (SELECT page_id FROM unused)
 RETURNING p.id, p.latest_version_id
),
gone AS (
    DELETE FROM page_versions v USING repointed r WHERE v.id IN (SELECT id FROM unused) AND r.id = v.page_id
 RETURNING v.id
),
bodies AS (
    SELECT DISTINCT sha256 FROM (
        SELECT unnest(ARRAY[markdown_sha256, text_sha256, html_sha256]) AS sha256 FROM cleared
        UNION ALL SELECT unnest(ARRAY[markdown_sha256, text_sha256, html_sha256]) FROM unused) b
     WHERE sha256 IS NOT NULL
),
noted AS (
    INSERT INTO blob_garbage (sha256) SELECT sha256 FROM bodies
    ON CONFLICT (sha256) DO UPDATE SET noted_at = now()
 RETURNING sha256
)
SELECT (SELECT count(*) FROM cleared) AS items, (SELECT count(*) FROM gone) AS versions,
       (SELECT count(*) FROM noted) AS bodies
"""


class JobRepository:
    """Jobs, items and events inside one transaction (a RealDictCursor of the unit of work)."""

    def __init__(self, cursor: RealDictCursor) -> None:
        self._cur = cursor

    # --- submission -------------------------------------------------------------------------

    def create_job(
        self,
        owner: Owner,
        urls: Sequence[str],
        options: dict[str, Any],
        deadline_at: datetime,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        parent_job_id: UUID | None = None,
    ) -> JobSubmission:
        """Create a job with one pending item per URL (seq 0..n-1) and its `submitted` event.

        A live idempotency key (used by this owner in the last 24 h) returns that job with
        `replayed=True` when `request_hash` matches, and raises IdempotencyKeyConflictError
        when it does not.
        """
        _check_submission(urls, deadline_at, idempotency_key, request_hash)
        if idempotency_key is not None:
            existing = self._claim_idempotency_key(owner, idempotency_key)
            if existing is not None:
                return _replay(existing, idempotency_key, request_hash)
        job = self._insert_job(
            owner, len(urls), options, deadline_at, idempotency_key, request_hash, parent_job_id
        )
        self._insert_items(job.id, urls)
        data = {
            "total": job.total,
            "idempotency_key": idempotency_key,
            "parent_job_id": None if parent_job_id is None else str(parent_job_id),
        }
        self._append_event(job.id, owner.actor, JobEventType.SUBMITTED, data=data)
        return JobSubmission(job=job, replayed=False)

    def _claim_idempotency_key(self, owner: Owner, key: str) -> Row | None:
        """Lock the key for this transaction, release it if expired, and return the job that
        still holds it, if any."""
        self._cur.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (_IDEMPOTENCY_LOCK_NAMESPACE, f"{owner.tenant_id}\x1f{owner.object_id}\x1f{key}"),
        )
        params = {**owner_params(owner), "key": key, "ttl": IDEMPOTENCY_KEY_TTL}
        scope = """owner_tenant_id = %(owner_tenant_id)s AND owner_object_id = %(owner_object_id)s
                   AND idempotency_key = %(key)s"""
        self._cur.execute(
            f"UPDATE jobs SET idempotency_key = NULL WHERE {scope} AND created_at <= now() - %(ttl)s",  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608
            params,
        )
        self._cur.execute(f"SELECT * FROM jobs WHERE {scope}", params)  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608
        return self._cur.fetchone()

    def _insert_job(
        self,
        owner: Owner,
        total: int,
        options: dict[str, Any],
        deadline_at: datetime,
        idempotency_key: str | None,
        request_hash: str | None,
        parent_job_id: UUID | None,
    ) -> Job:
        self._cur.execute(
            """INSERT INTO jobs (id, owner_tenant_id, owner_object_id, options, total, deadline_at,
                                 idempotency_key, request_hash, parent_job_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
            (uuid4(), owner.tenant_id, owner.object_id, Json(options), total, deadline_at,
             idempotency_key, request_hash, parent_job_id),
        )
        return job_from_row(self._fetch_one())

    def _insert_items(self, job_id: UUID, urls: Sequence[str]) -> None:
        execute_values(
            self._cur,
            "INSERT INTO job_items (job_id, seq, url) VALUES %s",
            ((job_id, seq, url) for seq, url in enumerate(urls)),
            page_size=_ITEM_INSERT_PAGE,
        )

    # --- job transitions --------------------------------------------------------------------

    def mark_job_running(self, job_id: UUID) -> bool:
        """pending -> running with a `started` event; False if it was not pending."""
        self._cur.execute(
            """WITH job AS (
                   UPDATE jobs SET status = 'running', started_at = now()
                    WHERE id = %(job_id)s AND status = 'pending' RETURNING id)
               INSERT INTO job_events (job_id, actor, event)
               SELECT id, %(actor)s, 'started' FROM job RETURNING id""",
            {"job_id": job_id, "actor": SYSTEM_ACTOR},
        )
        return self._cur.fetchone() is not None

    def request_cancel(
        self, job_id: UUID, owner: Owner | None, actor: str, reason: str | None
    ) -> CancelOutcome:
        """Record who asked to cancel a pending or running job, when and why (once), with a
        `cancel_requested` event; the orchestrator then finalises it. Owner None is admin."""
        params = {**owner_params(owner), "job_id": job_id, "actor": actor, "reason": reason}
        self._cur.execute(_REQUEST_CANCEL, params)
        row = self._cur.fetchone()
        if row is not None:
            self._append_event(job_id, actor, JobEventType.CANCEL_REQUESTED, reason)
            return CancelOutcome(result=CancelResult.REQUESTED, job=job_from_row(row))
        job = self.get_job(job_id, owner)
        return CancelOutcome(result=_cancel_refusal(job), job=job)

    def finalise_job(
        self, job_id: UUID, outcome: JobOutcome, actor: str, reason: str | None = None
    ) -> FinaliseOutcome:
        """Move a job to its final status and write the matching event (`finished`, `failed`,
        `cancelled`, `timed_out`). Except for `completed`, pending items are skipped first.

        `completed` becomes `succeeded` when no item failed, else `completed_with_errors`, and
        is refused while items are pending or once a cancel was requested: a caller who got 202
        for a cancel never sees the job succeed (the orchestrator then decides `cancelled`). `changed` is False when the job was already final
        or the status machine refuses the outcome; `job` always shows the current state.
        """
        final_status = None if outcome is JobOutcome.COMPLETED else JobStatus(outcome.value)
        params = {
            "job_id": job_id,
            "sources": [status.value for status in OUTCOME_SOURCES[outcome]],
            "completed": outcome is JobOutcome.COMPLETED,
            "failed": outcome is JobOutcome.FAILED,
            "skip_pending": outcome is not JobOutcome.COMPLETED,
            "final_status": None if final_status is None else final_status.value,
            "item_code": f"job_{outcome.value}",
            "item_reason": f"job {outcome.value}",
            "reason": reason,
        }
        self._cur.execute(_LOCK_JOB_ONLY, params)
        self._cur.execute(_FINALISE_JOB, params)
        row = self._cur.fetchone()
        if row is None:
            return FinaliseOutcome(changed=False, job=self._require_job(job_id))
        job = job_from_row(row)
        self._append_event(job_id, actor, _OUTCOME_EVENTS[outcome], reason, _final_data(job, row))
        return FinaliseOutcome(changed=True, job=job)

    # --- item transitions -------------------------------------------------------------------

    def record_retry(
        self, job_id: UUID, seq: int, attempts_before: int, error: ItemError, retry_at: datetime
    ) -> bool:
        """Count a failed attempt that will be tried again at `retry_at`: the item stays pending
        with its last error, and an `item_retried` event keeps the attempt in the job's history.
        Conditional on the item still having `attempts_before` attempts, so of two deliveries racing
        on one attempt only one counts it; False for the other, and when the item is already final."""
        self._cur.execute(
            """UPDATE job_items
                  SET attempts = attempts + 1, started_at = coalesce(started_at, now()),
                      last_error_code = %s, last_error_message = %s, http_status = %s, next_attempt_at = %s,
                      final_url = coalesce(%s, final_url), duration_ms = coalesce(%s, duration_ms)
                WHERE job_id = %s AND seq = %s AND status = 'pending' AND attempts = %s RETURNING seq""",
            (error.code, error.message, error.http_status, retry_at, error.final_url, error.duration_ms,
             job_id, seq, attempts_before),
        )
        if self._cur.fetchone() is None:
            return False
        data = {"seq": seq, "attempt": attempts_before + 1, "code": error.code, "http_status": error.http_status}
        self._append_event(job_id, SYSTEM_ACTOR, JobEventType.ITEM_RETRIED, error.message, data)
        return True

    def mark_sent(self, job_id: UUID, seqs: Sequence[int], attempt: int) -> int:
        """Record that messages carrying `attempt` were sent for these pending items (never
        lowering what is recorded); returns how many rows changed."""
        self._cur.execute(
            """UPDATE job_items SET queued_attempt = %s
                WHERE job_id = %s AND seq = ANY(%s) AND status = 'pending'
                  AND (queued_attempt IS NULL OR queued_attempt < %s)""",
            (attempt, job_id, list(seqs), attempt),
        )
        return int(self._cur.rowcount)

    def complete_item(
        self,
        job_id: UUID,
        seq: int,
        result: dict[str, Any],
        http_status: int | None,
        final_url: str | None,
        duration_ms: int,
        kept: KeptContent = NOTHING_KEPT,
    ) -> ItemOutcome:
        """pending -> succeeded with the extracted page, counting it on the job in the same
        statement; `remaining == 0` tells exactly one caller it finished the job's last item. The
        result's JSON size is stored with it, for listings that page by bytes. ResultNotStorableError
        when PostgreSQL refuses the result as data (the transaction is then aborted)."""
        document = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        params = {
            "job_id": job_id,
            "seq": seq,
            "result": document,
            "result_bytes": _utf8_size(document),
            "http_status": http_status,
            "final_url": final_url,
            "duration_ms": duration_ms,
            "page_id": kept.page_id,
            "version_id": kept.version_id,
            "change": None if kept.change is None else kept.change.value,
            "cached": kept.cached,
        }
        for kind in BODY_FORMATS:
            body = kept.bodies.get(kind)
            params[f"{kind}_sha256"] = None if body is None else body.sha256
            params[f"{kind}_bytes"] = None if body is None else body.size
        try:
            return self._finish_item(_SUCCEED_ITEM, params)
        except _REFUSED_DATA as exc:
            raise ResultNotStorableError(f"{type(exc).__name__}, SQLSTATE {exc.pgcode}") from exc

    def fail_item(
        self,
        job_id: UUID,
        seq: int,
        code: str,
        message: str,
        actor: str,
        http_status: int | None = None,
        counts_as_attempt: bool = True,
        *,
        final_url: str | None = None,
        duration_ms: int | None = None,
    ) -> ItemOutcome:
        """pending -> failed for a permanent error, with an `item_failed` event. A worker's failure
        is one more attempt; giving up on a poisoned message (`counts_as_attempt=False`) is not.
        What the attempt learnt (HTTP status, final URL, duration) is kept; None keeps what an
        earlier attempt recorded."""
        params = {
            "job_id": job_id,
            "seq": seq,
            "code": code,
            "message": message,
            "http_status": http_status,
            "final_url": final_url,
            "duration_ms": duration_ms,
            "attempt": 1 if counts_as_attempt else 0,
        }
        outcome = self._finish_item(_FAIL_ITEM, params)
        if outcome.changed:
            data = {"seq": seq, "code": code, "http_status": http_status}
            self._append_event(job_id, actor, JobEventType.ITEM_FAILED, message, data)
        return outcome

    def skip_item(self, job_id: UUID, seq: int, code: str, reason: str) -> ItemOutcome:
        """pending -> skipped (reason code and text kept as the item's error), with an
        `item_skipped` event."""
        params = {"job_id": job_id, "seq": seq, "code": code, "reason": reason}
        outcome = self._finish_item(_SKIP_ITEM, params)
        if outcome.changed:
            self._append_event(job_id, SYSTEM_ACTOR, JobEventType.ITEM_SKIPPED, reason, {"seq": seq, "code": code})
        return outcome

    def _finish_item(self, sql: str, params: dict[str, Any]) -> ItemOutcome:
        self._cur.execute(sql, params)
        row = self._cur.fetchone()
        changed = row is not None
        if row is None:
            self._cur.execute(_ITEM_STATE, params)
            row = self._cur.fetchone()
            if row is None:
                raise ItemNotFoundError(params["job_id"], params["seq"])
        return ItemOutcome(
            changed=changed,
            job_status=JobStatus(row["job_status"]),
            remaining=row["remaining"],
        )

    def record_page_version(self, owner: Owner, url: str, host: str, main_text_digest: str,
                            bodies: dict[ContentFormat, StoredBody], job_id: UUID, seq: int,
                            search_text: str = "", search_config: str = "simple") -> KeptContent:
        """The owner's page for `url`, with a new version when `main_text_digest` differs from its latest
        (`new` for a page's first, `changed`), else the latest marked seen again (`unchanged`). The page row is
        locked first, so two items of one page decide one after the other. A redelivered item finds the version
        it recorded itself and answers as it did then."""
        self._cur.execute(
            """INSERT INTO pages (id, owner_tenant_id, owner_object_id, url, host) VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (owner_tenant_id, owner_object_id, url) DO UPDATE SET last_seen_at = now()
               RETURNING id""",
            (uuid4(), owner.tenant_id, owner.object_id, url, host))
        page_id: UUID = self._fetch_one()["id"]
        self._cur.execute(
            """SELECT id, main_text_digest, job_id, seq, (SELECT count(*) FROM page_versions WHERE page_id = %(page)s) AS n
                 FROM page_versions WHERE page_id = %(page)s ORDER BY id DESC LIMIT 1""", {"page": page_id})
        latest = self._cur.fetchone()
        if latest is not None and (latest["job_id"], latest["seq"]) == (job_id, seq):
            change = PageChange.NEW if latest["n"] == 1 else PageChange.CHANGED
            version_id = latest["id"]
        elif latest is not None and latest["main_text_digest"] == main_text_digest:
            self._cur.execute("UPDATE page_versions SET last_seen_at = now() WHERE id = %s", (latest["id"],))
            change = PageChange.UNCHANGED
            version_id = latest["id"]
        else:
            sizes = {f"{kind}_{field}": getattr(bodies[kind], attr) if kind in bodies else None
                     for kind in BODY_FORMATS for field, attr in (("sha256", "sha256"), ("bytes", "size"))}
            self._cur.execute(
                """WITH version AS (
                       INSERT INTO page_versions (page_id, main_text_digest, markdown_sha256, markdown_bytes,
                                                  text_sha256, text_bytes, html_sha256, html_bytes, job_id, seq,
                                                  search_config, search_vector)
                       VALUES (%(page)s, %(main)s, %(markdown_sha256)s, %(markdown_bytes)s, %(text_sha256)s,
                               %(text_bytes)s, %(html_sha256)s, %(html_bytes)s, %(job_id)s, %(seq)s,
                               %(config)s::regconfig, to_tsvector(%(config)s::regconfig, %(search_text)s))
                       RETURNING id)
                   UPDATE pages SET latest_version_id = version.id FROM version WHERE pages.id = %(page)s
                   RETURNING version.id""",
                {"page": page_id, "main": main_text_digest, "job_id": job_id, "seq": seq,
                 "config": search_config, "search_text": search_text, **sizes})
            version_id = self._fetch_one()["id"]
            change = PageChange.NEW if latest is None else PageChange.CHANGED
        return KeptContent(bodies=dict(bodies), page_id=page_id, version_id=version_id, change=change)

    def fresh_version(self, owner: Owner, url: str, max_age_s: int,
                      kinds: Sequence[ContentFormat]) -> CachedPage | None:
        """The owner's page for `url` when its latest version was seen within `max_age_s` and kept every body
        in `kinds`: the result of the item that first saw it, to answer another item without fetching."""
        self._cur.execute(
            """SELECT p.id AS page_id, v.id AS version_id, v.markdown_sha256, v.markdown_bytes, v.text_sha256,
                      v.text_bytes, v.html_sha256, v.html_bytes, i.result, i.http_status, i.final_url
                 FROM pages p JOIN page_versions v ON v.id = p.latest_version_id
                 JOIN job_items i ON (i.job_id, i.seq) = (v.job_id, v.seq)
                WHERE p.owner_tenant_id = %s AND p.owner_object_id = %s AND p.url = %s
                  AND v.last_seen_at >= now() - make_interval(secs => %s) AND i.result IS NOT NULL""",
            (owner.tenant_id, owner.object_id, url, max_age_s))
        row = self._cur.fetchone()
        if row is None:
            return None
        bodies = {kind: StoredBody(row[f"{kind}_sha256"], row[f"{kind}_bytes"]) for kind in BODY_FORMATS
                  if row[f"{kind}_sha256"] is not None}
        if any(kind not in bodies for kind in kinds):
            return None
        kept = KeptContent(bodies={kind: bodies[kind] for kind in kinds}, page_id=row["page_id"],
                           version_id=row["version_id"], change=PageChange.UNCHANGED, cached=True)
        return CachedPage(row["result"], row["http_status"], row["final_url"], kept)

    def delete_job_data(self, job_id: UUID, actor: str, reason: str | None = None) -> DeletedData:
        """Delete a final job's results and kept bodies: its items keep their URL, status and error; the page
        versions only its items used go (a page left with none goes too), and the bodies no row names any more
        are noted in `blob_garbage` for the retention timer. Records `data_deleted`. Idempotent: a second call
        finds nothing to delete and records nothing."""
        self._cur.execute(_LOCK_JOB_ONLY, {"job_id": job_id})
        self._cur.execute(_DELETE_JOB_DATA, {"job_id": job_id})
        row = self._fetch_one()
        deleted = DeletedData(items=row["items"], versions=row["versions"], bodies=row["bodies"])
        if deleted.items:
            self._append_event(job_id, actor, JobEventType.DATA_DELETED, reason,
                               {"items": deleted.items, "versions": deleted.versions, "bodies": deleted.bodies})
        return deleted

    def expired_jobs(self, finished_before: datetime, limit: int) -> list[UUID]:
        """Final jobs finished before `finished_before` that still hold results, oldest first."""
        self._cur.execute(
            """SELECT j.id FROM jobs j
                WHERE j.finished_at < %s
                  AND EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = j.id AND i.result IS NOT NULL)
                ORDER BY j.finished_at LIMIT %s""", (finished_before, limit))
        return [row["id"] for row in self._cur.fetchall()]

    def forget_garbage(self, sha256s: Sequence[str]) -> None:
        """A worker is about to store these bodies: they are no longer to be deleted. Waits for a sweep that is
        deleting one of them right now, so the worker's store then finds it gone and uploads it again."""
        self._cur.execute("DELETE FROM blob_garbage WHERE sha256 = ANY(%s)", (list(sha256s),))

    def lock_garbage(self, noted_before: datetime, limit: int) -> list[str]:
        """Bodies noted for deletion before `noted_before` that no row names any more, locked until the end of
        the transaction (the caller deletes their blobs, then `drop_garbage`); notes of bodies named again go."""
        self._cur.execute(
            """SELECT sha256 FROM blob_garbage WHERE noted_at < %s ORDER BY noted_at LIMIT %s
               FOR UPDATE SKIP LOCKED""", (noted_before, limit))
        due = [row["sha256"] for row in self._cur.fetchall()]
        self._cur.execute(
            """DELETE FROM blob_garbage g WHERE g.sha256 = ANY(%(due)s)
                 AND (EXISTS (SELECT 1 FROM job_items WHERE g.sha256 IN (markdown_sha256, text_sha256, html_sha256))
                      OR EXISTS (SELECT 1 FROM page_versions
                                  WHERE g.sha256 IN (markdown_sha256, text_sha256, html_sha256)))
               RETURNING g.sha256""", {"due": due})
        named = {row["sha256"] for row in self._cur.fetchall()}
        return [sha256 for sha256 in due if sha256 not in named]

    def drop_garbage(self, sha256s: Sequence[str]) -> None:
        self._cur.execute("DELETE FROM blob_garbage WHERE sha256 = ANY(%s)", (list(sha256s),))

    # --- reads the pipeline needs -----------------------------------------------------------

    def get_job(self, job_id: UUID, owner: Owner | None) -> Job | None:
        """The job if it exists and belongs to `owner` (None: any owner, for admins)."""
        self._cur.execute(
            f"SELECT * FROM jobs j WHERE j.id = %(job_id)s AND {OWNER_SCOPE}",  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608
            {**owner_params(owner), "job_id": job_id},
        )
        row = self._cur.fetchone()
        return None if row is None else job_from_row(row)

    def progress(self, job_id: UUID) -> Progress:
        """Status and counters of a job, for the orchestrator's polling."""
        self._cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        row = self._cur.fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return progress_from_row(row)

    def pending_item_seqs(self, job_id: UUID, after_seq: int = -1, limit: int = 1000) -> list[int]:
        """Seqs of pending items after `after_seq`, in order."""
        self._cur.execute(
            """SELECT seq FROM job_items WHERE job_id = %s AND status = 'pending' AND seq > %s
                ORDER BY seq LIMIT %s""",
            (job_id, after_seq, limit),
        )
        return [row["seq"] for row in self._cur.fetchall()]

    def unsent_item_seqs(self, job_id: UUID, start: int, end: int) -> list[int]:
        """Seqs in [start, end) of pending items that no message was ever sent for: what an
        (re)started orchestration enqueues. Items already in the queue or waiting for a retry
        are left alone, so a restart neither duplicates messages nor grants a second budget."""
        self._cur.execute(
            """SELECT seq FROM job_items
                WHERE job_id = %s AND status = 'pending' AND queued_attempt IS NULL AND seq >= %s AND seq < %s
                ORDER BY seq""",
            (job_id, start, end),
        )
        return [row["seq"] for row in self._cur.fetchall()]

    def item_urls(self, job_id: UUID, statuses: Collection[ItemStatus]) -> list[str]:
        """URLs of a job's items in `statuses`, in seq order: what a retry of the job submits."""
        self._cur.execute(
            "SELECT url FROM job_items WHERE job_id = %s AND status = ANY(%s) ORDER BY seq",
            (job_id, status_values(statuses)),
        )
        return [row["url"] for row in self._cur.fetchall()]

    def item_for_work(self, job_id: UUID, seq: int) -> WorkItem | None:
        """An item's URL and dispatch state with its job's status, cancel flag and deadline, so
        a worker can decide whether to scrape it at all; only the columns it uses."""
        self._cur.execute(
            """SELECT i.url, i.status, i.attempts, i.queued_attempt, i.next_attempt_at, i.last_error_code,
                      i.last_error_message, i.http_status,
                      j.status AS job_status, j.cancel_requested_at IS NOT NULL AS cancel_requested, j.deadline_at,
                      j.owner_tenant_id, j.owner_object_id,
                      j.options -> 'formats' AS formats, j.options -> 'main_content_only' AS main_content_only,
                      j.options -> 'max_age_seconds' AS max_age_seconds
                 FROM job_items i JOIN jobs j ON j.id = i.job_id
                WHERE i.job_id = %s AND i.seq = %s""",
            (job_id, seq),
        )
        row = self._cur.fetchone()
        if row is None:
            return None
        return WorkItem(
            job_status=JobStatus(row["job_status"]),
            cancel_requested=row["cancel_requested"],
            deadline_at=row["deadline_at"],
            url=row["url"],
            status=ItemStatus(row["status"]),
            attempts=row["attempts"],
            queued_attempt=row["queued_attempt"],
            next_attempt_at=row["next_attempt_at"],
            last_error_code=row["last_error_code"],
            last_error_message=row["last_error_message"],
            http_status=row["http_status"],
            owner=Owner(tenant_id=row["owner_tenant_id"], object_id=row["owner_object_id"]),
            content=content_request(row["formats"], row["main_content_only"], row["max_age_seconds"]),
        )

    def unfinished_jobs(self, older_than: timedelta | None = None) -> list[Job]:
        """Pending and running jobs, oldest first, optionally only those created more than
        `older_than` ago: what the reconciler checks for lost orchestrations and deadlines."""
        self._cur.execute(
            """SELECT * FROM jobs WHERE status IN ('pending', 'running')
                  AND (%(older_than)s::interval IS NULL OR created_at <= now() - %(older_than)s::interval)
                ORDER BY created_at, id""",
            {"older_than": older_than},
        )
        return [job_from_row(row) for row in self._cur.fetchall()]

    def ping(self) -> None:
        """One round trip to the database, for the health endpoint; raises if it is unreachable."""
        self._cur.execute("SELECT 1")
        self._fetch_one()

    # --- helpers ----------------------------------------------------------------------------

    def _require_job(self, job_id: UUID) -> Job:
        job = self.get_job(job_id, owner=None)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def _append_event(
        self,
        job_id: UUID,
        actor: str,
        event: JobEventType,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._cur.execute(
            "INSERT INTO job_events (job_id, actor, event, reason, data) VALUES (%s, %s, %s, %s, %s)",
            (job_id, actor, event.value, reason, None if data is None else Json(data)),
        )

    def _fetch_one(self) -> Row:
        row = self._cur.fetchone()
        if row is None:
            raise RuntimeError("statement returned no row")
        return row


def _utf8_size(document: str) -> int:
    try:
        return len(document.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: PostgreSQL could not take it either
        raise ResultNotStorableError("the result is not valid Unicode text") from exc


def _check_submission(
    urls: Sequence[str], deadline_at: datetime, idempotency_key: str | None, request_hash: str | None
) -> None:
    if not urls:
        raise ValueError("a job needs at least one URL")
    if deadline_at.tzinfo is None:
        raise ValueError("deadline_at must be timezone-aware")
    if idempotency_key is not None and request_hash is None:
        raise ValueError("an idempotency key needs the request hash it protects")


def _replay(row: Row, idempotency_key: str, request_hash: str | None) -> JobSubmission:
    job = job_from_row(row)
    if row["request_hash"] != request_hash:
        raise IdempotencyKeyConflictError(idempotency_key, job.id)
    return JobSubmission(job=job, replayed=True)


def _cancel_refusal(job: Job | None) -> CancelResult:
    if job is None:
        return CancelResult.NOT_FOUND
    if job.cancel_requested_at is not None:
        return CancelResult.ALREADY_REQUESTED
    return CancelResult.ALREADY_FINAL


def _final_data(job: Job, row: Row) -> dict[str, Any]:
    return {
        "status": job.status.value,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "skipped": job.skipped,
        "skipped_now": row["skipped_now"],
    }
