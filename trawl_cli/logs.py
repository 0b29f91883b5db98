"""`trawl logs ID [--follow]`: a job's audit log, oldest first (NDJSON with --json); `--follow` reads new entries
after each response of the job's event stream (or polls, where the server has none) until the job is final."""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from trawl_cli.client import Backoff, EventSource, TrawlClient
from trawl_cli.errors import Interrupted, NoEventStream
from trawl_cli.render import OutputMode, Terminal, event_line


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    logs = commands.add_parser("logs", parents=[common], help="show a job's audit log",
                               description="Show a job's audit log, oldest first.")
    logs.add_argument("job_id", metavar="ID")
    logs.add_argument("--follow", action="store_true", help="keep printing new entries until the job has ended")
    logs.set_defaults(run=run_logs)


def run_logs(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    if not args.follow:
        print_events(client, terminal, args.job_id, after=0)
        return 0
    try:
        follow_events(client, terminal, args.job_id, events=client.job_events)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped following the log of job {args.job_id}") from None
    return 0


def print_events(client: TrawlClient, terminal: Terminal, job_id: str, after: int) -> int:
    """Print every entry after event id `after`, page by page; returns the last id printed (or `after`)."""
    while True:
        page = client.logs_page(job_id, after)
        for event in page.items:
            if terminal.mode is OutputMode.JSON:
                terminal.record(event)
            else:
                terminal.line(event_line(event))
        after = page.next_after
        if not page.has_more:
            return after


def follow_events(client: TrawlClient, terminal: Terminal, job_id: str, sleep: Callable[[float], None] = time.sleep,
                  events: EventSource | None = None) -> None:
    """Print new entries as they come until the job is final (its final entry is written with its status): after
    each response of its event stream when `events` is given and the server has a stream, else polling with
    backoff."""
    after: int | None = 0
    if events is not None and not client.get_job(job_id).job.is_final:
        after = _print_at_events(client, terminal, job_id, events)
    if after is not None:
        _poll_events(client, terminal, job_id, after, sleep)


def _print_at_events(client: TrawlClient, terminal: Terminal, job_id: str, events: EventSource) -> int | None:
    """Print the new entries after each response of the job's stream (an idle one too: retries are logged but not
    streamed): None once the final status's are printed, or the last entry printed, to poll on from, when the
    server has no stream or the stream had ended before the request."""
    after = 0
    try:
        for response in events(job_id):
            after = print_events(client, terminal, job_id, after)
            if any(event.is_final for event in response):
                return None
    except NoEventStream:
        return after
    return after


def _poll_events(client: TrawlClient, terminal: Terminal, job_id: str, after: int,
                 sleep: Callable[[float], None]) -> None:
    backoff = Backoff()
    while True:
        reply = client.get_job(job_id)
        latest = print_events(client, terminal, job_id, after)
        if reply.job.is_final:
            return
        sleep(backoff.next_delay(latest != after, reply.retry_after))
        after = latest
