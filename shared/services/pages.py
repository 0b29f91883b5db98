"""What the page endpoints do: list an owner's pages and their versions, diff two versions' bodies, and search
the latest versions with snippets. Everything is scoped to the owner (None: an admin, every owner's pages); another
owner's page is NotFound, as an unknown one."""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from shared.adapters.db import ConnectionPool, UnitOfWork, read
from shared.adapters.executors import Executors, Work
from shared.contract.page_schemas import (
    MAX_DIFF_BODY_BYTES,
    MAX_RANKED_MATCHES,
    SNIPPET_BODY_BYTES,
    DiffQuery,
    PageListQuery,
    PageVersionsQuery,
    SearchQuery,
)
from shared.domain.content import SEARCH_CONFIGS, ContentFormat
from shared.domain.cursors import decode_cursor, encode_cursor, filter_digest
from shared.domain.errors import BadRequest, NotFound, ValidationFailed
from shared.domain.models import Owner
from shared.domain.page_history import (
    Page,
    PageKey,
    PageVersion,
    SearchHit,
    SearchKey,
    SnippetPart,
    headline_input,
    query_lexemes,
    snippet_parts,
    snippet_windows,
    unified_diff,
)
from shared.services.page_content import BodyReader

log = logging.getLogger(f"trawl.{__name__}")

# Every configuration the worker stores (shared.domain.content.search_config): a query is read in each.
SEARCH_CONFIG_NAMES = tuple(sorted({*SEARCH_CONFIGS.values(), "simple"}))
# Snippets are cut from the text body where the item kept one (what was indexed), else from the Markdown.
SNIPPET_SOURCES = (ContentFormat.TEXT, ContentFormat.MARKDOWN)
_INVALID_CURSOR = "the cursor is not valid: pass back next_cursor exactly as it was returned"


class DiffTooLarge(ValidationFailed):
    """A body of a diff is larger than MAX_DIFF_BODY_BYTES."""

    slug, title = "diff-too-large", "Too large to diff"


@dataclass(frozen=True)
class PageListing:
    """One page of pages (each with its newest versions) and the cursor of the next (None: last)."""

    pages: list[Page]
    next_cursor: str | None


@dataclass(frozen=True)
class HitPage:
    """One page of hits, best first, the cursor of the next page (None: last), the query as each configuration
    with a word to look up reads it (a tsquery's text), and whether only the MAX_RANKED_MATCHES most recently
    changed matches were ranked."""

    hits: list[SearchHit]
    next_cursor: str | None
    forms: dict[str, str]
    capped: bool = False


@dataclass(frozen=True)
class SearchListing:
    """One page of hits, best first, each hit's snippet (None: not asked for, or no body to cut it from), the
    cursor of the next page (None: last), and whether only the most recently changed matches were ranked."""

    hits: list[SearchHit]
    snippets: list[list[SnippetPart] | None]
    next_cursor: str | None
    capped: bool = False


def list_pages(pool: ConnectionPool, owner: Owner | None, query: PageListQuery) -> PageListing:
    """The owner's pages by host, then URL, filtered by URL, host and last change, with their newest
    `query.versions` versions each; keyset-paged."""
    digest = filter_digest("pages", {"url": query.url, "host": query.host, "changed_since": query.changed_since})
    after = None if query.cursor is None else _page_key(decode_cursor(query.cursor, digest))
    pages = read(pool, lambda tx: _pages_with_versions(tx, owner, query, after))
    shown = pages[:query.limit]
    more = len(pages) > query.limit
    return PageListing(shown, encode_cursor([shown[-1].host, shown[-1].url, str(shown[-1].id)], digest) if more
                       else None)


def page_history(pool: ConnectionPool, page_id: UUID, owner: Owner | None,
                 query: PageVersionsQuery) -> tuple[Page, str | None]:
    """The page with one page of its versions, newest first, and the cursor of older ones (None: no more)."""
    digest = filter_digest("page_versions", {"page_id": str(page_id)})
    before = None if query.cursor is None else _version_id(decode_cursor(query.cursor, digest))
    page = _require_page(pool, page_id, owner)
    versions = read(pool, lambda tx: tx.pages.versions_before(page_id, before, query.limit + 1))
    shown = versions[:query.limit]
    cursor = encode_cursor(shown[-1].id, digest) if len(versions) > query.limit else None
    return replace(page, versions=shown), cursor


def page_diff(pool: ConnectionPool, store: BodyReader, page_id: UUID, owner: Owner | None, query: DiffQuery) -> str:
    """The unified diff of the `query.format` bodies of two versions of the page (default: the latest and the one
    before it; the first version's diff is from nothing). NotFound for a version of another page or a body the
    version's item did not keep; DiffTooLarge past MAX_DIFF_BODY_BYTES."""
    page = _require_page(pool, page_id, owner)
    kind = ContentFormat(query.format)
    newer = _version(pool, page, query.to or page.latest_version_id)
    older = (_version(pool, page, query.from_) if query.from_ is not None
             else next(iter(read(pool, lambda tx: tx.pages.versions_before(page.id, newer.id, 1))), None))
    before = "" if older is None else _body_text(store, older, kind)
    after = _body_text(store, newer, kind)
    before_label = "/dev/null" if older is None else _label(page, older)
    return unified_diff(before, after, before_label, _label(page, newer), query.context)


async def search(pool: ConnectionPool, store: BodyReader, executors: Executors, owner: Owner | None,
                 query: SearchQuery) -> SearchListing:
    """One page of the owner's pages whose latest version matches `query.q`, best first, with snippets: the
    hits' bodies are read at once on the API threads, then cut in one statement."""
    found = await executors.run(Work.API, search_hits, pool, owner, query)
    if not query.snippets:
        return SearchListing(found.hits, [None] * len(found.hits), found.next_cursor, found.capped)
    texts = await asyncio.gather(*(executors.run(Work.API, snippet_text, store, hit.version,
                                                 query_lexemes(found.forms[hit.version.search_config]))
                                   for hit in found.hits))
    snippets = await executors.run(Work.API, headlines, pool, query.q, texts)
    return SearchListing(found.hits, snippets, found.next_cursor, found.capped)


def search_hits(pool: ConnectionPool, owner: Owner | None, query: SearchQuery) -> HitPage:
    """The page of hits, the next cursor and the query's forms: two statements, the query as each configuration
    reads it, then the search. BadRequest when the query has no word to look up in any language (only stop
    words, or only exclusions)."""
    digest = filter_digest("search", {"q": query.q, "job_id": None if query.job_id is None else str(query.job_id),
                                      "host": query.host, "changed_since": query.changed_since})
    after = None if query.cursor is None else _search_key(decode_cursor(query.cursor, digest))
    forms, (hits, capped) = read(pool, lambda tx: _search(tx, owner, query, after))
    shown = hits[:query.limit]
    cursor = encode_cursor([shown[-1].rank, str(shown[-1].page.id)], digest) if len(hits) > query.limit else None
    return HitPage(shown, cursor, forms, capped)


def snippet_text(store: BodyReader, version: PageVersion, lexemes: Sequence[str]) -> tuple[str, str] | None:
    """(configuration, text) to cut a snippet of `version` from: windows around the query's `lexemes` in the start
    of its text body, else of its Markdown read as text; None when it kept neither, or the body is gone."""
    kind = next((kind for kind in SNIPPET_SOURCES if kind in version.bodies), None)
    if kind is None:
        return None
    try:
        head, _ = store.read(version.bodies[kind].sha256, SNIPPET_BODY_BYTES)
    except NotFound:
        log.warning("page %s version %s: its %s body is missing from the content store", version.page_id,
                    version.id, kind)
        return None
    text = headline_input(head.decode("utf-8", errors="ignore"), kind)
    return version.search_config, snippet_windows(text, lexemes)


def headlines(pool: ConnectionPool, q: str,
              texts: Sequence[tuple[str, str] | None]) -> list[list[SnippetPart] | None]:
    """Each hit's snippet for `q` from its (configuration, text) (None where there is none), in one statement."""
    present = [text for text in texts if text is not None]
    cut = iter(read(pool, lambda tx: tx.pages.headlines(q, present)) if present else [])
    return [None if text is None else snippet_parts(next(cut)) for text in texts]


def _pages_with_versions(tx: UnitOfWork, owner: Owner | None, query: PageListQuery,
                         after: PageKey | None) -> list[Page]:
    pages = tx.pages.list_pages(owner, query.url, query.host, query.changed_since, after, query.limit + 1)
    if not pages or not query.versions:
        return pages
    versions = tx.pages.newest_versions([page.id for page in pages], query.versions)
    return [replace(page, versions=versions.get(page.id, [])) for page in pages]


def _search(tx: UnitOfWork, owner: Owner | None, query: SearchQuery,
            after: SearchKey | None) -> tuple[dict[str, str], tuple[list[SearchHit], bool]]:
    forms = tx.pages.query_forms(query.q, SEARCH_CONFIG_NAMES)
    searchable = {config: form for config, form in forms.items() if form is not None}
    if not searchable:
        raise BadRequest("the query has no word to look for: it holds only stop words, punctuation or exclusions "
                         "(-word)", errors=[{"loc": ["q"], "msg": "has no word to look for", "type": "query_empty"}])
    found = tx.pages.search(owner, searchable, query.host, query.changed_since, query.job_id, after, query.limit + 1,
                            MAX_RANKED_MATCHES)
    return searchable, found


def _require_page(pool: ConnectionPool, page_id: UUID, owner: Owner | None) -> Page:
    page = read(pool, lambda tx: tx.pages.page(page_id, owner))
    if page is None:
        raise NotFound(f"page {page_id} not found")
    return page


def _version(pool: ConnectionPool, page: Page, version_id: int | None) -> PageVersion:
    if version_id is None:
        raise NotFound(f"page {page.id} has no versions")
    version = read(pool, lambda tx: tx.pages.versions(page.id, [version_id])).get(version_id)
    if version is None:
        raise NotFound(f"page {page.id} has no version {version_id}")
    return version


def _body_text(store: BodyReader, version: PageVersion, kind: ContentFormat) -> str:
    body = version.bodies.get(kind)
    if body is None:
        raise NotFound(f"version {version.id} kept no {kind} (its job's `formats` did not ask for it)")
    if body.size > MAX_DIFF_BODY_BYTES:
        raise DiffTooLarge(f"version {version.id}'s {kind} is {body.size} bytes; diffs compare bodies of at most "
                           f"{MAX_DIFF_BODY_BYTES} bytes: read the two bodies from their URLs instead")
    data, _ = store.read(body.sha256, MAX_DIFF_BODY_BYTES)
    return data.decode("utf-8", errors="replace")


def _label(page: Page, version: PageVersion) -> str:
    return f"{page.url} version {version.id} (first seen {version.first_seen_at.isoformat()})"


def _page_key(key: Any) -> PageKey:
    if not (isinstance(key, list) and len(key) == 3 and all(isinstance(part, str) for part in key)):
        raise BadRequest(_INVALID_CURSOR)
    return PageKey(key[0], key[1], _uuid(key[2]))


def _version_id(key: Any) -> int:
    if type(key) is not int or not 0 < key < 2**63:
        raise BadRequest(_INVALID_CURSOR)
    return key


def _search_key(key: Any) -> SearchKey:
    if not (isinstance(key, list) and len(key) == 2 and type(key[0]) in (int, float) and isinstance(key[1], str)):
        raise BadRequest(_INVALID_CURSOR)
    if not (math.isfinite(key[0]) and key[0] >= 0):
        raise BadRequest(_INVALID_CURSOR)
    return SearchKey(float(key[0]), _uuid(key[1]))


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise BadRequest(_INVALID_CURSOR) from None
