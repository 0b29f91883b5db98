"""Fixtures for the scrape worker's integration tests: a local site, a worker config with a short
retry schedule, and one-item running jobs that fetch a path on that site."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared.domain.models import Job
from shared.domain.retry_policy import RetryPolicy
from shared.scraping.fetch import FetchLimits
from shared.services.item_worker import WorkerConfig
from shared.settings import parse_networks
from tests.e2e.site import TestSite

ExecuteSql = Callable[..., None]


@pytest.fixture(scope="module")
def site() -> Iterator[TestSite]:
    server = TestSite(flaky_failures=1).start()
    yield server
    server.stop()


@pytest.fixture
def config(site: TestSite) -> WorkerConfig:
    limits = FetchLimits(allowed_networks=parse_networks("127.0.0.0/8"), allowed_ports=frozenset({site.port}))
    return WorkerConfig(limits, RetryPolicy(max_attempts=3, base_delay_s=4, max_delay_s=60, jitter=0))


@pytest.fixture
def job_of(submit_job: Callable[..., Job], execute_sql: ExecuteSql, site: TestSite) -> Callable[[str], Job]:
    """A running job of one item fetching `path` on the site."""
    def create(path: str) -> Job:
        job = submit_job(count=1)
        execute_sql("UPDATE job_items SET url = %s WHERE job_id = %s", (site.url(path), job.id))
        execute_sql("UPDATE jobs SET status = 'running' WHERE id = %s", (job.id,))
        return job
    return create
