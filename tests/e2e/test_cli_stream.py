"""`trawl` following jobs through the app's event stream on devhost: `submit --wait`, `watch --json` and
`logs --follow` read `/api/jobs/{id}/events` (their --verbose trace shows each request) instead of polling."""
from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import Trawl
from tests.e2e.site import TestSite
from tests.e2e.test_cli import trawl_cli

pytestmark = pytest.mark.e2e


def stream_requests(stderr: str, job_id: str) -> list[str]:
    return re.findall(rf"^trawl: GET \S+/api/jobs/{job_id}/events -> (\d+) ", stderr, re.M)


def test_submit_wait_follows_a_small_job_through_its_event_stream(trawl: Trawl, site: TestSite) -> None:
    run = trawl_cli(trawl, "--verbose", "submit", "--wait", *(site.url(f"/page/{n}") for n in range(5)))

    assert run.code == 0, run
    job_id = run.stdout.split()[1]
    lines = run.stdout.splitlines()
    assert lines[0] == f"job {job_id} submitted: 5 URLs"
    assert re.fullmatch(rf"job {job_id} succeeded: 5 succeeded, 0 failed, 0 skipped of 5 in [\dms.]+", lines[-1])
    assert lines[-2].startswith(f"job {job_id} succeeded: 5/5 done (5 succeeded, 0 failed, 0 skipped of 5)")
    streamed = stream_requests(run.stderr, job_id)
    assert streamed and set(streamed) == {"200"}, run.stderr
    assert "polling" not in run.stderr and "Traceback" not in run.stderr


def test_watch_json_prints_the_job_at_each_change_from_the_stream(trawl: Trawl, site: TestSite) -> None:
    job_id = trawl.submit([site.url(f"/slow/stream-watch-{n}") for n in range(6)])["id"]

    run = trawl_cli(trawl, "--verbose", "watch", job_id, "--json")

    assert run.code == 0, run
    records = [json.loads(line) for line in run.stdout.splitlines()]
    changes = [(job["status"], job["progress"]) for job in records]
    assert all(before != after for before, after in zip(changes, changes[1:], strict=False)), changes
    done = [job["progress"]["total"] - job["progress"]["pending"] for job in records]
    assert done == sorted(done) and done[-1] == 6, changes
    assert records[-1] == trawl.job(job_id) and records[-1]["status"] == "succeeded"
    assert stream_requests(run.stderr, job_id), run.stderr


def test_logs_follow_reads_the_log_after_each_stream_response_until_the_job_ends(trawl: Trawl, site: TestSite) -> None:
    job_id = trawl.submit([site.url(f"/slow/stream-logs-{n}") for n in range(3)])["id"]

    run = trawl_cli(trawl, "--verbose", "logs", job_id, "--follow")

    assert run.code == 0, run
    assert [line.split()[2] for line in run.stdout.splitlines()] == ["submitted", "started", "finished"]
    assert stream_requests(run.stderr, job_id), run.stderr
