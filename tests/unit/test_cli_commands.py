"""The CLI's commands without a server: following a job to its exit code, reading URLs, usage errors, output."""
from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from trawl_cli.__main__ import main
from trawl_cli.client import Job, JobReply, TrawlClient
from trawl_cli.errors import JobUnsuccessful, UsageError
from trawl_cli.jobs import follow_job, read_urls
from trawl_cli.render import PlainProgress, RateMeter, Terminal, job_summary

JOB_ID = "0d7f5d1e-8a8e-4b43-9a3c-4f1f2b3c4d5e"


def job(status: str = "running", succeeded: int = 0, failed: int = 0, skipped: int = 0, total: int = 10,
        **extra: Any) -> Job:
    finished = "2025-01-01T10:00:12.5+00:00" if status not in ("pending", "running") else None
    return Job.from_json({"id": JOB_ID, "status": status, "created_at": "2025-01-01T10:00:00+00:00",
                          "finished_at": finished, "progress": {"total": total, "succeeded": succeeded,
                                                                "failed": failed, "skipped": skipped}, **extra})


class ScriptedJobClient(TrawlClient):
    """A client whose `get_job` answers from a script of replies."""

    def __init__(self, replies: list[JobReply]) -> None:
        super().__init__("http://api.test", lambda: "token")
        self.replies: Iterator[JobReply] = iter(replies)

    def get_job(self, job_id: str) -> JobReply:
        return next(self.replies)


def follow(replies: list[JobReply]) -> tuple[list[float], list[str], int | Exception]:
    first, *rest = replies
    slept: list[float] = []
    out = io.StringIO()
    try:
        outcome: int | Exception = follow_job(ScriptedJobClient(rest), Terminal(out), first, sleep=slept.append)
    except JobUnsuccessful as exc:
        outcome = exc
    return slept, out.getvalue().splitlines(), outcome


def test_following_a_job_polls_no_sooner_than_retry_after_and_backs_off_while_it_stalls() -> None:
    slept, lines, outcome = follow([
        JobReply(job("pending"), retry_after=2),
        JobReply(job("running", 3), retry_after=2),
        JobReply(job("running", 3), retry_after=None),
        JobReply(job("running", 3), retry_after=None),
        JobReply(job("running", 3), retry_after=5),
        JobReply(job("succeeded", 10), retry_after=None),
    ])

    assert slept == [2, 2, 1.5, 2.25, 5]
    assert outcome == 0
    assert [line.split(":")[0] for line in lines] == [f"job {JOB_ID} pending", f"job {JOB_ID} running",
                                                       f"job {JOB_ID} succeeded", f"job {JOB_ID} succeeded"]
    assert lines[-1] == f"job {JOB_ID} succeeded: 10 succeeded, 0 failed, 0 skipped of 10 in 12.5s"


def test_a_job_completed_with_errors_exits_0_and_says_so() -> None:
    _, lines, outcome = follow([JobReply(job("completed_with_errors", 8, 2), None)])

    assert outcome == 0
    assert lines[-1] == (f"job {JOB_ID} completed with errors: 8 succeeded, 2 failed, 0 skipped of 10 in 12.5s; "
                         f"some URLs failed, see `trawl results {JOB_ID}`")


@pytest.mark.parametrize("status", ["failed", "cancelled", "timed_out"])
def test_a_job_that_ends_unsuccessfully_exits_1(status: str) -> None:
    _, lines, outcome = follow([JobReply(job("running", 2), 2), JobReply(job(status, 2, skipped=8), None)])

    assert isinstance(outcome, JobUnsuccessful) and outcome.exit_code == 1
    assert str(outcome) == f"job {JOB_ID} ended {status}"
    assert lines[-1].startswith(f"job {JOB_ID} {status.replace('_', ' ')}: 2 succeeded, 0 failed, 8 skipped of 10")


def test_a_cancelled_summary_gives_the_reason() -> None:
    cancelled = job("cancelled", 1, skipped=9, cancellation={"requested_at": "x", "requested_by": "a/b",
                                                             "reason": "wrong list"})
    assert job_summary(cancelled).endswith("; reason: wrong list")


def test_plain_progress_prints_a_line_per_change_with_rate_and_eta() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = PlainProgress(lines.append, RateMeter(clock=lambda: now[0]))

    for seconds, snapshot in [(0, job("running", 2)), (2, job("running", 2)), (4, job("running", 6)),
                              (5, job("succeeded", 10))]:
        now[0] = seconds
        progress.update(snapshot)

    assert lines == [
        f"job {JOB_ID} running: 2/10 done (2 succeeded, 0 failed, 0 skipped of 10), -/s, ETA ?",
        f"job {JOB_ID} running: 6/10 done (6 succeeded, 0 failed, 0 skipped of 10), 1.0/s, ETA 4.0s",
        f"job {JOB_ID} succeeded: 10/10 done (10 succeeded, 0 failed, 0 skipped of 10), 1.6/s, ETA 0s",
    ]


def test_urls_come_from_arguments_and_stdin_without_blanks_or_comments() -> None:
    stdin = io.StringIO("# a list\nhttps://b.test/\n\n   https://c.test/  \n")
    assert read_urls(["https://a.test/", "-"], None, stdin) == ["https://a.test/", "https://b.test/", "https://c.test/"]
    assert read_urls([], "-", io.StringIO("https://d.test/\n")) == ["https://d.test/"]
    with pytest.raises(UsageError, match="no URLs given"):
        read_urls([], None, io.StringIO("# nothing\n"))


def test_an_unreadable_url_file_is_a_usage_error(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match=r"cannot read URLs from .*missing.txt: No such file or directory"):
        read_urls([], str(tmp_path / "missing.txt"), io.StringIO())


@pytest.mark.parametrize("argv", [
    ["list", "--limit", "0"],
    ["submit", "--deadline", "soon", "https://a.test/"],
    ["watch"],
    ["--token", "t", "--scope", "s", "list"],
    ["--api-url", "127.0.0.1:7071", "list"],
])
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAWL_TOKEN", "t")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("trawl: ")
