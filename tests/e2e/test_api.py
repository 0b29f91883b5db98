"""The job API end to end on devhost: listing and paging, results and exports, logs, retry, idempotency.

Bulk data is written straight into the app's database through the repository (fast, and final at once so
the reconciler leaves it alone); the jobs that must really run are submitted over HTTP."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest
import requests

from api.callers import READ, SUBMIT
from api.openapi import OPERATIONS, openapi_document
from shared.adapters.db import ConnectionPool, UnitOfWork, UrlDatabase, uow
from shared.domain.models import SYSTEM_ACTOR, Job, JobOutcome, JobStatus, Owner
from shared.domain.pages import ScrapeResult
from shared.services.exports import CSV_COLUMNS
from tests.e2e.conftest import Trawl, session_for
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e

OTHER_OWNER = Owner(tenant_id="tenant-b", object_id="user-b")
BIG_JOB_ITEMS = 2500
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def pool(trawl: Trawl) -> Iterator[ConnectionPool]:
    connection_pool = ConnectionPool(UrlDatabase(trawl.db_url), maxconn=4)
    yield connection_pool
    connection_pool.closeall()


def get(trawl: Trawl, url: str, params: dict[str, Any] | None = None) -> Any:
    response = trawl.http.get(url, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def db_now(trawl: Trawl) -> datetime:
    return trawl.rows("SELECT now() AS now")[0]["now"]


def scraped(seq: int, title: str | None = None) -> dict[str, Any]:
    return ScrapeResult(
        url=f"http://127.0.0.1:9/item/{seq}", final_url=f"http://127.0.0.1:9/item/{seq}", status=200,
        content_type="text/html", title=title or f"Page {seq}", description=f"Description {seq}", canonical=None,
        lang="en", open_graph={"title": f"OG {seq}"}, published_time=None,
        headings={"h1": [f"Heading {seq}"], "h2": [], "h3": []},
        links=[{"url": f"http://127.0.0.1:9/item/{seq + 1}", "nofollow": False}], word_count=seq % 100,
        excerpt="Words", text_sha256=f"{seq:064x}", charset="utf-8", redirects=0, elapsed_ms=3,
    ).model_dump(mode="json")


def make_job(tx: UnitOfWork, status: JobStatus, owner: Owner, items: int = 1) -> Job:
    """A job already in `status` (final, so the reconciler never starts it); URLs are never fetched."""
    urls = [f"http://127.0.0.1:9/item/{seq}" for seq in range(items)]
    job = tx.jobs.create_job(owner, urls, {"deadline_seconds": 600}, datetime.now(UTC) + timedelta(hours=1)).job
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return tx.jobs.finalise_job(job.id, JobOutcome(status.value), SYSTEM_ACTOR, "made by a test").job
    tx.jobs.mark_job_running(job.id)
    if status is JobStatus.TIMED_OUT:
        return tx.jobs.finalise_job(job.id, JobOutcome.TIMED_OUT, SYSTEM_ACTOR).job
    for seq in range(items):
        if seq % 10 == 9:
            tx.jobs.fail_item(job.id, seq, "http_error", "HTTP 500", SYSTEM_ACTOR, http_status=500)
        else:
            title = "=HYPERLINK(\"http://evil.test\",\"click\")" if seq == 3 else None
            tx.jobs.complete_item(job.id, seq, scraped(seq, title), 200, f"http://127.0.0.1:9/item/{seq}", 12)
    return tx.jobs.finalise_job(job.id, JobOutcome.COMPLETED, SYSTEM_ACTOR).job


def make_jobs(pool: ConnectionPool, count: int, owner: Owner, status: JobStatus = JobStatus.FAILED) -> list[Job]:
    """`count` jobs in one transaction, so they share one created_at and order by id."""
    with uow(pool) as tx:
        jobs = [make_job(tx, status, owner) for _ in range(count)]
        tx.commit()
    return jobs


def newest_first(jobs: list[Job]) -> list[str]:
    return [str(job.id) for job in sorted(jobs, key=lambda job: (job.created_at, job.id), reverse=True)]


@pytest.fixture(scope="module")
def big_job(trawl: Trawl, pool: ConnectionPool) -> Job:
    """2,500 items: every tenth failed, the rest succeeded; item 3's title is a spreadsheet formula."""
    with uow(pool) as tx:
        job = make_job(tx, JobStatus.SUCCEEDED, trawl.owner, items=BIG_JOB_ITEMS)
        tx.commit()
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS and job.failed == BIG_JOB_ITEMS // 10
    return job


# --- GET /api/jobs ---------------------------------------------------------------------------------------------

def test_job_pages_list_every_job_once_newest_first_while_new_jobs_arrive(trawl: Trawl, pool: ConnectionPool) -> None:
    since = db_now(trawl)
    created = [job for _ in range(5) for job in make_jobs(pool, 50, trawl.owner)]
    listed: list[dict[str, Any]] = []
    sizes: list[int] = []
    arrivals: list[Job] = []
    cursor = None
    while True:
        page = get(trawl, f"{trawl.api}/jobs", {"created_after": since.isoformat(), "limit": 37, "cursor": cursor})
        listed += page["items"]
        sizes.append(len(page["items"]))
        if len(sizes) == 2:
            arrivals = make_jobs(pool, 30, trawl.owner)  # newer than every listed job: they must not shift later pages
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [job["id"] for job in listed] == newest_first(created)
    assert sizes == [37] * 6 + [28]
    first = get(trawl, f"{trawl.api}/jobs", {"created_after": since.isoformat(), "limit": 30})
    assert [job["id"] for job in first["items"]] == newest_first(arrivals)
    sample = listed[0]
    assert sample["statusQueryGetUri"] == f"{trawl.host.base_url}/api/jobs/{sample['id']}"
    assert sample["links"]["results"] == f"/api/jobs/{sample['id']}/results"
    assert (sample["status"], sample["children"], sample["parent_job_id"]) == ("failed", [], None)


def test_jobs_filter_by_status_and_creation_window_and_never_show_other_owners(
        trawl: Trawl, pool: ConnectionPool) -> None:
    since = db_now(trawl)
    order = [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT, JobStatus.SUCCEEDED, JobStatus.FAILED,
             JobStatus.CANCELLED]
    jobs = [make_jobs(pool, 1, trawl.owner, status)[0] for status in order]
    make_jobs(pool, 3, OTHER_OWNER)
    window = {"created_after": since.isoformat()}

    def ids(query: dict[str, Any] | str) -> list[str]:
        if isinstance(query, str):
            return [job["id"] for job in get(trawl, f"{trawl.api}/jobs?{query}")["items"]]
        return [job["id"] for job in get(trawl, f"{trawl.api}/jobs", {**window, **query})["items"]]

    j = [str(job.id) for job in jobs]
    assert ids({}) == j[::-1]
    assert ids({"status": "failed"}) == [j[4], j[0]]
    assert ids({"status": ["failed", "cancelled"]}) == [j[5], j[4], j[1], j[0]]
    assert ids(f"status=failed,cancelled&created_after={quote(since.isoformat())}") == [j[5], j[4], j[1], j[0]]
    assert ids({"created_before": jobs[3].created_at.isoformat()}) == [j[2], j[1], j[0]]
    assert ids({"created_after": jobs[3].created_at.isoformat()}) == [j[5], j[4], j[3]]
    assert ids({"created_after": jobs[1].created_at.isoformat(), "created_before": jobs[4].created_at.isoformat(),
                "status": ["timed_out", "succeeded", "failed"]}) == [j[3], j[2]]


def test_bad_listing_queries_are_400_problems(trawl: Trawl, pool: ConnectionPool) -> None:
    since = db_now(trawl)
    make_jobs(pool, 3, trawl.owner)
    first = get(trawl, f"{trawl.api}/jobs", {"created_after": since.isoformat(), "status": "failed", "limit": 1})
    assert first["next_cursor"]

    for params, loc in [({"status": "done"}, ["status", 0]), ({"limit": 0}, ["limit"]), ({"limit": 101}, ["limit"]),
                        ({"created_after": "2026-01-01T00:00:00"}, ["created_after"])]:
        response = trawl.http.get(f"{trawl.api}/jobs", params=params, timeout=30)
        assert (response.status_code, response.headers["Content-Type"]) == (400, PROBLEM), params
        assert loc in [error["loc"] for error in response.json()["errors"]], params
    reused = trawl.http.get(f"{trawl.api}/jobs", params={"created_after": since.isoformat(), "status": "cancelled",
                                                       "cursor": first["next_cursor"]}, timeout=30)
    assert reused.status_code == 400 and "other filters" in reused.json()["detail"]
    forged = trawl.http.get(f"{trawl.api}/jobs", params={"cursor": "bm9wZQ"}, timeout=30)
    assert forged.status_code == 400 and "not valid" in forged.json()["detail"]


# --- GET /api/jobs/{id}/results ------------------------------------------------------------------------------------

def test_result_pages_return_every_item_once_in_order(trawl: Trawl, big_job: Job) -> None:
    url = f"{trawl.api}/jobs/{big_job.id}/results"
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = get(trawl, url, {"limit": 300, "cursor": cursor})
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [item["seq"] for item in items] == list(range(BIG_JOB_ITEMS))
    assert items[7]["result"]["title"] == "Page 7" and items[7]["error"] is None
    assert items[9]["status"] == "failed" and items[9]["error"] == {"code": "http_error", "message": "HTTP 500"}
    failed = get(trawl, url, {"status": "failed", "limit": 1000})
    assert [item["seq"] for item in failed["items"]] == list(range(9, BIG_JOB_ITEMS, 10))
    assert failed["next_cursor"] is None
    reused = trawl.http.get(url, params={"status": "failed", "cursor": get(trawl, url, {"limit": 1})["next_cursor"]}, timeout=30)
    assert reused.status_code == 400


def test_ndjson_export_has_one_item_per_line_in_order(trawl: Trawl, big_job: Job) -> None:
    response = trawl.http.get(f"{trawl.api}/jobs/{big_job.id}/results", params={"format": "ndjson"}, timeout=60)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert response.headers["Content-Disposition"] == f'attachment; filename="trawl-{big_job.id}.ndjson"'
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["seq"] for line in lines] == list(range(BIG_JOB_ITEMS))
    assert lines[0] == get(trawl, f"{trawl.api}/jobs/{big_job.id}/results", {"limit": 1})["items"][0]


def test_csv_export_is_flat_and_spreadsheet_safe(trawl: Trawl, big_job: Job) -> None:
    url = f"{trawl.api}/jobs/{big_job.id}/results"
    response = trawl.http.get(url, params={"format": "csv"}, timeout=60)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    reader = csv.DictReader(io.StringIO(response.text))
    rows = list(reader)
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    assert [int(row["seq"]) for row in rows] == list(range(BIG_JOB_ITEMS))
    assert rows[3]["title"] == "'=HYPERLINK(\"http://evil.test\",\"click\")"
    assert (rows[7]["title"], rows[7]["og_title"], rows[7]["h1"], rows[7]["links_count"]) == (
        "Page 7", "OG 7", "Heading 7", "1")
    failed = list(csv.DictReader(io.StringIO(trawl.http.get(url, params={"format": "csv", "status": "failed"},
                                                          timeout=60).text)))
    assert len(failed) == BIG_JOB_ITEMS // 10
    assert {(row["status"], row["error_code"], row["title"]) for row in failed} == {("failed", "http_error", "")}


# --- GET /api/jobs/{id}/logs ---------------------------------------------------------------------------------------

def test_logs_come_oldest_first_and_continue_after_an_event(trawl: Trawl, pool: ConnectionPool) -> None:
    with uow(pool) as tx:
        job = make_job(tx, JobStatus.SUCCEEDED, trawl.owner, items=10)  # submitted, started, item_failed (seq 9), finished
        tx.commit()
    url = f"{trawl.api}/jobs/{job.id}/logs"

    everything = get(trawl, url)
    assert [e["event"] for e in everything["items"]] == ["submitted", "started", "item_failed", "finished"]
    ids = [e["id"] for e in everything["items"]]
    assert ids == sorted(ids) and everything["next_after"] == ids[-1] and not everything["has_more"]
    assert everything["items"][2]["data"] == {"seq": 9, "code": "http_error", "http_status": 500}
    first = get(trawl, url, {"limit": 2})
    assert ([e["id"] for e in first["items"]], first["next_after"], first["has_more"]) == (ids[:2], ids[1], True)
    rest = get(trawl, url, {"after": first["next_after"]})
    assert ([e["id"] for e in rest["items"]], rest["has_more"]) == (ids[2:], False)
    assert get(trawl, url, {"after": ids[-1]}) == {"items": [], "next_after": ids[-1], "has_more": False}


def test_another_owners_job_and_unknown_jobs_are_404_everywhere(trawl: Trawl, pool: ConnectionPool) -> None:
    [theirs] = make_jobs(pool, 1, OTHER_OWNER)
    for job_id in (theirs.id, uuid4()):
        for path in ("", "/results", "/results?format=csv", "/logs"):
            response = trawl.http.get(f"{trawl.api}/jobs/{job_id}{path}", timeout=30)
            assert (response.status_code, response.headers["Content-Type"]) == (404, PROBLEM), path
        assert trawl.http.post(f"{trawl.api}/jobs/{job_id}/retry", timeout=30).status_code == 404


# --- POST /api/jobs: Idempotency-Key -------------------------------------------------------------------------------

def test_an_idempotency_key_replays_the_same_request_and_refuses_a_different_one(trawl: Trawl, site: TestSite) -> None:
    key = {"Idempotency-Key": f"order-{uuid4()}"}
    body = {"urls": [site.url("/page/11")]}
    first = trawl.http.post(f"{trawl.api}/jobs", json=body, headers=key, timeout=30)
    again = trawl.http.post(f"{trawl.api}/jobs", json=body, headers=key, timeout=30)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert set(again.json()) == set(first.json())
    other = trawl.http.post(f"{trawl.api}/jobs", json={"urls": [site.url("/page/12")]}, headers=key, timeout=30)
    assert (other.status_code, other.headers["Content-Type"]) == (422, PROBLEM)
    problem = other.json()
    assert problem["type"] == "https://trawl.dev/problems/idempotency-key-reused"
    assert problem["job_id"] == first.json()["id"]
    rows = trawl.rows("SELECT id FROM jobs WHERE idempotency_key = %s", key["Idempotency-Key"])
    assert [str(row["id"]) for row in rows] == [first.json()["id"]]
    trawl.wait_final(first.json()["id"])


# --- POST /api/jobs/{id}/retry -------------------------------------------------------------------------------------

def test_retry_runs_a_linked_job_of_only_the_failed_urls(trawl: Trawl, site: TestSite) -> None:
    failing = [site.url("/always500/retry-a"), site.url("/always500/retry-b")]
    parent = trawl.submit([site.url("/page/1"), failing[0], site.url("/page/2"), failing[1]])
    assert trawl.http.post(f"{trawl.api}/jobs/{parent['id']}/retry", timeout=30).status_code == 409  # still running
    assert trawl.wait_final(parent["id"])["status"] == "completed_with_errors"

    response = trawl.http.post(f"{trawl.api}/jobs/{parent['id']}/retry", json={"include_skipped": False}, timeout=30)

    assert response.status_code == 202, response.text
    child = response.json()
    assert response.headers["Location"] == f"/api/jobs/{child['id']}"
    assert (child["parent_job_id"], child["links"]["parent"]) == (parent["id"], f"/api/jobs/{parent['id']}")
    assert child["progress"]["total"] == 2
    assert [item["url"] for item in get(trawl, f"{trawl.api}/jobs/{child['id']}/results")["items"]] == failing
    assert trawl.job(parent["id"])["children"] == [child["id"]]
    listed = get(trawl, f"{trawl.api}/jobs", {"status": "completed_with_errors", "limit": 100})["items"]
    assert [job["children"] for job in listed if job["id"] == parent["id"]] == [[child["id"]]]
    submitted = get(trawl, f"{trawl.api}/jobs/{child['id']}/logs")["items"][0]
    assert (submitted["event"], submitted["data"]["parent_job_id"]) == ("submitted", parent["id"])
    finished = trawl.wait_final(child["id"])  # started like a new submission: it really runs
    assert (finished["status"], finished["progress"]["failed"]) == ("completed_with_errors", 2)
    assert site.hits["/always500/retry-a"] == 10


def test_retry_refuses_running_jobs_and_jobs_with_nothing_to_retry(trawl: Trawl, site: TestSite,
                                                                   pool: ConnectionPool) -> None:
    running = trawl.submit([site.url("/slow/retry-running")])
    conflict = trawl.http.post(f"{trawl.api}/jobs/{running['id']}/retry", timeout=30)
    assert (conflict.status_code, conflict.headers["Content-Type"]) == (409, PROBLEM)
    assert conflict.json()["status_of_job"] in ("pending", "running")

    [cancelled] = make_jobs(pool, 1, trawl.owner, JobStatus.CANCELLED)  # its one item was skipped
    nothing = trawl.http.post(f"{trawl.api}/jobs/{cancelled.id}/retry", timeout=30)
    assert (nothing.status_code, nothing.json()["type"]) == (422, "https://trawl.dev/problems/nothing-to-retry")
    with_skipped = trawl.http.post(f"{trawl.api}/jobs/{cancelled.id}/retry", json={"include_skipped": True}, timeout=30)
    assert with_skipped.status_code == 202 and with_skipped.json()["progress"]["total"] == 1
    invalid = trawl.http.post(f"{trawl.api}/jobs/{cancelled.id}/retry", json={"everything": True}, timeout=30)
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["loc"] == ["everything"]
    trawl.wait_final(running["id"])
    trawl.wait_final(with_skipped.json()["id"])


# --- auth, as the document says -----------------------------------------------------------------------------------

def test_every_operation_needs_the_role_the_document_names(trawl: Trawl, big_job: Job) -> None:
    for operation in OPERATIONS:
        url = trawl.host.base_url + operation.path.replace("{id}", str(big_job.id))
        anonymous = requests.request(operation.method, url, timeout=30)
        if operation.role is None:
            assert anonymous.status_code == 200, operation.path
            continue
        assert (anonymous.status_code, anonymous.headers["Content-Type"]) == (401, PROBLEM), operation.path
        without_role = session_for(roles=[role for role in (READ, SUBMIT) if role != operation.role])
        denied = without_role.request(operation.method, url, timeout=30)
        assert (denied.status_code, denied.headers["Content-Type"]) == (403, PROBLEM), operation.path


# --- GET /api/openapi.json -----------------------------------------------------------------------------------------

def test_the_openapi_document_is_served_anonymously(trawl: Trawl) -> None:
    response = requests.get(f"{trawl.api}/openapi.json", timeout=30)
    assert (response.status_code, response.headers["Content-Type"]) == (200, "application/json")
    assert response.json() == json.loads(json.dumps(openapi_document()))
