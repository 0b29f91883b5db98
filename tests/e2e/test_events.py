"""`GET /api/jobs/{id}/events` through devhost: a job followed to its end by reconnecting with
Last-Event-ID, the refusals, and a stream served by an instance that never touched the job."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.contract.sse import EVENT_MODELS
from tests.devhost.conftest import REPO, start_devhost
from tests.e2e.conftest import Trawl, app_env, session_for
from tests.e2e.site import TestSite


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: dict[str, Any]


def parse(body: str) -> tuple[list[Event], int | None]:
    """The events of one complete response of ours and its `retry:` value."""
    events, retry = [], None
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "retry" in fields:
            retry = int(fields["retry"])
        if "event" in fields:
            data = json.loads(fields["data"])
            EVENT_MODELS[fields["event"]].model_validate(data)  # the documented shape, no field more or less
            events.append(Event(fields["id"], fields["event"], data))
    return events, retry


def follow(http: requests.Session, url: str, last_id: str | None = None, limit: int = 400) -> list[Event]:
    """Read the stream as EventSource does, one response after another, until it answers 204."""
    received: list[Event] = []
    for _ in range(limit):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        response = http.get(url, headers=headers, timeout=60)
        if response.status_code == 204:
            return received
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events, retry = parse(response.text)
        assert retry is not None
        received.extend(events)
        if events:
            last_id = events[-1].id
    raise AssertionError(f"the stream did not end after {limit} responses")


def items(events: list[Event]) -> list[int]:
    return [event.data["seq"] for event in events if event.kind == "item"]


def test_a_job_is_followed_to_its_end_with_every_item_once_and_the_final_state_last(
        trawl: Trawl, site: TestSite) -> None:
    accepted = trawl.submit([site.url(f"/page/{n}") for n in range(12)] + [site.url("/always500/x")])
    url = f"{trawl.api}/jobs/{accepted['id']}/events"

    events = follow(trawl.http, url)

    assert sorted(items(events)) == list(range(13))
    statuses = [event.data["status"] for event in events if event.kind == "status"]
    assert statuses[0] == "pending" and statuses[-1] == "completed_with_errors"
    assert events[-1].kind == "status" and events[-1].data["final"]
    last_progress = [event for event in events if event.kind == "progress"][-1]
    assert last_progress.data == {"total": 13, "succeeded": 12, "failed": 1, "skipped": 0, "remaining": 0}
    failed = [event for event in events if event.kind == "item" and event.data["outcome"] == "failed"]
    assert [event.data["error_code"] for event in failed] == ["http_error"]

    # Resuming from an event in the middle replays exactly what came after it.
    middle = [event for event in events if event.kind == "item"][5]
    rest = follow(trawl.http, url, middle.id)
    assert items(rest) == items(events)[6:]
    failed_only = follow(trawl.http, url + "?items=failed")
    assert items(failed_only) == [failed[0].data["seq"]]


def test_a_finished_stream_answers_204_and_refusals_are_problems(trawl: Trawl, site: TestSite) -> None:
    accepted = trawl.submit([site.url("/page/1")])
    url = f"{trawl.api}/jobs/{accepted['id']}/events"
    last = follow(trawl.http, url)[-1]

    assert trawl.http.get(url, headers={"Last-Event-ID": last.id}, timeout=30).status_code == 204
    other = session_for("mallory").get(url, timeout=30)
    assert other.status_code == 404 and other.headers["Content-Type"] == "application/problem+json"
    bad_cursor = trawl.http.get(url, headers={"Last-Event-ID": "not-ours"}, timeout=30)
    assert bad_cursor.status_code == 400 and "Last-Event-ID" in bad_cursor.json()["detail"]
    bad_filter = trawl.http.get(url, params={"items": "some"}, timeout=30)
    assert bad_filter.status_code == 400 and "items" in bad_filter.text
    assert requests.get(url, timeout=30).status_code == 401


def test_a_caller_over_the_open_stream_limit_gets_429(trawl: Trawl, site: TestSite) -> None:
    site.released.clear()
    try:
        accepted = trawl.submit([site.url("/held/streams")])
        url = f"{trawl.api}/jobs/{accepted['id']}/events"
        last_id = parse(trawl.http.get(url, timeout=30).text)[0][-1].id
        # Twelve readers ask at once about a job that does not change: ten wait, two are refused at once.
        answers: list[requests.Response] = []
        refusals = threading.Semaphore(0)

        def read() -> None:
            answer = session_for().get(url, headers={"Last-Event-ID": last_id}, timeout=60)
            answers.append(answer)
            if answer.status_code == 429:
                refusals.release()

        readers = [threading.Thread(target=read) for _ in range(12)]
        for reader in readers:
            reader.start()
        assert refusals.acquire(timeout=30) and refusals.acquire(timeout=30)
    finally:
        site.released.set()
    for reader in readers:
        reader.join(timeout=60)

    assert sorted(answer.status_code for answer in answers) == [200] * 10 + [429] * 2
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["Content-Type"] == "application/problem+json"


@pytest.fixture(scope="module")
def stream_only_instance(tmp_path_factory: pytest.TempPathFactory, trawl: Trawl, site: TestSite) -> Iterator[Any]:
    """A second devhost on the same storage account and database that serves HTTP only: its queue worker and
    reconciler are switched off (`AzureWebJobs.<name>.Disabled`), so the first instance does all the work."""
    log_dir: Path = tmp_path_factory.mktemp("stream-only")
    disabled = {f"AzureWebJobs.{name}.Disabled": "true" for name in ("scrape_item", "give_up_on_item", "reconcile_jobs")}
    host = start_devhost(REPO, log_dir / "devhost.log", app_env(trawl.db_url, site, trawl.queue, **disabled))
    yield host
    host.stop()


def test_an_instance_that_never_touched_the_job_streams_every_event(
        trawl: Trawl, site: TestSite, stream_only_instance: Any) -> None:
    accepted = trawl.submit([site.url(f"/slow/cross-{n}") for n in range(6)] + [site.url(f"/page/{n}") for n in range(6)])
    url = f"{stream_only_instance.base_url}/api/jobs/{accepted['id']}/events"

    events = follow(trawl.http, url)

    assert sorted(items(events)) == list(range(12))
    assert events[-1].data["status"] == "succeeded"
    assert "function 'scrape_item' is disabled" in stream_only_instance.logs()
