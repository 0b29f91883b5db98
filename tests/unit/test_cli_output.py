"""Every command as a script uses it: `--json` prints one JSON document (NDJSON for streams), `--quiet` only
what a script goes on with; `results` of a job that has not ended warns that they are partial."""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from trawl_cli.__main__ import main
from trawl_cli.client import Job, JobReply, LogPage, TrawlClient

JOB_ID = "0d7f5d1e-8a8e-4b43-9a3c-4f1f2b3c4d5e"
RETRY_ID = "5e1f8b2a-0c3d-4e5f-8a9b-0c1d2e3f4a5b"
ITEMS = [{"seq": n, "url": f"https://a.test/{n}", "status": "succeeded"} for n in range(3)]
EVENTS: list[dict[str, Any]] = [
    {"id": 1, "at": "2025-01-01T10:00:00+00:00", "actor": "t/o", "event": "submitted", "reason": None,
     "data": {"total": 3}},
    {"id": 2, "at": "2025-01-01T10:00:05+00:00", "actor": "system", "event": "finished", "reason": None,
     "data": {"status": "succeeded"}},
]


def job_data(job_id: str = JOB_ID, status: str = "succeeded", succeeded: int = 3) -> dict[str, Any]:
    final = status not in ("pending", "running")
    return {"id": job_id, "status": status, "created_at": "2025-01-01T10:00:00+00:00",
            "finished_at": "2025-01-01T10:00:05+00:00" if final else None,
            "progress": {"total": 3, "succeeded": succeeded, "failed": 0, "skipped": 0, "pending": 3 - succeeded}}


class FakeApi(TrawlClient):
    """The API of one caller with one job (final unless `status` says otherwise, so nothing polls)."""

    def __init__(self, status: str = "succeeded", succeeded: int = 3) -> None:
        super().__init__("http://api.test", lambda: "token")
        self.job = Job.from_json(job_data(status=status, succeeded=succeeded))

    def submit_job(self, urls: Sequence[str], deadline_seconds: int | None, idempotency_key: str) -> JobReply:
        return JobReply(self.job, None, created=False)  # a replay of the finished job

    def get_job(self, job_id: str) -> JobReply:
        return JobReply(self.job, None)

    def list_jobs(self, statuses: Sequence[str], limit: int, cursor: str | None = None) -> tuple[list[Job], str | None]:
        return [self.job], None

    def cancel_job(self, job_id: str, reason: str | None) -> Job:
        return self.job

    def retry_job(self, job_id: str, include_skipped: bool, idempotency_key: str) -> JobReply:
        return JobReply(Job.from_json(job_data(RETRY_ID)), None)

    def iter_results(self, job_id: str, statuses: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        return iter(ITEMS)

    def export_results(self, job_id: str, export_format: str) -> Iterator[bytes]:
        return iter([b"".join(json.dumps(item).encode() + b"\n" for item in ITEMS)])

    def logs_page(self, job_id: str, after: int) -> LogPage:
        return LogPage([event for event in EVENTS if event["id"] > after], 2, has_more=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        api: FakeApi | None = None) -> tuple[int, str, str]:
    monkeypatch.setattr("trawl_cli.__main__._client", lambda args: api or FakeApi())
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ONE_DOCUMENT = [
    (["status", JOB_ID], job_data()),
    (["list"], {"items": [job_data()], "next_cursor": None}),
    (["submit", "https://a.test/"], job_data()),
    (["cancel", JOB_ID], job_data()),
    (["retry", JOB_ID], job_data(RETRY_ID)),
    (["results", JOB_ID], ITEMS),
]
STREAMS = [
    (["submit", "--wait", "https://a.test/"], [job_data()]),
    (["watch", JOB_ID], [job_data()]),
    (["retry", "--wait", JOB_ID], [job_data(RETRY_ID)]),
    (["results", JOB_ID, "--format", "ndjson"], ITEMS),
    (["logs", JOB_ID], EVENTS),
    (["logs", JOB_ID, "--follow"], EVENTS),
]


def ids(cases: list[tuple[list[str], Any]]) -> list[str]:
    return [" ".join(argv).replace(JOB_ID, "ID") for argv, _ in cases]


@pytest.mark.parametrize(("argv", "document"), ONE_DOCUMENT, ids=ids(ONE_DOCUMENT))
def test_json_prints_one_document(argv: list[str], document: Any, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run(["--json", *argv], capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert json.loads(out) == document


@pytest.mark.parametrize(("argv", "records"), STREAMS, ids=ids(STREAMS))
def test_json_streams_print_one_document_per_line(argv: list[str], records: list[Any],
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run([*argv, "--json"], capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert [json.loads(line) for line in out.splitlines()] == records


def test_json_says_what_results_written_to_a_file_are(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.ndjson"
    code, out, _ = run(["--json", "results", JOB_ID, "--format", "ndjson", "-o", str(target)], capsys, monkeypatch)

    assert code == 0
    assert json.loads(out) == {"job_id": JOB_ID, "format": "ndjson", "output": str(target),
                               "bytes": target.stat().st_size}


QUIET = [
    (["status", JOB_ID], "succeeded\n"),
    (["list"], f"{JOB_ID}\n"),
    (["submit", "https://a.test/"], f"{JOB_ID}\n"),
    (["submit", "--wait", "https://a.test/"], f"{JOB_ID}\n"),
    (["watch", JOB_ID], ""),
    (["cancel", JOB_ID], ""),
    (["retry", "--wait", JOB_ID], f"{RETRY_ID}\n"),
    (["results", JOB_ID, "--format", "ndjson"], "".join(json.dumps(item) + "\n" for item in ITEMS)),
]


@pytest.mark.parametrize(("argv", "printed"), QUIET, ids=ids(QUIET))
def test_quiet_prints_only_what_a_script_goes_on_with(argv: list[str], printed: str,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(["-q", *argv], capsys, monkeypatch) == (0, printed, "")


def test_a_followed_job_in_which_nothing_succeeded_exits_1_in_every_output_mode(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for mode in ("--json", "--quiet", "--verbose"):
        code, _, err = run([mode, "watch", JOB_ID], capsys, monkeypatch, FakeApi("completed_with_errors", 0))
        assert code == 1
        assert err == f"trawl: job {JOB_ID} ended completed_with_errors but none of its 3 URLs succeeded\n"


def test_results_of_a_running_job_come_with_a_warning_that_they_are_partial(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run(["results", JOB_ID], capsys, monkeypatch, FakeApi("running", 1))

    assert code == 0 and json.loads(out) == ITEMS
    assert err == f"trawl: warning: job {JOB_ID} is running (1/3 done): these results are partial\n"
    assert run(["results", JOB_ID], capsys, monkeypatch)[2] == ""  # a final job's results are whole
