"""Results pages and exports are bounded by bytes as well as rows, on a real PostgreSQL: a page of large results
stops before about 4 MiB and hands back its cursor; exports read a bounded page at a time; CSV opens in Excel."""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.queries import ITEM_PAGE_MAX_BYTES, JobQueries
from shared.adapters.db.unit_of_work import in_transaction, uow
from shared.contract.schemas import ItemPage, ItemView, ResultsQuery
from shared.domain.models import SYSTEM_ACTOR, Job
from shared.domain.pages import MAX_LINKS, MAX_RESULT_BYTES, ScrapeResult
from shared.services import exports, job_service
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration

FetchRows = Callable[..., list[dict[str, Any]]]
ITEMS = 40


def big_result(seq: int) -> dict[str, Any]:
    """A result just under the stored-result cap: what a link-heavy page stores."""
    links = [{"url": f"https://example.test/{seq}/{n:04d}/" + "l" * 200, "nofollow": False} for n in range(MAX_LINKS)]
    return ScrapeResult(
        url=f"https://example.test/{seq}", final_url=f"https://example.test/{seq}", status=200,
        content_type="text/html", title=f"DDE;=cmd|' /C calc'!A{seq}", description="Café", canonical=None, lang="fr",
        open_graph={}, published_time=None, headings={"h1": [], "h2": [], "h3": []}, links=links,
        word_count=1, excerpt="x", text_sha256="ab" * 32, charset="utf-8", redirects=0, elapsed_ms=5,
    ).model_dump(mode="json")


@pytest.fixture
def big_job(submit_job: Callable[..., Job], pool: ConnectionPool) -> Job:
    """A running job of ITEMS items, each succeeded with a result of about 240 KB."""
    job = submit_job(count=ITEMS)

    def fill(tx: Any) -> None:
        tx.jobs.mark_job_running(job.id)
        for seq in range(ITEMS):
            tx.jobs.complete_item(job.id, seq, big_result(seq), 200, f"https://example.test/{seq}", 5)

    in_transaction(pool, fill)
    return job


def test_stored_results_record_their_json_size(big_job: Job, fetch_rows: FetchRows) -> None:
    rows = fetch_rows("SELECT result_bytes, octet_length(result::text) AS text_bytes FROM job_items "
                      "WHERE job_id = %s", (big_job.id,))

    assert all(200_000 < row["result_bytes"] <= MAX_RESULT_BYTES for row in rows)
    # JSONB's text form adds a space after each ':' and ','; the stored size is the compact JSON's.
    assert all(row["result_bytes"] < row["text_bytes"] for row in rows)


def test_a_results_page_stops_at_the_byte_budget_and_hands_back_its_cursor(
    big_job: Job, pool: ConnectionPool,
) -> None:
    pages: list[ItemPage] = []
    cursor = None
    while True:
        listing = job_service.list_results(pool, big_job.id, ANONYMOUS_OWNER, ResultsQuery(limit=1000, cursor=cursor))
        pages.append(ItemPage(items=[ItemView.of(item) for item in listing.items], next_cursor=listing.next_cursor))
        cursor = listing.next_cursor
        if cursor is None:
            break

    assert [item.seq for page in pages for item in page.items] == list(range(ITEMS))
    assert len(pages) >= 3 and all(len(page.items) < ITEMS for page in pages)
    assert max(len(page.model_dump_json().encode()) for page in pages) <= ITEM_PAGE_MAX_BYTES


def test_a_page_always_moves_on_even_when_one_item_is_over_the_budget(big_job: Job, pool: ConnectionPool) -> None:
    with uow(pool) as tx:
        first = tx.queries.list_items(big_job.id, ANONYMOUS_OWNER, limit=10, max_bytes=1000)
        last = tx.queries.list_items(big_job.id, ANONYMOUS_OWNER, after_seq=ITEMS - 2, limit=10, max_bytes=1000)

    assert ([item.seq for item in first.items], first.has_more) == ([0], True)
    assert ([item.seq for item in last.items], last.has_more) == ([ITEMS - 1], False)


def test_results_stored_before_their_size_was_recorded_are_measured(
    big_job: Job, pool: ConnectionPool, execute_sql: Callable[..., None], queries: JobQueries,
) -> None:
    execute_sql("UPDATE job_items SET result_bytes = NULL WHERE job_id = %s", (big_job.id,))

    page = queries.list_items(big_job.id, None, limit=1000)

    assert 10 < len(page.items) < ITEMS and page.has_more


def test_an_export_reads_a_bounded_page_at_a_time_and_keeps_every_item(big_job: Job, pool: ConnectionPool) -> None:
    pages, seqs, after = 0, list[int](), -1
    with uow(pool) as tx:
        while True:
            page = tx.queries.list_items(big_job.id, None, after_seq=after, limit=1000)
            pages, seqs, after = pages + 1, seqs + [item.seq for item in page.items], page.items[-1].seq
            if not page.has_more:
                break
    lines = "".join(exports.export_items(pool, big_job.id, ANONYMOUS_OWNER, None, "ndjson")).splitlines()

    assert pages >= 3 and seqs == list(range(ITEMS))
    assert len(lines) == ITEMS


def test_csv_quotes_every_cell_neutralises_formulas_after_separators_and_offers_a_bom(
    pool: ConnectionPool, submit_job: Callable[..., Job],
) -> None:
    job = submit_job(count=1)
    in_transaction(pool, lambda tx: tx.jobs.mark_job_running(job.id))
    in_transaction(pool, lambda tx: tx.jobs.fail_item(job.id, 0, "http_error", "x;@SUM(A1)", SYSTEM_ACTOR, 500))

    plain = "".join(exports.export_items(pool, job.id, ANONYMOUS_OWNER, None, "csv"))
    with_bom = "".join(exports.export_items(pool, job.id, ANONYMOUS_OWNER, None, "csv", bom=True))

    assert with_bom == exports.UTF8_BOM + plain and not plain.startswith(exports.UTF8_BOM)
    header, row, _ = plain.split("\r\n")
    assert header.startswith('"seq","url","status"') and row.startswith('"0","https://example.test/page/0"')
    assert next(csv.DictReader(io.StringIO(plain)))["error_message"] == "'x;@SUM(A1)"


def test_csv_cells_with_a_formula_after_a_separator_become_text(big_job: Job, pool: ConnectionPool) -> None:
    rows = list(csv.DictReader(io.StringIO("".join(exports.export_items(pool, big_job.id, None, None, "csv")))))

    assert rows[3]["title"] == "'DDE;=cmd|' /C calc'!A3"
    assert rows[3]["description"] == "Café"
