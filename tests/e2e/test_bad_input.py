"""Every bad input is a clear 4xx problem from the running app, checked at submit and writing nothing; the
URLs a job keeps are each fetched once."""
from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest
import requests

from shared.domain.cursors import encode_cursor, filter_digest
from tests.e2e.conftest import DEV_ISSUER, Trawl
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert (response.status_code, response.headers["Content-Type"]) == (status, PROBLEM), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def post_jobs(trawl: Trawl, body: Any, **kwargs: Any) -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return trawl.http.post(f"{trawl.api}/jobs", data=data, headers=headers, timeout=30, **kwargs)


def jobs_count(trawl: Trawl) -> int:
    return int(trawl.rows("SELECT count(*) AS n FROM jobs")[0]["n"])


def test_bad_submissions_are_4xx_problems_and_store_nothing(trawl: Trawl, site: TestSite) -> None:
    good, before = site.url("/page/1"), jobs_count(trawl)

    assert problem(post_jobs(trawl, "[" * 100_000 + "]" * 100_000), 400)["detail"].endswith("nested too deeply")
    assert problem(post_jobs(trawl, {"urls": [good]}, headers={"Content-Type": "text/plain"}), 415)
    assert problem(post_jobs(trawl, {"urls": [good]}, headers={"Idempotency-Key": "key\x00"}), 400)
    surrogate = problem(post_jobs(trawl, b'{"urls": ["http://example.com/\\ud800"]}'), 422)
    assert surrogate["errors"][0]["loc"] == ["urls", 0]
    deadline = problem(post_jobs(trawl, {"urls": [good], "options": {"deadline_seconds": "600"}}), 422)
    assert deadline["errors"] == [{"loc": ["options", "deadline_seconds"], "msg": "must be an integer",
                                   "type": "int_type"}]

    bad = [good, "http://example.com/a\x00b", "http://user:pw@example.com/", "http://exa mple.com/",
           "http://example.com/a\r\nX-Injected: 1", "http://example.com:8080/", "http://example.com:0/",
           "http://example.com:99999/"]
    errors = problem(post_jobs(trawl, {"urls": bad}), 422)["errors"]
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["urls", 1], "url_control_character"), (["urls", 2], "url_user_info"), (["urls", 3], "url_invalid_host"),
        (["urls", 4], "url_control_character"), (["urls", 5], "url_port_not_allowed"),
        (["urls", 6], "url_port_not_allowed"), (["urls", 7], "url_unparsable")]
    assert not [e for e in errors if "Value error" in e["msg"] or "SubmitJobRequest" in e["msg"]]
    assert "pw@" not in json.dumps(errors)
    assert jobs_count(trawl) == before


def test_bad_queries_and_tokens_are_4xx_problems(trawl: Trawl) -> None:
    unknown = problem(trawl.http.get(f"{trawl.api}/jobs", params={"stauts": "failed"}, timeout=30), 400)
    assert unknown["errors"][0]["loc"] == ["stauts"]
    export = trawl.http.get(f"{trawl.api}/jobs/{uuid.uuid4()}/results", params={"format": "csv", "limit": 10},
                            timeout=30)
    assert problem(export, 400)["errors"][0]["loc"] == ["limit"]

    moment = datetime(2026, 1, 1, tzinfo=UTC).astimezone(timezone(timedelta(hours=23, minutes=59)))
    digest = filter_digest("jobs", {"status": None, "created_after": None, "created_before": None})
    cursor = encode_cursor([moment.isoformat(), str(uuid.uuid4())], digest)
    assert problem(trawl.http.get(f"{trawl.api}/jobs", params={"cursor": cursor}, timeout=30), 400)

    for claims in ({"iss": ["https://devhost.localhost/x/v2.0"]}, {"exp": str(int(time.time()) + 600)}):
        token = signed_token(**claims)
        response = requests.get(f"{trawl.api}/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert problem(response, 401)["title"] == "Authentication required"


def signed_token(**claims: Any) -> str:
    """A dev-issuer token for alice with these claims replaced, signed as is (PyJWT would refuse a list iss)."""
    valid = DEV_ISSUER.mint("alice", ["Jobs.Read"])
    payload = {**jwt.decode(valid, options={"verify_signature": False}), **claims}
    return jwt.api_jws.encode(json.dumps(payload).encode(), DEV_ISSUER.private_key(), algorithm="RS256",
                              headers={"kid": jwt.get_unverified_header(valid)["kid"]})


def test_a_cancel_reason_with_nul_is_a_422_and_records_nothing(trawl: Trawl, site: TestSite) -> None:
    job_id = trawl.submit([site.url("/hang/cancel-reason")])["id"]
    refused = trawl.http.delete(f"{trawl.api}/jobs/{job_id}", json={"reason": "stop\x00"}, timeout=30)
    assert problem(refused, 422)["errors"][0] == {"loc": ["reason"], "msg": "may not contain NUL characters",
                                                  "type": "text_nul"}
    assert trawl.http.delete(f"{trawl.api}/jobs/{job_id}", json={"reason": "done"}, timeout=30).status_code == 202
    reasons = trawl.rows("SELECT reason FROM job_events WHERE job_id = %s AND event = 'cancel_requested'", job_id)
    assert reasons == [{"reason": "done"}]


def test_skipped_urls_are_listed_and_duplicates_fetched_once(trawl: Trawl, site: TestSite) -> None:
    page = site.url("/page/41")
    urls = [page, page.replace("http://", "HTTP://") + "#again", "http://127.0.0.1:8080/nope", page + "#third",
            site.url("/page/42")]
    accepted = post_jobs(trawl, {"urls": urls, "skip_invalid_urls": True})
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["merged_duplicates"] == 2
    assert body["refused_urls"] == [{"index": 2, "url": "http://127.0.0.1:8080", "type": "url_port_not_allowed",
                                     "reason": f"uses port 8080; the ports allowed are 80, 443, {site.port}"}]

    job = trawl.wait_final(body["id"])
    assert (job["status"], job["progress"]["total"], job["merged_duplicates"]) == ("succeeded", 2, 2)
    assert (job["refused_urls"], job["options"]) == (
        [], {"deadline_seconds": 3600, "formats": ["metadata", "markdown"], "main_content_only": True})
    assert [row["url"] for row in trawl.rows("SELECT url FROM job_items WHERE job_id = %s ORDER BY seq", job["id"])] \
        == [page, site.url("/page/42")]
    assert site.hits["/page/41"] == 1
