"""A job survives its host being killed mid-job, and its Durable history stays bounded at scale."""
from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.devhost.conftest import REPO, start_devhost
from tests.e2e.conftest import Trawl, app_env
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e


def test_killing_the_host_mid_job_still_finishes_every_item_exactly_once(
        tmp_path: Path, azurite: str, db_url: str, site: TestSite) -> None:
    # The killed host's leased messages come back after 10 s rather than devhost's default 60.
    env = app_env(db_url, site, f"items-{uuid.uuid4().hex[:10]}", DEVHOST_QUEUE_LEASE_SECONDS="10")
    first = Trawl(start_devhost(REPO, tmp_path / "first.log", env), db_url, env["TRAWL_QUEUE_NAME"])
    job_id = first.submit([site.url(f"/slow/restart-{n}") for n in range(60)])["id"]
    first.wait(job_id, lambda job: job["progress"]["succeeded"] >= 5)
    first.host.process.send_signal(signal.SIGKILL)
    first.host.process.wait()

    second = Trawl(start_devhost(REPO, tmp_path / "second.log", env), db_url, env["TRAWL_QUEUE_NAME"])
    try:
        job = second.wait_final(job_id, seconds=120)
    finally:
        second.host.stop()

    assert job["status"] == "succeeded"
    assert job["progress"] == {"total": 60, "succeeded": 60, "failed": 0, "skipped": 0, "pending": 0}
    items = second.rows("SELECT status, attempts FROM job_items WHERE job_id = %s", job_id)
    assert len(items) == 60 and all(i == {"status": "succeeded", "attempts": 1} for i in items)
    events = [e["event"] for e in second.rows("SELECT event FROM job_events WHERE job_id = %s", job_id)]
    assert events.count("started") == 1 and events.count("finished") == 1
    assert f"job {job_id} is running without a live orchestration: restarting it" in second.host.logs()


def test_a_1000_url_job_keeps_its_orchestration_history_small(trawl: Trawl, site: TestSite) -> None:
    job_id = trawl.submit([site.url(f"/page/{n}") for n in range(1000)])["id"]
    longest = _watch_history_length(trawl, job_id)

    job = trawl.wait_final(job_id, seconds=240)

    assert job["status"] == "succeeded" and job["progress"]["succeeded"] == 1000
    assert 0 < longest[0] < 200


def _watch_history_length(trawl: Trawl, job_id: str) -> list[int]:
    """Poll the orchestration's history in the background; the list holds the longest length seen."""
    longest = [0]
    status_url = f"{trawl.host.base_url}/runtime/webhooks/durabletask/instances/{job_id}?showHistory=true"

    def poll() -> None:
        while True:
            try:
                body: dict[str, Any] = requests.get(status_url, timeout=30).json()
            except requests.RequestException:  # the host stopped after the test; nothing left to watch
                return
            longest[0] = max(longest[0], len(body.get("historyEvents") or []))
            if body.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
                return
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    return longest
