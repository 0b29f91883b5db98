"""Page content through devhost: Markdown and text of the main content stored as content-addressed blobs, read
one by one or inline, and each page's versions telling new, changed and unchanged content apart."""
from __future__ import annotations

import gzip
import hashlib
from typing import Any

import pytest
import requests
from azure.storage.blob import ContainerClient

from shared.adapters.content_store import blob_name
from tests.e2e.conftest import Trawl
from tests.e2e.site import TestSite

AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
           "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
           "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")


def article(title: str, paragraphs: list[str], footer: str = "© Example") -> str:
    body = "".join(f"<p>{text}</p>" for text in paragraphs)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a> <a href="/contact">Contact</a></nav>
<main><article><h1>{title}</h1>{body}
<h2>Steps</h2><ul><li>Mix the flour and the water.</li><li>Knead for ten minutes.</li></ul>
<pre><code>print("hello")</code></pre></article></main>
<aside class="ads">Buy our product now! Limited offer on everything.</aside>
<footer>{footer}</footer></body></html>"""


PARAGRAPHS = [
    "Sourdough bread is made by the fermentation of dough using naturally occurring lactobacilli and yeast.",
    "The bread has a more sour taste and better inherent keeping qualities than breads made with baker's yeast.",
    "It is leavened by a culture that bakers keep alive by feeding it flour and water every day of the week.",
]


def serve(site: TestSite, path: str, html: str) -> str:
    site.pages[path] = (200, html, {"Content-Type": "text/html; charset=utf-8"})
    return site.url(path)


def results(trawl: Trawl, job_id: str, **params: Any) -> list[dict[str, Any]]:
    response = trawl.http.get(f"{trawl.api}/jobs/{job_id}/results", params=params, timeout=30)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def run(trawl: Trawl, urls: list[str], **options: Any) -> list[dict[str, Any]]:
    job = trawl.submit(urls, **options)
    assert trawl.wait_final(job["id"])["status"] == "succeeded"
    return results(trawl, job["id"])


def test_the_default_job_keeps_the_main_content_as_markdown_in_a_content_addressed_blob(
        trawl: Trawl, site: TestSite) -> None:
    url = serve(site, "/content/bread", article("Sourdough", PARAGRAPHS))

    [item] = run(trawl, [url])

    body = item["content"]["markdown"]
    assert set(item["content"]) == {"markdown"} and item["change"] == "new"
    markdown = trawl.http.get(f"{trawl.host.base_url}{body['url']}", timeout=30)
    assert markdown.status_code == 200 and markdown.headers["Content-Type"].startswith("text/markdown")
    assert "# Sourdough" in markdown.text and "- Mix the flour" in markdown.text and 'print("hello")' in markdown.text
    assert "Buy our product" not in markdown.text and "Contact" not in markdown.text
    assert hashlib.sha256(markdown.content).hexdigest() == body["sha256"] and len(markdown.content) == body["bytes"]
    stored = ContainerClient.from_connection_string(AZURITE, "trawl-content").download_blob(blob_name(body["sha256"]),
                                                                                             decompress=False)
    assert gzip.decompress(stored.readall()) == markdown.content, "stored once, compressed, under its hash"

    again = trawl.http.get(f"{trawl.host.base_url}{body['url']}", headers={"If-None-Match": markdown.headers["ETag"]},
                           timeout=30)
    assert again.status_code == 304
    [inline] = results(trawl, item_job(trawl, body["url"]), include="markdown")
    assert inline["content"]["markdown"]["content"] == markdown.text


def item_job(trawl: Trawl, content_url: str) -> str:
    return content_url.split("/")[3]


def test_text_and_html_formats_and_a_metadata_only_job_keeps_no_body(trawl: Trawl, site: TestSite) -> None:
    url = serve(site, "/content/formats", article("Formats", PARAGRAPHS))

    [item] = run(trawl, [url], formats=["metadata", "text", "html"])
    [bare] = run(trawl, [url], formats=["metadata"])

    assert set(item["content"]) == {"text", "html"}
    text = trawl.http.get(f"{trawl.host.base_url}{item['content']['text']['url']}", timeout=30).text
    html = trawl.http.get(f"{trawl.host.base_url}{item['content']['html']['url']}", timeout=30).text
    assert "Sourdough bread is made" in text and "<" not in text
    assert html.startswith("<!doctype html>") and "<footer>" in html
    assert bare["content"] == {} and bare["change"] is None and bare["result"]["title"] == "Formats"
    missing = trawl.http.get(f"{trawl.host.base_url}{item['content']['text']['url'].replace('text', 'markdown')}",
                             timeout=30)
    assert missing.status_code == 404 and "kept no markdown" in missing.json()["detail"]


def test_a_page_seen_again_is_unchanged_until_its_main_content_changes(trawl: Trawl, site: TestSite) -> None:
    path = "/content/versions"
    url = serve(site, path, article("Versions", PARAGRAPHS, footer="Rendered at 10:00:01"))
    [first] = run(trawl, [url])
    serve(site, path, article("Versions", PARAGRAPHS, footer="Rendered at 10:05:42"))
    [footer_only] = run(trawl, [url])
    serve(site, path, article("Versions", [*PARAGRAPHS, "A new paragraph about rye flour appears."]))
    [edited] = run(trawl, [url])

    assert (first["change"], footer_only["change"], edited["change"]) == ("new", "unchanged", "changed")
    assert footer_only["content"]["markdown"]["sha256"] == first["content"]["markdown"]["sha256"]
    assert edited["content"]["markdown"]["sha256"] != first["content"]["markdown"]["sha256"]
    versions = trawl.rows("SELECT v.job_id FROM page_versions v JOIN pages p ON p.id = v.page_id WHERE p.url = %s "
                          "ORDER BY v.id", url)
    assert len(versions) == 2


def test_another_callers_item_content_is_not_found_and_their_pages_are_their_own(trawl: Trawl, site: TestSite) -> None:
    url = serve(site, "/content/private", article("Private", PARAGRAPHS))
    [mine] = run(trawl, [url])

    mallory = Trawl(trawl.host, trawl.db_url, trawl.queue, user="mallory")
    assert mallory.http.get(f"{trawl.host.base_url}{mine['content']['markdown']['url']}", timeout=30).status_code == 404
    [theirs] = run(mallory, [url])
    assert theirs["change"] == "new", "one caller's page history never answers another's"


@pytest.mark.parametrize(("query", "problem"), [
    ({"format": "pdf"}, "format"),
    ({"include": "markdown", "format": "csv"}, "include applies to format=json only"),
])
def test_bad_content_requests_are_problems(trawl: Trawl, site: TestSite, query: dict[str, str], problem: str) -> None:
    url = serve(site, "/content/bad", article("Bad", PARAGRAPHS))
    [item] = run(trawl, [url])
    job_id = item_job(trawl, item["content"]["markdown"]["url"])
    target = (f"{trawl.api}/jobs/{job_id}/items/0/content" if "include" not in query
              else f"{trawl.api}/jobs/{job_id}/results")
    response = trawl.http.get(target, params=query, timeout=30)
    assert response.status_code == 400 and problem in response.text
    assert requests.get(f"{trawl.api}/jobs/{job_id}/items/0/content", timeout=30).status_code == 401


def test_max_age_answers_from_the_callers_page_store_without_fetching(trawl: Trawl, site: TestSite) -> None:
    path = "/content/cached"
    url = serve(site, path, article("Cached", PARAGRAPHS))
    [fetched] = run(trawl, [url])
    fetches = site.hits[path]

    [cached] = run(trawl, [url], max_age_seconds=3600)
    [text_too] = run(trawl, [url], max_age_seconds=3600, formats=["metadata", "markdown", "text"])
    mallory = Trawl(trawl.host, trawl.db_url, trawl.queue, user="mallory")
    [theirs] = run(mallory, [url], max_age_seconds=3600)

    assert cached["cached"] and not fetched["cached"], cached
    assert cached["content"]["markdown"]["sha256"] == fetched["content"]["markdown"]["sha256"]
    assert cached["result"]["title"] == "Cached" and cached["change"] == "unchanged"
    assert not text_too["cached"], "the store had no text body for this page: fetched"
    assert not theirs["cached"], "another caller's scrapes never answer this one's"
    assert site.hits[path] == fetches + 2, "only the job that needed text and the other caller's job fetched"


def test_deleting_a_jobs_data_removes_its_results_and_bodies_and_is_logged(trawl: Trawl, site: TestSite) -> None:
    url = serve(site, "/content/delete-me", article("Delete me", PARAGRAPHS))
    [item] = run(trawl, [url])
    job_id = item_job(trawl, item["content"]["markdown"]["url"])

    deleted = trawl.http.delete(f"{trawl.api}/jobs/{job_id}/data", timeout=30)
    again = trawl.http.delete(f"{trawl.api}/jobs/{job_id}/data", timeout=30)
    mallory = Trawl(trawl.host, trawl.db_url, trawl.queue, user="mallory")

    assert deleted.status_code == 200 and deleted.json() == {"items": 1, "versions": 1, "bodies": 1}
    assert again.json() == {"items": 0, "versions": 0, "bodies": 0}
    [after] = results(trawl, job_id)
    assert after["result"] is None and after["content"] == {} and after["status"] == "succeeded"
    assert trawl.http.get(f"{trawl.host.base_url}{item['content']['markdown']['url']}", timeout=30).status_code == 404
    logs = trawl.http.get(f"{trawl.api}/jobs/{job_id}/logs", timeout=30).json()["items"]
    assert [entry["event"] for entry in logs][-1] == "data_deleted"
    assert mallory.http.delete(f"{trawl.api}/jobs/{job_id}/data", timeout=30).status_code == 404
    running = trawl.submit([site.url("/held/delete")])
    try:
        assert trawl.http.delete(f"{trawl.api}/jobs/{running['id']}/data", timeout=30).status_code == 409
    finally:
        site.released.set()
