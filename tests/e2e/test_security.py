"""Authentication, ownership, quotas and request limits of the whole app on devhost (TRAWL_AUTH_MODE=dev).

This app trusts devhost's own `/.devhost/jwks` route, and its limits are tiny so each is quick to reach;
every user name below is a separate caller with its own quotas.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from devhost import devauth
from shared.adapters.auth import ADMIN, READ, SUBMIT
from tests.devhost.conftest import REPO, free_port, start_devhost
from tests.e2e.conftest import Trawl, app_env, dev_owner, dev_token, session_for
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"
LIMITS = {"TRAWL_RATE_SUBMISSIONS_PER_MINUTE": "2", "TRAWL_RATE_RUNNING_JOBS": "1", "TRAWL_RATE_URLS_PER_DAY": "3",
          "TRAWL_MAX_BODY_BYTES": "2048"}


@dataclass(frozen=True)
class Endpoint:
    """One job endpoint, as another caller would aim it at someone else's job."""

    method: str
    path: str  # under /api, with {id}
    body: dict[str, Any] | None = None

    def call(self, trawl: Trawl, session: requests.Session, job_id: str) -> requests.Response:
        url = f"{trawl.api}{self.path.format(id=job_id)}"
        return session.request(self.method, url, json=self.body, timeout=30)


# Every endpoint that takes a job id: another caller's job must answer exactly like an unknown one.
JOB_ENDPOINTS = [
    Endpoint("GET", "/jobs/{id}"),
    Endpoint("DELETE", "/jobs/{id}", {"reason": "not mine to cancel"}),
    Endpoint("GET", "/jobs/{id}/results"),
    Endpoint("GET", "/jobs/{id}/logs"),
    Endpoint("POST", "/jobs/{id}/retry"),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, azurite: str, module_db_url: str,
            site: TestSite) -> Iterator[Trawl]:
    port = free_port()
    queue = f"items-{uuid.uuid4().hex[:10]}"
    env = app_env(module_db_url, site, queue, TRAWL_AUTH_JWKS_URL=f"http://127.0.0.1:{port}{devauth.JWKS_PATH}",
                  **LIMITS)
    host = start_devhost(REPO, tmp_path_factory.mktemp("secured") / "devhost.log", env, port=port)
    yield Trawl(host, module_db_url, queue)
    host.stop()


@pytest.fixture(scope="module")
def alices_job(secured: Trawl, site: TestSite) -> dict[str, Any]:
    return secured.wait_final(secured.submit([site.url("/page/1")])["id"])


def as_user(user: str, *roles: str) -> requests.Session:
    return session_for(user, roles or (SUBMIT, READ))


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_health_is_anonymous(secured: Trawl) -> None:
    response = requests.get(f"{secured.api}/health", timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("endpoint", [Endpoint("POST", "/jobs", {"urls": ["https://example.com/"]}),
                                      *JOB_ENDPOINTS, Endpoint("GET", "/jobs/{id}/orchestration")],
                         ids=lambda e: f"{e.method} {e.path}")
def test_no_token_is_401_with_a_bearer_challenge(secured: Trawl, alices_job: dict[str, Any],
                                                 endpoint: Endpoint) -> None:
    response = endpoint.call(secured, requests.Session(), alices_job["id"])
    if response.status_code == 404 and not response.content:
        pytest.skip(f"{endpoint.method} {endpoint.path} is not implemented")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("token", [
    dev_token(minutes=-5),
    dev_token(audience="api://someone-else"),
    dev_token(tenant="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"),
    jwt.encode({"oid": str(uuid.uuid4()), "roles": [ADMIN]}, "a-shared-secret-of-at-least-32-bytes", algorithm="HS256"),
    "not-a-token",
], ids=["expired", "audience", "tenant", "hs256", "garbage"])
def test_an_invalid_token_is_401_invalid_token(secured: Trawl, alices_job: dict[str, Any], token: str) -> None:
    response = requests.get(f"{secured.api}/jobs/{alices_job['id']}", headers={"Authorization": f"Bearer {token}"},
                            timeout=30)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_token_without_the_role_is_403(secured: Trawl, alices_job: dict[str, Any]) -> None:
    reader, submitter = as_user("alice", READ), as_user("alice", SUBMIT)
    cases = [(reader.post(f"{secured.api}/jobs", json={"urls": ["https://example.com/"]}, timeout=30), SUBMIT),
             (submitter.get(f"{secured.api}/jobs/{alices_job['id']}", timeout=30), READ),
             (as_user("alice").get(f"{secured.api}/jobs/{alices_job['id']}/orchestration", timeout=30), ADMIN)]
    for response, role in cases:
        assert assert_problem(response, 403)["required_role"] == role
        assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'


@pytest.mark.parametrize("endpoint", JOB_ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_another_callers_job_is_404_like_an_unknown_one(secured: Trawl, alices_job: dict[str, Any],
                                                        endpoint: Endpoint) -> None:
    bob, job_id, unknown_id = as_user("bob"), alices_job["id"], str(uuid.uuid4())

    theirs = endpoint.call(secured, bob, job_id)
    if theirs.status_code == 404 and not theirs.content:
        pytest.skip(f"{endpoint.method} {endpoint.path} is not implemented")
    unknown = endpoint.call(secured, bob, unknown_id)

    assert_problem(theirs, 404)
    assert_problem(unknown, 404)
    assert theirs.text.replace(job_id, "<id>") == unknown.text.replace(unknown_id, "<id>")
    events = secured.rows("SELECT event, actor FROM job_events WHERE job_id = %s ORDER BY id", job_id)
    assert all(e["actor"] != dev_owner("bob").actor for e in events)
    assert secured.rows("SELECT count(*) AS n FROM jobs WHERE parent_job_id = %s", job_id)[0]["n"] == 0
    assert secured.job(job_id)["status"] == "succeeded"  # and alice still sees it


def test_another_callers_jobs_are_not_listed(secured: Trawl, alices_job: dict[str, Any]) -> None:
    listing = as_user("bob").get(f"{secured.api}/jobs", timeout=30)
    if listing.status_code in (404, 405) and not listing.content:
        pytest.skip("GET /jobs is not implemented")
    assert listing.status_code == 200, listing.text
    assert alices_job["id"] not in listing.text


def test_an_admin_sees_every_job_and_its_orchestration(secured: Trawl, alices_job: dict[str, Any]) -> None:
    admin, job_id = as_user("root", ADMIN), alices_job["id"]

    assert admin.get(f"{secured.api}/jobs/{job_id}", timeout=30).json()["status"] == "succeeded"
    response = admin.get(f"{secured.api}/jobs/{job_id}/orchestration", params={"history": "true"}, timeout=30)
    assert response.status_code == 200, response.text
    status = response.json()
    assert (status["instanceId"], status["name"], status["runtimeStatus"]) == (job_id, "job_orchestrator", "Completed")
    given = status["input"]  # what the orchestration was started with (the host may keep it as JSON text)
    assert (json.loads(given) if isinstance(given, str) else given)["job_id"] == job_id
    assert any(event.get("EventType") == "ExecutionStarted" for event in status["historyEvents"])
    unknown = admin.get(f"{secured.api}/jobs/{uuid.uuid4()}/orchestration", timeout=30)
    assert_problem(unknown, 404)


def test_the_audit_log_records_who_cancelled(secured: Trawl, site: TestSite, alices_job: dict[str, Any]) -> None:
    job_id = secured.submit([site.url("/hang/audit")])["id"]
    response = as_user("root", ADMIN).delete(f"{secured.api}/jobs/{job_id}", json={"reason": "ops"}, timeout=30)
    assert response.status_code == 202, response.text
    secured.wait_final(job_id)
    events = secured.rows("SELECT event, actor FROM job_events WHERE job_id = %s ORDER BY id", job_id)
    assert events[0] == {"event": "submitted", "actor": secured.owner.actor}
    assert {"event": "cancel_requested", "actor": dev_owner("root").actor} in events


def _submit(trawl: Trawl, session: requests.Session, urls: list[str]) -> requests.Response:
    return session.post(f"{trawl.api}/jobs", json={"urls": urls}, timeout=30)


def test_submissions_per_minute_is_429_with_retry_after(secured: Trawl, site: TestSite) -> None:
    # The window is the wall-clock minute (its boundaries are tested with an injected clock in
    # tests/integration/test_quotas.py). Three submits take seconds: if a minute began among them, the
    # next caller's three fall in the new one.
    for caller in ("carol", "carol-again"):
        minute = int(time.time() // 60)
        carol = replace(secured, user=caller)
        for n in range(2):
            carol.wait_final(carol.submit([site.url(f"/page/{n}")])["id"])
        refused = _submit(secured, carol.http, [site.url("/page/3")])
        if int(time.time() // 60) == minute:
            break

    problem = assert_problem(refused, 429)
    assert (problem["limit"], problem["allowed"]) == ("submissions_per_minute", 2)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 and problem["retry_after"] == int(refused.headers["Retry-After"])
    assert _submit(secured, as_user("carol-2"), [site.url("/page/4")]).status_code == 202  # quotas are per caller


def test_running_jobs_limit_is_429(secured: Trawl, site: TestSite) -> None:
    dave = as_user("dave")
    running = _submit(secured, dave, [site.url("/hang/dave")])
    assert running.status_code == 202, running.text

    refused = _submit(secured, dave, [site.url("/page/5")])

    assert assert_problem(refused, 429)["limit"] == "running_jobs"
    assert refused.headers["Retry-After"] == "15"
    jobs = secured.rows("SELECT count(*) AS n FROM jobs WHERE owner_object_id = %s", dev_owner("dave").object_id)
    assert jobs[0]["n"] == 1
    dave.delete(f"{secured.api}/jobs/{running.json()['id']}", timeout=30)


def test_urls_per_day_is_429(secured: Trawl, site: TestSite) -> None:
    erin = replace(secured, user="erin")
    erin.wait_final(erin.submit([site.url("/page/6"), site.url("/page/7")])["id"])

    refused = _submit(secured, erin.http, [site.url("/page/8"), site.url("/page/9")])

    assert assert_problem(refused, 429)["limit"] == "urls_per_day"
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400


def test_a_body_over_the_limit_is_413(secured: Trawl) -> None:
    urls = [f"https://example.com/{n:04d}" for n in range(100)]  # about 3 kB of JSON
    response = _submit(secured, as_user("frank"), urls)
    assert_problem(response, 413)
    assert secured.rows("SELECT count(*) AS n FROM jobs WHERE owner_object_id = %s",
                        dev_owner("frank").object_id)[0]["n"] == 0


def test_devhost_token_command_prints_a_token_the_app_accepts(secured: Trawl, tmp_path: Path) -> None:
    printed = subprocess.run([sys.executable, "-m", "devhost", "token", "--user", "grace", "--roles", "Jobs.Read"],
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    reader = requests.Session()
    reader.headers["Authorization"] = f"Bearer {printed}"

    assert_problem(reader.get(f"{secured.api}/jobs/{uuid.uuid4()}", timeout=30), 404)  # authenticated
    assert_problem(reader.post(f"{secured.api}/jobs", json={"urls": ["https://example.com/"]}, timeout=30), 403)
    served = requests.get(f"{secured.host.base_url}{devauth.JWKS_PATH}", timeout=30).json()
    assert jwt.get_unverified_header(printed)["kid"] in {key["kid"] for key in served["keys"]}
