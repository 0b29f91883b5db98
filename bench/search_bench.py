"""Full-text search over 100,000 synthetic pages: query latency (p50/p95/p99) of a mix of queries, the cost of the
snippets of a page of hits, and the size of the search index per page.

    .venv/bin/python -m bench.search_bench [--pages 100000] [--queries 600] [--pg-dir DIR]

The pages go straight into PostgreSQL (an embedded pgserver), through the same `to_tsvector` the worker's
`record_page_version` uses: owner A has 80% of them, four others 5% each; a fifth of the pages have an older
version as well (indexed too, never searched). Their text is generated word by word from a vocabulary per
language with Zipf-distributed frequencies (the language's real stop words first, then made-up words with the
language's syllables and suffixes, so the stemmers have something to stem): English 55%, German 15%, French 15%,
and Polish 15% (no PostgreSQL configuration: `simple`). Lengths are log-normal, median 400 words.

The queries run as owner A through `shared.services.pages.search_hits` (the two statements of a search), with
words drawn from ranks 200-20,000 of a language's vocabulary (what people search for: not the commonest words,
which match most pages, nor the rarest): single words, two-word phrases taken from a page, `a OR b`, `a -b` with
a frequent `b`, and a word on one host. Snippets are measured apart on the hits of each query: the texts read
from a private Azurite (the content store's `read`, in parallel as the endpoint reads them) and the one
ts_headline statement over them. `--pg-dir` keeps the database for later runs (generation takes minutes).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

from bench.pipeline_bench import private_azurite
from shared.adapters.content_store import ContentStore
from shared.adapters.db import ConnectionPool, UrlDatabase, connect, migrate, read
from shared.contract.page_schemas import SearchQuery
from shared.domain.content import ContentFormat, search_config
from shared.domain.models import Owner
from shared.domain.page_history import SearchHit, query_lexemes, snippet_windows
from shared.services import pages as page_service


def words(text: str) -> list[str]:
    return text.split()


LANGUAGES: dict[str, tuple[float, list[str], list[str], list[str], list[str]]] = {
    # share of pages, stop words (most frequent first), onsets, vowels, suffixes
    "en": (0.55, words("the of and to a in is that it for was on are as with by this be at from or have an they not "
                       "but had his her which you one all were we there can been has their more if will would"),
           words("b c d f g h j k l m n p r s t v w st tr pl gr ch sh th br cl"),
           words("a e i o u ea ou ai oo ee"), ["", "", "", "s", "ing", "ed", "er", "tion", "ly", "ness"]),
    "de": (0.15, words("der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an "
                       "werden aus er hat dass sie nach wird bei einer um am sind noch wie"),
           words("b d f g h k l m n p r s t w z sch st sp kr"), words("a e i o u ei au ie ä ö ü"),
           ["", "", "", "en", "ung", "er", "keit", "lich", "heit", "isch"]),
    "fr": (0.15, words("de la le et les des en un du une que est pour qui dans par plus pas au sur ne se ce il sont "
                       "avec ou son mais comme on nous elle leur tout"),
           words("b c d f g l m n p r s t v ch qu pr tr gr"), words("a e i o u ou ai eau é è"),
           ["", "", "", "s", "ment", "tion", "eur", "ique", "é", "ais"]),
    "pl": (0.15, words("i w na nie z się do to że jest o jak ale po co tak za od już go przez jego"),
           words("b c d g k m n p r s t w z cz sz rz dz"), words("a e i o u y ą ę ó"),
           ["", "", "", "ski", "owa", "ami", "ach", "ość", "nie", "cie"]),
}
VOCABULARY_WORDS = 40_000
ZIPF_EXPONENT = 1.0
QUERY_RANKS = (200, 20_000)
MEDIAN_WORDS, WORDS_SIGMA, MAX_WORDS = 400, 0.8, 12_000
HOSTS, OWNERS_SHARE = 2_000, (0.8, 0.05, 0.05, 0.05, 0.05)
OLDER_VERSION_SHARE = 0.2
ITEMS_PER_JOB = 10_000
BATCH = 500


@dataclass(frozen=True)
class Language:
    code: str
    words: list[str]
    cumulative: list[float]

    def text(self, rng: random.Random, count: int) -> str:
        words = rng.choices(self.words, cum_weights=self.cumulative, k=count)
        sentences, start = [], 0
        while start < len(words):
            end = start + rng.randint(8, 22)
            sentence = words[start:end]
            sentences.append(" ".join([sentence[0].capitalize(), *sentence[1:]]) + ".")
            start = end
        return " ".join(sentences)


def build_language(code: str, seed: int) -> Language:
    """Stop words, then made-up words of the language's syllables, each once, with Zipf weights by rank."""
    _, stop_words, onsets, vowels, suffixes = LANGUAGES[code]
    rng = random.Random(f"{seed}-{code}")
    words, seen = list(stop_words), set(stop_words)
    while len(words) < VOCABULARY_WORDS:
        syllables = rng.choice((1, 2, 2, 2, 3, 3, 4))
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables)) + rng.choice(suffixes)
        if word not in seen:
            seen.add(word)
            words.append(word)
    total, cumulative = 0.0, []
    for rank in range(1, len(words) + 1):
        total += 1 / rank**ZIPF_EXPONENT
        cumulative.append(total)
    return Language(code, words, cumulative)


@dataclass(frozen=True)
class SyntheticPage:
    number: int
    owner: int
    host: str
    language: str
    versions: int

    @property
    def url(self) -> str:
        return f"https://{self.host}/articles/{self.number}"

    def text(self, languages: dict[str, Language], seed: int, version: int) -> str:
        """The page's main text in `version` (0: the latest), the same on every call."""
        rng = random.Random(f"{seed}-{self.number}-{version}")
        count = min(MAX_WORDS, max(20, int(rng.lognormvariate(math.log(MEDIAN_WORDS), WORDS_SIGMA))))
        return languages[self.language].text(rng, count)


def plan_pages(count: int, seed: int) -> list[SyntheticPage]:
    rng = random.Random(seed)
    host_weights = [1 / rank**1.1 for rank in range(1, HOSTS + 1)]
    hosts = [f"site{n}.example" for n in range(HOSTS)]
    codes = list(LANGUAGES)
    shares = [LANGUAGES[code][0] for code in codes]
    return [SyntheticPage(n, rng.choices(range(len(OWNERS_SHARE)), OWNERS_SHARE)[0],
                          rng.choices(hosts, host_weights)[0], rng.choices(codes, shares)[0],
                          2 if rng.random() < OLDER_VERSION_SHARE else 1) for n in range(count)]


OWNERS = [Owner(tenant_id="bench-tenant", object_id=f"owner-{n}") for n in range(len(OWNERS_SHARE))]

_INSERT_VERSIONS = """
WITH v AS (
    INSERT INTO page_versions (page_id, main_text_digest, markdown_sha256, markdown_bytes, job_id, seq,
                               first_seen_at, last_seen_at, search_config, search_vector)
    SELECT page_id, md5(body), encode(sha256(convert_to(body, 'UTF8')), 'hex'), octet_length(body), job_id, seq,
           seen, seen, config::regconfig, to_tsvector(config::regconfig, body)
      FROM unnest(%(page_ids)s::uuid[], %(bodies)s::text[], %(job_ids)s::uuid[], %(seqs)s::int[],
                  %(seen)s::timestamptz[], %(configs)s::text[]) AS t(page_id, body, job_id, seq, seen, config)
    RETURNING page_id, id)
UPDATE pages SET latest_version_id = v.id FROM v WHERE pages.id = v.page_id
"""


def populate(db_url: str, pages: list[SyntheticPage], languages: dict[str, Language], seed: int) -> None:
    """Jobs, items, pages and versions for every synthetic page; two connections generate and insert at once."""
    items = _create_jobs(db_url, pages)
    page_ids = {page.number: uuid.uuid5(uuid.NAMESPACE_URL, page.url) for page in pages}
    _insert_pages(db_url, pages, page_ids)
    batches = [pages[start:start + BATCH] for start in range(0, len(pages), BATCH)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as threads:
        for done, _ in enumerate(threads.map(
                lambda batch: _insert_versions(db_url, batch, languages, seed, items, page_ids), batches), 1):
            if done % 20 == 0:
                print(f"  {done * BATCH} pages in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    with closing(connect(UrlDatabase(db_url))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")


def _create_jobs(db_url: str, pages: list[SyntheticPage]) -> dict[int, tuple[uuid.UUID, int]]:
    """One succeeded job per ITEMS_PER_JOB pages of an owner (a version's item must exist): page -> (job, seq)."""
    items: dict[int, tuple[uuid.UUID, int]] = {}
    by_owner: dict[int, list[SyntheticPage]] = {}
    for page in pages:
        by_owner.setdefault(page.owner, []).append(page)
    with closing(connect(UrlDatabase(db_url))) as conn, conn, conn.cursor() as cur:
        for owner, owned in by_owner.items():
            for start in range(0, len(owned), ITEMS_PER_JOB):
                chunk = owned[start:start + ITEMS_PER_JOB]
                job_id = uuid.uuid4()
                cur.execute("""INSERT INTO jobs (id, owner_tenant_id, owner_object_id, status, total, succeeded,
                                                 options, deadline_at)
                               VALUES (%s, %s, %s, 'succeeded', %s, %s, '{}', now() + interval '1 day')""",
                            (job_id, OWNERS[owner].tenant_id, OWNERS[owner].object_id, len(chunk), len(chunk)))
                cur.execute("""INSERT INTO job_items (job_id, seq, url, status, result)
                               SELECT %s, seq - 1, url, 'succeeded', jsonb_build_object('title', 'Article ' || seq)
                                 FROM unnest(%s::text[]) WITH ORDINALITY AS t(url, seq)""",
                            (job_id, [page.url for page in chunk]))
                items |= {page.number: (job_id, seq) for seq, page in enumerate(chunk)}
    return items


def _insert_pages(db_url: str, pages: list[SyntheticPage], page_ids: dict[int, uuid.UUID]) -> None:
    with closing(connect(UrlDatabase(db_url))) as conn, conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO pages (id, owner_tenant_id, owner_object_id, url, host)
                       SELECT id, %s, o, url, host FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[])
                                                     AS t(id, o, url, host)""",
                    (OWNERS[0].tenant_id, [str(page_ids[p.number]) for p in pages],
                     [OWNERS[p.owner].object_id for p in pages], [p.url for p in pages], [p.host for p in pages]))


def _insert_versions(db_url: str, batch: list[SyntheticPage], languages: dict[str, Language], seed: int,
                     items: dict[int, tuple[uuid.UUID, int]], page_ids: dict[int, uuid.UUID]) -> None:
    """The batch's older versions, then its latest ones (each becomes its page's latest_version_id)."""
    now = datetime.now(UTC)
    rng = random.Random(f"{seed}-seen-{batch[0].number}")
    with closing(connect(UrlDatabase(db_url))) as conn, conn, conn.cursor() as cur:
        for version in (1, 0):
            rows = [page for page in batch if page.versions > version]
            if not rows:
                continue
            cur.execute(_INSERT_VERSIONS, {
                "page_ids": [str(page_ids[p.number]) for p in rows],
                "bodies": [p.text(languages, seed, version) for p in rows],
                "job_ids": [str(items[p.number][0]) for p in rows], "seqs": [items[p.number][1] for p in rows],
                "seen": [now - timedelta(days=rng.uniform(0, 30) + 30 * version) for p in rows],
                "configs": [search_config(p.language) for p in rows]})


# --- the queries ------------------------------------------------------------------------------------------------

KINDS = {"word": 0.3, "phrase": 0.2, "or": 0.15, "exclusion": 0.15, "host": 0.2}


@dataclass(frozen=True)
class BenchQuery:
    kind: str
    q: str
    host: str | None = None


def plan_queries(count: int, seed: int, pages: list[SyntheticPage], languages: dict[str, Language]) -> list[BenchQuery]:
    """`count` queries of the mix KINDS, as owner A would search their pages."""
    rng = random.Random(f"{seed}-queries")
    owned = [page for page in pages if page.owner == 0]
    hosts: dict[str, int] = {}
    for page in owned:
        hosts[page.host] = hosts.get(page.host, 0) + 1
    big_hosts = sorted(hosts, key=hosts.__getitem__, reverse=True)[:50]
    codes = list(LANGUAGES)
    shares = [LANGUAGES[code][0] for code in codes]

    def word(language: Language, low: int = QUERY_RANKS[0], high: int = QUERY_RANKS[1]) -> str:
        rank = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        return language.words[rank - 1]

    def one(kind: str) -> BenchQuery:
        language = languages[rng.choices(codes, shares)[0]]
        if kind == "phrase":
            page = rng.choice([p for p in owned[:5000] if p.language == language.code])
            text = [w.strip(".").lower() for w in page.text(languages, seed, 0).split()]
            stop_words = set(LANGUAGES[language.code][1])
            pairs = [(a, b) for a, b in zip(text, text[1:], strict=False)
                     if a not in stop_words and b not in stop_words]
            a, b = rng.choice(pairs or [(text[0], text[1])])
            return BenchQuery(kind, f'"{a} {b}"')
        if kind == "or":
            return BenchQuery(kind, f"{word(language)} OR {word(language)}")
        if kind == "exclusion":
            return BenchQuery(kind, f"{word(language)} -{word(language, 50, 500)}")
        if kind == "host":
            return BenchQuery(kind, word(language), rng.choice(big_hosts))
        return BenchQuery(kind, word(language))

    return [one(rng.choices(list(KINDS), list(KINDS.values()))[0]) for _ in range(count)]


@dataclass
class Measured:
    query: BenchQuery
    query_ms: float
    hits: list[SearchHit]
    forms: dict[str, str]
    best_ms: float = 0.0
    read_ms: float = 0.0
    headline_ms: float = 0.0


def run_queries(pool: ConnectionPool, queries: list[BenchQuery], repeat: int = 1) -> list[Measured]:
    """Each query's page of hits (the two statements of `search_hits`), timed one after the other: the best of
    `repeat` runs in a row (this machine is shared: the best run leaves out other processes' turns on the CPU)."""
    measured = []
    for query in queries:
        search = SearchQuery(q=query.q, host=query.host, snippets=False)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            found = page_service.search_hits(pool, OWNERS[0], search)
            times.append((time.perf_counter() - started) * 1000)
        measured.append(Measured(query, times[0], found.hits, found.forms, best_ms=min(times)))
    return measured


def measure_snippets(pool: ConnectionPool, store: ContentStore, measured: list[Measured],
                     pages_by_number: dict[int, SyntheticPage], languages: dict[str, Language], seed: int) -> None:
    """For each query's hits: their bodies read at once from the content store (8 threads, as the API's pool), then
    the one ts_headline statement; the bodies are stored first, untimed."""
    stored: set[str] = set()
    with ThreadPoolExecutor(max_workers=8) as threads:
        for entry in measured:
            for hit in entry.hits:
                sha256 = hit.version.bodies[ContentFormat.MARKDOWN].sha256
                if sha256 not in stored:
                    page = pages_by_number[int(hit.page.url.rsplit("/", 1)[1])]
                    store.put(page.text(languages, seed, 0).encode(), "text/markdown; charset=utf-8")
                    stored.add(sha256)
            started = time.perf_counter()
            lexemes = [query_lexemes(entry.forms[hit.version.search_config]) for hit in entry.hits]
            texts = list(threads.map(page_service.snippet_text, [store] * len(entry.hits),
                                     [hit.version for hit in entry.hits], lexemes))
            entry.read_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            page_service.headlines(pool, entry.query.q, texts)
            entry.headline_ms = (time.perf_counter() - started) * 1000


def long_page_headlines(pool: ConnectionPool, language: Language, seed: int) -> dict[str, float]:
    """The ts_headline statement for ten hits cut from 256 KiB texts (the most a snippet reads of a body): given all
    of each text, and given the windows around the query's words that `snippet_text` passes instead (best of 3)."""
    rng = random.Random(f"{seed}-long")
    q = language.words[2000]
    texts = [language.text(rng, 256 * 1024 // 7).encode()[:256 * 1024].decode("utf-8", "ignore") for _ in range(10)]
    found = {}
    for name, given in (("whole_256k_ms", texts), ("windows_ms", [snippet_windows(text, [q]) for text in texts])):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            read(pool, lambda tx, given=given: tx.pages.headlines(q, [("english", text) for text in given]))
            times.append((time.perf_counter() - started) * 1000)
        found[name] = round(min(times), 1)
    return found


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": round(cut[49], 1), "p95": round(cut[94], 1), "p99": round(cut[98], 1),
            "max": round(ordered[-1], 1), "n": len(ordered)}


def index_sizes(db_url: str) -> dict[str, Any]:
    with closing(connect(UrlDatabase(db_url))) as conn, conn.cursor() as cur:
        cur.execute("""SELECT (SELECT count(*) FROM pages), (SELECT count(*) FROM page_versions),
                              pg_relation_size('page_versions_search'),
                              (SELECT avg(pg_column_size(search_vector)) FROM page_versions),
                              (SELECT avg(markdown_bytes) FROM page_versions),
                              current_setting('shared_buffers'), version()""")
        pages, versions, gin, vector, text, buffers, server = cur.fetchone()
    return {"pages": pages, "versions": versions, "gin_index_mib": round(gin / 2**20, 1),
            "gin_bytes_per_page": round(gin / pages), "gin_bytes_per_version": round(gin / versions),
            "tsvector_bytes_per_version": round(float(vector)), "text_bytes_per_version": round(float(text)),
            "shared_buffers": buffers, "server": server.split(" on ")[0]}


def worst_case(pool: ConnectionPool, languages: dict[str, Language]) -> dict[str, float]:
    """The commonest made-up English words (ranks 50 and 200: in about 45% and 17% of English pages)."""
    found = {}
    for rank in (50, 200):
        q = languages["en"].words[rank - 1]
        times = []
        for _ in range(5):
            started = time.perf_counter()
            page_service.search_hits(pool, OWNERS[0], SearchQuery(q=q, snippets=False))
            times.append((time.perf_counter() - started) * 1000)
        found[f"rank_{rank}_ms"] = round(statistics.median(times), 1)
    return found


def summarize(measured: list[Measured], sizes: dict[str, Any], worst: dict[str, float],
              long_pages: dict[str, float]) -> dict[str, Any]:
    by_kind = {kind: percentiles([m.query_ms for m in measured if m.query.kind == kind]) for kind in KINDS}
    with_hits = [m for m in measured if m.hits]
    return {
        "query_ms": percentiles([m.query_ms for m in measured]),
        "query_ms_by_kind": by_kind,
        "query_best_of_3_ms": percentiles([m.best_ms for m in measured]),
        "query_best_of_3_ms_by_kind": {kind: percentiles([m.best_ms for m in measured if m.query.kind == kind])
                                       for kind in KINDS},
        "hits_per_query": {"median": statistics.median(len(m.hits) for m in measured),
                           "none": sum(not m.hits for m in measured)},
        "snippet_read_ms": percentiles([m.read_ms for m in with_hits]),
        "snippet_headline_ms": percentiles([m.headline_ms for m in with_hits]),
        "snippet_headline_long_pages": long_pages,
        "frequent_words": worst,
        "index": sizes,
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
    }


def start_postgres(stack: ExitStack, data: Path, shared_buffers: str) -> str:
    """An embedded PostgreSQL on `data` with `shared_buffers` (restarted once to apply it); its URL."""
    import pgserver  # dev-only dependency, as in devhost.services

    server = pgserver.get_server(data, cleanup_mode="stop")
    with closing(connect(UrlDatabase(server.get_uri()))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SHOW shared_buffers")
            current = cur.fetchone()[0]
            cur.execute("ALTER SYSTEM SET shared_buffers = %s", (shared_buffers,))
    if current != shared_buffers:
        server.cleanup()
        server = pgserver.get_server(data, cleanup_mode="stop")
    stack.callback(server.cleanup)
    return str(server.get_uri())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg-dir", type=Path, default=None, help="keep (and reuse) the database here")
    parser.add_argument("--shared-buffers", default="1GB",
                        help="PostgreSQL's shared_buffers (Azure's Flexible Server sets a quarter of its memory)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        db_url = start_postgres(stack, args.pg_dir or Path(tmp) / "pg", args.shared_buffers)
        languages = {code: build_language(code, args.seed) for code in LANGUAGES}
        pages = plan_pages(args.pages, args.seed)
        with closing(connect(UrlDatabase(db_url))) as conn:
            migrate(conn)
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pages")
                existing = cur.fetchone()[0]
        if existing != len(pages):
            print(f"generating {len(pages)} pages", file=sys.stderr, flush=True)
            populate(db_url, pages, languages, args.seed)
        pool = ConnectionPool(UrlDatabase(db_url), maxconn=4)
        stack.callback(pool.closeall)
        queries = plan_queries(args.queries + 50, args.seed, pages, languages)
        load_at_start = os.getloadavg()
        run_queries(pool, queries[:50])  # warm-up: caches, plans
        measured = run_queries(pool, queries[50:], repeat=3)
        (Path(tmp) / "azurite").mkdir()
        storage, _ = stack.enter_context(private_azurite(Path(tmp) / "azurite"))
        store = ContentStore(ContainerClient.from_connection_string(storage, "trawl-content"))
        measure_snippets(pool, store, measured, {page.number: page for page in pages}, languages, args.seed)
        summary = summarize(measured, index_sizes(db_url), worst_case(pool, languages),
                            long_page_headlines(pool, languages["en"], args.seed))
        summary["load_average_at_start"] = load_at_start
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
