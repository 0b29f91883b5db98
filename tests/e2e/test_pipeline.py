"""The job pipeline end to end: HTTP API -> orchestration -> queue -> workers -> PostgreSQL, on devhost."""
from __future__ import annotations

import pytest

from tests.devhost.conftest import wait_until
from tests.e2e.conftest import Trawl
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e


def test_a_50_url_job_completes_with_extracted_fields(trawl: Trawl, site: TestSite) -> None:
    urls = [site.url(f"/page/{n}") for n in range(50)]
    accepted = trawl.submit(urls)
    assert accepted["status"] in ("pending", "running")
    assert accepted["links"]["self"] == f"/api/jobs/{accepted['id']}"

    job = trawl.wait_final(accepted["id"])

    assert job["status"] == "succeeded"
    assert job["progress"] == {"total": 50, "succeeded": 50, "failed": 0, "skipped": 0, "pending": 0}
    items = trawl.rows("SELECT seq, status, attempts, http_status, result FROM job_items WHERE job_id = %s ORDER BY seq",
                       accepted["id"])
    assert [i["status"] for i in items] == ["succeeded"] * 50
    seventh = items[7]["result"]
    assert seventh["title"] == "Page 7"
    assert seventh["description"] == "Description of page 7"
    assert seventh["lang"] == "en"
    assert seventh["headings"]["h1"] == ["Heading 7"]
    assert seventh["canonical"] == site.url("/page/7")
    assert {"url": site.url("/page/8"), "nofollow": False}.items() <= seventh["links"][0].items()
    assert all(site.hits[f"/page/{n}"] >= 1 for n in range(50))
    events = [e["event"] for e in trawl.rows("SELECT event FROM job_events WHERE job_id = %s ORDER BY id", accepted["id"])]
    assert events[:2] == ["submitted", "started"] and events[-1] == "finished"


def test_submit_answers_202_with_location_and_retry_after(trawl: Trawl, site: TestSite) -> None:
    response = trawl.http.post(f"{trawl.api}/jobs", json={"urls": [site.url("/page/1")]}, timeout=30)
    assert response.status_code == 202
    body = response.json()
    assert response.headers["Location"] == f"/api/jobs/{body['id']}"
    assert response.headers["Retry-After"].isdigit()
    assert body["statusQueryGetUri"] == f"{trawl.host.base_url}/api/jobs/{body['id']}"
    trawl.wait_final(body["id"])
    assert "Retry-After" not in trawl.http.get(f"{trawl.api}/jobs/{body['id']}", timeout=30).headers


def test_retries_back_off_then_end_the_job_completed_with_errors(trawl: Trawl, site: TestSite) -> None:
    urls = [site.url("/page/1"), site.url("/flaky/retry-me"), site.url("/always500/never")]
    job = trawl.wait_final(trawl.submit(urls)["id"])

    assert job["status"] == "completed_with_errors"
    assert job["progress"] == {"total": 3, "succeeded": 2, "failed": 1, "skipped": 0, "pending": 0}
    items = trawl.rows("SELECT seq, status, attempts, last_error_code, last_error_message FROM job_items "
                       "WHERE job_id = %s ORDER BY seq", job["id"])
    assert (items[0]["status"], items[0]["attempts"]) == ("succeeded", 1)
    assert (items[1]["status"], items[1]["attempts"]) == ("succeeded", 3)  # two 503s, then success
    assert site.hits["/flaky/retry-me"] == 3
    exhausted = items[2]
    assert (exhausted["status"], exhausted["attempts"], exhausted["last_error_code"]) == ("failed", 5, "http_error")
    assert exhausted["last_error_message"] == "HTTP 500 (after 5 attempts)"
    assert site.hits["/always500/never"] == 5
    assert "Traceback" not in trawl.host.logs(), "a dead site is not a failed function run"


def test_duplicate_queue_messages_produce_one_result(trawl: Trawl, site: TestSite) -> None:
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    accepted = trawl.submit([site.url("/slow/duplicate")])
    queue = QueueClient.from_connection_string("UseDevelopmentStorage=true", trawl.queue,
                                               message_encode_policy=TextBase64EncodePolicy())
    for _ in range(3):
        queue.send_message(f'{{"job_id": "{accepted["id"]}", "seq": 0}}')
    job = trawl.wait_final(accepted["id"])
    # Each delivery logs its outcome: wait for all four, so the duplicates are known to have been processed.
    wait_until(lambda: len(delivery_outcomes(trawl, accepted["id"], 0)) == 4, timeout=60)

    assert sorted(delivery_outcomes(trawl, accepted["id"], 0)) == ["duplicate"] * 3 + ["succeeded"]
    assert job["status"] == "succeeded"
    items = trawl.rows("SELECT status, attempts FROM job_items WHERE job_id = %s", accepted["id"])
    assert items == [{"status": "succeeded", "attempts": 1}]
    assert trawl.job(accepted["id"])["progress"]["succeeded"] == 1
    finished = trawl.rows("SELECT count(*) AS n FROM job_events WHERE job_id = %s AND event = 'finished'", accepted["id"])
    assert finished[0]["n"] == 1


def test_cancel_mid_job_keeps_partial_results(trawl: Trawl, site: TestSite) -> None:
    accepted = trawl.submit([site.url(f"/slow/cancel-{n}") for n in range(40)])
    trawl.wait(accepted["id"], lambda job: job["status"] == "running")
    response = trawl.http.delete(f"{trawl.api}/jobs/{accepted['id']}", json={"reason": "changed my mind"}, timeout=30)
    assert response.status_code == 202
    assert response.json()["cancellation"]["reason"] == "changed my mind"

    job = trawl.wait_final(accepted["id"])

    assert job["status"] == "cancelled"
    progress = job["progress"]
    assert progress["skipped"] > 0 and progress["pending"] == 0
    assert progress["succeeded"] + progress["failed"] + progress["skipped"] == 40
    events = trawl.rows("SELECT event, actor, reason FROM job_events WHERE job_id = %s ORDER BY id", accepted["id"])
    assert {"event": "cancel_requested", "actor": trawl.owner.actor, "reason": "changed my mind"} in events
    assert events[-1]["event"] == "cancelled"
    again = trawl.http.delete(f"{trawl.api}/jobs/{accepted['id']}", timeout=30)
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"
    assert again.json()["status"] == 409


def test_deadline_ends_the_job_timed_out(trawl: Trawl, site: TestSite) -> None:
    accepted = trawl.submit([site.url(f"/hang/deadline-{n}") for n in range(40)], deadline_seconds=10)
    job = trawl.wait_final(accepted["id"], seconds=60)

    assert job["status"] == "timed_out"
    assert job["progress"]["skipped"] > 0 and job["progress"]["pending"] == 0
    events = [e["event"] for e in trawl.rows("SELECT event FROM job_events WHERE job_id = %s ORDER BY id", accepted["id"])]
    assert events[-1] == "timed_out"


def test_bad_requests_get_problem_bodies_and_write_nothing(trawl: Trawl) -> None:
    jobs_before = trawl.rows("SELECT count(*) AS n FROM jobs")[0]["n"]
    not_json = trawl.http.post(f"{trawl.api}/jobs", data="{nope", timeout=30)
    assert (not_json.status_code, not_json.headers["Content-Type"]) == (400, "application/problem+json")
    invalid = trawl.http.post(f"{trawl.api}/jobs", json={"urls": ["ftp://x"], "surprise": 1}, timeout=30)
    assert invalid.status_code == 422
    assert {tuple(e["loc"]) for e in invalid.json()["errors"]} >= {("urls", 0), ("surprise",)}
    assert trawl.http.get(f"{trawl.api}/jobs/not-a-uuid", timeout=30).status_code == 404
    unknown = trawl.http.get(f"{trawl.api}/jobs/6f9619ff-8b86-d011-b42d-00c04fc964ff", timeout=30)
    assert (unknown.status_code, unknown.json()["title"]) == (404, "Not found")
    assert trawl.rows("SELECT count(*) AS n FROM jobs")[0]["n"] == jobs_before


def delivery_outcomes(trawl: Trawl, job_id: str, seq: int) -> list[str]:
    """What each delivery of an item's messages did ("succeeded", "duplicate", ...), from the worker's log."""
    marker = f"job {job_id} item {seq}: "
    return [line.split(marker, 1)[1].split(" (")[0] for line in trawl.host.logs().splitlines() if marker in line]
