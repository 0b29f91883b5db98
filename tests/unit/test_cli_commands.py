"""The CLI's commands without a server: following a job to its exit code, reading URLs, usage errors, output."""
from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from trawl_cli.__main__ import main
from trawl_cli.client import Job, JobReply, LogPage, TrawlClient
from trawl_cli.errors import ApiError, JobUnsuccessful, UsageError
from trawl_cli.jobs import follow_job, read_urls
from trawl_cli.render import PlainProgress, RateMeter, Terminal, job_summary
from trawl_cli.retries import NO_RETRIES

JOB_ID = "0d7f5d1e-8a8e-4b43-9a3c-4f1f2b3c4d5e"


def job(status: str = "running", succeeded: int = 0, failed: int = 0, skipped: int = 0, total: int = 10,
        **extra: Any) -> Job:
    finished = "2025-01-01T10:00:12.5+00:00" if status not in ("pending", "running") else None
    return Job.from_json({"id": JOB_ID, "status": status, "created_at": "2025-01-01T10:00:00+00:00",
                          "finished_at": finished, "progress": {"total": total, "succeeded": succeeded,
                                                                "failed": failed, "skipped": skipped}, **extra})


class ScriptedJobClient(TrawlClient):
    """A client whose `get_job` answers from a script of replies, and whose job log is empty."""

    def __init__(self, replies: list[JobReply]) -> None:
        super().__init__("http://api.test", lambda: "token")
        self.replies: Iterator[JobReply] = iter(replies)

    def get_job(self, job_id: str) -> JobReply:
        return next(self.replies)

    def logs_page(self, job_id: str, after: int) -> LogPage:
        return LogPage([], after, has_more=False)


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


@pytest.mark.parametrize(("status", "failed", "skipped"), [("completed_with_errors", 10, 0), ("succeeded", 0, 10)])
def test_a_job_in_which_nothing_succeeded_exits_1_and_says_so(status: str, failed: int, skipped: int) -> None:
    _, lines, outcome = follow([JobReply(job(status, 0, failed, skipped), None)])

    assert isinstance(outcome, JobUnsuccessful) and outcome.exit_code == 1
    assert str(outcome) == f"job {JOB_ID} ended {status} but none of its 10 URLs succeeded"
    assert lines[-1].endswith(f"of 10 in 12.5s; no URL succeeded, see `trawl results {JOB_ID}`")


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
    progress = PlainProgress(lines.append, lambda _: NO_RETRIES, RateMeter(clock=lambda: now[0]))

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
    found = read_urls(["https://a.test/", "-"], None, stdin)
    assert found.urls == ["https://a.test/", "https://b.test/", "https://c.test/"]
    assert found.origins == ["argument 1", "stdin line 2", "stdin line 4"]
    assert read_urls([], "-", io.StringIO("https://d.test/\n")).urls == ["https://d.test/"]
    with pytest.raises(UsageError, match="no URLs given"):
        read_urls([], None, io.StringIO("# nothing\n"))


def test_an_unreadable_url_file_is_a_usage_error(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match=r"cannot read URLs from .*missing.txt: No such file or directory"):
        read_urls([], str(tmp_path / "missing.txt"), io.StringIO())


def test_a_url_file_may_start_with_a_byte_order_mark_and_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_bytes(b"\xef\xbb\xbfhttps://a.test/\r\n# caf\xc3\xa9\r\nhttps://b.test/\r\n")
    assert read_urls([], str(urls), io.StringIO()).urls == ["https://a.test/", "https://b.test/"]

    urls.write_bytes(b"https://a.test/\n# caf\xc3\xa9\nhttps://b.test/caf\xe9\n")
    with pytest.raises(UsageError, match=r"^cannot read URLs from .*urls.txt: line 3 is not UTF-8 text$"):
        read_urls([], str(urls), io.StringIO())


class RefusingClient(TrawlClient):
    """Answers a submission as the API does when some URLs are not valid: 422, each error at its index."""

    def __init__(self, bad: dict[int, str]) -> None:
        super().__init__("http://api.test", lambda: "token")
        self.bad = bad

    def submit_job(self, urls: Sequence[str], deadline_seconds: int | None, idempotency_key: str) -> JobReply:
        errors = [{"loc": ["urls", index], "msg": msg, "type": "url_port_not_allowed"}
                  for index, msg in self.bad.items()]
        raise ApiError(422, "Request is not valid", "", {"title": "Request is not valid", "status": 422,
                                                           "errors": errors})


def test_the_api_s_errors_about_urls_from_a_file_name_their_line_numbers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("# my list\nhttps://a.test/\n\nhttps://a.test:8080/\nhttps://a.test:0/\n")
    refusing = RefusingClient({1: "uses port 8080", 2: "uses port 0"})
    monkeypatch.setattr("trawl_cli.__main__._client", lambda args: refusing)

    assert main(["submit", "--file", str(urls)]) == 3
    assert capsys.readouterr().err == (f"trawl: 422 Request is not valid: {urls} line 4: uses port 8080; "
                                       f"{urls} line 5: uses port 0\n")


@pytest.mark.parametrize("argv", [
    ["list", "--limit", "0"],
    ["submit", "--deadline", "soon", "https://a.test/"],
    ["watch"],
    ["--token", "t", "--scope", "s", "list"],
    ["--api-url", "127.0.0.1:7071", "list"],
    ["--json", "--quiet", "list"],
    ["results", "x", "--json", "--format", "csv"],
])
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAWL_TOKEN", "t")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("trawl: ")
