"""Pages, versions, diffs and full-text search on the real PostgreSQL: pages recorded as the worker records them
(`record_page_version`, with their search vectors), bodies in an in-memory content store.

Search ranks by ts_rank_cd, reads web search syntax (phrases, OR, exclusion), runs each page in its own
language's configuration, sees only the owner's latest versions (an admin every owner's), filters by host, last
change and job, and pages with cursors that never repeat a hit."""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest

from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.unit_of_work import UnitOfWork, in_transaction
from shared.adapters.executors import Executors, Work
from shared.contract.page_schemas import DiffQuery, PageListQuery, PageVersionsQuery, SearchQuery
from shared.domain.content import ContentFormat, KeptContent, StoredBody, search_config, text_digest
from shared.domain.errors import BadRequest, NotFound
from shared.domain.models import Job, Owner
from shared.services import pages
from shared.services.page_content import BodyReader
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration

FetchRows = Callable[..., list[dict[str, Any]]]


class MemoryStore(BodyReader):
    """Bodies by SHA-256, as the content store keeps them."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}

    def put(self, text: str) -> StoredBody:
        data = text.encode()
        sha256 = hashlib.sha256(data).hexdigest()
        self.bodies[sha256] = data
        return StoredBody(sha256, len(data))

    def chunks(self, sha256: str) -> Iterator[bytes]:
        yield self.bodies[sha256]

    def read(self, sha256: str, max_bytes: int) -> tuple[bytes, bool]:
        if sha256 not in self.bodies:
            raise NotFound(f"no stored body with SHA-256 {sha256}")
        data = self.bodies[sha256]
        return data[:max_bytes], len(data) > max_bytes


@dataclass
class Library:
    """Records pages as the worker does: one item each (or several items of one job), Markdown kept."""

    pool: ConnectionPool
    submit_job: Callable[..., Job]
    store: MemoryStore = field(default_factory=MemoryStore)
    executors: Executors = field(default_factory=lambda: Executors({Work.API: 4}))

    def scrape(self, url: str, text: str, language: str | None = "en", owner: Owner = ANONYMOUS_OWNER,
               markdown: str | None = None) -> UUID:
        job = self.submit_job(count=1, owner=owner)
        return self.record(job, 0, url, text, language, owner, markdown)

    def scrape_job(self, pages_text: dict[str, str], owner: Owner = ANONYMOUS_OWNER) -> tuple[Job, list[UUID]]:
        job = self.submit_job(count=len(pages_text), owner=owner)
        return job, [self.record(job, seq, url, text, "en", owner)
                     for seq, (url, text) in enumerate(pages_text.items())]

    def record(self, job: Job, seq: int, url: str, text: str, language: str | None, owner: Owner,
               markdown: str | None = None) -> UUID:
        """Store the body, record the version and complete the item with it, as the worker does."""
        body = self.store.put(markdown if markdown is not None else f"# Page\n\n{text}\n")

        def keep(tx: UnitOfWork) -> KeptContent:
            kept = tx.jobs.record_page_version(owner, url, urlsplit(url).hostname or "", text_digest(text),
                                               {ContentFormat.MARKDOWN: body}, job.id, seq, text,
                                               search_config(language))
            tx.jobs.complete_item(job.id, seq, {"title": f"Title of {url}"}, 200, url, 5, kept)
            return kept

        kept = in_transaction(self.pool, keep)
        assert kept.page_id is not None
        return kept.page_id

    def search(self, q: str, owner: Owner | None = ANONYMOUS_OWNER, **filters: Any) -> pages.SearchListing:
        query = SearchQuery.model_validate({"q": q, **filters})
        return asyncio.run(pages.search(self.pool, self.store, self.executors, owner, query))

    def found(self, q: str, owner: Owner | None = ANONYMOUS_OWNER, **filters: Any) -> list[str]:
        return [hit.page.url for hit in self.search(q, owner, snippets=False, **filters).hits]


@pytest.fixture
def library(pool: ConnectionPool, submit_job: Callable[..., Job]) -> Library:
    return Library(pool, submit_job)


def test_hits_are_ranked_by_cover_density(library: Library) -> None:
    library.scrape("https://a.test/far", "The harbour is quiet at night. Many unrelated words follow here, about "
                                         "gardens, trains and the weather, before a pilot appears.")
    library.scrape("https://a.test/dense", "The harbour pilot guided the ship; harbour pilots know every rock.")
    library.scrape("https://a.test/none", "Gardens and trains.")

    found = library.search("harbour pilot", snippets=False)

    assert [hit.page.url for hit in found.hits] == ["https://a.test/dense", "https://a.test/far"]
    assert found.hits[0].rank > found.hits[1].rank > 0


def test_web_search_syntax_phrases_or_and_exclusion(library: Library) -> None:
    library.scrape("https://a.test/red", "Red apples fall from the old tree.")
    library.scrape("https://a.test/green", "Green apples and a red barn.")
    library.scrape("https://a.test/bananas", "Bananas grow in bunches.")

    assert sorted(library.found("apples")) == ["https://a.test/green", "https://a.test/red"]
    assert library.found('"red apples"') == ["https://a.test/red"], "a phrase: the words next to each other"
    assert library.found("apples -green") == ["https://a.test/red"]
    assert sorted(library.found("bananas OR barn")) == ["https://a.test/bananas", "https://a.test/green"]
    assert library.found("bananas barn") == [], "every word is required without OR"


def test_each_page_is_searched_in_its_own_language(library: Library, fetch_rows: FetchRows) -> None:
    library.scrape("https://en.test/", "She was running to the station every morning.", "en")
    library.scrape("https://pl.test/", "Running jest tutaj słowem obcym.", "pl")
    library.scrape("https://fr.test/", "Les chevaux courent dans les prés.", "fr")

    assert library.found("run") == ["https://en.test/"], "English stems running to run; `simple` (Polish) does not"
    assert sorted(library.found("running")) == ["https://en.test/", "https://pl.test/"]
    assert library.found("cheval") == ["https://fr.test/"], "French stems chevaux to cheval"
    configs = {row["url"]: row["search_config"] for row in fetch_rows(
        "SELECT p.url, v.search_config::text FROM pages p JOIN page_versions v ON v.id = p.latest_version_id")}
    assert configs == {"https://en.test/": "english", "https://pl.test/": "simple", "https://fr.test/": "french"}


def test_only_the_latest_version_of_a_page_is_searched(library: Library) -> None:
    library.scrape("https://a.test/news", "Yesterday the museum opened.")
    library.scrape("https://a.test/news", "Today the library opened.")

    assert library.found("museum") == []
    assert library.found("library") == ["https://a.test/news"]


@pytest.mark.parametrize("q", ["-museum", "!!! ...", "-museum -library"])
def test_a_query_with_nothing_to_look_for_is_refused(library: Library, q: str) -> None:
    library.scrape("https://a.test/", "The museum and the library.")

    with pytest.raises(BadRequest, match="no word to look for"):
        library.search(q)


def test_only_the_owner_finds_their_pages_and_an_admin_finds_everyones(library: Library, other_owner: Owner) -> None:
    library.scrape("https://a.test/mine", "A lighthouse on the cape.")
    library.scrape("https://a.test/theirs", "A lighthouse keeper's diary.", owner=other_owner)

    assert library.found("lighthouse") == ["https://a.test/mine"]
    assert library.found("lighthouse", other_owner) == ["https://a.test/theirs"]
    assert sorted(library.found("lighthouse", None)) == ["https://a.test/mine", "https://a.test/theirs"]
    owners = {hit.page.owner for hit in library.search("lighthouse", None).hits}
    assert owners == {ANONYMOUS_OWNER, other_owner}


def test_filters_by_host_last_change_and_job(library: Library, execute_sql: Callable[..., None]) -> None:
    job, _ = library.scrape_job({"https://one.test/a": "Zebra crossing.", "https://two.test/b": "Zebra herd."})
    old = library.scrape("https://one.test/old", "A zebra in an old photograph.")
    execute_sql("UPDATE page_versions SET first_seen_at = now() - interval '10 days' WHERE page_id = %s", (old,))

    assert sorted(library.found("zebra", host="ONE.test")) == ["https://one.test/a", "https://one.test/old"]
    week_ago = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    assert sorted(library.found("zebra", changed_since=week_ago)) == ["https://one.test/a", "https://two.test/b"]
    assert sorted(library.found("zebra", job_id=str(job.id))) == ["https://one.test/a", "https://two.test/b"]
    assert library.found("zebra", job_id=str(job.id), host="two.test") == ["https://two.test/b"]


def test_cursor_pages_give_every_hit_once_best_first(library: Library) -> None:
    # Ranks repeat (the same text on several pages): the page id breaks ties.
    for n in range(23):
        library.scrape(f"https://a.test/{n}", " ".join(["comet"] * (1 + n % 4) + ["sky"] * 20))

    seen: list[tuple[float, str]] = []
    cursor = None
    while True:
        page = library.search("comet", snippets=False, limit=5, **({"cursor": cursor} if cursor else {}))
        seen += [(hit.rank, hit.page.url) for hit in page.hits]
        cursor = page.next_cursor
        if cursor is None:
            break

    assert len(seen) == 23 and len({url for _, url in seen}) == 23
    assert [rank for rank, _ in seen] == sorted((rank for rank, _ in seen), reverse=True)
    first = library.search("comet", snippets=False, limit=5)
    with pytest.raises(BadRequest, match="other filters"):
        library.search("comet sky", cursor=first.next_cursor)


def test_a_broad_query_ranks_only_the_most_recently_changed_matches(library: Library,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "MAX_RANKED_MATCHES", 3)
    library.scrape("https://a.test/oldest", "tide " * 10)
    for n in range(3):
        library.scrape(f"https://a.test/{n}", "tide " * (n + 1))

    broad = library.search("tide", snippets=False)
    narrow = library.search("tide", snippets=False, limit=2)

    assert broad.capped and [hit.page.url for hit in broad.hits] == ["https://a.test/2", "https://a.test/1",
                                                                     "https://a.test/0"]
    assert library.found("tide", host="b.test") == [] and not library.search("tide", host="b.test").capped
    assert narrow.capped and len(narrow.hits) == 2
    rest = library.search("tide", snippets=False, limit=2, cursor=narrow.next_cursor)
    assert [hit.page.url for hit in rest.hits] == ["https://a.test/0"] and rest.next_cursor is None
    monkeypatch.setattr(pages, "MAX_RANKED_MATCHES", 4)
    assert not library.search("tide").capped and library.found("tide")[0] == "https://a.test/oldest"


def test_snippets_mark_the_matches_in_plain_text(library: Library) -> None:
    library.scrape("https://a.test/", "The pilot guided the ship into the harbour.",
                   markdown="# Harbour\n\nThe **pilot** guided [the ship](https://x.test/ship) into the harbour.\n")

    [hit] = library.search("pilot harbour").hits
    [snippet] = library.search("pilot harbour").snippets

    assert snippet is not None and hit.page.url == "https://a.test/" and hit.title == "Title of https://a.test/"
    assert [part.text.lower() for part in snippet if part.match] == ["harbour", "pilot", "harbour"]
    text = "".join(part.text for part in snippet)
    assert "the ship into" in text and "https" not in text and "**" not in text and "[" not in text
    assert library.search("pilot", snippets=False).snippets == [None]


def test_a_snippet_finds_a_match_deep_in_a_long_page(library: Library) -> None:
    library.scrape("https://a.test/long",
                   "Filler words about nothing much. " * 3000 + "The albatross glides over the sea.")

    [snippet] = library.search("albatrosses").snippets

    assert snippet is not None and [part.text for part in snippet if part.match] == ["albatross"]
    assert "The albatross glides" in "".join(part.text for part in snippet)


def test_pages_are_listed_by_host_and_url_with_their_newest_versions(library: Library,
                                                                     execute_sql: Callable[..., None]) -> None:
    page = library.scrape("https://b.test/x", "First text.")
    library.scrape("https://b.test/x", "Second text.")
    library.scrape("https://b.test/x", "Third text.")
    library.scrape("https://a.test/y", "Only text.")
    execute_sql("UPDATE page_versions SET first_seen_at = now() - interval '3 days'")

    listing = pages.list_pages(library.pool, ANONYMOUS_OWNER, PageListQuery(versions=2))
    [x] = pages.list_pages(library.pool, ANONYMOUS_OWNER, PageListQuery(url="HTTPS://B.test:443/x#top")).pages

    assert [(p.url, p.version_count, len(p.versions)) for p in listing.pages] == [
        ("https://a.test/y", 1, 1), ("https://b.test/x", 3, 2)]
    assert x.id == page and [v.id for v in x.versions] == sorted((v.id for v in x.versions), reverse=True)
    assert x.latest_version_id == x.versions[0].id and x.changed_at == x.versions[0].first_seen_at
    [on_a] = pages.list_pages(library.pool, ANONYMOUS_OWNER, PageListQuery(host="a.test")).pages
    assert on_a.url == "https://a.test/y"
    library.scrape("https://b.test/x", "Fourth text.")
    since = PageListQuery(changed_since=datetime.now(UTC) - timedelta(days=1))
    assert [p.url for p in pages.list_pages(library.pool, ANONYMOUS_OWNER, since).pages] == ["https://b.test/x"]


def test_page_listings_page_with_cursors(library: Library, other_owner: Owner) -> None:
    for n in range(7):
        library.scrape(f"https://a.test/{n}", f"Text {n}.")
    library.scrape("https://a.test/other", "Theirs.", owner=other_owner)

    urls: list[str] = []
    cursor = None
    while True:
        listing = pages.list_pages(library.pool, ANONYMOUS_OWNER, PageListQuery(limit=3, cursor=cursor))
        urls += [page.url for page in listing.pages]
        if (cursor := listing.next_cursor) is None:
            break

    assert urls == sorted(f"https://a.test/{n}" for n in range(7))
    with pytest.raises(BadRequest, match="other filters"):
        pages.list_pages(library.pool, ANONYMOUS_OWNER, PageListQuery(limit=3, host="a.test",
                                                                      cursor=pages.list_pages(
                                                                          library.pool, ANONYMOUS_OWNER,
                                                                          PageListQuery(limit=3)).next_cursor))


def test_a_page_history_pages_its_versions_newest_first(library: Library, other_owner: Owner) -> None:
    for n in range(5):
        page_id = library.scrape("https://a.test/h", f"Version {n} of the text.")

    first, cursor = pages.page_history(library.pool, page_id, ANONYMOUS_OWNER, PageVersionsQuery(limit=3))
    rest, end = pages.page_history(library.pool, page_id, ANONYMOUS_OWNER, PageVersionsQuery(limit=3, cursor=cursor))

    ids = [v.id for v in first.versions + rest.versions]
    assert len(ids) == 5 == first.version_count and ids == sorted(ids, reverse=True) and end is None
    with pytest.raises(NotFound):
        pages.page_history(library.pool, page_id, other_owner, PageVersionsQuery())
    assert pages.page_history(library.pool, page_id, None, PageVersionsQuery())[0].id == page_id


def test_a_diff_compares_two_versions_markdown(library: Library, other_owner: Owner,
                                               execute_sql: Callable[..., None]) -> None:
    page_id = library.scrape("https://a.test/d", "one", markdown="# Title\n\nFirst line.\n")
    library.scrape("https://a.test/d", "two", markdown="# Title\n\nFirst line.\nAn added line.\n")
    other = library.scrape("https://a.test/e", "other")
    [page] = pages.list_pages(library.pool, ANONYMOUS_OWNER, PageListQuery(url="https://a.test/d")).pages
    newer, older = (v.id for v in page.versions)

    latest = pages.page_diff(library.pool, library.store, page_id, ANONYMOUS_OWNER, DiffQuery())
    explicit = pages.page_diff(library.pool, library.store, page_id, ANONYMOUS_OWNER,
                               DiffQuery.model_validate({"from": newer, "to": older}))
    first = pages.page_diff(library.pool, library.store, page_id, ANONYMOUS_OWNER, DiffQuery(to=older))

    assert "\n+An added line.\n" in latest and f"version {older}" in latest.splitlines()[0]
    assert "\n-An added line.\n" in explicit
    assert first.startswith("--- /dev/null\n") and "+# Title\n" in first
    assert pages.page_diff(library.pool, library.store, page_id, ANONYMOUS_OWNER, DiffQuery(to=older,
                                                                                            **{"from": older})) == ""
    with pytest.raises(NotFound):
        pages.page_diff(library.pool, library.store, page_id, other_owner, DiffQuery())
    with pytest.raises(NotFound, match="no version"):
        pages.page_diff(library.pool, library.store, other, ANONYMOUS_OWNER, DiffQuery(to=newer))
    with pytest.raises(NotFound, match="kept no text"):
        pages.page_diff(library.pool, library.store, page_id, ANONYMOUS_OWNER, DiffQuery(format="text"))
    execute_sql("UPDATE page_versions SET markdown_bytes = 3 * 1024 * 1024 WHERE id = %s", (newer,))
    with pytest.raises(pages.DiffTooLarge, match="at most 2097152 bytes"):
        pages.page_diff(library.pool, library.store, page_id, ANONYMOUS_OWNER, DiffQuery())
