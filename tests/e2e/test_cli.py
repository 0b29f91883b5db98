"""The `trawl` CLI as a user runs it: a subprocess `python -m trawl_cli` against the whole app on devhost, and
the `trawl` command that `pip install .` gives."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.devhost.conftest import REPO, free_port
from tests.e2e.conftest import Trawl, dev_token
from tests.e2e.site import TestSite
from trawl_cli import __version__

pytestmark = pytest.mark.e2e

JOB_URLS = 100
CREDENTIAL_VARIABLES = ("TRAWL_TOKEN", "TRAWL_API_SCOPE", "TRAWL_API_URL")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def cli_command(api_url: str, *args: str, token: str | None = None) -> list[str]:
    return [sys.executable, "-m", "trawl_cli", "--api-url", api_url, "--token", token or dev_token(), *args]


def cli_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CREDENTIAL_VARIABLES}
    return {**env, "PYTHONUNBUFFERED": "1"}


def run_cli(command: list[str], stdin: str | None = None, timeout: float = 60) -> Run:
    done = subprocess.run(command, cwd=REPO, env=cli_env(), input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def trawl_cli(trawl: Trawl, *args: str, stdin: str | None = None, token: str | None = None) -> Run:
    return run_cli(cli_command(trawl.host.base_url, *args, token=token), stdin)


def assert_one_line_error(run: Run, code: int, pattern: str) -> None:
    assert run.code == code, run
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("trawl: "), run.stderr
    assert re.search(pattern, run.stderr), run.stderr
    assert "Traceback" not in run.stderr


@dataclass
class FinishedJob:
    id: str
    submit: Run


@pytest.fixture(scope="module")
def finished_job(trawl: Trawl, site: TestSite, tmp_path_factory: pytest.TempPathFactory) -> FinishedJob:
    """A 100-URL job of the test site's pages, submitted from a file with `submit --wait`."""
    urls = tmp_path_factory.mktemp("cli") / "urls.txt"
    urls.write_text("# pages of the test site\n" + "".join(site.url(f"/page/{n}") + "\n" for n in range(JOB_URLS)))
    run = trawl_cli(trawl, "submit", "--file", str(urls), "--deadline", "300", "--wait")
    match = re.match(r"job ([0-9a-f-]{36}) submitted: 100 URLs\n", run.stdout)
    assert match, run
    return FinishedJob(match[1], run)


def test_submit_wait_shows_progress_then_a_summary_and_exits_0(trawl: Trawl, finished_job: FinishedJob) -> None:
    run, job_id = finished_job.submit, finished_job.id

    assert run.code == 0, run
    lines = run.stdout.splitlines()
    progress = [line for line in lines[1:-1] if line.startswith(f"job {job_id} ")]
    assert progress and progress == lines[1:-1], run.stdout
    assert all(re.fullmatch(rf"job {job_id} (pending|running|succeeded): \d+/100 done \(\d+ succeeded, \d+ failed, "
                            r"\d+ skipped of 100\), (-|[\d.]+)/s, ETA \S+", line) for line in progress), progress
    assert progress[-1].startswith(f"job {job_id} succeeded: 100/100 done (100 succeeded, 0 failed, 0 skipped")
    assert re.fullmatch(rf"job {job_id} succeeded: 100 succeeded, 0 failed, 0 skipped of 100 in [\dms.]+", lines[-1])
    assert run.stderr == ""
    assert trawl.job(job_id)["options"]["deadline_seconds"] == 300


def test_on_a_terminal_the_progress_is_a_live_bar(trawl: Trawl, finished_job: FinishedJob) -> None:
    controller, terminal = pty.openpty()
    env = {**cli_env(), "TERM": "xterm-256color", "COLUMNS": "200"}
    watcher = subprocess.Popen(cli_command(trawl.host.base_url, "watch", finished_job.id), cwd=REPO, env=env,
                               stdout=terminal, stderr=subprocess.PIPE)
    os.close(terminal)
    output = b""
    with contextlib.suppress(OSError):  # EIO once the CLI has exited and closed the terminal
        while chunk := os.read(controller, 65536):
            output += chunk
    os.close(controller)

    assert watcher.wait(timeout=30) == 0
    screen = output.decode()
    assert "\x1b[" in screen and "━" in screen, screen  # drawn with escape codes and bar characters
    assert "100/100" in screen and "100 succeeded, 0 failed, 0 skipped of 100" in screen
    assert f"job {finished_job.id} succeeded: 100 succeeded" in screen


def test_list_shows_the_job_with_its_progress(trawl: Trawl, finished_job: FinishedJob) -> None:
    run = trawl_cli(trawl, "list", "--status", "succeeded", "--status", "completed_with_errors")
    assert run.code == 0, run
    header, *rows = run.stdout.splitlines()
    assert header.split() == ["id", "status", "progress", "created"]
    assert any(row.split()[:3] == [finished_job.id, "succeeded", "100/100"] for row in rows), run.stdout
    assert trawl_cli(trawl, "list", "--status", "running").stdout.count(finished_job.id) == 0


def test_list_follows_cursors_with_all(trawl: Trawl, site: TestSite, finished_job: FinishedJob) -> None:
    for n in range(2):
        trawl.submit([site.url(f"/page/list-{n}")])
    one_page = trawl_cli(trawl, "list", "--limit", "1")
    every_page = trawl_cli(trawl, "list", "--limit", "1", "--all")

    assert len(one_page.stdout.splitlines()) == 2 and "--all" in one_page.stderr
    assert finished_job.id in every_page.stdout and len(every_page.stdout.splitlines()) >= 4, every_page
    assert every_page.stderr == ""


def test_results_as_csv_json_and_ndjson(trawl: Trawl, finished_job: FinishedJob, tmp_path: Path) -> None:
    target = tmp_path / "f.csv"
    run = trawl_cli(trawl, "results", finished_job.id, "--format", "csv", "--output", str(target))

    assert run.code == 0, run
    assert run.stdout.startswith(f"wrote the csv results of job {finished_job.id} to {target}")
    rows = list(csv.DictReader(target.open(newline="", encoding="utf-8")))
    assert [int(row["seq"]) for row in rows] == list(range(JOB_URLS))
    assert {row["status"] for row in rows} == {"succeeded"} and rows[7]["title"] == "Page 7"
    assert [p.name for p in tmp_path.iterdir()] == ["f.csv"]  # no temporary file left behind

    as_json = json.loads(trawl_cli(trawl, "results", finished_job.id).stdout)
    assert [item["seq"] for item in as_json] == list(range(JOB_URLS)) and as_json[3]["result"]["title"] == "Page 3"
    as_ndjson = trawl_cli(trawl, "results", finished_job.id, "--format", "ndjson").stdout.splitlines()
    assert [json.loads(line) for line in as_ndjson] == as_json


def test_logs_show_the_job_history_oldest_first(trawl: Trawl, finished_job: FinishedJob) -> None:
    run = trawl_cli(trawl, "logs", finished_job.id)

    assert run.code == 0, run
    events = [line.split()[2] for line in run.stdout.splitlines()]
    assert events == ["submitted", "started", "finished"], run.stdout
    assert "total=100" in run.stdout.splitlines()[0]


def test_status_shows_key_fields_and_raw_json(trawl: Trawl, finished_job: FinishedJob) -> None:
    run = trawl_cli(trawl, "status", finished_job.id)
    fields = dict(line.split(None, 1) for line in run.stdout.splitlines() if not line.startswith(("retry", "retried")))

    assert (fields["id"], fields["status"]) == (finished_job.id, "succeeded")
    assert fields["progress"] == "100/100 done: 100 succeeded, 0 failed, 0 skipped, 0 pending"
    assert json.loads(trawl_cli(trawl, "status", finished_job.id, "--json").stdout) == trawl.job(finished_job.id)


def test_watching_a_job_that_gets_cancelled_exits_1(trawl: Trawl, site: TestSite) -> None:
    job_id = trawl.submit([site.url(f"/slow/cli-cancel-{n}") for n in range(40)])["id"]
    watcher = subprocess.Popen(cli_command(trawl.host.base_url, "watch", job_id), cwd=REPO, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        first_line = watcher.stdout.readline()  # it is watching
        assert first_line.startswith(f"job {job_id} "), first_line
        trawl.wait(job_id, lambda job: job["status"] == "running")
        cancel = trawl.http.delete(f"{trawl.api}/jobs/{job_id}", json={"reason": "cli test"}, timeout=30)
        assert cancel.status_code == 202
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        watcher.kill()

    assert watcher.returncode == 1, (stdout, stderr)
    assert re.search(rf"^job {job_id} cancelled: \d+ succeeded, 0 failed, [1-9]\d* skipped of 40 in \S+; "
                     r"reason: cli test$", stdout, re.M), stdout
    assert stderr == f"trawl: job {job_id} ended cancelled\n"
    logs = trawl_cli(trawl, "logs", job_id).stdout
    assert 'cancel_requested  reason="cli test"' in logs and logs.splitlines()[-1].split()[2] == "cancelled"


def test_cancel_and_logs_follow(trawl: Trawl, site: TestSite) -> None:
    slow = trawl.submit([site.url(f"/slow/cli-follow-{n}") for n in range(3)])["id"]
    followed = trawl_cli(trawl, "logs", slow, "--follow")
    assert followed.code == 0, followed
    assert [line.split()[2] for line in followed.stdout.splitlines()] == ["submitted", "started", "finished"]

    pending = trawl.submit([site.url(f"/hang/cli-cancel-{n}") for n in range(3)])["id"]
    cancelled = trawl_cli(trawl, "cancel", pending, "--reason", "not needed")
    assert cancelled.code == 0 and cancelled.stdout.startswith(f"job {pending}: "), cancelled
    trawl.wait_final(pending)
    assert_one_line_error(trawl_cli(trawl, "cancel", pending), 3, r"^trawl: 409 Conflict: ")


def test_an_idempotency_key_submits_once_and_retry_makes_a_linked_job(trawl: Trawl, site: TestSite) -> None:
    key = f"cli-{uuid.uuid4()}"
    urls = f"{site.url('/page/1')}\n\n{site.url('/always500/cli')}\n"
    first = trawl_cli(trawl, "submit", "-", "--idempotency-key", key, "--wait", stdin=urls)
    again = trawl_cli(trawl, "submit", "-", "--idempotency-key", key, "--verbose", stdin=urls)

    assert first.code == 0, first
    job_id = first.stdout.split()[1]
    assert "completed with errors: 1 succeeded, 1 failed, 0 skipped of 2" in first.stdout.splitlines()[-1]
    # While the last item waits between attempts, the progress says so rather than a rate's ETA.
    assert re.search(r", 1 item retrying, next attempt (in ~\d+s|due now)$", first.stdout, re.M), first.stdout
    assert again.stdout == f"job {job_id} submitted: 2 URLs (already submitted with this idempotency key)\n"
    assert f"trawl: idempotency key {key}\n" in again.stderr and "Bearer" not in again.stderr
    retried = trawl_cli(trawl, "retry", job_id)
    assert retried.code == 0, retried
    assert re.fullmatch(rf"job [0-9a-f-]{{36}} submitted: retries 1 URLs of job {job_id}\n", retried.stdout)


def test_retry_wait_follows_the_new_job_and_a_job_in_which_nothing_succeeded_exits_1(trawl: Trawl,
                                                                                      site: TestSite) -> None:
    failed = trawl.wait_final(trawl.submit([site.url("/always500/cli-retry-wait")])["id"])
    assert failed["status"] == "completed_with_errors"

    run = trawl_cli(trawl, "retry", failed["id"], "--wait")

    assert run.code == 1, run
    retry_id = run.stdout.split()[1]
    assert run.stdout.splitlines()[-1].startswith(f"job {retry_id} completed with errors: 0 succeeded, 1 failed")
    assert run.stdout.splitlines()[-1].endswith(f"; no URL succeeded, see `trawl results {retry_id}`")
    assert run.stderr == f"trawl: job {retry_id} ended completed_with_errors but none of its 1 URLs succeeded\n"
    assert trawl.job(retry_id)["parent_job_id"] == failed["id"]


def test_json_output_on_every_command_is_one_document_or_one_per_line(trawl: Trawl, finished_job: FinishedJob) -> None:
    job_id = finished_job.id
    assert json.loads(trawl_cli(trawl, "--json", "status", job_id).stdout) == trawl.job(job_id)
    listed = json.loads(trawl_cli(trawl, "list", "--json", "--status", "succeeded", "--all").stdout)
    assert job_id in [job["id"] for job in listed["items"]] and listed["next_cursor"] is None
    watched = [json.loads(line) for line in trawl_cli(trawl, "watch", job_id, "--json").stdout.splitlines()]
    assert watched == [trawl.job(job_id)]
    events = [json.loads(line) for line in trawl_cli(trawl, "logs", job_id, "--json").stdout.splitlines()]
    assert [event["event"] for event in events] == ["submitted", "started", "finished"]
    assert len(json.loads(trawl_cli(trawl, "results", job_id, "--json").stdout)) == JOB_URLS
    assert trawl_cli(trawl, "status", job_id, "--quiet").stdout == "succeeded\n"


def test_results_of_a_running_job_warn_that_they_are_partial(trawl: Trawl, site: TestSite) -> None:
    job_id = trawl.submit([site.url(f"/slow/cli-partial-{n}") for n in range(20)])["id"]
    try:
        run = trawl_cli(trawl, "results", job_id, "--format", "ndjson")
    finally:
        trawl.http.delete(f"{trawl.api}/jobs/{job_id}", json={"reason": "cli test"}, timeout=30)

    assert run.code == 0, run
    assert re.fullmatch(rf"trawl: warning: job {job_id} is (pending|running) \(\d+/20 done\): these results are "
                        r"partial\n", run.stderr), run.stderr
    assert len(run.stdout.splitlines()) == 20


def test_the_api_s_url_errors_name_the_line_of_the_file(trawl: Trawl, site: TestSite, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# two good, one bad\n{site.url('/page/1')}\n\nhttps://example.com:8080/\n{site.url('/page/2')}\n")

    run = trawl_cli(trawl, "submit", "--file", str(urls))

    where = re.escape(f"{urls} line 4")
    assert_one_line_error(run, 3, rf"^trawl: 422 Request is not valid: .*{where}: uses port 8080; ")


def test_a_dev_user_gets_a_token_minted_in_process(trawl: Trawl, finished_job: FinishedJob) -> None:
    mine = run_cli([sys.executable, "-m", "trawl_cli", "status", finished_job.id, "--api-url", trawl.host.base_url,
                    "--dev-user", trawl.user])
    theirs = run_cli([sys.executable, "-m", "trawl_cli", "--api-url", trawl.host.base_url, "--dev-user", "mallory",
                      "status", finished_job.id])

    assert mine.code == 0 and re.search(r"^status +succeeded$", mine.stdout, re.M), mine
    assert_one_line_error(theirs, 3, rf"^trawl: 404 Not found: job {finished_job.id} not found$")


def test_api_errors_exit_3_with_one_line(trawl: Trawl) -> None:
    unknown = str(uuid.uuid4())
    assert_one_line_error(trawl_cli(trawl, "status", unknown), 3, rf"^trawl: 404 Not found: job {unknown} not found$")
    assert_one_line_error(trawl_cli(trawl, "watch", unknown), 3, r"^trawl: 404 ")
    assert_one_line_error(trawl_cli(trawl, "list", token="not-a-token"), 3, r"^trawl: 401 Authentication required: ")
    expired = dev_token(minutes=-5)
    assert_one_line_error(trawl_cli(trawl, "list", token=expired), 3, r"^trawl: 401 ")
    assert_one_line_error(trawl_cli(trawl, "submit", "ftp://nope"), 3,
                          r"^trawl: 422 Request is not valid: .*argument 1: is not an absolute http\(s\) URL")


def test_network_errors_exit_3_with_one_line() -> None:
    run = run_cli(cli_command(f"http://127.0.0.1:{free_port()}", "status", str(uuid.uuid4())))
    assert_one_line_error(run, 3, r"^trawl: cannot reach http://127\.0\.0\.1:\d+: Connection refused")


@pytest.mark.parametrize("args", [
    [],
    ["submit"],
    ["list", "--status", "finished"],
    ["list", "--limit", "1000"],
    ["results", "x", "--format", "xml"],
    ["--dev-user", "bob", "status", "x"],
    ["--api-url", "ftp://host", "status", "x"],
    ["frobnicate"],
], ids=lambda args: " ".join(args) or "no-command")
def test_usage_errors_exit_2_with_one_line(args: list[str]) -> None:
    run = run_cli([sys.executable, "-m", "trawl_cli", "--token", "t", *args])
    assert_one_line_error(run, 2, r"^trawl: ")


def test_dev_tokens_are_refused_for_remote_apis() -> None:
    run = run_cli([sys.executable, "-m", "trawl_cli", "--api-url", "https://trawl.example.com", "--dev-user", "bob",
                   "status", "x"])
    assert_one_line_error(run, 2, r"only works against a devhost on this machine")


def test_pip_install_gives_a_trawl_command_that_needs_nothing_of_the_repo(trawl: Trawl, finished_job: FinishedJob,
                                                                          tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so that building leaves nothing in the repository
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copytree(REPO / "trawl_cli", source / "trawl_cli", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = tmp_path.glob("trawl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"trawl_cli", f"trawl-{__version__}.dist-info"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    trawl_command = str(venv / "bin" / "trawl")
    env = {**cli_env(), "TRAWL_TOKEN": dev_token()}

    def installed(*args: str) -> Run:
        done = subprocess.run([trawl_command, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        return Run(done.returncode, done.stdout, done.stderr)

    assert installed("--help").stdout.startswith("usage: trawl ")
    assert installed("--version").stdout == f"trawl {__version__}\n"
    status = installed("--api-url", trawl.host.base_url, "status", finished_job.id, "--quiet")
    assert (status.code, status.stdout) == (0, "succeeded\n"), status
    no_devhost = installed("--dev-user", "alice", "list")
    assert_one_line_error(no_devhost, 2, "--dev-user needs the Trawl repository's devhost")
