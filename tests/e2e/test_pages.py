"""Pages, versions, diffs and search through devhost: a page that changes between two jobs has two versions, its
diff shows the change, search finds it by a word only the new version has and never finds another user's pages,
another user's page is a 404, bad queries are 400s, and the `trawl` CLI shows the same."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.devhost.conftest import REPO
from tests.e2e.conftest import Trawl, dev_token
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e


def article(title: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{text}</p>" for text in paragraphs)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><nav><a href="/">Home</a></nav><main><article><h1>{title}</h1>{body}</article></main>
<footer>© Example</footer></body></html>"""


LIGHTHOUSE = [
    "The lighthouse stands on the northern cape and its lamp turns every night of the year.",
    "Keepers lived in the tower until the light was automated, long after the last storm.",
]
ADDED = "Cormorants nest on the gallery railings every spring since the restoration."


def serve(site: TestSite, path: str, html: str) -> str:
    site.pages[path] = (200, html, {"Content-Type": "text/html; charset=utf-8"})
    return site.url(path)


def run_job(trawl: Trawl, urls: list[str]) -> str:
    job = trawl.submit(urls)
    assert trawl.wait_final(job["id"])["status"] == "succeeded"
    return str(job["id"])


def get(trawl: Trawl, path: str, **params: Any) -> Any:
    response = trawl.http.get(f"{trawl.api}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json() if response.headers["Content-Type"].startswith("application/json") else response.text


@pytest.fixture(scope="module")
def changed_page(trawl: Trawl, site: TestSite) -> dict[str, Any]:
    """A page scraped by two jobs, its text changed in between, and the same URL scraped by mallory before."""
    url = serve(site, "/pages/lighthouse", article("Lighthouse", LIGHTHOUSE))
    mallory = Trawl(trawl.host, trawl.db_url, trawl.queue, user="mallory")
    run_job(mallory, [url])
    first_job = run_job(trawl, [url])
    serve(site, "/pages/lighthouse", article("Lighthouse", [*LIGHTHOUSE, ADDED]))
    second_job = run_job(trawl, [url])
    [page] = get(trawl, "/pages", url=url)["items"]
    return {"url": url, "page": page, "jobs": (first_job, second_job), "mallory": mallory}


def test_a_page_changed_between_two_jobs_has_two_versions(changed_page: dict[str, Any]) -> None:
    page = changed_page["page"]
    first_job, second_job = changed_page["jobs"]

    assert page["url"] == changed_page["url"] and page["version_count"] == 2
    newer, older = page["versions"]
    assert (newer["job_id"], older["job_id"]) == (second_job, first_job)
    assert newer["id"] > older["id"] and page["latest_version_id"] == newer["id"]
    assert newer["content"]["markdown"]["sha256"] != older["content"]["markdown"]["sha256"]
    assert newer["search_config"] == "english" and page["changed_at"] == newer["first_seen_at"]


def test_the_diff_shows_the_added_line(trawl: Trawl, changed_page: dict[str, Any]) -> None:
    page = changed_page["page"]
    newer, older = page["versions"]

    response = trawl.http.get(f"{trawl.api}/pages/{page['id']}/diff", timeout=30)
    explicit = get(trawl, f"/pages/{page['id']}/diff", **{"from": older["id"], "to": newer["id"]})

    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/x-diff")
    lines = response.text.splitlines()
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert f"+{ADDED}" in added and set(added) <= {f"+{ADDED}", "+"}
    assert not [line for line in lines if line.startswith("-") and not line.startswith("---")]
    assert lines[0].startswith(f"--- {changed_page['url']} version {older['id']} ")
    assert explicit == response.text


def test_search_finds_the_changed_page_by_its_new_word_and_never_another_users(
        trawl: Trawl, changed_page: dict[str, Any]) -> None:
    hits = get(trawl, "/search", q="cormorant")["items"]
    stems = get(trawl, "/search", q='"lighthouse stands" -penguins')["items"]
    theirs = get(changed_page["mallory"], "/search", q="cormorants")["items"]

    assert [hit["url"] for hit in hits] == [changed_page["url"]], "English stemming: cormorant finds cormorants"
    assert hits[0]["page_id"] == changed_page["page"]["id"] and hits[0]["title"] == "Lighthouse"
    assert any(part["match"] and part["text"].lower() == "cormorants" for part in hits[0]["snippet"])
    assert [hit["page_id"] for hit in stems] == [changed_page["page"]["id"]], "alice's page only, not mallory's"
    assert theirs == [], "mallory's copy is the version before the new word"
    assert get(trawl, "/search", q="cormorants", host="example.org")["items"] == []
    assert len(get(trawl, "/search", q="cormorants", job_id=changed_page["jobs"][1])["items"]) == 1


def test_another_users_page_is_not_found(trawl: Trawl, changed_page: dict[str, Any]) -> None:
    page_id = changed_page["page"]["id"]
    mallory = changed_page["mallory"]

    for path in (f"/pages/{page_id}", f"/pages/{page_id}/diff"):
        response = mallory.http.get(f"{trawl.api}{path}", timeout=30)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/problem+json"
    [theirs] = get(mallory, "/pages", url=changed_page["url"])["items"]
    assert theirs["id"] != page_id and theirs["version_count"] == 1
    assert get(trawl, f"/pages/{page_id}")["version_count"] == 2


@pytest.mark.parametrize(("path", "params", "problem"), [
    ("/search", {}, "q"),
    ("/search", {"q": "-penguins"}, "no word to look for"),
    ("/search", {"q": "x", "sort": "rank"}, "unknown query parameter sort"),
    ("/search", {"q": "x", "limit": "500"}, "limit"),
    ("/search", {"q": "x", "cursor": "not-a-cursor"}, "cursor is not valid"),
    ("/pages", {"url": "ftp://example.test/"}, "is not a URL a job could have scraped"),
    ("/pages", {"changed_since": "yesterday"}, "changed_since"),
])
def test_bad_queries_are_400_problems(trawl: Trawl, changed_page: dict[str, Any], path: str, params: dict[str, str],
                                      problem: str) -> None:
    response = trawl.http.get(f"{trawl.api}{path}", params=params, timeout=30)

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json" and problem in response.text


def test_bad_diffs(trawl: Trawl, changed_page: dict[str, Any]) -> None:
    page_id = changed_page["page"]["id"]
    other = trawl.http.get(f"{trawl.api}/pages/{page_id}/diff", params={"from": "abc"}, timeout=30)
    missing = trawl.http.get(f"{trawl.api}/pages/{page_id}/diff", params={"to": 2**62}, timeout=30)
    text = trawl.http.get(f"{trawl.api}/pages/{page_id}/diff", params={"format": "text"}, timeout=30)

    assert other.status_code == 400 and "from" in other.text
    assert missing.status_code == 404 and "has no version" in missing.text
    assert text.status_code == 404 and "kept no text" in text.text


def trawl_cli(trawl: Trawl, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRAWL_")}
    return subprocess.run([sys.executable, "-m", "trawl_cli", "--api-url", trawl.host.base_url, "--token", dev_token(),
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_the_cli_searches_shows_versions_and_prints_markdown(trawl: Trawl, changed_page: dict[str, Any]) -> None:
    search = trawl_cli(trawl, "search", "cormorants")
    versions = trawl_cli(trawl, "pages", "--url", changed_page["url"])
    markdown = trawl_cli(trawl, "results", changed_page["jobs"][1], "--format", "markdown")

    assert search.returncode == 0 and search.stdout.startswith(f"1. Lighthouse  {changed_page['url']}"), search
    assert "**Cormorants**" in search.stdout
    newer, older = changed_page["page"]["versions"]
    assert versions.returncode == 0 and "2 versions" in versions.stdout.splitlines()[0], versions
    assert [line.split()[0] for line in versions.stdout.splitlines()[2:]] == [str(newer["id"]), str(older["id"])]
    assert markdown.returncode == 0, markdown
    assert markdown.stdout.startswith(f"<!-- trawl: item 0 {changed_page['url']} -->\n# Lighthouse\n")
    assert ADDED in markdown.stdout
