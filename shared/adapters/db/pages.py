"""Read side of the page store: an owner's pages and their versions, and full-text search over each page's
latest version.

Search runs every version in its own text-search configuration (`websearch_to_tsquery(v.search_config, q)`),
which no index can serve as written: the configuration comes from the row. So the query is first parsed in
every configuration the worker stores (`query_forms`); each distinct form with a word to look up then drives the
GIN index for the configurations that read the query so (`search`), and matches are ranked by ts_rank_cd.
Snippets (`headlines`) are cut from texts the caller reads from the content store: PostgreSQL keeps only the
tsvector.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg2.extras import RealDictCursor

from shared.adapters.db.rows import Row, owner_params
from shared.domain.content import BODY_FORMATS, StoredBody
from shared.domain.models import Owner
from shared.domain.page_history import MATCH_END, MATCH_START, Page, PageKey, PageVersion, SearchHit, SearchKey

# Restricts a query on `pages p` to one owner; both parameters NULL (owner None) means every owner's (admins).
PAGE_SCOPE = """(%(owner_tenant_id)s::text IS NULL
    OR (p.owner_tenant_id = %(owner_tenant_id)s AND p.owner_object_id = %(owner_object_id)s))"""

_PAGE = """p.id, p.owner_tenant_id, p.owner_object_id, p.url, p.host, p.first_seen_at, p.last_seen_at,
       p.latest_version_id, (SELECT count(*) FROM page_versions c WHERE c.page_id = p.id) AS version_count,
       (SELECT l.first_seen_at FROM page_versions l WHERE l.id = p.latest_version_id) AS changed_at"""
_BODIES = "v.markdown_sha256, v.markdown_bytes, v.text_sha256, v.text_bytes, v.html_sha256, v.html_bytes"
_VERSION = f"""v.id, v.page_id, v.main_text_digest, v.first_seen_at, v.last_seen_at, v.job_id, v.seq,
       v.search_config::text AS search_config, {_BODIES}"""
# The same beside a page's columns, whose names it would otherwise shadow.
_HIT_VERSION = f"""v.id AS version_id, v.page_id, v.main_text_digest, v.first_seen_at AS version_first_seen_at,
       v.last_seen_at AS version_last_seen_at, v.job_id, v.seq, v.search_config::text AS search_config, {_BODIES}"""

# Pages by host, then URL (the index pages_by_owner_host), after the keyset position; `changed_since` compares
# the time the latest version was first seen: when the page last changed.
_LIST_PAGES = f"""
SELECT {_PAGE}
  FROM pages p LEFT JOIN page_versions l ON l.id = p.latest_version_id
 WHERE {PAGE_SCOPE}
   AND (%(url)s::text IS NULL OR p.url = %(url)s)
   AND (%(host)s::text IS NULL OR p.host = %(host)s)
   AND (%(changed_since)s::timestamptz IS NULL OR l.first_seen_at >= %(changed_since)s)
   AND (%(after_host)s::text IS NULL OR (p.host, p.url, p.id) > (%(after_host)s, %(after_url)s, %(after_id)s::uuid))
 ORDER BY p.host, p.url, p.id
 LIMIT %(limit)s
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_PAGE_BY_ID = f"""
SELECT {_PAGE} FROM pages p WHERE p.id = %(page_id)s AND {PAGE_SCOPE}
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

# The newest `per_page` versions of each page, one index scan (page_versions_newest) per page.
_NEWEST_VERSIONS = f"""
SELECT v.* FROM unnest(%(page_ids)s::uuid[]) AS listed(page_id)
 CROSS JOIN LATERAL (SELECT {_VERSION} FROM page_versions v WHERE v.page_id = listed.page_id
                      ORDER BY v.id DESC LIMIT %(per_page)s) v
 ORDER BY v.page_id, v.id DESC
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_VERSIONS_BEFORE = f"""
SELECT {_VERSION} FROM page_versions v
 WHERE v.page_id = %(page_id)s AND (%(before_id)s::bigint IS NULL OR v.id < %(before_id)s)
 ORDER BY v.id DESC
 LIMIT %(limit)s
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

_VERSIONS_BY_ID = f"""
SELECT {_VERSION} FROM page_versions v WHERE v.page_id = %(page_id)s AND v.id = ANY(%(ids)s::bigint[])
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

# The query as each configuration reads it, and whether that form looks anything up: querytree() is 'T' for a
# form that only excludes (`-word`: the index cannot serve it) and empty for one with no lexeme (stop words only):
# a configuration without a searchable form matches nothing.
_QUERY_FORMS = """
SELECT cfg::text AS config, form::text AS form, querytree(form) NOT IN ('', 'T') AS searchable
  FROM unnest(%(configs)s::regconfig[]) AS cfg, websearch_to_tsquery(cfg, %(q)s) AS form
"""

# One arm per distinct form of the query, for the configurations that read the query so: the form is a constant, so
# the planner estimates its matches from the index's statistics, and `search_vector @@ form` is answered by the GIN
# index (exactly for plain words; phrases are rechecked on the heap) while the configuration is checked on the heap
# row: no search vector is read to decide a match. Each match is joined to its page by the primary key (owner,
# latest version, filters) and ranked: ts_rank_cd reads the vector (TOASTed: about 7 µs a match).
_SEARCH_ARM = """
    SELECT v.id, v.page_id, v.first_seen_at, v.search_vector, %(form_{n})s::tsquery AS query
      FROM page_versions v
     WHERE v.search_vector @@ %(form_{n})s::tsquery AND v.search_config = ANY(%(configs_{n})s::regconfig[])"""
# Ranking reads every match's vector, so a query matching more than `most_ranked` of the owner's pages ranks only
# the most recently changed of them (`capped`): broad words cost what narrow ones do (bench/README.md, "Search").
# The page of hits is cut after the keyset position, and only its rows are joined to their item for the title.
_SEARCH = f"""
WITH matched AS (
    SELECT p.id AS page_id, v.id AS version_id, v.search_vector, v.query
      FROM ({{arms}}) v
      JOIN pages p ON p.id = v.page_id
     WHERE p.latest_version_id = v.id
       AND {PAGE_SCOPE}
       AND (%(host)s::text IS NULL OR p.host = %(host)s)
       AND (%(changed_since)s::timestamptz IS NULL OR v.first_seen_at >= %(changed_since)s)
       AND (%(job_id)s::uuid IS NULL OR p.id IN (SELECT i.page_id FROM job_items i WHERE i.job_id = %(job_id)s))
     ORDER BY v.id DESC
     LIMIT %(most_ranked)s + 1
),
ranked AS (
    SELECT page_id, version_id, ts_rank_cd(search_vector, query) AS rank,
           row_number() OVER (ORDER BY version_id DESC) AS newness, count(*) OVER () > %(most_ranked)s AS capped
      FROM matched
),
hit AS (
    SELECT * FROM ranked
     WHERE newness <= %(most_ranked)s
       AND (%(after_rank)s::real IS NULL OR (rank, page_id) < (%(after_rank)s::real, %(after_id)s::uuid))
     ORDER BY rank DESC, page_id DESC
     LIMIT %(limit)s
)
SELECT hit.rank, hit.capped, i.result ->> 'title' AS title, {_PAGE}, {_HIT_VERSION}
  FROM hit
  JOIN pages p ON p.id = hit.page_id
  JOIN page_versions v ON v.id = hit.version_id
  LEFT JOIN job_items i ON i.job_id = v.job_id AND i.seq = v.seq
 ORDER BY hit.rank DESC, hit.page_id DESC
"""  # only constant SQL fragments are interpolated; values are bound parameters  # nosec B608

# Snippets of the texts given, each in its own configuration: one statement for a page of hits.
_HEADLINES = """
SELECT ts_headline(t.config, t.body, websearch_to_tsquery(t.config, %(q)s), %(options)s) AS headline
  FROM unnest(%(configs)s::regconfig[], %(bodies)s::text[]) WITH ORDINALITY AS t(config, body, position)
 ORDER BY t.position
"""
HEADLINE_OPTIONS = (f"StartSel={MATCH_START}, StopSel={MATCH_END}, MaxWords=35, MinWords=15, MaxFragments=2, "
                    'FragmentDelimiter=" … "')


class PageQueries:
    """Owner-scoped reads of pages, versions and search, inside one unit of work (owner None: admin)."""

    def __init__(self, cursor: RealDictCursor) -> None:
        self._cur = cursor

    def list_pages(self, owner: Owner | None, url: str | None = None, host: str | None = None,
                   changed_since: datetime | None = None, after: PageKey | None = None,
                   limit: int = 20) -> list[Page]:
        """The owner's pages by host then URL, filtered, after the keyset position `after`; no versions."""
        params = {**owner_params(owner), "url": url, "host": host, "changed_since": changed_since,
                  "after_host": None if after is None else after.host,
                  "after_url": None if after is None else after.url,
                  "after_id": None if after is None else after.id, "limit": limit}
        self._cur.execute(_LIST_PAGES, params)
        return [page_from_row(row) for row in self._cur.fetchall()]

    def page(self, page_id: UUID, owner: Owner | None) -> Page | None:
        """One page the owner can see, without its versions."""
        self._cur.execute(_PAGE_BY_ID, {**owner_params(owner), "page_id": page_id})
        row = self._cur.fetchone()
        return None if row is None else page_from_row(row)

    def newest_versions(self, page_ids: Sequence[UUID], per_page: int) -> dict[UUID, list[PageVersion]]:
        """The newest `per_page` versions of each page, newest first (callers scoped the pages already)."""
        self._cur.execute(_NEWEST_VERSIONS, {"page_ids": [str(page_id) for page_id in page_ids],
                                             "per_page": per_page})
        versions: dict[UUID, list[PageVersion]] = {}
        for row in self._cur.fetchall():
            version = version_from_row(row)
            versions.setdefault(version.page_id, []).append(version)
        return versions

    def versions_before(self, page_id: UUID, before_id: int | None, limit: int) -> list[PageVersion]:
        """A page's versions newest first, older than version `before_id` (all when None), at most `limit`."""
        self._cur.execute(_VERSIONS_BEFORE, {"page_id": page_id, "before_id": before_id, "limit": limit})
        return [version_from_row(row) for row in self._cur.fetchall()]

    def versions(self, page_id: UUID, version_ids: Sequence[int]) -> dict[int, PageVersion]:
        """The versions of the page among `version_ids`, by id; ids of other pages are left out."""
        self._cur.execute(_VERSIONS_BY_ID, {"page_id": page_id, "ids": list(version_ids)})
        return {row["id"]: version_from_row(row) for row in self._cur.fetchall()}

    def query_forms(self, q: str, configs: Sequence[str]) -> dict[str, str | None]:
        """`q` as websearch_to_tsquery reads it in each configuration; None where that form looks nothing up
        (stop words only, or only exclusions)."""
        self._cur.execute(_QUERY_FORMS, {"q": q, "configs": list(configs)})
        return {row["config"]: row["form"] if row["searchable"] else None for row in self._cur.fetchall()}

    def search(self, owner: Owner | None, forms: dict[str, str], host: str | None = None,
               changed_since: datetime | None = None, job_id: UUID | None = None, after: SearchKey | None = None,
               limit: int = 10, most_ranked: int = 2000) -> tuple[list[SearchHit], bool]:
        """The owner's pages whose latest version matches the query (`forms`: its form per configuration, only
        those that look something up), best first, after the keyset position `after`; and whether more than
        `most_ranked` matched, so that only that many, the most recently changed, were ranked."""
        groups: dict[str, list[str]] = {}
        for config, form in forms.items():
            groups.setdefault(form, []).append(config)
        params: dict[str, Any] = {**owner_params(owner), "host": host, "changed_since": changed_since,
                                  "job_id": job_id, "after_rank": None if after is None else after.rank,
                                  "after_id": None if after is None else after.page_id, "limit": limit,
                                  "most_ranked": most_ranked}
        for n, (form, configs) in enumerate(groups.items()):
            params |= {f"form_{n}": form, f"configs_{n}": configs}
        arms = " UNION ALL".join(_SEARCH_ARM.format(n=n) for n in range(len(groups)))
        self._cur.execute(_SEARCH.format(arms=arms), params)
        rows = self._cur.fetchall()
        return [_hit_from_row(row) for row in rows], bool(rows) and rows[0]["capped"]

    def headlines(self, q: str, texts: Sequence[tuple[str, str]]) -> list[str]:
        """ts_headline of each (configuration, text) for the query `q`, matches between MATCH_START and MATCH_END."""
        params = {"q": q, "options": HEADLINE_OPTIONS, "configs": [config for config, _ in texts],
                  "bodies": [text for _, text in texts]}
        self._cur.execute(_HEADLINES, params)
        return [row["headline"] for row in self._cur.fetchall()]


def page_from_row(row: Row, versions: Sequence[PageVersion] = ()) -> Page:
    """A `pages` row (with its version count) as a Page."""
    return Page(id=row["id"], owner=Owner(tenant_id=row["owner_tenant_id"], object_id=row["owner_object_id"]),
                url=row["url"], host=row["host"], first_seen_at=row["first_seen_at"], last_seen_at=row["last_seen_at"],
                changed_at=row["changed_at"], version_count=int(row["version_count"]),
                latest_version_id=row["latest_version_id"], versions=list(versions))


def version_from_row(row: Row, id_column: str = "id") -> PageVersion:
    """A `page_versions` row as a PageVersion, with the bodies its item kept."""
    bodies = {kind: StoredBody(row[f"{kind}_sha256"], row[f"{kind}_bytes"]) for kind in BODY_FORMATS
              if row[f"{kind}_sha256"] is not None and row[f"{kind}_bytes"] is not None}
    return PageVersion(id=row[id_column], page_id=row["page_id"], main_text_digest=row["main_text_digest"],
                       first_seen_at=row["first_seen_at"], last_seen_at=row["last_seen_at"], job_id=row["job_id"],
                       seq=row["seq"], search_config=row["search_config"], bodies=bodies)


def _hit_from_row(row: Row) -> SearchHit:
    version = version_from_row({**row, "first_seen_at": row["version_first_seen_at"],
                                "last_seen_at": row["version_last_seen_at"]}, "version_id")
    return SearchHit(page=page_from_row(row, [version]), version=version, rank=float(row["rank"]), title=row["title"])

