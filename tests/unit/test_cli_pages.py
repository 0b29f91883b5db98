"""`trawl pages`, `trawl search` and `trawl results --format markdown` against a local HTTP server that speaks the
API's JSON (`/api/pages`, `/api/search`, a job's results and its items' bodies): the requests they make, what they
print in each output mode, the pages they follow, and their errors."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from trawl_cli.__main__ import main

JOB_ID = "0d7f5d1e-8a8e-4b43-9a3c-4f1f2b3c4d5e"
PAGE_ID = "5b0c3f4e-1111-4c3b-9a3c-4f1f2b3c4d5e"
JSON = {"Content-Type": "application/json"}
Answer = tuple[int, str, dict[str, str]]


@dataclass
class Api:
    """127.0.0.1 answering each GET from `routes` (path -> function of the query); requests are recorded."""

    routes: dict[str, Callable[[dict[str, list[str]]], Answer]]
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def run(self, *args: str) -> int:
        return main(["--api-url", self.url, "--token", "t", *args])

    def queries(self, path: str) -> list[dict[str, list[str]]]:
        return [query for requested, query in self.requests if requested == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                api.requests.append((parts.path, query))
                route = api.routes.get(parts.path)
                status, body, headers = route(query) if route else problem(404, f"no route {parts.path}")
                data = body.encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def ok(body: Any) -> Answer:
    return 200, json.dumps(body), JSON


def problem(status: int, detail: str) -> Answer:
    return status, json.dumps({"type": "https://trawl.dev/problems/x", "title": "Bad request" if status == 400
                               else "Not found", "status": status, "detail": detail}), \
        {"Content-Type": "application/problem+json"}


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Callable[[dict[str, list[str]]], Answer]]], Api]]:
    started: list[Api] = []

    def start(routes: dict[str, Callable[[dict[str, list[str]]], Answer]]) -> Api:
        started.append(Api(routes))
        return started[-1]

    yield start
    for api in started:
        api.server.shutdown()
        api.server.server_close()


Serve = Callable[[dict[str, Callable[[dict[str, list[str]]], Answer]]], Api]

# --- results --format markdown ---------------------------------------------------------------------------------

JOB = {"id": JOB_ID, "status": "succeeded", "created_at": "2025-01-01T10:00:00+00:00",
       "finished_at": "2025-01-01T10:00:05+00:00", "progress": {"total": 3, "succeeded": 3, "failed": 0, "skipped": 0}}
BODY_URL = f"/api/jobs/{JOB_ID}/items/1/content"


def item(seq: int, content: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "url": f"https://example.test/{seq}", "status": "succeeded", "content": content}


def results_api(serve: Serve) -> Api:
    items = [item(0, {"markdown": {"url": f"/api/jobs/{JOB_ID}/items/0/content?format=markdown", "content": "# Zero\n",
                                   "truncated": False}}),
             item(1, {"markdown": {"url": f"{BODY_URL}?format=markdown", "content": "# One (cut", "truncated": True}}),
             item(2, {})]
    return serve({
        f"/api/jobs/{JOB_ID}": lambda query: ok(JOB),
        f"/api/jobs/{JOB_ID}/results": lambda query: ok({"items": items, "next_cursor": None}),
        BODY_URL: lambda query: (200, "# One\n\nThe whole body, read from its URL.", {"Content-Type": "text/markdown"}),
    })


def test_results_as_markdown_print_each_succeeded_items_body(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    api = results_api(serve)

    assert api.run("results", JOB_ID, "--format", "markdown") == 0

    out, err = capsys.readouterr()
    assert out == ("<!-- trawl: item 0 https://example.test/0 -->\n# Zero\n"
                   "<!-- trawl: item 1 https://example.test/1 -->\n# One\n\nThe whole body, read from its URL.\n")
    [query] = api.queries(f"/api/jobs/{JOB_ID}/results")
    assert query["status"] == ["succeeded"] and query["include"] == ["markdown"]
    assert api.queries(BODY_URL) == [{"format": ["markdown"]}], "only the body cut short inline is read again"
    assert err == (f"trawl: warning: 1 succeeded item of job {JOB_ID} kept no Markdown: the job's formats did not "
                   "ask for it\n")


def test_results_as_markdown_go_to_a_file_and_refuse_json(serve: Serve, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    api = results_api(serve)

    assert api.run("results", JOB_ID, "--format", "markdown", "-o", str(tmp_path / "out.md")) == 0
    assert api.run("--json", "results", JOB_ID, "--format", "markdown") == 2

    assert (tmp_path / "out.md").read_text().startswith("<!-- trawl: item 0 https://example.test/0 -->\n# Zero\n")
    assert "write the markdown with --output" in capsys.readouterr().err


# --- pages -----------------------------------------------------------------------------------------------------

def page(n: int, versions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": f"{PAGE_ID[:-2]}{n:02d}", "url": f"https://example.test/{n}", "host": "example.test",
            "first_seen_at": "2025-01-01T10:00:00+00:00", "last_seen_at": "2025-01-03T10:00:00+00:00",
            "changed_at": "2025-01-02T10:00:00+00:00", "version_count": len(versions or []) or 1,
            "latest_version_id": 7, "versions": versions or []}


def version(version_id: int, sha256: str) -> dict[str, Any]:
    return {"id": version_id, "first_seen_at": "2025-01-02T10:00:00+00:00", "last_seen_at": "2025-01-03T10:00:00+00:00",
            "job_id": JOB_ID, "seq": 4, "content": {"markdown": {"sha256": sha256, "bytes": 1234, "url": "/x"}}}


def pages_api(serve: Serve) -> Api:
    def pages(query: dict[str, list[str]]) -> Answer:
        if "url" in query:
            known = query["url"] == ["https://example.test/1"]
            return ok({"items": [page(1, [version(9, "b" * 64), version(7, "a" * 64)])] if known else [],
                       "next_cursor": None})
        if query.get("cursor") == ["second"]:
            return ok({"items": [page(3)], "next_cursor": None})
        return ok({"items": [page(1), page(2)], "next_cursor": "second"})

    return serve({"/api/pages": pages})


def test_pages_lists_pages_and_follows_the_cursor_with_all(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    api = pages_api(serve)

    assert api.run("pages", "--host", "example.test", "--limit", "2") == 0
    first_out, first_err = capsys.readouterr()
    assert api.run("--quiet", "pages", "--all") == 0
    quiet = capsys.readouterr().out

    assert first_out.splitlines()[0].split() == ["url", "versions", "changed", "last", "seen"]
    assert [line.split()[0] for line in first_out.splitlines()[1:]] == [
        "https://example.test/1", "https://example.test/2"]
    assert first_err == "trawl: there are more pages; --all lists them all\n"
    assert quiet.splitlines() == [page(1)["id"], page(2)["id"], page(3)["id"]]
    first = api.queries("/api/pages")[0]
    assert (first["host"], first["limit"], first["versions"]) == (["example.test"], ["2"], ["0"])


def test_pages_with_a_url_shows_its_versions(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    api = pages_api(serve)

    assert api.run("pages", "--url", "https://example.test/1") == 0
    out = capsys.readouterr().out
    assert api.run("--json", "pages", "--url", "https://example.test/1") == 0
    document = json.loads(capsys.readouterr().out)
    assert api.run("pages", "--url", "https://example.test/unknown") == 2

    lines = out.splitlines()
    assert lines[0].startswith(f"page {page(1)['id']} https://example.test/1: 2 versions")
    assert lines[2].split()[0] == "9" and "b" * 12 in lines[2] and f"job {JOB_ID} item 4" in lines[2]
    assert lines[3].split()[0] == "7" and "a" * 12 in lines[3]
    assert document["id"] == page(1)["id"] and len(document["versions"]) == 2
    assert "no page of yours has the URL https://example.test/unknown" in capsys.readouterr().err
    assert api.queries("/api/pages")[0]["versions"] == ["100"]


# --- search ----------------------------------------------------------------------------------------------------

def hit(n: int) -> dict[str, Any]:
    return {"page_id": page(n)["id"], "url": f"https://example.test/{n}", "title": f"Page {n}", "rank": 0.5 / n,
            "changed_at": "2025-01-02T10:00:00+00:00",
            "snippet": [{"text": "the harbour ", "match": False}, {"text": "pilot", "match": True},
                        {"text": "\nguided the ship", "match": False}]}


def search_api(serve: Serve, total: int = 5) -> Api:
    def search(query: dict[str, list[str]]) -> Answer:
        if query["q"] == ["-only"]:
            return problem(400, "the query has no word to look for")
        start = int(query.get("cursor", ["0"])[0])
        end = min(start + int(query["limit"][0]), total)
        return ok({"items": [hit(n) for n in range(start + 1, end + 1)],
                   "next_cursor": str(end) if end < total else None, "capped": total > 100})

    return serve({"/api/search": search})


def test_search_prints_ranked_hits_with_their_snippets(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    api = search_api(serve)

    assert api.run("search", "harbour pilot", "--host", "example.test", "--job", JOB_ID, "--limit", "2") == 0

    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == "" and lines[0].startswith("1. Page 1  https://example.test/1  (rank 0.5, changed ")
    assert lines[1] == "   the harbour **pilot** guided the ship"
    assert lines[2].startswith("2. Page 2  https://example.test/2")
    [query] = api.queries("/api/search")
    assert (query["q"], query["host"], query["job_id"], query["limit"]) == (
        ["harbour pilot"], ["example.test"], [JOB_ID], ["2"])


def test_search_follows_pages_up_to_the_limit(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    api = search_api(serve, total=120)

    assert api.run("--quiet", "search", "pilot", "--limit", "70") == 0

    out, err = capsys.readouterr()
    assert out.splitlines() == [f"https://example.test/{n}" for n in range(1, 71)]
    assert err.startswith("trawl: warning: so many pages match that only the most recently changed were ranked")
    assert [query["limit"] for query in api.queries("/api/search")] == [["50"], ["20"]]


def test_search_without_hits_and_a_refused_query(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    api = search_api(serve, total=0)

    assert api.run("search", "nothing") == 0
    assert capsys.readouterr().out == "no pages match\n"
    assert api.run("search", "--", "-only") == 3
    assert capsys.readouterr().err == "trawl: 400 Bad request: the query has no word to look for\n"
    assert api.run("search", "x", "--changed-since", "2025-01-01") == 2
    assert "needs a time zone" in capsys.readouterr().err
