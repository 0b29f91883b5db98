"""Exports as the results endpoint builds them: streamed from PostgreSQL into one body that stops at the
endpoint's cap, so a 100,000-item job costs at most about the cap more memory than a 10,000-item one.

Each export runs the endpoint's two steps (`exports.export_items`, then `exports.collect` with
`api.results.MAX_EXPORT_BYTES`) in its own process, writing the body to a file, and its peak RSS is read
from the kernel's accounting of that child (`os.wait4`, the per-child form of RUSAGE_CHILDREN), so
nothing the test process did before can hide or inflate it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import pytest

from api.results import MAX_EXPORT_BYTES
from shared.adapters.db import ConnectionPool, UrlDatabase, in_transaction
from shared.domain.pages import ScrapeResult
from tests.conftest import create_database
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMALL, LARGE = 10_000, 100_000

EXPORT = """
import sys
from uuid import UUID
from api.results import MAX_EXPORT_BYTES
from shared.adapters.db import ConnectionPool, UrlDatabase
from shared.services.exports import ExportTooLarge, collect, export_items
from tests.owners import ANONYMOUS_OWNER

db_url, job_id, export_format, path = sys.argv[1:]
pool = ConnectionPool(UrlDatabase(db_url), maxconn=1)
try:
    body = collect(export_items(pool, UUID(job_id), ANONYMOUS_OWNER, None, export_format), MAX_EXPORT_BYTES, "page")
except ExportTooLarge:
    sys.exit(3)
with open(path, "wb") as out:
    out.write(body)
"""
TOO_LARGE = 3

# Sets every item succeeded with a realistic ~1.5 KB page (its own title and URL), in one statement.
_FILL = """
UPDATE job_items
   SET status = 'succeeded', attempts = 1, http_status = 200, final_url = url, duration_ms = 25,
       started_at = now(), finished_at = now(),
       result = jsonb_set(jsonb_set(jsonb_set(%(page)s::jsonb, '{title}', to_jsonb('Page ' || seq)),
                                    '{url}', to_jsonb(url)), '{final_url}', to_jsonb(url))
 WHERE job_id = %(job_id)s
"""


def page() -> dict[str, Any]:
    return ScrapeResult(
        url="", final_url="", status=200, content_type="text/html", title="", description="d" * 150,
        canonical=None, lang="en", open_graph={"title": "An Open Graph title", "site_name": "Example"},
        published_time="2026-01-01T00:00:00Z", headings={"h1": ["A heading"], "h2": ["Sub"] * 3, "h3": []},
        links=[{"url": f"https://example.test/a/fairly/long/path/{n}", "nofollow": n % 3 == 0} for n in range(10)],
        word_count=300, excerpt="word " * 60, text_sha256="ab" * 32, charset="utf-8", redirects=0, elapsed_ms=25,
    ).model_dump(mode="json")


@pytest.fixture(scope="module")
def db_url(pg_server: Any, template_db: str) -> str:
    return str(pg_server.get_uri(database=create_database(pg_server, template=template_db)))


@pytest.fixture(scope="module")
def jobs(db_url: str) -> Iterator[dict[int, UUID]]:
    """A 10,000-item and a 100,000-item job, every item succeeded with a page."""
    pool = ConnectionPool(UrlDatabase(db_url), maxconn=2)
    made = {}
    for size in (SMALL, LARGE):
        urls = [f"https://example.test/item/{seq}" for seq in range(size)]
        deadline = datetime.now(UTC) + timedelta(hours=1)
        made[size] = in_transaction(
            pool, lambda tx, urls=urls, deadline=deadline: tx.jobs.create_job(ANONYMOUS_OWNER, urls, {}, deadline)).job.id
        with closing(psycopg2.connect(db_url)) as conn, conn, conn.cursor() as cur:
            cur.execute(_FILL, {"page": json.dumps(page()), "job_id": str(made[size])})
    with closing(psycopg2.connect(db_url)) as conn, conn, conn.cursor() as cur:
        cur.execute("ANALYZE job_items")  # the statistics autovacuum keeps in a live database
    pool.closeall()
    yield made


def export(db_url: str, job_id: UUID, export_format: str, path: Path) -> tuple[int, int]:
    """Run one export in a child process; returns its exit code and its peak RSS in bytes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", EXPORT, db_url, str(job_id), export_format, str(path)],
                             cwd=REPO, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024  # kilobytes on Linux


def count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


@pytest.mark.parametrize(("export_format", "header_lines"), [("ndjson", 0), ("csv", 1)])
def test_an_export_is_refused_at_the_endpoints_cap_without_holding_the_rest_of_the_job(
        db_url: str, jobs: dict[int, UUID], tmp_path: Path, export_format: str, header_lines: int) -> None:
    small_file, large_file = tmp_path / f"small.{export_format}", tmp_path / f"large.{export_format}"
    small_exit, small_peak = export(db_url, jobs[SMALL], export_format, small_file)
    large_exit, large_peak = export(db_url, jobs[LARGE], export_format, large_file)

    assert small_exit == 0 and count_lines(small_file) == SMALL + header_lines
    assert large_exit == TOO_LARGE and not large_file.exists()  # ~150 MiB of results: past the 64 MiB cap
    print(f"{export_format}: peak RSS {small_peak / 2**20:.0f} MiB for 10k items "
          f"({small_file.stat().st_size / 2**20:.0f} MiB body), {large_peak / 2**20:.0f} MiB for 100k items (refused)")
    # The refused export held at most about the cap: rows stream from a server-side cursor and the body stops
    # growing at the cap (holding the job's rows or its whole output would add several hundred MiB).
    assert large_peak - small_peak < MAX_EXPORT_BYTES * 1.5
