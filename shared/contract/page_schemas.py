"""The HTTP contract of the page store's read side: pages and their versions, diffs between versions and full-text
search, as the queries validated at the edge and the views the API answers with."""
from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.contract.schemas import MAX_CURSOR_CHARS, BodyView, UrlRules, in_utc, normalised_url, url_refusal
from shared.domain.content import BODY_FORMATS
from shared.domain.page_history import Page, PageVersion, SearchHit, SnippetPart
from shared.scraping.netpolicy import BlockedTarget, InvalidTarget, normalise_host

MAX_VERSION_ID = 2**63 - 1
MAX_QUERY_CHARS = 500
# A diff reads both bodies whole and compares them line by line: past this, either body is refused (422).
MAX_DIFF_BODY_BYTES = 2 * 1024 * 1024
# A search ranks at most this many matches, the owner's most recently changed: ranking reads each match's search
# vector, so this bounds a broad query's cost (bench/README.md, "Search").
MAX_RANKED_MATCHES = 2000
# A snippet is cut from the start of each hit's text or Markdown body, at most this many bytes of it.
SNIPPET_BODY_BYTES = 256 * 1024

# A page's URL is looked up, never fetched: any port and address will do, the rest of the URL rules apply.
_LOOKUP_RULES = UrlRules(allowed_ports=frozenset(range(1, 65536)))
_LOOKUP_ONLY = frozenset({"url_port_not_allowed", "url_blocked_address"})


def page_url(url: str) -> str:
    """`url` as the worker stored its page: normalised as submitted URLs are (case of scheme and host, default
    port, fragment, empty path); ValueError when no job could have scraped it."""
    refusal = url_refusal(url, _LOOKUP_RULES)
    if refusal is not None and refusal.code not in _LOOKUP_ONLY:
        raise ValueError(f"is not a URL a job could have scraped: it {refusal.reason}")
    try:
        return normalised_url(url)
    except (InvalidTarget, BlockedTarget):
        raise ValueError("is not a URL a job could have scraped: it names this machine") from None


def page_host(host: str) -> str:
    """`host` as pages store it: lower case, IDNA (UTS 46), an IP address in its canonical form."""
    try:
        return normalise_host(host.removeprefix("[").removesuffix("]"))
    except (InvalidTarget, BlockedTarget):
        raise ValueError("is not a host name (letters, digits, hyphens and dots) or an IP address") from None


class _PageFilters(BaseModel):
    """The filters pages and search share."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(None, max_length=253, description="Only pages on this host (exactly: `www.example.com` "
                                                              "is not `example.com`).")
    changed_since: AwareDatetime | None = Field(None, description="Only pages whose latest version was first seen at "
                                                                  "or after this instant: new or changed since then.")

    @field_validator("host")
    @classmethod
    def _host(cls, host: str | None) -> str | None:
        return None if host is None else page_host(host)

    @field_validator("changed_since")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        return in_utc(moment)


class PageListQuery(_PageFilters):
    """Query of `GET /api/pages`."""

    url: str | None = Field(None, max_length=2048, description="Only the page of this URL, normalised as submitted "
                                                               "URLs are (scheme and host in lower case, no default "
                                                               "port, no fragment).")
    versions: int = Field(5, ge=0, le=100, description="How many of each page's newest versions to include.")
    cursor: str | None = Field(None, max_length=MAX_CURSOR_CHARS, description="`next_cursor` of the previous page.")
    limit: int = Field(20, ge=1, le=100, description="Pages per page.")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else page_url(url)


class PageVersionsQuery(BaseModel):
    """Query of `GET /api/pages/{id}`."""

    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(None, max_length=MAX_CURSOR_CHARS, description="`next_cursor` of the previous page "
                                                                              "of versions.")
    limit: int = Field(50, ge=1, le=500, description="Versions per page, newest first.")


class DiffQuery(BaseModel):
    """Query of `GET /api/pages/{id}/diff`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: int | None = Field(None, alias="from", ge=1, le=MAX_VERSION_ID,
                              description="The older version's id; default: the version before `to` (the diff of the "
                                          "page's first version is from nothing).")
    to: int | None = Field(None, ge=1, le=MAX_VERSION_ID, description="The newer version's id; default: the latest.")
    format: Literal["markdown", "text"] = Field("markdown", description="Which body of the two versions to compare.")
    context: int = Field(3, ge=0, le=100, description="Unchanged lines shown around each change.")


class SearchQuery(_PageFilters):
    """Query of `GET /api/search`."""

    q: str = Field(min_length=1, max_length=MAX_QUERY_CHARS,
                   description="Words to find, in web search syntax: `\"a phrase\"`, `a OR b`, `-excluded`; every word "
                               "is required otherwise. Each page is searched in its own language: English words match "
                               "their other forms on English pages (`run` finds `running`).")
    job_id: UUID | None = Field(None, description="Only pages this job scraped.")
    snippets: bool = Field(True, description="Include a snippet of each page around its matches (costs a read of "
                                             "each hit's body).")
    cursor: str | None = Field(None, max_length=MAX_CURSOR_CHARS, description="`next_cursor` of the previous page.")
    limit: int = Field(10, ge=1, le=50, description="Hits per page.")

    @field_validator("q")
    @classmethod
    def _words(cls, q: str) -> str:
        if "\x00" in q or not q.strip():
            raise ValueError("must hold words to search for (and no NUL characters)")
        return q


class VersionLinks(BaseModel):
    diff: str = Field(description="The diff of this version's Markdown from the version before it.")


class VersionView(BaseModel):
    """A distinct main content of a page, first seen by one item, which kept its bodies."""

    id: int = Field(description="Increasing over all pages: a newer version of a page has a greater id.")
    first_seen_at: datetime = Field(description="When an item first saw this content.")
    last_seen_at: datetime = Field(description="When an item last saw this content (later items that found the page "
                                               "unchanged).")
    text_digest: str = Field(description="SHA-256 of the main text with whitespace collapsed: what tells versions "
                                         "apart (a new date in a footer is no new version).")
    search_config: str = Field(description="The PostgreSQL text-search configuration of the page's language "
                                           "(`english`, `french`, ...; `simple` where PostgreSQL has none).")
    job_id: UUID = Field(description="The job whose item first saw this content.")
    seq: int = Field(description="That item's position in its job.")
    content: dict[str, BodyView] = Field(description="The bodies that item kept, by format (`markdown`, `text`, "
                                                     "`html`), each with its hash, size and URL.")
    links: VersionLinks

    @classmethod
    def of(cls, version: PageVersion) -> VersionView:
        content = {kind.value: BodyView(sha256=body.sha256, bytes=body.size,
                                        url=f"/api/jobs/{version.job_id}/items/{version.seq}/content?format={kind}")
                   for kind in BODY_FORMATS if (body := version.bodies.get(kind)) is not None}
        return cls(id=version.id, first_seen_at=version.first_seen_at, last_seen_at=version.last_seen_at,
                   text_digest=version.main_text_digest, search_config=version.search_config, job_id=version.job_id,
                   seq=version.seq, content=content,
                   links=VersionLinks(diff=f"/api/pages/{version.page_id}/diff?to={version.id}"))


class PageLinks(BaseModel):
    self: str = Field(description="The page with all its versions, a page at a time.")
    diff: str = Field(description="The diff of its latest version from the one before.")


class PageView(BaseModel):
    """A page: a normalised URL of one owner, and its versions, newest first."""

    id: UUID
    owner: str = Field(description="Whose scrapes these are, `<tenant id>/<object id>`: a page belongs to one owner.")
    url: str
    host: str
    first_seen_at: datetime = Field(description="When an item of this owner first scraped the page.")
    last_seen_at: datetime = Field(description="When an item last scraped it, changed or not.")
    changed_at: datetime | None = Field(description="When its latest version was first seen: its last change.")
    version_count: int
    latest_version_id: int | None
    versions: list[VersionView] = Field(description="Newest first: in a listing, the newest `versions` of them; in "
                                                    "`GET /api/pages/{id}`, one page of them.")
    links: PageLinks

    @classmethod
    def of(cls, page: Page) -> PageView:
        return cls(id=page.id, owner=page.owner.actor, url=page.url, host=page.host, first_seen_at=page.first_seen_at,
                   last_seen_at=page.last_seen_at, changed_at=page.changed_at, version_count=page.version_count,
                   latest_version_id=page.latest_version_id, versions=[VersionView.of(v) for v in page.versions],
                   links=PageLinks(self=f"/api/pages/{page.id}", diff=f"/api/pages/{page.id}/diff"))


class PagePage(BaseModel):
    """`GET /api/pages`: one page of the caller's pages, by host, then URL."""

    items: list[PageView]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters) for the next page; "
                                                "null on the last page.")


class PageHistoryView(PageView):
    """`GET /api/pages/{id}`: a page and one page of its versions, newest first."""

    next_cursor: str | None = Field(description="Pass as `cursor` for older versions; null on the last page.")

    @classmethod
    def of_history(cls, page: Page, next_cursor: str | None) -> PageHistoryView:
        return cls(**dict(PageView.of(page)), next_cursor=next_cursor)


class SnippetPartView(BaseModel):
    """A run of a snippet's text; `match` is true for the words the query matched."""

    text: str
    match: bool

    @classmethod
    def of(cls, part: SnippetPart) -> SnippetPartView:
        return cls(text=part.text, match=part.match)


class HitLinks(BaseModel):
    page: str = Field(description="The page and its versions.")


class SearchHitView(BaseModel):
    """A page whose latest version matches the query."""

    page_id: UUID
    owner: str
    url: str
    host: str
    title: str | None = Field(description="The title extracted by the item that first saw this version.")
    rank: float = Field(description="ts_rank_cd of the version for the query (cover density): higher is better.")
    changed_at: datetime = Field(description="When this version was first seen.")
    last_seen_at: datetime = Field(description="When the page was last scraped.")
    version: VersionView
    snippet: list[SnippetPartView] | None = Field(
        description="The text around the matches (up to two fragments joined by ` … `), as runs with the matches "
                    "marked; plain text, never markup. Null when not asked for or when the version kept neither "
                    "Markdown nor text.")
    links: HitLinks

    @classmethod
    def of(cls, hit: SearchHit, snippet: list[SnippetPart] | None) -> SearchHitView:
        page = hit.page
        return cls(page_id=page.id, owner=page.owner.actor, url=page.url, host=page.host, title=hit.title,
                   rank=hit.rank, changed_at=hit.version.first_seen_at, last_seen_at=page.last_seen_at,
                   version=VersionView.of(hit.version),
                   snippet=None if snippet is None else [SnippetPartView.of(part) for part in snippet],
                   links=HitLinks(page=f"/api/pages/{page.id}"))


class SearchPage(BaseModel):
    """`GET /api/search`: one page of hits, best first."""

    items: list[SearchHitView]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same query and filters) for the next "
                                                "page; null on the last page.")
    capped: bool = Field(description=f"More than {MAX_RANKED_MATCHES:,} of your pages match: only the "
                                     f"{MAX_RANKED_MATCHES:,} most recently changed of them were ranked, and only "
                                     "they can be paged through. Narrow the query (another word, a phrase, `host`, "
                                     "`changed_since`, `job_id`) to reach the others.")
