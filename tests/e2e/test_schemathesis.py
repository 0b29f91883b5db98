"""Property-based contract test: schemathesis generates requests from /api/openapi.json (valid ones, and
invalid ones) against the running app on devhost and checks every response against the same document: no
5xx, documented status codes and content types, bodies that match their schemas.

Cases are drawn with schemathesis' Hypothesis strategies directly (its pytest plugin does not run on
pytest 9), one test per operation and generation mode, with a fixed seed so a failure found once is
found again."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi import OPERATIONS
from shared.contract.openapi import Operation
from tests.e2e.conftest import Trawl, dev_token
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 15}
CASES = [(op, mode) for op in OPERATIONS for mode in EXAMPLES
         if mode is GenerationMode.POSITIVE or op.query or op.body or op.path_params or op.headers]
MIN_REQUESTS = 250
# A budget for the suite, not a performance claim: about 5 s per operation (20 operations, with those that read
# page bodies and search).
MAX_SECONDS = 100


@dataclass
class Run:
    """What the generated tests sent, for the closing check of the whole run."""

    requests: Counter[str] = field(default_factory=Counter)
    cases: set[str] = field(default_factory=set)
    started: float = 0.0


RUN = Run()


@pytest.fixture(scope="module")
def api_schema(trawl: Trawl) -> schemathesis.BaseSchema:
    RUN.started = time.monotonic()
    return schemathesis.openapi.from_url(f"{trawl.api}/openapi.json")


@pytest.fixture(scope="module")
def finished_job(trawl: Trawl, site: TestSite) -> str:
    """A final job with a result and a failure: valid requests name it, so they reach real 200 responses
    (random ids only ever reach 404s)."""
    job = trawl.submit([site.url("/page/1"), site.url("/always500/schemathesis")])
    return str(trawl.wait_final(job["id"])["id"])


def auth_headers(operation: Operation) -> dict[str, str]:
    """A token with exactly the role the document names (anonymous operations get none)."""
    return {} if operation.role is None else {"Authorization": f"Bearer {dev_token(roles=[operation.role])}"}


def keep_fetches_local(body: Any, site: TestSite) -> None:
    """Generated URLs must never be fetched: each of (at most three) becomes a page of the local test site."""
    if isinstance(body, dict) and isinstance(body.get("urls"), list):
        body["urls"] = [site.url(f"/page/{n}") if isinstance(url, str) else url
                        for n, url in enumerate(body["urls"][:3])]


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=[f"{op.method.upper()} {op.path} {m.value}" for op, m in CASES])
def test_generated_requests_get_documented_responses(
        api_schema: schemathesis.BaseSchema, site: TestSite, finished_job: str, operation: Operation,
        mode: GenerationMode) -> None:
    method, path = operation.method.upper(), operation.path
    valid_and_known = mode is GenerationMode.POSITIVE and "{id}" in path
    headers = auth_headers(operation)

    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=api_schema[path][method].as_strategy(
        generation_mode=mode, path_parameters={"id": finished_job} if valid_and_known else None))
    def check(case: schemathesis.Case) -> None:
        keep_fetches_local(case.body, site)
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
        RUN.requests[f"{method} {path}"] += 1
        if valid_and_known:  # the role the document names is enough
            assert response.status_code not in (401, 403), response.text

    check()
    RUN.cases.add(f"{method} {path} {mode.value}")


def test_the_run_sent_a_few_hundred_requests_within_its_budget() -> None:
    if len(RUN.cases) < len(CASES):
        pytest.skip("judges the whole run: run every generated test of this module first")
    elapsed = time.monotonic() - RUN.started
    print(f"\nschemathesis: {sum(RUN.requests.values())} requests in {elapsed:.0f}s: {dict(RUN.requests)}")
    assert sum(RUN.requests.values()) >= MIN_REQUESTS, "fewer requests than intended: the contract was barely tested"
    assert set(RUN.requests) == {f"{op.method.upper()} {op.path}" for op in OPERATIONS}
    assert elapsed < MAX_SECONDS
