"""What the CLI prints on stdout: job progress (a live rich bar on a terminal, one plain line per change
otherwise, NDJSON job snapshots with --json, nothing with --quiet), tables, job details and summaries,
audit log lines, and the JSON documents of --json."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from trawl_cli.client import Job
from trawl_cli.retries import RetrySource, RetryState

NOT_SET = "-"


class OutputMode(Enum):
    """What stdout carries: text for people, JSON for programs (`--json`), or only the essentials (`--quiet`)."""

    TEXT = "text"
    JSON = "json"
    QUIET = "quiet"


class ProgressDisplay(Protocol):
    def update(self, job: Job) -> None: ...

    def close(self) -> None: ...


class RateMeter:
    """URLs finished per second since the first observation, and the time left at that rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start: tuple[float, int] | None = None

    def observe(self, job: Job) -> tuple[float | None, float | None]:
        """(rate in URLs/s, ETA in seconds); None for each until some progress has been seen."""
        now = self._clock()
        if self._start is None:
            self._start = (now, job.done)
        started_at, done_at_start = self._start
        if now <= started_at or job.done <= done_at_start:
            return None, None
        rate = (job.done - done_at_start) / (now - started_at)
        return rate, (job.total - job.done) / rate


class Terminal:
    """stdout, as a rich console: live displays and boxed tables on a terminal, plain lines when piped."""

    def __init__(self, file: TextIO | None = None, mode: OutputMode = OutputMode.TEXT) -> None:
        self.console = Console(file=file, highlight=False, soft_wrap=True)
        self.mode = mode

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and not self.console.is_dumb_terminal

    def line(self, text: str = "") -> None:
        """`text` as is: no markup, emoji codes or wrapping (above a live display, if one is shown)."""
        self.console.out(text, highlight=False)

    def document(self, data: Any) -> None:
        """One JSON document (what --json prints for a command that answers once)."""
        self.line(json.dumps(data, indent=2, ensure_ascii=False))

    def record(self, data: Any) -> None:
        """One NDJSON line (what --json prints for each entry of a stream)."""
        self.line(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    def say(self, text: str, data: Any = None, essential: str | None = None) -> None:
        """Report an outcome in the output mode: `text` for people, `data` (if any) as a JSON document,
        only `essential` (if any: a job id a script goes on with) when quiet."""
        if self.mode is OutputMode.TEXT:
            self.line(text)
        elif self.mode is OutputMode.JSON and data is not None:
            self.document(data)
        elif self.mode is OutputMode.QUIET and essential is not None:
            self.line(essential)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        rows = list(rows)
        if self.interactive:
            table = Table(*columns, header_style="bold")
            for row in rows:
                table.add_row(*row)
            self.console.print(table)
            return
        widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows, strict=True)]
        for row in [columns, *rows]:
            self.line("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def progress(self, job: Job, retries: RetrySource) -> ProgressDisplay:
        """The display of a followed job; only the displays for people ask `retries` (extra API calls)."""
        if self.mode is OutputMode.JSON:
            return JsonProgress(self.record)
        if self.mode is OutputMode.QUIET:
            return SilentProgress()
        return RichProgress(self.console, job, retries) if self.interactive else PlainProgress(self.line, retries)


class JsonProgress:
    """One NDJSON line, the API's job as is, per poll that changed the job's status or counts."""

    def __init__(self, write: Callable[[Any], None]) -> None:
        self._write = write
        self._last: tuple[str, tuple[int, int, int, int]] | None = None

    def update(self, job: Job) -> None:
        if self._last != (job.status, job.counts):
            self._last = (job.status, job.counts)
            self._write(job.data)

    def close(self) -> None:
        return None


class SilentProgress:
    """--quiet: the exit code tells how the job ended."""

    def update(self, job: Job) -> None:
        return None

    def close(self) -> None:
        return None


class PlainProgress:
    """One line per poll that changed the job's status, counts or number of items waiting for a retry."""

    def __init__(self, write: Callable[[str], None], retries: RetrySource, meter: RateMeter | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._write = write
        self._retries = retries
        self._meter = meter or RateMeter()
        self._clock = clock
        self._last: tuple[str, tuple[int, int, int, int], int] | None = None

    def update(self, job: Job) -> None:
        rate, eta = self._meter.observe(job)
        retrying = self._retries(job)
        if self._last == (job.status, job.counts, retrying.waiting):
            return
        self._last = (job.status, job.counts, retrying.waiting)
        self._write(f"job {job.id} {job.status}: {job.done}/{job.total} done ({counts_text(job)}), "
                    f"{rate_text(rate)}, {outlook_text(job, eta, retrying, self._clock())}")

    def close(self) -> None:
        return None


class LiveTextColumn(ProgressColumn):
    """Text worked out at each refresh from the task's fields, so that countdowns and elapsed time run
    between polls."""

    def __init__(self, text: Callable[[Task, float], str]) -> None:
        super().__init__()
        self._text = text

    def render(self, task: Task) -> Text:
        return Text(self._text(task, time.time()))


class RichProgress:
    """A live bar: status, bar, done/total, the counts, rate, ETA or retries, and the job's time so far."""

    def __init__(self, console: Console, job: Job, retries: RetrySource, meter: RateMeter | None = None) -> None:
        self._retries = retries
        self._meter = meter or RateMeter()
        self._progress = Progress(
            TextColumn("[bold]{task.fields[status]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[rate]}"),
            LiveTextColumn(lambda task, now: outlook_text(task.fields["job"], task.fields["eta"],
                                                          task.fields["retrying"], now)),
            LiveTextColumn(lambda task, now: elapsed_text(task.fields["job"], now)),
            console=console, transient=False)
        self._task: TaskID = self._progress.add_task("", total=job.total, status=job.status, counts="", rate="",
                                                     job=job, eta=None, retrying=RetryState())
        self._progress.start()

    def update(self, job: Job) -> None:
        rate, eta = self._meter.observe(job)
        self._progress.update(self._task, completed=job.done, total=job.total, status=job.status,
                              counts=counts_text(job), rate=rate_text(rate), job=job, eta=eta,
                              retrying=self._retries(job))

    def close(self) -> None:
        self._progress.stop()


def counts_text(job: Job) -> str:
    return f"{job.succeeded} succeeded, {job.failed} failed, {job.skipped} skipped of {job.total}"


def rate_text(rate: float | None) -> str:
    return "-/s" if rate is None else f"{rate:.1f}/s"


def outlook_text(job: Job, eta: float | None, retrying: RetryState, now: float) -> str:
    """`ETA 4.0s` at the rate so far; while items wait for a retry, how many and when the next attempt is
    due (instead of the rate's `ETA 0.1s`), with an ETA no sooner than the last of them."""
    if job.is_final or job.done == job.total:
        return "ETA 0s"
    if not retrying.waiting:
        return f"ETA {_eta_text(eta)}"
    waiting = (f"{retrying.waiting} item{'s' if retrying.waiting > 1 else ''} retrying, "
               f"next attempt {_countdown_text(retrying.next_due - now)}")
    if retrying.waiting >= job.total - job.done:
        return waiting
    last_due = retrying.last_due - now
    return f"ETA {_eta_text(max(eta or 0.0, last_due) if eta is not None or last_due > 0 else None)}, {waiting}"


def elapsed_text(job: Job, now: float) -> str:
    """The job's time from creation to its end (or to now): what its summary line counts."""
    ended = now if job.finished_at is None else job.finished_at.timestamp()
    return duration_text(max(0.0, ended - job.created_at.timestamp()))


def duration_text(seconds: float) -> str:
    """`4.2s`, `2m05s`, `1h02m`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"



def job_summary(job: Job) -> str:
    """The one line printed when a job has ended: its outcome, counts and duration."""
    took = "" if job.finished_at is None else f" in {duration_text((job.finished_at - job.created_at).total_seconds())}"
    line = f"job {job.id} {job.status.replace('_', ' ')}: {counts_text(job)}{took}"
    if job.nothing_succeeded and job.status in ("succeeded", "completed_with_errors"):
        line += f"; no URL succeeded, see `trawl results {job.id}`"
    elif job.status == "completed_with_errors":
        line += f"; some URLs failed, see `trawl results {job.id}`"
    reason = (job.data.get("cancellation") or {}).get("reason")
    if job.status == "cancelled" and reason:
        line += f"; reason: {reason}"
    return line


def job_details(job: Job) -> list[tuple[str, str]]:
    """The key fields of a job for `trawl status`, as (label, value) pairs."""
    data = job.data
    pending = data.get("progress", {}).get("pending", job.total - job.done)
    return [
        ("id", job.id),
        ("status", job.status + _cancellation_text(data.get("cancellation"))),
        ("progress", (f"{job.done}/{job.total} done: {job.succeeded} succeeded, {job.failed} failed, "
                      f"{job.skipped} skipped, {pending} pending")),
        ("created", local_time(data.get("created_at"))),
        ("started", local_time(data.get("started_at"))),
        ("finished", local_time(data.get("finished_at"))),
        ("deadline", local_time(data.get("deadline_at"))),
        ("retry of", data.get("parent_job_id") or NOT_SET),
        ("retried by", ", ".join(data.get("children") or []) or NOT_SET),
    ]


def progress_cell(job: Job) -> str:
    """`done/total`, with the failed and skipped counts when there are any."""
    extra = [f"{count} {label}" for count, label in ((job.failed, "failed"), (job.skipped, "skipped")) if count]
    return f"{job.done}/{job.total}" + (f" ({', '.join(extra)})" if extra else "")


def event_line(event: dict[str, Any]) -> str:
    """An audit log entry: local time, event, reason and data, and who did it."""
    details = [f"reason={json.dumps(event['reason'])}"] if event.get("reason") else []
    details += [f"{key}={_scalar(value)}" for key, value in (event.get("data") or {}).items()]
    fields = [local_time(event.get("at")), f"{event.get('event', '?'):<16}", " ".join(details),
              f"({event.get('actor')})"]
    return "  ".join(field for field in fields if field)


def local_time(value: str | None) -> str:
    """An ISO 8601 instant from the API in this machine's time zone, to the second."""
    if not value:
        return NOT_SET
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _cancellation_text(cancellation: dict[str, Any] | None) -> str:
    if not cancellation:
        return ""
    reason = f": {cancellation['reason']}" if cancellation.get("reason") else ""
    return f" (cancel requested by {cancellation.get('requested_by') or 'unknown'}{reason})"


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) and value and " " not in value else json.dumps(value, default=str)


def _eta_text(eta: float | None) -> str:
    return "?" if eta is None else duration_text(eta)


def _countdown_text(seconds: float) -> str:
    """`in ~8s` (an estimate: whole seconds), `in ~2m05s`, or `due now`."""
    if seconds < 1:
        return "due now"
    return f"in ~{round(seconds)}s" if seconds < 60 else f"in ~{duration_text(seconds)}"
