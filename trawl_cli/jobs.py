"""The job commands: `submit`, `status`, `list`, `watch`, `cancel`, `retry`, and following a job to its end."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from trawl_cli.client import Backoff, EventSource, Job, JobEvent, JobReply, TrawlClient, problem_error
from trawl_cli.errors import ApiError, Interrupted, JobUnsuccessful, NoEventStream, UnexpectedResponse, UsageError
from trawl_cli.render import OutputMode, Terminal, job_details, job_summary, local_time, progress_cell
from trawl_cli.retries import RetryWatch

JOB_STATUSES = ("pending", "running", "succeeded", "completed_with_errors", "failed", "cancelled", "timed_out")
# A finished job with some failed URLs still did its work: these outcomes, or no URL succeeded, fail a follow.
UNSUCCESSFUL = frozenset({"failed", "cancelled", "timed_out"})
MAX_LIST_PAGE = 100
PROGRESS_COUNTS = ("total", "succeeded", "failed", "skipped")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    submit = commands.add_parser("submit", parents=[common], help="submit a job of URLs",
                                 description="Submit a job: URLs as arguments, one per line in --file, or - for stdin "
                                             "(blank lines and lines starting with # are ignored).")
    submit.add_argument("urls", nargs="*", metavar="URL", help="a URL to scrape, or - to read URLs from stdin")
    submit.add_argument("--file", "-f", metavar="FILE", help="read URLs from FILE, one per line (- for stdin)")
    submit.add_argument("--deadline", type=positive_int, metavar="SECONDS",
                        help="seconds from submission until the job ends timed_out (default: the service's)")
    submit.add_argument("--wait", action="store_true", help="follow the job's progress until it ends")
    submit.add_argument("--idempotency-key", metavar="KEY",
                        help="resubmitting with the same key returns the same job (default: a new key per run)")
    submit.set_defaults(run=run_submit)

    status = commands.add_parser("status", parents=[common], help="show a job")
    status.add_argument("job_id", metavar="ID")
    status.set_defaults(run=run_status)

    listing = commands.add_parser("list", parents=[common], help="list your jobs, newest first")
    listing.add_argument("--status", action="append", choices=JOB_STATUSES, default=[],
                         help="only jobs in this status (repeatable)")
    listing.add_argument("--limit", type=page_size, default=20, metavar="N", help="jobs per page, 1-100 (default 20)")
    listing.add_argument("--all", action="store_true", help="follow the pages to the last job")
    listing.set_defaults(run=run_list)

    watch = commands.add_parser("watch", parents=[common], help="follow a job's progress until it ends")
    watch.add_argument("job_id", metavar="ID")
    watch.set_defaults(run=run_watch)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("job_id", metavar="ID")
    cancel.add_argument("--reason", metavar="TEXT", help="why, kept in the job's audit log")
    cancel.set_defaults(run=run_cancel)

    retry = commands.add_parser("retry", parents=[common], help="retry a finished job's failed URLs in a new job")
    retry.add_argument("job_id", metavar="ID")
    retry.add_argument("--include-skipped", action="store_true", help="retry skipped URLs too")
    retry.add_argument("--wait", action="store_true", help="follow the new job's progress until it ends")
    retry.set_defaults(run=run_retry)


@dataclass
class UrlList:
    """URLs to submit, each with where it was read (`urls.txt line 7`), to name it in the API's errors."""

    urls: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    def add(self, url: str, origin: str) -> None:
        self.urls.append(url)
        self.origins.append(origin)

    def locate(self, error: ApiError) -> ApiError:
        """`error` with its `urls.N` request errors named by where URL N was read."""
        errors = error.problem.get("errors")
        if not isinstance(errors, list):
            return error
        return problem_error(error.status, {**error.problem, "errors": [self._located(entry) for entry in errors]})

    def _located(self, entry: Any) -> Any:
        loc = entry.get("loc") if isinstance(entry, dict) else None
        if not (isinstance(loc, list) and len(loc) == 2 and loc[0] == "urls" and isinstance(loc[1], int)
                and 0 <= loc[1] < len(self.origins)):
            return entry
        return {**entry, "loc": [self.origins[loc[1]]]}


def run_submit(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    found = read_urls(args.urls, args.file, sys.stdin)
    key = args.idempotency_key or str(uuid.uuid4())
    if getattr(args, "verbose", False):
        sys.stderr.write(f"trawl: idempotency key {key}\n")
    try:
        reply = client.submit_job(found.urls, args.deadline, key)
    except ApiError as error:
        raise found.locate(error) from None
    replayed = "" if reply.created else " (already submitted with this idempotency key)"
    _announce(terminal, reply.job, f"job {reply.job.id} submitted: {reply.job.total} URLs{replayed}", args.wait)
    return follow_job(client, terminal, reply, events=client.job_events) if args.wait else 0


def run_status(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    job = client.get_job(args.job_id).job
    details = job_details(job)
    width = max(len(label) for label, _ in details)
    terminal.say("\n".join(f"{label:<{width}}  {value}" for label, value in details), job.data, essential=job.status)
    return 0


def run_list(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    jobs, cursor = client.list_jobs(args.status, args.limit)
    while cursor is not None and args.all:
        page, cursor = client.list_jobs(args.status, args.limit, cursor)
        jobs += page
    if cursor is not None:
        sys.stderr.write("trawl: there are more jobs; --all lists them all\n")
    if terminal.mode is OutputMode.JSON:
        terminal.document({"items": [job.data for job in jobs], "next_cursor": cursor})
    elif terminal.mode is OutputMode.QUIET:
        for job in jobs:
            terminal.line(job.id)
    elif jobs:
        rows = ([job.id, job.status, progress_cell(job), local_time(job.data.get("created_at"))] for job in jobs)
        terminal.table(["id", "status", "progress", "created"], rows)
    else:
        terminal.line("no jobs")
    return 0


def run_watch(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    return follow_job(client, terminal, client.get_job(args.job_id), events=client.job_events)


def run_cancel(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    job = client.cancel_job(args.job_id, args.reason)
    state = "cancelled" if job.is_final else f"cancellation requested (status {job.status})"
    terminal.say(f"job {job.id}: {state}", job.data)
    return 0


def run_retry(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    key = str(uuid.uuid4())
    if getattr(args, "verbose", False):
        sys.stderr.write(f"trawl: idempotency key {key}\n")
    reply = client.retry_job(args.job_id, args.include_skipped, key)
    _announce(terminal, reply.job, f"job {reply.job.id} submitted: retries {reply.job.total} URLs of job {args.job_id}",
              args.wait)
    return follow_job(client, terminal, reply, events=client.job_events) if args.wait else 0


def follow_job(client: TrawlClient, terminal: Terminal, reply: JobReply, sleep: Callable[[float], None] = time.sleep,
               events: EventSource | None = None) -> int:
    """Show a job's progress until it is final and print its summary line: after each response of its event
    stream when `events` is given and the server has a stream, else polling with backoff.

    Exit code 0 for succeeded and completed_with_errors (said in the summary) when some URL succeeded;
    JobUnsuccessful otherwise.
    """
    job = reply.job
    display = terminal.progress(job, RetryWatch(client).observe)
    try:
        if events is None:
            job = _poll_until_final(client, reply, display.update, Backoff(), sleep)
        else:
            job = _stream_until_final(client, reply, display.update, events, sleep)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped watching; job {job.id} goes on (`trawl watch {job.id}` follows it again)") from None
    finally:
        display.close()
    terminal.say(job_summary(job))
    if job.status in UNSUCCESSFUL:
        raise JobUnsuccessful(f"job {job.id} ended {job.status}")
    if job.nothing_succeeded:
        raise JobUnsuccessful(f"job {job.id} ended {job.status} but none of its {job.total} URLs succeeded")
    return 0


def read_urls(arguments: Iterable[str], file: str | None, stdin: TextIO) -> UrlList:
    """The URLs of the arguments (`-` reads stdin) and of `file`, in order, without blanks and # comments."""
    found = UrlList()
    for position, argument in enumerate(arguments, 1):
        if argument == "-":
            _add_lines(found, stdin, "stdin")
        else:
            found.add(argument, f"argument {position}")
    if file == "-":
        _add_lines(found, stdin, "stdin")
    elif file:
        _add_lines(found, _file_lines(file), file)
    if not found.urls:
        raise UsageError("no URLs given: pass them as arguments, with --file FILE, or - to read stdin")
    return found


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def page_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_LIST_PAGE:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_LIST_PAGE}, not {text}")
    return value


def _announce(terminal: Terminal, job: Job, text: str, followed: bool) -> None:
    """Say a job was created: `text`; its id alone when quiet; its JSON unless followed, where the
    progress stream's first line is that job."""
    terminal.say(text, None if followed else job.data, essential=job.id)


def _poll_until_final(client: TrawlClient, reply: JobReply, show: Callable[[Job], None], backoff: Backoff,
                      sleep: Callable[[float], None]) -> Job:
    job, retry_after, changed = reply.job, reply.retry_after, True
    show(job)
    while not job.is_final:
        sleep(backoff.next_delay(changed, retry_after))
        latest = client.get_job(job.id)
        changed = (latest.job.status, latest.job.counts) != (job.status, job.counts)
        job, retry_after = latest.job, latest.retry_after
        show(job)
    return job


def _stream_until_final(client: TrawlClient, reply: JobReply, show: Callable[[Job], None], events: EventSource,
                        sleep: Callable[[float], None]) -> Job:
    job = reply.job
    show(job)
    if job.is_final:
        return job
    try:
        for response in events(job.id):
            # Shown after every response, an idle one too: the display rereads which items wait for a retry.
            job = _after_response(client, job, response)
            show(job)
            if job.is_final:
                return job
    except NoEventStream:
        return _poll_until_final(client, reply, show, Backoff(), sleep)
    # A 204: the stream had ended before the request; the job says how.
    return _poll_until_final(client, client.get_job(job.id), show, Backoff(), sleep)


def _after_response(client: TrawlClient, job: Job, events: list[JobEvent]) -> Job:
    """The job after one response's events. After a status change it is read from the API, whose job is newer
    than every event of the response and has what the events lack (timestamps, the cancellation's reason, for
    the summary and --json); else it takes the counts of the response's progress event, if any."""
    if any(event.type == "status" for event in events):
        return client.get_job(job.id).job
    progress = [event for event in events if event.type == "progress"]
    return _with_progress(job, progress[-1].data) if progress else job


def _with_progress(job: Job, progress: dict[str, Any]) -> Job:
    """`job` with a progress event's counts, unless they are behind those shown: a response catching up on many
    items counts only those it carries, so it can be behind the job the API gave after an earlier status change."""
    try:
        counts = {name: int(progress[name]) for name in PROGRESS_COUNTS}
        remaining = int(progress["remaining"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UnexpectedResponse(f"the API sent a progress event this client cannot read ({exc!r})") from None
    if counts["succeeded"] + counts["failed"] + counts["skipped"] < job.done:
        return job
    data = {**job.data, "progress": {**job.data.get("progress", {}), **counts, "pending": remaining}}
    return dataclasses.replace(job, total=counts["total"], succeeded=counts["succeeded"], failed=counts["failed"],
                               skipped=counts["skipped"], data=data)


def _file_lines(file: str) -> list[str]:
    """The lines of `file` as text; a line that is not UTF-8 is named by its number."""
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read URLs from {file}: {exc.strerror or exc}") from None
    lines: list[str] = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            lines.append(line.decode("utf-8-sig"))  # -sig: a byte-order mark (Windows editors) is not part of a URL
        except UnicodeDecodeError:
            raise UsageError(f"cannot read URLs from {file}: line {number} is not UTF-8 text") from None
    return lines


def _add_lines(found: UrlList, lines: Iterable[str], source: str) -> None:
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            found.add(line.strip(), f"{source} line {number}")
