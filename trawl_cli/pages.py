"""`trawl pages` (the pages your jobs scraped, or one page's versions with `--url`) and `trawl search QUERY` (full-text
search over the latest version of each of your pages, with snippets)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.text import Text

from trawl_cli.client import TrawlClient
from trawl_cli.errors import UsageError
from trawl_cli.render import NOT_SET, OutputMode, Terminal, local_time

MAX_PAGES_PAGE = 100
MAX_SEARCH_PAGE = 50
MAX_VERSIONS = 100
HASH_CHARS = 12


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    pages = commands.add_parser("pages", parents=[common], help="list the pages your jobs scraped, or one page's "
                                "versions", description="List the pages your jobs scraped (each URL a job kept a body "
                                "of), by host then URL; with --url, show that page and its versions, newest first.")
    pages.add_argument("--url", metavar="URL", help="show this page and its versions")
    pages.add_argument("--host", metavar="HOST", help="only pages on this host")
    pages.add_argument("--changed-since", type=instant, metavar="TIME",
                       help="only pages new or changed since TIME (ISO 8601, e.g. 2025-01-31T12:00:00Z)")
    pages.add_argument("--limit", type=bounded(MAX_PAGES_PAGE), default=20, metavar="N",
                       help=f"pages per page, 1-{MAX_PAGES_PAGE} (default 20)")
    pages.add_argument("--all", action="store_true", help="follow the pages to the last one")
    pages.set_defaults(run=run_pages)

    search = commands.add_parser("search", parents=[common], help="search the text of your pages",
                                 description="Full-text search over the latest version of each of your pages, best "
                                             'first: "a phrase", a OR b, -excluded; every other word is required. '
                                             "Each page is searched in its own language (English `run` finds "
                                             "`running`).")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--host", metavar="HOST", help="only pages on this host")
    search.add_argument("--job", metavar="ID", help="only pages this job scraped")
    search.add_argument("--changed-since", type=instant, metavar="TIME", help="only pages new or changed since TIME")
    search.add_argument("--limit", type=bounded(1000), default=10, metavar="N",
                        help="hits to show, 1-1000 (default 10)")
    search.set_defaults(run=run_search)


def run_pages(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    filters = {"host": args.host, "changed_since": args.changed_since, "url": args.url,
               "versions": MAX_VERSIONS if args.url else 0}
    pages, cursor = client.list_pages(filters, args.limit)
    while cursor is not None and args.all:
        more, cursor = client.list_pages(filters, args.limit, cursor)
        pages += more
    if args.url:
        return _show_page(terminal, pages, args.url)
    if cursor is not None:
        sys.stderr.write("trawl: there are more pages; --all lists them all\n")
    if terminal.mode is OutputMode.JSON:
        terminal.document({"items": pages, "next_cursor": cursor})
    elif terminal.mode is OutputMode.QUIET:
        for page in pages:
            terminal.line(str(page.get("id")))
    elif pages:
        terminal.table(["url", "versions", "changed", "last seen"], (
            [str(page.get("url")), str(page.get("version_count")), local_time(page.get("changed_at")),
             local_time(page.get("last_seen_at"))] for page in pages))
    else:
        terminal.line("no pages")
    return 0


def run_search(args: argparse.Namespace, client: TrawlClient, terminal: Terminal) -> int:
    filters = {"host": args.host, "job_id": args.job, "changed_since": args.changed_since}
    hits, cursor, capped = client.search(args.query, filters, min(args.limit, MAX_SEARCH_PAGE))
    while cursor is not None and len(hits) < args.limit:
        more, cursor, _ = client.search(args.query, filters, min(args.limit - len(hits), MAX_SEARCH_PAGE), cursor)
        hits += more
    if capped:
        sys.stderr.write("trawl: warning: so many pages match that only the most recently changed were ranked; "
                         "narrow the query (another word, a phrase, --host, --changed-since, --job)\n")
    if terminal.mode is OutputMode.JSON:
        terminal.document({"items": hits, "next_cursor": cursor, "capped": capped})
    elif terminal.mode is OutputMode.QUIET:
        for hit in hits:
            terminal.line(str(hit.get("url")))
    elif hits:
        for number, hit in enumerate(hits, 1):
            _show_hit(terminal, number, hit)
    else:
        terminal.line("no pages match")
    return 0


def _show_page(terminal: Terminal, pages: list[Any], url: str) -> int:
    if not pages:
        raise UsageError(f"no page of yours has the URL {url} (URLs are matched after normalising, exactly otherwise)")
    page = pages[0]
    if terminal.mode is OutputMode.JSON:
        terminal.document(page)
        return 0
    if terminal.mode is OutputMode.QUIET:
        terminal.line(str(page.get("id")))
        return 0
    terminal.line(f"page {page.get('id')} {page.get('url')}: {page.get('version_count')} versions, first seen "
                  f"{local_time(page.get('first_seen_at'))}, last seen {local_time(page.get('last_seen_at'))}")
    terminal.table(["version", "first seen", "last seen", "markdown", "bytes", "seen by"],
                   (_version_row(version) for version in page.get("versions") or []))
    if (page.get("version_count") or 0) > len(page.get("versions") or []):
        sys.stderr.write(f"trawl: showing the newest {len(page.get('versions') or [])} versions; "
                         f"GET /api/pages/{page.get('id')} pages through them all\n")
    return 0


def _version_row(version: dict[str, Any]) -> list[str]:
    body = (version.get("content") or {}).get("markdown") or {}
    sha256 = str(body.get("sha256") or NOT_SET)
    return [str(version.get("id")), local_time(version.get("first_seen_at")), local_time(version.get("last_seen_at")),
            sha256[:HASH_CHARS], str(body.get("bytes") if body else NOT_SET),
            f"job {version.get('job_id')} item {version.get('seq')}"]


def _show_hit(terminal: Terminal, number: int, hit: dict[str, Any]) -> None:
    """`1. title  url`, then the snippet with its matches in bold (between ** when not on a terminal)."""
    title = hit.get("title") or NOT_SET
    terminal.line(f"{number}. {title}  {hit.get('url')}  (rank {float(hit.get('rank') or 0):.3g}, changed "
                  f"{local_time(hit.get('changed_at'))})")
    parts = hit.get("snippet") or []
    if not parts:
        return
    if terminal.interactive:
        text = Text("   ")
        for part in parts:
            text.append(str(part.get("text", "")).replace("\n", " "), style="bold" if part.get("match") else None)
        terminal.console.print(text, highlight=False)
        return
    terminal.line("   " + "".join(f"**{part.get('text')}**" if part.get("match") else str(part.get("text"))
                                  for part in parts).replace("\n", " "))


def instant(text: str) -> str:
    """An ISO 8601 instant with its offset (`Z` or `+01:00`), passed on as the API takes it."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. {text}Z")
    return moment.isoformat()


def bounded(maximum: int) -> Callable[[str], int]:
    """An argument type: a whole number from 1 to `maximum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from 1 to {maximum}")
        return value
    return parse
