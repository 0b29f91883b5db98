"""Exports stream: a 100,000-item job exports in about the memory of a 10,000-item one.

Each export runs in its own process writing to a file, and its peak RSS is read from the kernel's
accounting of that child (`os.wait4`, the per-child form of RUSAGE_CHILDREN), so nothing the test
process did before can hide or inflate it."""
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

from shared.db import ConnectionPool, UrlDatabase, in_transaction
from shared.scrape import ScrapeResult
from tests.conftest import create_database
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMALL, LARGE = 10_000, 100_000

EXPORT = """
import sys
from uuid import UUID
from shared.db import ConnectionPool, UrlDatabase
from shared.exports import export_items
from tests.owners import ANONYMOUS_OWNER


db_url, job_id, export_format, path = sys.argv[1:]
pool = ConnectionPool(UrlDatabase(db_url), maxconn=1)
with open(path, "w", encoding="utf-8") as out:
    for chunk in export_items(pool, UUID(job_id), ANONYMOUS_OWNER, None, export_format):
        out.write(chunk)
"""

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


def export(db_url: str, job_id: UUID, export_format: str, path: Path) -> int:
    """Run one export in a child process; returns its peak RSS in bytes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", EXPORT, db_url, str(job_id), export_format, str(path)],
                             cwd=REPO, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


@pytest.mark.parametrize(("export_format", "header_lines"), [("ndjson", 0), ("csv", 1)])
def test_a_100k_item_export_takes_about_the_memory_of_a_10k_one(
        db_url: str, jobs: dict[int, UUID], tmp_path: Path, export_format: str, header_lines: int) -> None:
    small_file, large_file = tmp_path / f"small.{export_format}", tmp_path / f"large.{export_format}"
    small_peak = export(db_url, jobs[SMALL], export_format, small_file)
    large_peak = export(db_url, jobs[LARGE], export_format, large_file)

    assert count_lines(large_file) == LARGE + header_lines
    assert count_lines(small_file) == SMALL + header_lines
    large_bytes = large_file.stat().st_size
    print(f"{export_format}: peak RSS {small_peak / 2**20:.0f} MiB for 10k items, {large_peak / 2**20:.0f} MiB for "
          f"100k items ({large_bytes / 2**20:.0f} MiB written)")
    # Ten times the rows: memory stays flat (holding the rows or the output would add ~100+ MiB).
    assert large_peak < small_peak * 1.25
    assert large_peak - small_peak < large_bytes / 8
