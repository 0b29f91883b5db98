"""The CLI's progress display tells the truth: items waiting for a retry instead of a rate's "ETA 0.1s",
and the job's elapsed time as its summary counts it."""
from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from trawl_cli.client import Job, LogPage, TrawlClient
from trawl_cli.render import PlainProgress, RateMeter, RichProgress, job_summary
from trawl_cli.retries import NO_RETRIES, RetryWatch

JOB_ID = "0d7f5d1e-8a8e-4b43-9a3c-4f1f2b3c4d5e"
T0 = datetime(2025, 1, 1, 10, 0, tzinfo=UTC).timestamp()


def job(status: str, succeeded: int, failed: int = 0, total: int = 10) -> Job:
    finished = "2025-01-01T10:00:12.5+00:00" if status not in ("pending", "running") else None
    return Job.from_json({"id": JOB_ID, "status": status, "created_at": "2025-01-01T10:00:00+00:00",
                          "finished_at": finished, "progress": {"total": total, "succeeded": succeeded,
                                                                "failed": failed, "skipped": 0}})


class RetryingJobClient(TrawlClient):
    """A job's log and pending items as the test sets them; counts the calls for pending items."""

    def __init__(self) -> None:
        super().__init__("http://api.test", lambda: "token")
        self.events: list[dict[str, Any]] = []
        self.pending: dict[int, int] = {}  # seq -> attempts
        self.pending_calls = 0

    def retried(self, seq: int, attempt: int, seconds_after_t0: float) -> None:
        """Log that attempt `attempt` of item `seq` failed, as the worker does, and keep the item pending."""
        at = datetime.fromtimestamp(T0 + seconds_after_t0, UTC).isoformat()
        self.events.append({"id": len(self.events) + 1, "at": at, "actor": "system", "event": "item_retried",
                            "reason": "HTTP 503", "data": {"seq": seq, "attempt": attempt, "code": "http_error",
                                                           "http_status": 503}})
        self.pending[seq] = attempt

    def logs_page(self, job_id: str, after: int) -> LogPage:
        page = [event for event in self.events if event["id"] > after][:2]  # small pages: the watch follows them
        return LogPage(page, page[-1]["id"] if page else after, has_more=bool(page) and page[-1] != self.events[-1])

    def iter_results(self, job_id: str, statuses: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        assert list(statuses) == ["pending"]
        self.pending_calls += 1
        return iter([{"seq": seq, "status": "pending", "attempts": attempts} for seq, attempts in self.pending.items()])


class PlainScreen:
    """Plain progress lines of a job polled at chosen moments (seconds after T0)."""

    def __init__(self, client: RetryingJobClient) -> None:
        self.now = T0
        self.lines: list[str] = []
        self.display = PlainProgress(self.lines.append, RetryWatch(client).observe, RateMeter(clock=lambda: self.now),
                                     clock=lambda: self.now)

    def poll(self, seconds: float, snapshot: Job) -> None:
        self.now = T0 + seconds
        self.display.update(snapshot)


def test_while_the_remaining_items_wait_for_retries_the_display_says_so_instead_of_a_rate_eta() -> None:
    client = RetryingJobClient()
    screen = PlainScreen(client)
    screen.poll(0, job("running", 3))
    assert client.pending_calls == 0  # no retry logged yet: no need to ask which items wait

    client.retried(7, 1, 1)
    client.retried(8, 1, 2)
    client.retried(9, 1, 0.5)
    client.retried(9, 2, 1.5)  # its second attempt failed too: the third waits 10 s
    screen.poll(2, job("running", 6, 1))
    del client.pending[7]  # it succeeded on its second attempt: no event, but it is no longer pending
    screen.poll(8, job("running", 7, 1))
    screen.poll(9, job("running", 7, 1))
    screen.poll(21, job("completed_with_errors", 9, 1))

    running = f"job {JOB_ID} running: "
    assert screen.lines == [
        running + "3/10 done (3 succeeded, 0 failed, 0 skipped of 10), -/s, ETA ?",
        running + "7/10 done (6 succeeded, 1 failed, 0 skipped of 10), 2.0/s, 3 items retrying, next attempt in ~4s",
        running + "8/10 done (7 succeeded, 1 failed, 0 skipped of 10), 0.6/s, 2 items retrying, next attempt due now",
        f"job {JOB_ID} completed_with_errors: 10/10 done (9 succeeded, 1 failed, 0 skipped of 10), 0.3/s, ETA 0s",
    ]


def test_with_some_items_retrying_the_eta_is_no_sooner_than_the_last_of_them() -> None:
    client = RetryingJobClient()
    client.retried(9, 3, 0)  # its fourth attempt is due 20 s later by the service's default schedule
    screen = PlainScreen(client)
    screen.poll(0, job("running", 2))
    screen.poll(4, job("running", 6))

    assert [line.split("), ")[1] for line in screen.lines] == [
        "-/s, ETA 20.0s, 1 item retrying, next attempt in ~20s",
        "1.0/s, ETA 16.0s, 1 item retrying, next attempt in ~16s",
    ]


def test_the_live_bar_counts_the_job_s_time_as_its_summary_does() -> None:
    out = io.StringIO()
    display = RichProgress(Console(file=out, force_terminal=True, width=200), job("running", 0),
                           lambda _: NO_RETRIES)
    finished = job("succeeded", 10)
    display.update(finished)
    display.close()

    assert job_summary(finished).endswith(" in 12.5s")
    last_frame = out.getvalue().rsplit("\r", 1)[-1]
    assert "10/10" in last_frame and "ETA 0s" in last_frame and "12.5s" in last_frame, last_frame
