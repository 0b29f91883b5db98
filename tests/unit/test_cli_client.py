"""The CLI's HTTP client: problem+json errors, retries that honour Retry-After, and polling backoff.

The transport is a `requests.Session` that answers from a script instead of the network."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from trawl_cli.client import Backoff, RetryPolicy, TrawlClient, api_error, retry_after_seconds
from trawl_cli.errors import ApiError, NetworkError

JOB_ID = "0d7f5d1e-8a8e-4b43-9a3c-4f1f2b3c4d5e"
NOW = 1_700_000_000.0


def response(status: int, body: Any = None, headers: dict[str, str] | None = None,
             content_type: str = "application/json") -> requests.Response:
    reply = requests.Response()
    reply.status_code = status
    reply.reason = {200: "OK", 202: "Accepted", 404: "Not Found", 429: "Too Many Requests", 502: "Bad Gateway",
                    503: "Service Unavailable"}.get(status, "")
    reply._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    reply._content_consumed = True  # type: ignore[attr-defined]
    reply.headers = CaseInsensitiveDict({"Content-Type": content_type, **(headers or {})})
    return reply


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None,
            **extensions: Any) -> requests.Response:
    body = {"type": f"https://trawl.dev/problems/{title.lower().replace(' ', '-')}", "title": title,
            "status": status, "detail": detail, **extensions}
    return response(status, body, headers, content_type="application/problem+json")


def job_body(status: str = "running", done: int = 0) -> dict[str, Any]:
    return {"id": JOB_ID, "status": status, "created_at": "2025-01-01T10:00:00+00:00", "finished_at": None,
            "progress": {"total": 10, "succeeded": done, "failed": 0, "skipped": 0, "pending": 10 - done}}


class ScriptedSession(requests.Session):
    """Answers each request with the next scripted outcome (a response, or an exception to raise)."""

    def __init__(self, outcomes: Iterable[requests.Response | Exception]) -> None:
        super().__init__()
        self.outcomes = list(outcomes)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append({"method": method, "url": url, **kwargs})
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def client_for(*outcomes: requests.Response | Exception) -> tuple[TrawlClient, ScriptedSession, list[float]]:
    session, slept = ScriptedSession(outcomes), list[float]()
    tokens = iter(f"token-{n}" for n in range(100))
    client = TrawlClient("http://api.test/", lambda: next(tokens), sleep=slept.append, session=session)
    return client, session, slept


# --- Retry-After and backoff ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "seconds"), [
    ({"Retry-After": "2"}, 2.0),
    ({"Retry-After": " 120 "}, 120.0),
    ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)}, 30.0),
    ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)}, 0.0),
    ({"Retry-After": "soon"}, None),
    ({"Retry-After": "-1"}, None),
    ({}, None),
])
def test_retry_after_is_read_as_seconds_or_an_http_date(header: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


def test_retries_back_off_exponentially_but_wait_at_least_retry_after() -> None:
    policy = RetryPolicy(attempts=4, base_delay=0.5, max_delay=30)

    assert [policy.delay(attempt, None) for attempt in range(4)] == [0.5, 1.0, 2.0, None]
    assert policy.delay(0, 7) == 7 and policy.delay(2, 1) == 2.0
    assert policy.delay(0, 3600) is None  # a quota reset an hour away is reported, not slept on


def test_polling_backs_off_while_nothing_changes_and_never_polls_before_retry_after() -> None:
    backoff = Backoff(initial=1, factor=2, maximum=5)

    assert [backoff.next_delay(False, None) for _ in range(5)] == [1, 2, 4, 5, 5]
    assert backoff.next_delay(True, None) == 1
    assert backoff.next_delay(True, 3) == 3
    assert backoff.next_delay(False, 30) == 30


# --- problem+json --------------------------------------------------------------------------------------------------

def test_a_problem_becomes_an_api_error_with_its_fields() -> None:
    error = api_error(problem(404, "Not found", f"job {JOB_ID} not found", instance=f"/api/jobs/{JOB_ID}"))

    assert (error.status, error.title, error.detail) == (404, "Not found", f"job {JOB_ID} not found")
    assert error.type == "https://trawl.dev/problems/not-found"
    assert error.problem["instance"] == f"/api/jobs/{JOB_ID}"
    assert str(error) == f"404 Not found: job {JOB_ID} not found"


def test_validation_errors_name_the_first_three_fields_and_count_the_rest() -> None:
    errors = [{"loc": ["urls", n], "msg": f"uses port {n}", "type": "url_port_not_allowed"} for n in range(5)]
    errors.insert(1, {"loc": ["surprise"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"})
    error = api_error(problem(422, "Request is not valid", "the body does not match the schema", errors=errors))

    assert str(error) == ("422 Request is not valid: the body does not match the schema (urls.0: uses port 0; "
                          "surprise: Extra inputs are not permitted; urls.1: uses port 1; and 3 more)")


def test_an_error_without_a_problem_body_keeps_status_reason_and_a_line_of_text() -> None:
    error = api_error(response(502, "<html>\n  <body>upstream\n  down</body>\n</html>", content_type="text/html"))

    assert str(error) == "502 Bad Gateway: <html> <body>upstream down</body> </html>"
    assert error.problem == {} and error.type is None


def test_a_multi_line_detail_is_one_line() -> None:
    assert "\n" not in str(api_error(problem(500, "Internal error", "first\nsecond\r\nthird")))


# --- requests and retries ------------------------------------------------------------------------------------------

def test_a_get_waits_as_long_as_retry_after_says_then_succeeds() -> None:
    client, session, slept = client_for(problem(503, "A dependency is unavailable", "db"),
                                        response(429, {}, {"Retry-After": "4"}),
                                        response(200, job_body(), {"Retry-After": "2"}))

    reply = client.get_job(JOB_ID)

    assert slept == [0.5, 4.0]
    assert (reply.job.id, reply.job.status, reply.retry_after) == (JOB_ID, "running", 2.0)
    assert [sent["headers"]["Authorization"] for sent in session.sent] == ["Bearer token-0", "Bearer token-1",
                                                                         "Bearer token-2"]
    assert session.sent[0]["url"] == f"http://api.test/api/jobs/{JOB_ID}"


def test_a_long_retry_after_is_reported_at_once() -> None:
    client, _, slept = client_for(problem(429, "Too many requests", "daily URL quota used", {"Retry-After": "3600"},
                                          retry_after=3600))

    with pytest.raises(ApiError) as raised:
        client.submit_job(["https://example.com/"], None, "key-1")
    assert (raised.value.status, slept) == (429, [])


def test_a_submit_is_sent_again_with_the_same_idempotency_key_after_a_network_failure() -> None:
    client, session, slept = client_for(requests.ConnectionError("reset"), requests.ReadTimeout("slow"),
                                        response(202, job_body("pending")))

    reply = client.submit_job(["https://example.com/"], 60, "key-1")

    assert reply.created and slept == [0.5, 1.0]
    assert {sent["headers"]["Idempotency-Key"] for sent in session.sent} == {"key-1"}
    assert session.sent[0]["json"] == {"urls": ["https://example.com/"], "options": {"deadline_seconds": 60}}


def test_a_replayed_submission_is_not_created() -> None:
    client, _, _ = client_for(response(200, job_body("succeeded", 10)))
    assert not client.submit_job(["https://example.com/"], None, "key-1").created


def test_a_cancel_is_not_resent_after_a_network_failure_but_is_after_503() -> None:
    client, session, slept = client_for(requests.ConnectionError("[Errno 104] Connection reset by peer"))
    with pytest.raises(NetworkError, match=r"cannot reach http://api.test: Connection reset by peer "
                                           r"\(DELETE /api/jobs/.*, 1 attempt\)"):
        client.cancel_job(JOB_ID, "no")
    assert (len(session.sent), slept) == (1, [])

    client, session, slept = client_for(problem(503, "A dependency is unavailable", "db"),
                                        response(202, job_body("running")))
    assert client.cancel_job(JOB_ID, "no").status == "running"
    assert slept == [0.5] and session.sent[1]["json"] == {"reason": "no"}


def test_a_get_gives_up_after_the_last_attempt_with_the_reason() -> None:
    refused = requests.ConnectionError("HTTPConnectionPool(host='x', port=1): Max retries exceeded (Caused by "
                                       "NewConnectionError('<obj>: Failed to establish a new connection: "
                                       "[Errno 111] Connection refused'))")
    client, _, slept = client_for(*[refused] * 4)

    with pytest.raises(NetworkError) as raised:
        client.get_job(JOB_ID)
    assert str(raised.value) == f"cannot reach http://api.test: Connection refused (GET /api/jobs/{JOB_ID}, 4 attempts)"
    assert slept == [0.5, 1.0, 2.0]


def test_client_errors_are_not_retried() -> None:
    client, session, _ = client_for(problem(404, "Not found", "job x not found"))
    with pytest.raises(ApiError, match=r"^404 Not found: job x not found$"):
        client.get_job("x")
    assert len(session.sent) == 1


def test_a_job_id_cannot_escape_its_path() -> None:
    client, session, _ = client_for(problem(404, "Not found", "nope"))
    with pytest.raises(ApiError):
        client.get_job("../../admin?x=1")
    assert session.sent[0]["url"] == "http://api.test/api/jobs/..%2F..%2Fadmin%3Fx%3D1"


def test_results_follow_the_cursor_to_the_last_page() -> None:
    client, session, _ = client_for(response(200, {"items": [{"seq": 0}, {"seq": 1}], "next_cursor": "c1"}),
                                    response(200, {"items": [{"seq": 2}], "next_cursor": None}))

    assert [item["seq"] for item in client.iter_results(JOB_ID)] == [0, 1, 2]
    assert [sent["params"]["cursor"] for sent in session.sent] == [None, "c1"]
