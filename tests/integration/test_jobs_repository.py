"""The job repository and read queries on a real PostgreSQL, one operation per transaction."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg2
import pytest

from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.jobs import JobRepository
from shared.adapters.db.queries import JobQueries
from shared.adapters.db.unit_of_work import uow
from shared.domain.errors import TrawlError
from shared.domain.models import (
    SYSTEM_ACTOR,
    CancelResult,
    IdempotencyKeyConflictError,
    ItemError,
    ItemNotFoundError,
    ItemStatus,
    Job,
    JobEventType,
    JobNotFoundError,
    JobOutcome,
    JobPageKey,
    JobStatus,
    JobSubmission,
    Owner,
)
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration

FetchRows = Callable[..., list[dict[str, Any]]]
SubmitJob = Callable[..., Job]
ExecuteSql = Callable[..., None]
DEADLINE = datetime(2030, 1, 1, tzinfo=UTC)
LATER = datetime(2029, 6, 1, tzinfo=UTC)


@pytest.fixture
def running_job(submit_job: SubmitJob, jobs: JobRepository) -> Job:
    job = submit_job(count=4)
    assert jobs.mark_job_running(job.id)
    return job


def events(fetch_rows: FetchRows, job: Job) -> list[dict[str, Any]]:
    return fetch_rows("SELECT * FROM job_events WHERE job_id = %s ORDER BY id", (job.id,))


def event_names(fetch_rows: FetchRows, job: Job) -> list[str]:
    return [row["event"] for row in events(fetch_rows, job)]


def assert_counters_match_items(fetch_rows: FetchRows, job: Job) -> dict[str, Any]:
    [row] = fetch_rows(
        """SELECT j.total, j.succeeded, j.failed, j.skipped,
                  count(i.*) AS items,
                  count(*) FILTER (WHERE i.status = 'succeeded') AS items_succeeded,
                  count(*) FILTER (WHERE i.status = 'failed') AS items_failed,
                  count(*) FILTER (WHERE i.status = 'skipped') AS items_skipped
             FROM jobs j JOIN job_items i ON i.job_id = j.id
            WHERE j.id = %s GROUP BY j.id""",
        (job.id,),
    )
    assert row["total"] == row["items"]
    assert (row["succeeded"], row["failed"], row["skipped"]) == (
        row["items_succeeded"], row["items_failed"], row["items_skipped"]
    )
    return row


# --- submission ----------------------------------------------------------------------------


def test_create_job_writes_job_items_and_submitted_event(jobs: JobRepository, fetch_rows: FetchRows) -> None:
    urls = ["https://a.test/", "https://b.test/x", "https://c.test/y"]

    submission = jobs.create_job(ANONYMOUS_OWNER, urls, {"k": 1}, DEADLINE)

    job = submission.job
    assert not submission.replayed
    assert (job.status, job.total, job.options, job.deadline_at) == (JobStatus.PENDING, 3, {"k": 1}, DEADLINE)
    items = fetch_rows("SELECT seq, url, status FROM job_items WHERE job_id = %s ORDER BY seq", (job.id,))
    assert items == [{"seq": n, "url": url, "status": "pending"} for n, url in enumerate(urls)]
    [submitted] = events(fetch_rows, job)
    assert (submitted["event"], submitted["actor"]) == ("submitted", ANONYMOUS_OWNER.actor)
    assert submitted["data"]["total"] == 3


def test_create_job_with_ten_thousand_urls(jobs: JobRepository, fetch_rows: FetchRows) -> None:
    urls = [f"https://site.test/p/{n}" for n in range(10_000)]

    job = jobs.create_job(ANONYMOUS_OWNER, urls, {}, DEADLINE).job

    [row] = fetch_rows(
        "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM job_items WHERE job_id = %s", (job.id,)
    )
    assert (job.total, row["n"], row["lo"], row["hi"]) == (10_000, 10_000, 0, 9_999)
    assert jobs.pending_item_seqs(job.id, after_seq=9_997, limit=10) == [9_998, 9_999]


def test_create_job_rolls_back_entirely_without_commit(pool: ConnectionPool, fetch_rows: FetchRows) -> None:
    with uow(pool) as tx:
        tx.jobs.create_job(ANONYMOUS_OWNER, ["https://a.test/"], {}, DEADLINE)

    assert fetch_rows("SELECT 1 FROM jobs UNION ALL SELECT 1 FROM job_items UNION ALL SELECT 1 FROM job_events") == []


@pytest.mark.parametrize(
    ("urls", "deadline", "message"),
    [([], DEADLINE, "at least one URL"), (["https://a.test/"], datetime(2030, 1, 1), "timezone-aware")],
)
def test_create_job_rejects_invalid_submissions(
    jobs: JobRepository, urls: list[str], deadline: datetime, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        jobs.create_job(ANONYMOUS_OWNER, urls, {}, deadline)


def test_idempotency_key_replays_the_same_request(
    jobs: JobRepository, fetch_rows: FetchRows, other_owner: Owner
) -> None:
    def submit(owner: Owner, request_hash: str) -> JobSubmission:
        return jobs.create_job(
            owner, ["https://a.test/"], {}, DEADLINE, idempotency_key="key-1", request_hash=request_hash
        )

    first = submit(ANONYMOUS_OWNER, "hash-a")
    replay = submit(ANONYMOUS_OWNER, "hash-a")
    elsewhere = submit(other_owner, "hash-b")

    assert (first.replayed, replay.replayed, elsewhere.replayed) == (False, True, False)
    assert replay.job.id == first.job.id != elsewhere.job.id
    assert len(fetch_rows("SELECT id FROM jobs")) == 2
    assert event_names(fetch_rows, first.job) == ["submitted"]
    with pytest.raises(IdempotencyKeyConflictError) as conflict:
        submit(ANONYMOUS_OWNER, "hash-other")
    assert conflict.value.job_id == first.job.id
    # A repository error, not an HTTP one: it used to carry 409 while the API answers it 422.
    assert not isinstance(conflict.value, TrawlError)


def test_idempotency_key_older_than_a_day_starts_a_new_job(
    jobs: JobRepository, execute_sql: ExecuteSql, fetch_rows: FetchRows
) -> None:
    def submit(request_hash: str) -> JobSubmission:
        return jobs.create_job(
            ANONYMOUS_OWNER, ["https://a.test/"], {}, DEADLINE, idempotency_key="key-1", request_hash=request_hash
        )

    old = submit("hash-a").job
    execute_sql("UPDATE jobs SET created_at = now() - interval '25 hours' WHERE id = %s", (old.id,))

    new = submit("hash-b")

    assert not new.replayed and new.job.id != old.id
    rows = fetch_rows("SELECT id, idempotency_key FROM jobs ORDER BY created_at")
    assert rows == [{"id": old.id, "idempotency_key": None}, {"id": new.job.id, "idempotency_key": "key-1"}]


# --- job transitions -----------------------------------------------------------------------


def test_mark_job_running_once(submit_job: SubmitJob, jobs: JobRepository, fetch_rows: FetchRows) -> None:
    job = submit_job()

    first = jobs.mark_job_running(job.id)
    again = jobs.mark_job_running(job.id)

    assert (first, again) == (True, False)
    progress = jobs.progress(job.id)
    assert progress.status is JobStatus.RUNNING
    assert event_names(fetch_rows, job) == ["submitted", "started"]
    [started] = events(fetch_rows, job)[1:]
    assert started["actor"] == SYSTEM_ACTOR


def test_a_final_job_cannot_start(submit_job: SubmitJob, jobs: JobRepository) -> None:
    job = submit_job()
    jobs.finalise_job(job.id, JobOutcome.CANCELLED, "user")

    assert jobs.mark_job_running(job.id) is False
    assert jobs.progress(job.id).status is JobStatus.CANCELLED


@pytest.mark.parametrize(
    ("failures", "expected"), [(0, JobStatus.SUCCEEDED), (1, JobStatus.COMPLETED_WITH_ERRORS)]
)
def test_finalise_completed_picks_status_from_failures(
    running_job: Job, jobs: JobRepository, fetch_rows: FetchRows, failures: int, expected: JobStatus
) -> None:
    for seq in range(running_job.total):
        if seq < failures:
            jobs.fail_item(running_job.id, seq, "http_404", "gone", "worker", 404)
        else:
            jobs.complete_item(running_job.id, seq, {"title": "t"}, 200, None, 5)

    outcome = jobs.finalise_job(running_job.id, JobOutcome.COMPLETED, "orchestrator")

    assert outcome.changed and outcome.job.status is expected and outcome.job.finished_at is not None
    [finished] = [e for e in events(fetch_rows, running_job) if e["event"] == "finished"]
    assert finished["actor"] == "orchestrator"
    assert finished["data"]["status"] == expected.value
    assert_counters_match_items(fetch_rows, running_job)


def test_finalise_completed_is_refused_while_items_are_pending(
    running_job: Job, jobs: JobRepository, fetch_rows: FetchRows
) -> None:
    jobs.complete_item(running_job.id, 0, {}, 200, None, 5)

    outcome = jobs.finalise_job(running_job.id, JobOutcome.COMPLETED, "orchestrator")

    assert not outcome.changed and outcome.job.status is JobStatus.RUNNING
    assert "finished" not in event_names(fetch_rows, running_job)


@pytest.mark.parametrize(
    ("outcome", "allowed"),
    [
        (JobOutcome.CANCELLED, True),
        (JobOutcome.FAILED, True),
        (JobOutcome.TIMED_OUT, False),
        (JobOutcome.COMPLETED, False),
    ],
)
def test_finalise_from_pending_follows_the_status_machine(
    submit_job: SubmitJob, jobs: JobRepository, fetch_rows: FetchRows, outcome: JobOutcome, allowed: bool
) -> None:
    job = submit_job(count=3)

    result = jobs.finalise_job(job.id, outcome, "reconciler", "why")

    assert result.changed is allowed
    assert result.job.status is (JobStatus(outcome.value) if allowed else JobStatus.PENDING)
    row = assert_counters_match_items(fetch_rows, job)
    # A refused outcome must not have skipped anything either.
    assert row["skipped"] == (3 if allowed else 0)
    assert len(event_names(fetch_rows, job)) == (2 if allowed else 1)


@pytest.mark.parametrize(
    ("outcome", "status", "event"),
    [
        (JobOutcome.CANCELLED, JobStatus.CANCELLED, "cancelled"),
        (JobOutcome.TIMED_OUT, JobStatus.TIMED_OUT, "timed_out"),
        (JobOutcome.FAILED, JobStatus.FAILED, "failed"),
    ],
)
def test_finalise_skips_pending_items_and_writes_its_event_once(
    running_job: Job,
    jobs: JobRepository,
    fetch_rows: FetchRows,
    outcome: JobOutcome,
    status: JobStatus,
    event: str,
) -> None:
    jobs.complete_item(running_job.id, 0, {}, 200, None, 5)
    jobs.fail_item(running_job.id, 1, "dns", "no such host", "worker")

    first = jobs.finalise_job(running_job.id, outcome, "alice", "stop it")
    again = jobs.finalise_job(running_job.id, outcome, "alice", "stop it")
    other = jobs.finalise_job(running_job.id, JobOutcome.COMPLETED, "orchestrator")

    assert (first.changed, again.changed, other.changed) == (True, False, False)
    assert first.job.status is again.job.status is other.job.status is status
    assert (first.job.succeeded, first.job.failed, first.job.skipped) == (1, 1, 2)
    assert first.job.error == ("stop it" if outcome is JobOutcome.FAILED else None)
    skipped = fetch_rows("SELECT last_error_message FROM job_items WHERE job_id = %s AND status = 'skipped'",
                         (running_job.id,))
    assert skipped == [{"last_error_message": f"job {outcome.value}"}] * 2
    finals = [e for e in events(fetch_rows, running_job) if e["event"] == event]
    assert [(e["actor"], e["reason"], e["data"]["skipped_now"]) for e in finals] == [("alice", "stop it", 2)]
    assert_counters_match_items(fetch_rows, running_job)


def test_finalise_and_its_event_share_one_transaction(
    running_job: Job, pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    def visible() -> tuple[str, list[str]]:
        [job] = fetch_rows("SELECT status FROM jobs WHERE id = %s", (running_job.id,))
        return job["status"], event_names(fetch_rows, running_job)

    with uow(pool) as tx:
        tx.jobs.finalise_job(running_job.id, JobOutcome.CANCELLED, "alice")
        before_commit = visible()
        tx.commit()
    after_commit = visible()
    with uow(pool) as tx:
        uncommitted = tx.jobs.create_job(ANONYMOUS_OWNER, ["https://a.test/"], {}, DEADLINE).job
        tx.jobs.finalise_job(uncommitted.id, JobOutcome.CANCELLED, "alice")

    assert before_commit == ("running", ["submitted", "started"])
    assert after_commit == ("cancelled", ["submitted", "started", "cancelled"])
    assert len(fetch_rows("SELECT id FROM jobs")) == 1


def test_finalise_an_unknown_job_raises(jobs: JobRepository) -> None:
    with pytest.raises(JobNotFoundError):
        jobs.finalise_job(uuid4(), JobOutcome.CANCELLED, "alice")


# --- cancellation --------------------------------------------------------------------------


def test_request_cancel_records_once(running_job: Job, jobs: JobRepository, fetch_rows: FetchRows) -> None:
    first = jobs.request_cancel(running_job.id, ANONYMOUS_OWNER, "alice", "typo")
    again = jobs.request_cancel(running_job.id, ANONYMOUS_OWNER, "bob", "me too")

    assert (first.result, again.result) == (CancelResult.REQUESTED, CancelResult.ALREADY_REQUESTED)
    assert first.job is not None and again.job is not None
    assert (again.job.cancel_requested_by, again.job.cancel_reason) == ("alice", "typo")
    assert again.job.cancel_requested_at == first.job.cancel_requested_at is not None
    assert again.job.status is JobStatus.RUNNING
    assert jobs.progress(running_job.id).cancel_requested
    cancel_events = [e for e in events(fetch_rows, running_job) if e["event"] == "cancel_requested"]
    assert [(e["actor"], e["reason"]) for e in cancel_events] == [("alice", "typo")]


def test_request_cancel_is_owner_scoped(running_job: Job, jobs: JobRepository, other_owner: Owner) -> None:
    stranger = jobs.request_cancel(running_job.id, other_owner, "mallory", None)
    missing = jobs.request_cancel(uuid4(), ANONYMOUS_OWNER, "alice", None)
    admin = jobs.request_cancel(running_job.id, None, "admin", "abuse")

    assert (stranger.result, stranger.job) == (CancelResult.NOT_FOUND, None)
    assert (missing.result, missing.job) == (CancelResult.NOT_FOUND, None)
    assert admin.result is CancelResult.REQUESTED
    assert admin.job is not None and admin.job.cancel_requested_by == "admin"


def test_completion_is_refused_once_a_cancel_was_requested(
    running_job: Job, jobs: JobRepository, fetch_rows: FetchRows
) -> None:
    for seq in range(4):
        jobs.complete_item(running_job.id, seq, {}, 200, None, 1)
    jobs.request_cancel(running_job.id, ANONYMOUS_OWNER, "alice", None)

    completed = jobs.finalise_job(running_job.id, JobOutcome.COMPLETED, SYSTEM_ACTOR)
    cancelled = jobs.finalise_job(running_job.id, JobOutcome.CANCELLED, SYSTEM_ACTOR)

    assert (completed.changed, completed.job.status) == (False, JobStatus.RUNNING)
    assert (cancelled.changed, cancelled.job.status) == (True, JobStatus.CANCELLED)
    assert "finished" not in event_names(fetch_rows, running_job)


def test_request_cancel_of_a_finished_job_is_refused(
    submit_job: SubmitJob, jobs: JobRepository, fetch_rows: FetchRows
) -> None:
    job = submit_job(count=1)
    jobs.mark_job_running(job.id)
    jobs.complete_item(job.id, 0, {}, 200, None, 5)
    jobs.finalise_job(job.id, JobOutcome.COMPLETED, "orchestrator")

    outcome = jobs.request_cancel(job.id, ANONYMOUS_OWNER, "alice", None)

    assert outcome.result is CancelResult.ALREADY_FINAL and outcome.job is not None
    assert (outcome.job.status, outcome.job.cancel_requested_at) == (JobStatus.SUCCEEDED, None)
    assert "cancel_requested" not in event_names(fetch_rows, job)


# --- item transitions ----------------------------------------------------------------------

ITEM_TRANSITIONS: dict[str, Callable[[JobRepository, Job, int], Any]] = {
    "complete": lambda jobs, job, seq: jobs.complete_item(job.id, seq, {"title": "x"}, 200, "https://f.test/", 7),
    "fail": lambda jobs, job, seq: jobs.fail_item(job.id, seq, "http_404", "not found", "worker", 404),
    "skip": lambda jobs, job, seq: jobs.skip_item(job.id, seq, "robots_txt", "robots.txt"),
}


@pytest.mark.parametrize(
    ("transition", "status"),
    [("complete", ItemStatus.SUCCEEDED), ("fail", ItemStatus.FAILED), ("skip", ItemStatus.SKIPPED)],
)
def test_item_transition_happens_once(
    running_job: Job, jobs: JobRepository, fetch_rows: FetchRows, transition: str, status: ItemStatus
) -> None:
    first = ITEM_TRANSITIONS[transition](jobs, running_job, 2)
    repeats = [ITEM_TRANSITIONS[name](jobs, running_job, 2) for name in ITEM_TRANSITIONS]

    assert (first.changed, first.remaining) == (True, 3)
    assert [(r.changed, r.remaining) for r in repeats] == [(False, 3)] * 3
    row = assert_counters_match_items(fetch_rows, running_job)
    assert row[f"items_{status.value}"] == 1
    [item] = fetch_rows("SELECT * FROM job_items WHERE job_id = %s AND seq = 2", (running_job.id,))
    assert item["status"] == status.value and item["finished_at"] is not None


def test_complete_item_stores_the_page(running_job: Job, jobs: JobRepository, fetch_rows: FetchRows) -> None:
    jobs.record_retry(running_job.id, 0, 0, ItemError("http_error", "HTTP 503", 503), LATER)
    jobs.complete_item(running_job.id, 0, {"title": "Hi", "links": 3}, 200, "https://f.test/", 1500)

    [item] = fetch_rows("SELECT * FROM job_items WHERE job_id = %s AND seq = 0", (running_job.id,))
    assert (item["status"], item["result"], item["http_status"], item["final_url"], item["duration_ms"]) == (
        "succeeded", {"title": "Hi", "links": 3}, 200, "https://f.test/", 1500
    )
    assert item["attempts"] == 2 and item["started_at"] <= item["finished_at"]


def test_fail_item_writes_an_item_failed_event(
    running_job: Job, jobs: JobRepository, fetch_rows: FetchRows
) -> None:
    jobs.fail_item(running_job.id, 1, "tls", "bad certificate", "worker-7")
    jobs.fail_item(running_job.id, 1, "tls", "bad certificate", "worker-7")

    failed = [e for e in events(fetch_rows, running_job) if e["event"] == "item_failed"]
    assert [(e["actor"], e["reason"], e["data"]) for e in failed] == [
        ("worker-7", "bad certificate", {"seq": 1, "code": "tls", "http_status": None})
    ]


def test_a_retry_counts_its_attempt_once_and_keeps_the_item_pending(
    running_job: Job, jobs: JobRepository, fetch_rows: FetchRows
) -> None:
    timeout = ItemError("timeout", "read timed out")
    first = jobs.record_retry(running_job.id, 3, 0, timeout, LATER)
    same_attempt_again = jobs.record_retry(running_job.id, 3, 0, timeout, LATER)
    second = jobs.record_retry(running_job.id, 3, 1, ItemError("http_error", "HTTP 503", 503), LATER)
    jobs.skip_item(running_job.id, 3, "job_cancelled", "cancelled")
    after_final = jobs.record_retry(running_job.id, 3, 2, timeout, LATER)

    assert (first, same_attempt_again, second, after_final) == (True, False, True, False)
    [item] = fetch_rows("SELECT * FROM job_items WHERE job_id = %s AND seq = 3", (running_job.id,))
    assert (item["attempts"], item["last_error_code"], item["http_status"], item["status"]) == (
        2, "job_cancelled", 503, "skipped")
    assert item["next_attempt_at"] == LATER
    assert jobs.pending_item_seqs(running_job.id) == [0, 1, 2]


def test_only_items_never_sent_are_enqueued_again(running_job: Job, jobs: JobRepository) -> None:
    assert jobs.unsent_item_seqs(running_job.id, 0, 4) == [0, 1, 2, 3]
    assert jobs.mark_sent(running_job.id, [0, 1], 0) == 2
    jobs.record_retry(running_job.id, 2, 0, ItemError("timeout", "slow"), LATER)
    assert jobs.mark_sent(running_job.id, [2], 1) == 1

    assert jobs.unsent_item_seqs(running_job.id, 0, 4) == [3]
    assert jobs.unsent_item_seqs(running_job.id, 0, 3) == []
    assert jobs.mark_sent(running_job.id, [2], 0) == 0, "what was recorded as sent never goes down"


def test_item_for_work_knows_whether_the_follow_up_was_sent(running_job: Job, jobs: JobRepository) -> None:
    jobs.mark_sent(running_job.id, [1], 0)
    jobs.record_retry(running_job.id, 1, 0, ItemError("timeout", "slow"), LATER)
    lost = jobs.item_for_work(running_job.id, 1)
    jobs.mark_sent(running_job.id, [1], 1)
    sent = jobs.item_for_work(running_job.id, 1)

    assert lost is not None and sent is not None
    assert (lost.attempts, lost.follow_up_sent, lost.next_attempt_at) == (1, False, LATER)
    assert sent.follow_up_sent


def test_item_transition_of_an_unknown_item_raises(running_job: Job, jobs: JobRepository) -> None:
    with pytest.raises(ItemNotFoundError):
        jobs.complete_item(running_job.id, 99, {}, 200, None, 1)
    with pytest.raises(ItemNotFoundError):
        jobs.fail_item(uuid4(), 0, "x", "y", "worker")


def test_counters_equal_item_rows_after_a_mixed_run(
    submit_job: SubmitJob, jobs: JobRepository, fetch_rows: FetchRows
) -> None:
    job = submit_job(count=30)
    jobs.mark_job_running(job.id)
    for seq in range(25):
        transition = list(ITEM_TRANSITIONS)[seq % 3]
        ITEM_TRANSITIONS[transition](jobs, job, seq)
        ITEM_TRANSITIONS["complete"](jobs, job, seq)  # a redelivery

    final = jobs.finalise_job(job.id, JobOutcome.TIMED_OUT, SYSTEM_ACTOR).job

    row = assert_counters_match_items(fetch_rows, job)
    assert (row["succeeded"], row["failed"], row["skipped"]) == (9, 8, 8 + 5)
    assert (final.succeeded, final.failed, final.skipped, final.remaining) == (9, 8, 13, 0)


# --- reads ---------------------------------------------------------------------------------


def test_get_job_is_owner_scoped(running_job: Job, jobs: JobRepository, other_owner: Owner) -> None:
    mine = jobs.get_job(running_job.id, ANONYMOUS_OWNER)
    as_admin = jobs.get_job(running_job.id, None)

    assert mine is not None and mine.id == running_job.id
    assert as_admin is not None and as_admin.owner == ANONYMOUS_OWNER
    assert jobs.get_job(running_job.id, other_owner) is None
    assert jobs.get_job(uuid4(), None) is None


def test_progress_reports_counters_and_deadline(running_job: Job, jobs: JobRepository) -> None:
    jobs.complete_item(running_job.id, 0, {}, 200, None, 5)
    jobs.skip_item(running_job.id, 1, "robots_txt", "robots")

    progress = jobs.progress(running_job.id)

    assert (progress.status, progress.total, progress.succeeded, progress.skipped, progress.remaining) == (
        JobStatus.RUNNING, 4, 1, 1, 2
    )
    assert progress.deadline_at == running_job.deadline_at and not progress.cancel_requested
    with pytest.raises(JobNotFoundError):
        jobs.progress(uuid4())


def test_item_for_work_carries_the_job_state(running_job: Job, jobs: JobRepository) -> None:
    jobs.request_cancel(running_job.id, ANONYMOUS_OWNER, "alice", None)

    work = jobs.item_for_work(running_job.id, 2)

    assert work is not None
    assert (work.job_status, work.cancel_requested) == (JobStatus.RUNNING, True)
    assert (work.url, work.status, work.attempts, work.queued_attempt) == (
        "https://example.test/page/2", ItemStatus.PENDING, 0, None)
    assert jobs.item_for_work(running_job.id, 4) is None


def test_pending_item_seqs_pages_and_leaves_out_final_items(
    submit_job: SubmitJob, jobs: JobRepository
) -> None:
    job = submit_job(count=10)
    for seq in (0, 3, 4):
        jobs.complete_item(job.id, seq, {}, 200, None, 1)

    first = jobs.pending_item_seqs(job.id, limit=4)
    second = jobs.pending_item_seqs(job.id, after_seq=first[-1], limit=4)

    assert (first, second) == ([1, 2, 5, 6], [7, 8, 9])


def test_unfinished_jobs(submit_job: SubmitJob, jobs: JobRepository, execute_sql: ExecuteSql) -> None:
    pending, running, finished = submit_job(), submit_job(), submit_job()
    jobs.mark_job_running(running.id)
    jobs.finalise_job(finished.id, JobOutcome.FAILED, SYSTEM_ACTOR, "boom")
    execute_sql("UPDATE jobs SET created_at = now() - interval '2 hours' WHERE id = %s", (running.id,))

    every = jobs.unfinished_jobs()
    old = jobs.unfinished_jobs(older_than=timedelta(hours=1))

    assert [job.id for job in every] == [running.id, pending.id]
    assert [job.id for job in old] == [running.id]


def test_list_jobs_pages_newest_first_with_filters(
    pool: ConnectionPool, jobs: JobRepository, queries: JobQueries, submit_job: SubmitJob, other_owner: Owner
) -> None:
    # Three jobs share one transaction, hence one created_at: the id breaks the tie.
    with uow(pool) as tx:
        same_instant = [tx.jobs.create_job(ANONYMOUS_OWNER, ["https://a.test/"], {}, DEADLINE).job for _ in range(3)]
        tx.commit()
    later = [submit_job(count=1) for _ in range(3)]
    submit_job(owner=other_owner)
    jobs.finalise_job(later[0].id, JobOutcome.CANCELLED, "alice")
    expected = [job.id for job in reversed(later)] + [
        job.id for job in sorted(same_instant, key=lambda job: job.id, reverse=True)
    ]

    pages: list[list[UUID]] = []
    after: JobPageKey | None = None
    while True:
        page = queries.list_jobs(ANONYMOUS_OWNER, after=after, limit=4)
        pages.append([job.id for job in page])
        if len(page) < 4:
            break
        after = JobPageKey.after(page[-1])
    cancelled = queries.list_jobs(ANONYMOUS_OWNER, statuses=[JobStatus.CANCELLED])
    window = queries.list_jobs(
        ANONYMOUS_OWNER, created_after=later[0].created_at, created_before=later[2].created_at
    )

    assert pages == [expected[:4], expected[4:]]
    assert [job.id for job in cancelled] == [later[0].id]
    assert [job.id for job in window] == [later[1].id, later[0].id]


def test_list_items_and_iter_items_page_by_seq(
    submit_job: SubmitJob, pool: ConnectionPool, jobs: JobRepository, queries: JobQueries, other_owner: Owner
) -> None:
    job = submit_job(count=25)
    for seq in range(0, 25, 5):
        jobs.fail_item(job.id, seq, "x", "y", "worker")

    page = queries.list_items(job.id, ANONYMOUS_OWNER, after_seq=9, limit=3)
    failed = queries.list_items(job.id, ANONYMOUS_OWNER, statuses=[ItemStatus.FAILED])
    with uow(pool) as tx:
        streamed = [item.seq for item in tx.queries.iter_items(job.id, None, page_size=4)]
    hidden = queries.list_items(job.id, other_owner)

    assert ([item.seq for item in page.items], page.has_more) == ([10, 11, 12], True)
    assert ([item.seq for item in failed.items], failed.has_more) == ([0, 5, 10, 15, 20], False)
    assert streamed == list(range(25))
    assert (hidden.items, hidden.has_more) == ([], False)


def test_list_events_pages_in_order(
    running_job: Job, jobs: JobRepository, queries: JobQueries, other_owner: Owner
) -> None:
    jobs.request_cancel(running_job.id, ANONYMOUS_OWNER, "alice", "enough")
    jobs.finalise_job(running_job.id, JobOutcome.CANCELLED, "orchestrator")

    first = queries.list_events(running_job.id, ANONYMOUS_OWNER, limit=2)
    rest = queries.list_events(running_job.id, ANONYMOUS_OWNER, after_id=first[-1].id)

    assert [e.event for e in first + rest] == [
        JobEventType.SUBMITTED, JobEventType.STARTED, JobEventType.CANCEL_REQUESTED, JobEventType.CANCELLED
    ]
    assert queries.list_events(running_job.id, other_owner) == []


# --- the audit log -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE job_events SET actor = 'someone else'",
        "DELETE FROM job_events",
        "TRUNCATE job_events",
    ],
)
def test_job_events_are_append_only(
    running_job: Job, execute_sql: ExecuteSql, fetch_rows: FetchRows, statement: str
) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="append-only"):
        execute_sql(statement)

    assert [e["actor"] for e in events(fetch_rows, running_job)] == [ANONYMOUS_OWNER.actor, SYSTEM_ACTOR]
