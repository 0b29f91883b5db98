"""The worker runtime end to end: fetches in flight, a submit beside them, PostgreSQL outages and a host
killed while URLs are being retried. Outage lengths are the experiment, not waits: every other wait is
for an observable state."""
from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.adapters.db import UrlDatabase, connect, migrate
from tests.devhost.conftest import REPO, start_devhost, wait_until
from tests.e2e.conftest import Trawl, app_env
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e


@dataclass
class StoppablePostgres:
    """A PostgreSQL server of this test's own, which the test stops and starts."""

    server: Any
    url: str

    def stop(self, mode: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[StoppablePostgres]:
    import pgserver

    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")
    server.psql("ALTER SYSTEM SET fsync = off")
    server.psql("SELECT pg_reload_conf()")
    url = server.get_uri()
    with closing(connect(UrlDatabase(url))) as conn:
        migrate(conn)
    yield StoppablePostgres(server, url)
    server.ensure_postgres_running()
    server.cleanup()


@pytest.fixture
def own_trawl(tmp_path: Path, azurite: str, own_postgres: StoppablePostgres, site: TestSite) -> Iterator[Trawl]:
    env = app_env(own_postgres.url, site, f"items-{uuid.uuid4().hex[:10]}")
    host = start_devhost(REPO, tmp_path / "devhost.log", env)
    yield Trawl(host, own_postgres.url, env["TRAWL_QUEUE_NAME"])
    host.stop()


def test_twenty_four_fetches_run_at_once_and_a_submit_is_answered_beside_them(trawl: Trawl, site: TestSite) -> None:
    site.released.clear()
    held = trawl.submit([site.url(f"/held/{n}") for n in range(30)])
    try:
        wait_until(lambda: site.held_now >= 20, timeout=60)
        beside = trawl.http.post(f"{trawl.api}/jobs", json={"urls": [site.url("/page/1")]}, timeout=30)
        still_held = site.held_now
    finally:
        site.released.set()

    assert beside.status_code == 202, beside.text
    assert still_held >= 20, "the submit was answered while every fetch was held"
    assert trawl.wait_final(held["id"])["status"] == "succeeded"
    assert site.held_most >= 20


@pytest.mark.parametrize(("seconds", "mode"), [(15, "fast"), (60, "immediate")])
def test_a_database_outage_mid_job_delays_it_and_every_item_is_processed_once(
        own_trawl: Trawl, own_postgres: StoppablePostgres, site: TestSite, seconds: int, mode: str) -> None:
    urls = [site.url(f"/slow/outage-{mode}-{n}") for n in range(120)]
    job_id = own_trawl.submit(urls)["id"]
    own_trawl.wait(job_id, lambda job: job["progress"]["succeeded"] >= 20)

    own_postgres.stop(mode)
    down_at = time.monotonic()
    status = own_trawl.http.get(f"{own_trawl.api}/jobs/{job_id}", timeout=30)
    health_started = time.monotonic()
    health = requests.get(f"{own_trawl.api}/health", timeout=30)
    health_seconds = time.monotonic() - health_started
    time.sleep(max(seconds - (time.monotonic() - down_at), 0))  # the outage itself
    own_postgres.start()

    job = own_trawl.wait_final(job_id, seconds=240)

    assert (status.status_code, status.headers["Content-Type"]) == (503, "application/problem+json")
    assert int(status.headers["Retry-After"]) > 0
    assert health.status_code == 503 and health.json()["checks"]["database"]["status"] == "failing"
    assert health_seconds < 5
    assert job["status"] == "succeeded", job
    items = own_trawl.rows("SELECT status, attempts FROM job_items WHERE job_id = %s", job_id)
    assert len(items) == 120 and all(i == {"status": "succeeded", "attempts": 1} for i in items)
    events = [e["event"] for e in own_trawl.rows("SELECT event FROM job_events WHERE job_id = %s", job_id)]
    assert events.count("started") == 1 and events.count("finished") == 1


def test_a_host_killed_while_urls_are_retried_spends_each_url_budget_once(
        tmp_path: Path, azurite: str, db_url: str, site: TestSite) -> None:
    env = app_env(db_url, site, f"items-{uuid.uuid4().hex[:10]}", TRAWL_RETRY_BASE_DELAY_SECONDS="2",
                  DEVHOST_QUEUE_LEASE_SECONDS="10")
    first = Trawl(start_devhost(REPO, tmp_path / "first.log", env), db_url, env["TRAWL_QUEUE_NAME"])
    paths = [f"/always500/killed-{n}" for n in range(10)]
    job_id = first.submit([site.url(path) for path in paths])["id"]
    wait_until(lambda: all(site.hits[path] >= 2 for path in paths), timeout=60)
    first.host.process.send_signal(signal.SIGKILL)
    first.host.process.wait()

    second = Trawl(start_devhost(REPO, tmp_path / "second.log", env), db_url, env["TRAWL_QUEUE_NAME"])
    try:
        job = second.wait_final(job_id, seconds=180)
    finally:
        second.host.stop()

    assert job["status"] == "completed_with_errors" and job["progress"]["failed"] == 10
    # The budget is counted in PostgreSQL; a fetch the kill cut off before it was counted is the only extra.
    assert all(5 <= site.hits[path] <= 6 for path in paths), [site.hits[path] for path in paths]
    restarted = second.host.logs()
    assert f"job {job_id} is running without a live orchestration: restarting it" in restarted
    assert f"enqueued 0 item messages on {env['TRAWL_QUEUE_NAME']}" in restarted, "nothing already queued re-sent"
    assert "enqueued 10 item messages" not in restarted
    items = second.rows("SELECT attempts, last_error_code FROM job_items WHERE job_id = %s", job_id)
    assert all(i == {"attempts": 5, "last_error_code": "http_error"} for i in items)


