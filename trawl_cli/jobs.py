"""The job commands: `submit`, `status`, `list`, `watch`, `cancel`, `retry`, and following a job to its end."""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from trawl_cli.client import Backoff, Job, JobReply, TrawlClient
from trawl_cli.errors import Interrupted, JobUnsuccessful, UsageError
from trawl_cli.render import Terminal, job_details, job_summary, local_time, progress_cell

JOB_STATUSES = ("pending", "running", "succeeded", "completed_with_errors", "failed", "cancelled", "timed_out")
# A finished job with some failed URLs still did its work: only these outcomes fail `--wait` and `watch`.
UNSUCCESSFUL = frozenset({"failed", "cancelled", "timed_out"})
MAX_LIST_PAGE = 100


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
    status.add_argument("--json", action="store_true", help="print the API's JSON as is")
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
    retry.set_defaults(run=run_retry)


def run_submit(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    urls = read_urls(args.urls, args.file, sys.stdin)
    key = args.idempotency_key or str(uuid.uuid4())
    if getattr(args, "verbose", False):
        sys.stderr.write(f"trawl: idempotency key {key}\n")
    reply = client.submit_job(urls, args.deadline, key)
    replayed = "" if reply.created else " (already submitted with this idempotency key)"
    terminal.line(f"job {reply.job.id} submitted: {reply.job.total} URLs{replayed}")
    return follow_job(client, terminal, reply) if args.wait else 0


def run_status(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    job = client.get_job(args.job_id).job
    if args.json:
        terminal.line(json.dumps(job.data, indent=2))
        return 0
    details = job_details(job)
    width = max(len(label) for label, _ in details)
    for label, value in details:
        terminal.line(f"{label:<{width}}  {value}")
    return 0


def run_list(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    jobs, cursor = client.list_jobs(args.status, args.limit)
    while cursor is not None and args.all:
        page, cursor = client.list_jobs(args.status, args.limit, cursor)
        jobs += page
    if jobs:
        rows = ([job.id, job.status, progress_cell(job), local_time(job.data.get("created_at"))] for job in jobs)
        terminal.table(["id", "status", "progress", "created"], rows)
    else:
        terminal.line("no jobs")
    if cursor is not None:
        sys.stderr.write("trawl: there are more jobs; --all lists them all\n")
    return 0


def run_watch(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    return follow_job(client, terminal, client.get_job(args.job_id))


def run_cancel(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    job = client.cancel_job(args.job_id, args.reason)
    state = "cancelled" if job.is_final else f"cancellation requested (status {job.status})"
    terminal.line(f"job {job.id}: {state}")
    return 0


def run_retry(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    key = str(uuid.uuid4())
    if getattr(args, "verbose", False):
        sys.stderr.write(f"trawl: idempotency key {key}\n")
    reply = client.retry_job(args.job_id, args.include_skipped, key)
    terminal.line(f"job {reply.job.id} submitted: retries {reply.job.total} URLs of job {args.job_id}")
    return 0


def follow_job(client: TrawlClient, terminal: Terminal, reply: JobReply,
               sleep: Callable[[float], None] = time.sleep) -> int:
    """Show a job's progress until it is final, polling with backoff; print its summary line.

    Exit code 0 for succeeded and completed_with_errors (said in the summary); JobUnsuccessful otherwise.
    """
    job = reply.job
    display = terminal.progress(job)
    try:
        job = _poll_until_final(client, reply, display.update, Backoff(), sleep)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped watching; job {job.id} goes on (`trawl watch {job.id}` follows it again)") from None
    finally:
        display.close()
    terminal.line(job_summary(job))
    if job.status in UNSUCCESSFUL:
        raise JobUnsuccessful(f"job {job.id} ended {job.status}")
    return 0


def read_urls(arguments: Iterable[str], file: str | None, stdin: TextIO) -> list[str]:
    """The URLs of the arguments (`-` reads stdin) and of `file`, in order, without blanks and # comments."""
    urls: list[str] = []
    for argument in arguments:
        urls.extend(_url_lines(stdin) if argument == "-" else [argument])
    if file == "-":
        urls.extend(_url_lines(stdin))
    elif file:
        try:
            with Path(file).open(encoding="utf-8") as lines:
                urls.extend(_url_lines(lines))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read URLs from {file}: {getattr(exc, 'strerror', None) or exc}") from None
    if not urls:
        raise UsageError("no URLs given: pass them as arguments, with --file FILE, or - to read stdin")
    return urls


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


def _url_lines(lines: Iterable[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
