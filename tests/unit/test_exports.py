"""Export formatters: CSV flattening and formula escaping, NDJSON lines, chunking, and the size cap."""
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from shared.domain.models import ItemStatus, JobItem
from shared.domain.pages import ScrapeResult
from shared.services.exports import (
    CSV_COLUMNS,
    ROWS_PER_CHUNK,
    ExportTooLarge,
    collect,
    csv_chunks,
    csv_row,
    ndjson_chunks,
    spreadsheet_safe,
)

JOB_ID = uuid4()
FINISHED = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def page(seq: int, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "url": f"https://example.test/{seq}", "final_url": f"https://example.test/{seq}/", "status": 200,
        "content_type": "text/html", "title": f"Page {seq}", "description": "About it", "canonical": None,
        "lang": "en", "open_graph": {"title": "OG", "description": None, "site_name": "Site", "image": None},
        "published_time": "2026-01-01T00:00:00Z", "headings": {"h1": ["One", "Two"], "h2": ["Sub"], "h3": []},
        "links": [{"url": "https://example.test/a", "nofollow": False}, {"url": "https://x.test/", "nofollow": True}],
        "word_count": 42, "excerpt": "Words", "text_sha256": "ab" * 32, "charset": "utf-8", "redirects": 1,
        "elapsed_ms": 12,
    }
    data.update(fields)
    return ScrapeResult.model_validate(data).model_dump(mode="json")


def succeeded(seq: int, **fields: Any) -> JobItem:
    result = page(seq, **fields)
    return JobItem(job_id=JOB_ID, seq=seq, url=result["url"], status=ItemStatus.SUCCEEDED, attempts=1,
                   last_error_code=None, last_error_message=None, http_status=200, final_url=result["final_url"],
                   started_at=FINISHED, finished_at=FINISHED, duration_ms=12, result=result)


def failed(seq: int, message: str = "gave up after 5 attempts: http_error 500") -> JobItem:
    return JobItem(job_id=JOB_ID, seq=seq, url=f"https://example.test/{seq}", status=ItemStatus.FAILED, attempts=5,
                   last_error_code="gave_up", last_error_message=message, http_status=500, final_url=None,
                   started_at=FINISHED, finished_at=FINISHED, duration_ms=None, result=None)


def read_csv(chunks: Iterator[str]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(chunks))))


def test_a_succeeded_item_flattens_to_one_row_of_named_columns() -> None:
    row = dict(zip(CSV_COLUMNS, csv_row(succeeded(7)), strict=True))

    assert row == {
        "seq": 7, "url": "https://example.test/7", "status": "succeeded", "attempts": 1, "http_status": 200,
        "final_url": "https://example.test/7/", "content_type": "text/html", "title": "Page 7",
        "description": "About it", "canonical": None, "lang": "en", "og_title": "OG", "og_description": None,
        "og_site_name": "Site", "og_image": None, "published_time": "2026-01-01T00:00:00Z", "h1": "One | Two",
        "word_count": 42, "links_count": 2, "truncated": None, "excerpt": "Words", "text_sha256": "ab" * 32,
        "error_code": None,
        "error_message": None, "duration_ms": 12, "finished_at": FINISHED,
    }


def test_a_failed_item_keeps_its_error_and_leaves_page_columns_empty() -> None:
    [row] = read_csv(csv_chunks([failed(3)]))

    assert (row["status"], row["error_code"], row["http_status"]) == ("failed", "gave_up", "500")
    assert row["error_message"] == "gave up after 5 attempts: http_error 500"
    assert row["title"] == row["h1"] == row["links_count"] == row["word_count"] == ""
    assert row["finished_at"] == "2026-03-01T12:00:00.123000+00:00"


@pytest.mark.parametrize(("value", "expected"), [
    ("=HYPERLINK(\"http://evil\",\"x\")", "'=HYPERLINK(\"http://evil\",\"x\")"),
    ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(A1:A9)", "'@SUM(A1:A9)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("Plain = fine", "Plain = fine"), ("a-b", "a-b"), ("", ""), (None, ""), (42, 42), (0, 0),
])
def test_cells_that_spreadsheets_would_run_as_formulas_become_text(value: Any, expected: Any) -> None:
    assert spreadsheet_safe(value) == expected


def test_csv_escapes_formulas_from_scraped_pages_and_error_messages() -> None:
    rows = read_csv(csv_chunks([
        succeeded(0, title="=cmd|' /C calc'!A0", description="@SUM(1)", headings={"h1": ["-1"], "h2": [], "h3": []}),
        failed(1, message="+danger"),
    ]))

    assert rows[0]["title"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["description"] == "'@SUM(1)"
    assert rows[0]["h1"] == "'-1"
    assert rows[1]["error_message"] == "'+danger"


def test_csv_keeps_commas_quotes_and_newlines_inside_cells() -> None:
    [row] = read_csv(csv_chunks([succeeded(0, title='Say "hi", then\nleave')]))
    assert row["title"] == 'Say "hi", then\nleave'


def test_csv_starts_with_the_header_and_has_one_row_per_item() -> None:
    text = "".join(csv_chunks(succeeded(seq) for seq in range(3)))
    lines = text.split("\r\n")
    assert lines[0] == ",".join(f'"{column}"' for column in CSV_COLUMNS)
    assert [row["seq"] for row in read_csv(iter([text]))] == ["0", "1", "2"]


def test_an_empty_export_is_just_the_header() -> None:
    assert "".join(csv_chunks([])) == ",".join(f'"{column}"' for column in CSV_COLUMNS) + "\r\n"
    assert list(ndjson_chunks([])) == []


def test_ndjson_is_one_item_view_per_line() -> None:
    lines = "".join(ndjson_chunks([succeeded(0), failed(1)])).splitlines()

    first, second = (json.loads(line) for line in lines)
    assert (first["seq"], first["status"], first["result"]["title"], first["error"]) == (0, "succeeded", "Page 0", None)
    assert second["error"] == {"code": "gave_up", "message": "gave up after 5 attempts: http_error 500"}
    assert second["result"] is None


@pytest.mark.parametrize("formatter", [csv_chunks, ndjson_chunks])
def test_formatters_stream_a_chunk_per_batch_of_rows_without_reading_ahead(formatter: Any) -> None:
    consumed = []

    def items() -> Iterator[JobItem]:
        for seq in range(ROWS_PER_CHUNK * 2 + 1):
            consumed.append(seq)
            yield failed(seq)

    chunks = formatter(items())
    next(chunks)
    assert len(consumed) == ROWS_PER_CHUNK
    assert len(list(chunks)) == 2
    assert len(consumed) == ROWS_PER_CHUNK * 2 + 1


def test_collect_joins_chunks_as_utf8() -> None:
    assert collect(iter(["a,é\r\n", "b\r\n"]), max_bytes=100, hint="page") == "a,é\r\nb\r\n".encode()


def test_collect_stops_past_the_cap_and_closes_the_stream() -> None:
    closed = []

    def chunks() -> Iterator[str]:
        try:
            while True:
                yield "x" * 1000
        finally:
            closed.append(True)

    with pytest.raises(ExportTooLarge) as raised:
        collect(chunks(), max_bytes=5000, hint="page with format=json")

    assert closed == [True]
    problem = raised.value.problem()
    assert (problem["status"], problem["type"]) == (422, "https://trawl.dev/problems/export-too-large")
    assert "page with format=json" in problem["detail"]
