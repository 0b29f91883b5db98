"""What the job API's service layer does on a real PostgreSQL: submissions (and their replays), reads scoped
to an owner, page by page, cancels (a cancel accepted wins over the job's last item), and retries of a
finished job's failed items as a new job."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.unit_of_work import UnitOfWork, in_transaction
from shared.contract.schemas import (
    URL_RULES,
    JobListQuery,
    LogsQuery,
    ResultsQuery,
    RetryJobRequest,
    SubmitJobRequest,
    UrlRules,
)
from shared.domain.errors import BadRequest, Conflict, NotFound, TrawlError, ValidationFailed
from shared.domain.job_rules import decide
from shared.domain.messages import ItemMessage
from shared.domain.models import SYSTEM_ACTOR, ItemStatus, Job, JobOutcome, JobStatus, JobSubmission, Owner, Progress
from shared.services import job_service
from shared.services.item_worker import WorkerConfig, WorkResult, process_item
from shared.services.job_service import IdempotencyKeyReused, NothingToRetry
from shared.services.orchestration_steps import finalise_job, job_progress, start_job
from shared.settings import DEV_STORAGE, Settings
from tests.e2e.site import TestSite
from tests.integration.workers import RecordingSender
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration

FetchRows = Callable[..., list[dict[str, Any]]]
OWNER = ANONYMOUS_OWNER

# What a job keeps of each page when the submission does not say (shared.domain.content.DEFAULT_FORMATS).
DEFAULT_CONTENT = {"formats": ["metadata", "markdown"], "main_content_only": True}


@pytest.fixture
def settings(db_url: str, site: TestSite) -> Settings:
    """Local settings under which the test site (on a loopback port) may be scraped."""
    return settings_with(db_url, site)


def settings_with(db_url: str, site: TestSite, **values: Any) -> Settings:
    local = {"environment": "local", "database_url": db_url, "storage_connection_string": DEV_STORAGE,
             "fetch_allowed_networks": "127.0.0.0/8", "fetch_allowed_ports": f"80,443,{site.port}",
             "default_deadline_seconds": 600, "max_deadline_seconds": 7200}
    return Settings(**{**local, **values})


def urls(count: int) -> list[str]:
    return [f"https://example.test/page/{seq}" for seq in range(count)]


def request_of(settings: Settings, body: dict[str, Any]) -> SubmitJobRequest:
    """The request as the API parses it, its URLs screened against `settings`."""
    return SubmitJobRequest.model_validate(body, context={URL_RULES: UrlRules.of(settings)})


def submit(pool: ConnectionPool, settings: Settings, body: dict[str, Any], owner: Owner = OWNER,
           key: str | None = None) -> JobSubmission:
    plan = job_service.plan_submission(request_of(settings, body), settings)
    return job_service.submit_job(pool, owner, plan, settings, key)


def submit_urls(pool: ConnectionPool, settings: Settings, count: int, owner: Owner = OWNER) -> Job:
    return submit(pool, settings, {"urls": urls(count)}, owner).job


def run_to_the_end(pool: ConnectionPool, job: Job, outcomes: str) -> Job:
    """Drive `job` as its orchestration and workers would: started, item n ending as outcomes[n]
    (s: succeeded, f: failed, k: skipped), then finalised as completed."""
    def record(tx: UnitOfWork) -> None:
        for seq, outcome in enumerate(outcomes):
            if outcome == "s":
                tx.jobs.complete_item(job.id, seq, {"title": f"Page {seq}"}, 200, None, 5)
            elif outcome == "f":
                tx.jobs.fail_item(job.id, seq, "http_error", "HTTP 404", SYSTEM_ACTOR, 404)
            else:
                tx.jobs.skip_item(job.id, seq, "job_deadline_passed", "job deadline passed")

    start_job(pool, job.id)
    in_transaction(pool, record)
    finalise_job(pool, job.id, JobOutcome.COMPLETED)
    return job_service.get_job(pool, job.id, None)


def orchestrate(pool: ConnectionPool, job: Job) -> str:
    """One wake-up of the job's orchestration: read progress, decide, finalise; returns the job's status."""
    progress = Progress.model_validate(job_progress(pool, job.id))
    outcome = decide(progress, datetime.now(UTC), progress.deadline_at)
    return progress.status.value if outcome is None else finalise_job(pool, job.id, outcome)


def event_rows(fetch_rows: FetchRows, job: Job, event: str) -> list[dict[str, Any]]:
    return fetch_rows("SELECT actor, reason, data FROM job_events WHERE job_id = %s AND event = %s ORDER BY id",
                      (job.id, event))


def job_count(fetch_rows: FetchRows) -> int:
    return len(fetch_rows("SELECT id FROM jobs"))


def problem_of(error: TrawlError) -> tuple[int, str, dict[str, Any]]:
    return error.status, error.slug, error.extensions


# --- submitting -------------------------------------------------------------------------------------------------

def test_a_plan_merges_duplicate_urls_and_sets_aside_those_that_cannot_be_scraped(settings: Settings) -> None:
    submitted = ["https://a.example/x", "ftp://b.example/file", "HTTPS://A.EXAMPLE:443/x#top", "http://10.1.2.3/",
                 "https://c.example/"]

    plan = job_service.plan_submission(request_of(settings, {"urls": submitted, "skip_invalid_urls": True}),
                                       settings)

    assert plan.urls == ["https://a.example/x", "https://c.example/"]
    assert [(r.index, r.url, r.type) for r in plan.refused] == [
        (1, "ftp://b.example", "url_not_http"), (3, "http://10.1.2.3", "url_blocked_address")]
    assert plan.merged_duplicates == 1


def test_a_plan_with_nothing_left_to_scrape_is_refused_naming_each_url(settings: Settings) -> None:
    body = {"urls": ["ftp://b.example/", "http://192.168.0.1/"], "skip_invalid_urls": True}

    with pytest.raises(ValidationFailed) as refused:
        job_service.plan_submission(request_of(settings, body), settings)

    assert refused.value.status == 422
    assert [(e["loc"], e["type"]) for e in refused.value.extensions["errors"]] == [
        (["urls", 0], "url_not_http"), (["urls", 1], "url_blocked_address")]


def test_a_submission_creates_the_pending_job_its_items_in_order_and_its_event(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows
) -> None:
    body = {"urls": ["https://a.example/x", "https://A.example/x", "https://b.example/"],
            "options": {"deadline_seconds": 120}}
    before = datetime.now(UTC)

    submission = submit(pool, settings, body)

    job = submission.job
    assert (submission.replayed, job.status, job.total, job.owner) == (False, JobStatus.PENDING, 2, OWNER)
    assert job.options == {"deadline_seconds": 120, "merged_duplicates": 1, **DEFAULT_CONTENT}
    assert before + timedelta(seconds=120) <= job.deadline_at <= datetime.now(UTC) + timedelta(seconds=120)
    items = fetch_rows("SELECT seq, url, status, attempts FROM job_items WHERE job_id = %s ORDER BY seq", (job.id,))
    assert items == [{"seq": 0, "url": "https://a.example/x", "status": "pending", "attempts": 0},
                     {"seq": 1, "url": "https://b.example/", "status": "pending", "attempts": 0}]
    assert event_rows(fetch_rows, job, "submitted") == [
        {"actor": OWNER.actor, "reason": None, "data": {"total": 2, "idempotency_key": None, "parent_job_id": None}}]


def test_a_submission_without_a_deadline_gets_the_default(pool: ConnectionPool, settings: Settings) -> None:
    job = submit_urls(pool, settings, 1)

    assert job.options == {"deadline_seconds": 600, **DEFAULT_CONTENT}
    assert timedelta(seconds=599) < job.deadline_at - job.created_at < timedelta(seconds=601)


def test_a_replayed_submission_returns_the_original_job_and_creates_nothing(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows
) -> None:
    body = {"urls": urls(2), "options": {"deadline_seconds": 60}}

    first = submit(pool, settings, body, key="order-42")
    replay = submit(pool, settings, {"options": {"deadline_seconds": 60}, "urls": urls(2)}, key="order-42")

    assert (first.replayed, replay.replayed) == (False, True)
    assert replay.job.id == first.job.id
    assert job_count(fetch_rows) == 1
    assert event_rows(fetch_rows, first.job, "submitted")[0]["data"]["idempotency_key"] == "order-42"
    assert len(event_rows(fetch_rows, first.job, "submitted")) == 1


def test_a_reused_idempotency_key_with_another_body_is_refused_naming_the_original_job(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows
) -> None:
    first = submit(pool, settings, {"urls": urls(2)}, key="order-42")

    with pytest.raises(IdempotencyKeyReused) as reused:
        submit(pool, settings, {"urls": urls(3)}, key="order-42")

    # 422, not 409: the request can never succeed with this key (a 409 would invite retrying it).
    assert problem_of(reused.value) == (422, "idempotency-key-reused", {
        "job_id": str(first.job.id), "job": f"/api/jobs/{first.job.id}"})
    assert job_count(fetch_rows) == 1


def test_an_idempotency_key_belongs_to_its_owner(
    pool: ConnectionPool, settings: Settings, other_owner: Owner, fetch_rows: FetchRows
) -> None:
    mine = submit(pool, settings, {"urls": urls(1)}, key="shared-key")
    theirs = submit(pool, settings, {"urls": urls(2)}, owner=other_owner, key="shared-key")

    assert (theirs.replayed, theirs.job.owner) == (False, other_owner)
    assert theirs.job.id != mine.job.id and job_count(fetch_rows) == 2


def test_the_orchestration_input_carries_ids_small_numbers_and_the_trace(
    pool: ConnectionPool, settings: Settings
) -> None:
    job = submit_urls(pool, settings, 1)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    assert job_service.orchestration_input(job, settings, traceparent) == {
        "job_id": str(job.id), "deadline_at": job.deadline_at.isoformat().replace("+00:00", "Z"),
        "tick_seconds": 15, "batch_size": 250, "enqueued": False, "traceparent": traceparent}


# --- reading ----------------------------------------------------------------------------------------------------

def test_a_job_is_seen_by_its_owner_and_admins_only(
    pool: ConnectionPool, settings: Settings, other_owner: Owner
) -> None:
    job = submit_urls(pool, settings, 1)

    assert job_service.get_job(pool, job.id, OWNER) == job_service.get_job(pool, job.id, None) == job
    job_service.require_job(pool, job.id, OWNER)
    job_service.require_job(pool, job.id, None)
    for owner, job_id in ((other_owner, job.id), (OWNER, uuid4())):
        with pytest.raises(NotFound):
            job_service.get_job(pool, job_id, owner)
        with pytest.raises(NotFound):
            job_service.require_job(pool, job_id, owner)
    assert job_service.child_job_ids(pool, job.id, OWNER) == []


def test_jobs_are_listed_newest_first_a_page_at_a_time(
    pool: ConnectionPool, settings: Settings, other_owner: Owner
) -> None:
    jobs = [submit_urls(pool, settings, 1) for _ in range(5)]
    submit_urls(pool, settings, 1, owner=other_owner)

    pages, cursor = [], None
    while True:
        listing = job_service.list_jobs(pool, OWNER, JobListQuery(limit=2, cursor=cursor))
        pages.append([job.id for job in listing.jobs])
        cursor = listing.next_cursor
        if cursor is None:
            break

    newest_first = [job.id for job in reversed(jobs)]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]]
    admin = job_service.list_jobs(pool, None, JobListQuery(limit=100))
    assert len(admin.jobs) == 6 and admin.next_cursor is None
    assert job_service.list_jobs(pool, Owner(tenant_id="t", object_id="nobody"), JobListQuery()) == (
        job_service.JobListing([], {}, None))


def test_a_job_listing_filters_by_status_and_creation_time_and_names_each_jobs_retries(
    pool: ConnectionPool, settings: Settings
) -> None:
    jobs = [submit_urls(pool, settings, 2) for _ in range(4)]
    failed = run_to_the_end(pool, jobs[1], "sf")
    retry = job_service.create_retry(pool, job_service.plan_retry(pool, failed.id, OWNER, RetryJobRequest()),
                                     settings).job

    by_status = job_service.list_jobs(pool, OWNER, JobListQuery(status=[JobStatus.COMPLETED_WITH_ERRORS]))
    window = job_service.list_jobs(pool, OWNER, JobListQuery(created_after=jobs[1].created_at,
                                                             created_before=jobs[3].created_at))

    assert ([job.id for job in by_status.jobs], by_status.children) == ([failed.id], {failed.id: [retry.id]})
    assert [job.id for job in window.jobs] == [jobs[2].id, jobs[1].id]
    assert window.children == {failed.id: [retry.id]}


def test_a_job_listing_cursor_only_continues_the_listing_it_was_made_for(
    pool: ConnectionPool, settings: Settings
) -> None:
    for _ in range(3):
        submit_urls(pool, settings, 1)
    running = JobListQuery(status=[JobStatus.PENDING], limit=1)
    cursor = job_service.list_jobs(pool, OWNER, running).next_cursor

    assert cursor is not None
    with pytest.raises(BadRequest, match="other filters"):
        job_service.list_jobs(pool, OWNER, JobListQuery(limit=1, cursor=cursor))


def test_results_are_listed_in_submission_order_a_page_at_a_time(
    pool: ConnectionPool, settings: Settings, other_owner: Owner
) -> None:
    job = run_to_the_end(pool, submit_urls(pool, settings, 5), "sfsks")

    pages, cursor = [], None
    while True:
        listing = job_service.list_results(pool, job.id, OWNER, ResultsQuery(limit=2, cursor=cursor))
        pages.append([(item.seq, item.status) for item in listing.items])
        cursor = listing.next_cursor
        if cursor is None:
            break
    succeeded = job_service.list_results(pool, job.id, None, ResultsQuery(status=[ItemStatus.SUCCEEDED], limit=2))

    assert pages == [[(0, ItemStatus.SUCCEEDED), (1, ItemStatus.FAILED)],
                     [(2, ItemStatus.SUCCEEDED), (3, ItemStatus.SKIPPED)], [(4, ItemStatus.SUCCEEDED)]]
    assert [item.seq for item in succeeded.items] == [0, 2] and succeeded.next_cursor is not None
    assert succeeded.items[1].result == {"title": "Page 2"}
    with pytest.raises(BadRequest):  # a cursor of the filtered listing does not continue the whole one
        job_service.list_results(pool, job.id, None, ResultsQuery(cursor=succeeded.next_cursor))
    for owner, job_id in ((other_owner, job.id), (OWNER, uuid4())):
        with pytest.raises(NotFound):
            job_service.list_results(pool, job_id, owner, ResultsQuery())


def test_the_audit_log_is_read_a_page_at_a_time(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows, other_owner: Owner
) -> None:
    job = run_to_the_end(pool, submit_urls(pool, settings, 2), "sf")
    logged = fetch_rows("SELECT id, event FROM job_events WHERE job_id = %s ORDER BY id", (job.id,))

    pages, after = [], 0
    while True:
        listing = job_service.list_events(pool, job.id, OWNER, LogsQuery(after=after, limit=2))
        pages.append([(event.id, event.event.value) for event in listing.events])
        after = listing.next_after
        if not listing.has_more:
            break
    past_the_end = job_service.list_events(pool, job.id, None, LogsQuery(after=after))

    assert [row["event"] for row in logged] == ["submitted", "started", "item_failed", "finished"]
    assert pages == [[(row["id"], row["event"]) for row in logged[:2]],
                     [(row["id"], row["event"]) for row in logged[2:]]]
    assert after == logged[-1]["id"]
    assert past_the_end == job_service.EventListing([], after, False)
    with pytest.raises(NotFound):
        job_service.list_events(pool, job.id, other_owner, LogsQuery())


# --- cancelling -------------------------------------------------------------------------------------------------

def test_a_cancel_is_recorded_once_and_a_repeat_while_the_job_runs_is_accepted(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows
) -> None:
    job = submit_urls(pool, settings, 2)
    start_job(pool, job.id)

    first = job_service.cancel_job(pool, job.id, OWNER, "alice", "wrong list")
    repeat = job_service.cancel_job(pool, job.id, None, "admin", "cleanup")

    assert (first.status, first.cancel_requested_by, first.cancel_reason) == (JobStatus.RUNNING, "alice",
                                                                             "wrong list")
    assert (repeat.status, repeat.cancel_requested_by, repeat.cancel_requested_at) == (
        JobStatus.RUNNING, "alice", first.cancel_requested_at)
    assert event_rows(fetch_rows, job, "cancel_requested") == [{"actor": "alice", "reason": "wrong list",
                                                                "data": None}]
    assert orchestrate(pool, job) == "cancelled"
    assert fetch_rows("SELECT status, last_error_code FROM job_items WHERE job_id = %s", (job.id,)) == [
        {"status": "skipped", "last_error_code": "job_cancelled"}] * 2


def test_a_pending_job_can_be_cancelled(pool: ConnectionPool, settings: Settings) -> None:
    job = submit_urls(pool, settings, 1)

    cancelled = job_service.cancel_job(pool, job.id, OWNER, "alice", None)

    assert (cancelled.status, cancelled.cancel_requested_by) == (JobStatus.PENDING, "alice")
    assert orchestrate(pool, job) == "cancelled"


def cancel_and_orchestrate(pool: ConnectionPool, job: Job) -> None:
    job_service.cancel_job(pool, job.id, OWNER, "alice", None)
    orchestrate(pool, job)


@pytest.mark.parametrize(("end", "status"), [
    (lambda pool, job: run_to_the_end(pool, job, "ss"), JobStatus.SUCCEEDED),
    (lambda pool, job: run_to_the_end(pool, job, "sf"), JobStatus.COMPLETED_WITH_ERRORS),
    (cancel_and_orchestrate, JobStatus.CANCELLED),
], ids=["succeeded", "completed-with-errors", "cancelled"])
def test_cancelling_a_final_job_is_a_conflict_that_changes_nothing(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows, end: Callable[[ConnectionPool, Job], object],
    status: JobStatus,
) -> None:
    job = submit_urls(pool, settings, 2)
    end(pool, job)
    before = fetch_rows("SELECT * FROM jobs WHERE id = %s", (job.id,))
    events_before = fetch_rows("SELECT id FROM job_events WHERE job_id = %s", (job.id,))

    with pytest.raises(Conflict) as refused:
        job_service.cancel_job(pool, job.id, OWNER, "bob", "too late")

    assert before[0]["status"] == status
    assert problem_of(refused.value) == (409, "conflict", {"status_of_job": status})
    assert fetch_rows("SELECT * FROM jobs WHERE id = %s", (job.id,)) == before
    assert fetch_rows("SELECT id FROM job_events WHERE job_id = %s", (job.id,)) == events_before


def test_cancelling_another_owners_job_or_a_missing_one_is_not_found(
    pool: ConnectionPool, settings: Settings, other_owner: Owner, fetch_rows: FetchRows
) -> None:
    job = submit_urls(pool, settings, 1)

    for owner, job_id in ((other_owner, job.id), (OWNER, uuid4())):
        with pytest.raises(NotFound):
            job_service.cancel_job(pool, job_id, owner, "mallory", None)

    assert event_rows(fetch_rows, job, "cancel_requested") == []
    assert job_service.get_job(pool, job.id, None).cancel_requested_at is None


def test_a_cancel_accepted_after_the_last_item_finished_wins_over_completion(
    pool: ConnectionPool, settings: Settings, site: TestSite, config: WorkerConfig, fetch_rows: FetchRows
) -> None:
    job = submit(pool, settings, {"urls": [site.url("/page/1")]}).job
    start_job(pool, job.id)
    done = process_item(pool, RecordingSender(), ItemMessage(job_id=job.id, seq=0), config)
    progress = Progress.model_validate(job_progress(pool, job.id))  # the orchestration, woken, reads progress...

    accepted = job_service.cancel_job(pool, job.id, OWNER, "alice", None)  # ...a cancel lands...

    completed = finalise_job(pool, job.id, JobOutcome.COMPLETED)  # ...and it finalises what it decided
    assert (done, progress.remaining, progress.cancel_requested) == (WorkResult("succeeded", True), 0, False)
    assert (accepted.status, completed) == (JobStatus.RUNNING, "running"), "completion is refused after a cancel"
    assert orchestrate(pool, job) == "cancelled"
    assert fetch_rows("SELECT status FROM job_items WHERE job_id = %s", (job.id,)) == [{"status": "succeeded"}]


def test_a_cancel_racing_the_last_item_is_either_refused_or_wins(
    pool: ConnectionPool, settings: Settings, site: TestSite, config: WorkerConfig
) -> None:
    answers: list[str] = []
    for round_ in range(40):
        job = submit(pool, settings, {"urls": [site.url(f"/page/{round_}")]}).job
        start_job(pool, job.id)
        both_ready = threading.Barrier(2, timeout=60)
        races_the_item = round_ % 2 == 0  # else it races the orchestration's finalisation

        def cancel(job: Job = job, both_ready: threading.Barrier = both_ready) -> Job | Conflict:
            both_ready.wait()
            try:
                return job_service.cancel_job(pool, job.id, OWNER, "alice", None)
            except Conflict as refused:
                return refused

        def work(job: Job = job, both_ready: threading.Barrier = both_ready, races_the_item: bool = races_the_item
                 ) -> str:
            if races_the_item:
                both_ready.wait()
            result = process_item(pool, RecordingSender(), ItemMessage(job_id=job.id, seq=0), config)
            if not races_the_item:
                both_ready.wait()
            assert result.finished_job, "the job's only item ended, scraped or skipped"
            return orchestrate(pool, job)  # which that wakes

        with ThreadPoolExecutor(max_workers=2) as executor:
            cancelled, worked = executor.submit(cancel), executor.submit(work)
            answer, status = cancelled.result(), worked.result()
        while not JobStatus(status).is_final:  # the orchestration's next wake-up
            status = orchestrate(pool, job)

        if isinstance(answer, Job):  # the caller got 202
            answers.append("accepted")
            assert status == "cancelled", "a job whose cancel was accepted must end cancelled"
        else:  # the caller got 409: the job had already succeeded
            answers.append("refused")
            assert (status, answer.extensions) == ("succeeded", {"status_of_job": JobStatus.SUCCEEDED})
    assert "accepted" in answers


# --- retrying ---------------------------------------------------------------------------------------------------

def test_a_retry_resubmits_the_failed_items_as_a_child_job_of_the_same_owner(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows
) -> None:
    parent = run_to_the_end(pool, submit(pool, settings, {"urls": urls(4), "options": {"deadline_seconds": 900}}).job,
                            "sfkf")

    plan = job_service.plan_retry(pool, parent.id, None, RetryJobRequest())  # an admin asks
    child = job_service.create_retry(pool, plan, settings).job
    with_skipped = job_service.create_retry(
        pool, job_service.plan_retry(pool, parent.id, OWNER, RetryJobRequest(include_skipped=True)), settings).job

    assert parent.status is JobStatus.COMPLETED_WITH_ERRORS
    assert (plan.parent.id, plan.urls) == (parent.id, [urls(4)[1], urls(4)[3]])
    assert (child.parent_job_id, child.owner, child.status, child.total, child.options) == (
        parent.id, OWNER, JobStatus.PENDING, 2, {"deadline_seconds": 900, **DEFAULT_CONTENT})
    items = fetch_rows("SELECT url, status FROM job_items WHERE job_id = %s ORDER BY seq", (child.id,))
    assert items == [{"url": urls(4)[1], "status": "pending"}, {"url": urls(4)[3], "status": "pending"}]
    assert event_rows(fetch_rows, child, "submitted") == [{"actor": OWNER.actor, "reason": None, "data": {
        "total": 2, "idempotency_key": None, "parent_job_id": str(parent.id)}}]
    assert [row["url"] for row in fetch_rows("SELECT url FROM job_items WHERE job_id = %s ORDER BY seq",
                                             (with_skipped.id,))] == urls(4)[1:]
    assert job_service.child_job_ids(pool, parent.id, OWNER) == [child.id, with_skipped.id]
    assert job_service.get_job(pool, parent.id, None) == parent, "the parent itself is unchanged"


def test_a_retry_keeps_the_parents_deadline_within_todays_limit(
    pool: ConnectionPool, db_url: str, site: TestSite, settings: Settings
) -> None:
    parent = run_to_the_end(pool, submit(pool, settings, {"urls": urls(1), "options": {"deadline_seconds": 7200}}).job,
                            "f")
    lowered = settings_with(db_url, site, max_deadline_seconds=3600)

    child = job_service.create_retry(pool, job_service.plan_retry(pool, parent.id, OWNER, RetryJobRequest()),
                                     lowered).job

    assert child.options == {"deadline_seconds": 3600, **DEFAULT_CONTENT}
    assert timedelta(seconds=3599) < child.deadline_at - child.created_at < timedelta(seconds=3601)


@pytest.mark.parametrize(("outcomes", "include_skipped", "detail"), [
    ("ss", False, "has no failed items to retry"),
    ("sk", False, "has no failed items to retry"),
    ("ss", True, "has no failed or skipped items to retry"),
])
def test_a_retry_with_nothing_to_retry_is_refused(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows, outcomes: str, include_skipped: bool,
    detail: str,
) -> None:
    parent = run_to_the_end(pool, submit_urls(pool, settings, 2), outcomes)

    with pytest.raises(NothingToRetry) as refused:
        job_service.plan_retry(pool, parent.id, OWNER, RetryJobRequest(include_skipped=include_skipped))

    assert problem_of(refused.value) == (422, "nothing-to-retry", {"job_id": str(parent.id)})
    assert refused.value.detail == f"job {parent.id} {detail}"
    assert job_count(fetch_rows) == 1


def test_skipped_items_are_retried_only_when_asked(pool: ConnectionPool, settings: Settings) -> None:
    parent = run_to_the_end(pool, submit_urls(pool, settings, 2), "sk")

    plan = job_service.plan_retry(pool, parent.id, OWNER, RetryJobRequest(include_skipped=True))

    assert plan.urls == [urls(2)[1]]


@pytest.mark.parametrize("started", [False, True], ids=["pending", "running"])
def test_a_job_that_is_not_final_cannot_be_retried(
    pool: ConnectionPool, settings: Settings, fetch_rows: FetchRows, started: bool
) -> None:
    job = submit_urls(pool, settings, 2)
    if started:
        start_job(pool, job.id)
        in_transaction(pool, lambda tx: tx.jobs.fail_item(job.id, 0, "http_error", "HTTP 404", SYSTEM_ACTOR, 404))

    with pytest.raises(Conflict) as refused:
        job_service.plan_retry(pool, job.id, OWNER, RetryJobRequest())

    status = JobStatus.RUNNING if started else JobStatus.PENDING
    assert problem_of(refused.value) == (409, "conflict", {"status_of_job": status})
    assert job_count(fetch_rows) == 1


def test_another_owners_job_cannot_be_retried(
    pool: ConnectionPool, settings: Settings, other_owner: Owner
) -> None:
    parent = run_to_the_end(pool, submit_urls(pool, settings, 1), "f")

    for owner, job_id in ((other_owner, parent.id), (OWNER, uuid4())):
        with pytest.raises(NotFound):
            job_service.plan_retry(pool, job_id, owner, RetryJobRequest())


def test_a_replayed_retry_returns_the_first_child_and_another_retry_under_its_key_is_refused(
    pool: ConnectionPool, settings: Settings
) -> None:
    parent = run_to_the_end(pool, submit_urls(pool, settings, 2), "fk")
    plan = job_service.plan_retry(pool, parent.id, OWNER, RetryJobRequest())

    first = job_service.create_retry(pool, plan, settings, "retry-1")
    replay = job_service.create_retry(pool, job_service.plan_retry(pool, parent.id, OWNER, RetryJobRequest()),
                                      settings, "retry-1")
    with pytest.raises(IdempotencyKeyReused) as reused:
        job_service.create_retry(
            pool, job_service.plan_retry(pool, parent.id, OWNER, RetryJobRequest(include_skipped=True)), settings,
            "retry-1")
    with pytest.raises(IdempotencyKeyReused):  # nor does a submission of the same URLs under that key replay it
        submit(pool, settings, {"urls": plan.urls}, key="retry-1")

    assert (first.replayed, replay.replayed, replay.job.id) == (False, True, first.job.id)
    assert reused.value.extensions["job_id"] == str(first.job.id)
    assert job_service.child_job_ids(pool, parent.id, OWNER) == [first.job.id]
