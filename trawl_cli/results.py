"""`trawl results ID`: a job's per-URL results as one JSON array (following the pages), NDJSON or CSV, or the
Markdown body of each succeeded item."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from trawl_cli.client import Job, TrawlClient
from trawl_cli.errors import UsageError
from trawl_cli.render import OutputMode, Terminal

FORMATS = ("json", "ndjson", "csv", "markdown")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    results = commands.add_parser("results", parents=[common], help="download a job's results",
                                  description="Download a job's results in submission order: json (one array), "
                                              "ndjson (one item per line), csv (one row per URL), or markdown (each "
                                              "succeeded item's Markdown body, after a `<!-- trawl: ... -->` line "
                                              "naming its URL). The results of a job that has not ended are partial "
                                              "(a warning on stderr says so).")
    results.add_argument("job_id", metavar="ID")
    results.add_argument("--format", choices=FORMATS, default="json", help="json (default), ndjson, csv or markdown")
    results.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    results.set_defaults(run=run_results)


def run_results(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    to_stdout = args.output in (None, "-")
    if terminal.mode is OutputMode.JSON and to_stdout and args.format in ("csv", "markdown"):
        raise UsageError(f"--json writes JSON on stdout: use --format json or ndjson, or write the {args.format} "
                         "with --output")
    warn_if_partial(client.get_job(args.job_id).job)
    if args.format == "json":
        chunks = json_array(client.iter_results(args.job_id))
    elif args.format == "markdown":
        chunks = markdown_bodies(client, args.job_id)
    else:
        chunks = client.export_results(args.job_id, args.format)
    if to_stdout:
        _write_stdout(chunks)
        return 0
    size = write_atomically(Path(args.output), chunks)
    terminal.say(f"wrote the {args.format} results of job {args.job_id} to {args.output} ({size} bytes)",
                 {"job_id": args.job_id, "format": args.format, "output": args.output, "bytes": size})
    return 0


def warn_if_partial(job: Job) -> None:
    """Say on stderr that a job still pending or running has results to come."""
    if not job.is_final:
        sys.stderr.write(f"trawl: warning: job {job.id} is {job.status} ({job.done}/{job.total} done): "
                         "these results are partial\n")


def json_array(items: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """Items as one JSON array, an item per line; the first page is fetched before anything is produced."""
    first = next(items, None)

    def chunks() -> Iterator[bytes]:
        if first is None:
            yield b"[]\n"
            return
        yield b"[\n" + json.dumps(first).encode()
        for item in items:
            yield b",\n" + json.dumps(item).encode()
        yield b"\n]\n"

    return chunks()


def markdown_bodies(client: TrawlClient, job_id: str) -> Iterator[bytes]:
    """Each succeeded item's Markdown body after a line naming it, in submission order: inline from the results
    where the page of results carried it whole, else read from its URL. An item that kept no Markdown (its job's
    `formats` did not ask for it) is named in a warning on stderr."""
    missing = 0
    for item in client.iter_results(job_id, statuses=("succeeded",), include=("markdown",)):
        body = (item.get("content") or {}).get("markdown")
        if not isinstance(body, dict):
            missing += 1
            continue
        text = body.get("content") if body.get("content") is not None and not body.get("truncated") else None
        markdown = text if isinstance(text, str) else client.body(str(body.get("url")))
        url = str(item.get("url", "")).replace("--", "%2D%2D")  # `--` would end the comment early
        yield f"<!-- trawl: item {item.get('seq')} {url} -->\n".encode() + markdown.encode()
        yield b"" if markdown.endswith("\n") else b"\n"
    if missing:
        sys.stderr.write(f"trawl: warning: {missing} succeeded item{'s' if missing > 1 else ''} of job {job_id} kept "
                         "no Markdown: the job's formats did not ask for it\n")


def write_atomically(path: Path, chunks: Iterable[bytes]) -> int:
    """Write the chunks to a temporary file beside `path`, then rename it: a broken download leaves no file."""
    try:
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                size += handle.write(chunk)
        os.chmod(staging, 0o666 & ~_umask())  # as open() would create it, not the temporary file's 0600
        os.replace(staging, path)
    except BaseException as exc:
        os.unlink(staging)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return size


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_stdout(chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
