"""Whole-job result exports (NDJSON, CSV) as generators of text chunks.

Rows come from `JobQueries.iter_items`, which reads one keyset page at a time (at most 1,000 rows
and about 4 MiB), and each chunk is yielded as soon as it is written, so an export holds one page
and one chunk in memory whatever the job's size. The HTTP edge must still buffer the body (Python
Functions' `HttpResponse` takes it whole), which `collect` does under a size cap.

CSV is written for spreadsheets: every cell quoted, and a cell a spreadsheet could run as a
formula (a trigger at its start, or right after a separator Excel may split on) prefixed with `'`.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from shared.adapters.db import ConnectionPool, uow
from shared.contract.schemas import ItemView
from shared.domain.errors import ValidationFailed
from shared.domain.models import ItemStatus, JobItem, Owner
from shared.services.job_service import require_job

ExportFormat = Literal["ndjson", "csv"]
# NDJSON is UTF-8 by definition (like JSON, its media type takes no charset); CSV says so.
MEDIA_TYPES: dict[ExportFormat, str] = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
ROWS_PER_CHUNK = 500
H1_SEPARATOR = " | "
# Excel reads a CSV as UTF-8 only when it starts with this; other tools do not need it.
UTF8_BOM = "\ufeff"

CSV_COLUMNS = (
    "seq", "url", "status", "attempts", "http_status", "final_url", "content_type", "title", "description",
    "canonical", "lang", "og_title", "og_description", "og_site_name", "og_image", "published_time", "h1",
    "word_count", "links_count", "truncated", "excerpt", "text_sha256", "error_code", "error_message",
    "duration_ms", "finished_at",
)
# A cell starting with =, +, -, @, tab or CR is a formula (or becomes one) in Excel, LibreOffice and
# Sheets; so is one where such a trigger follows a separator the application may split the cell on
# (`DDE;=cmd|' /C calc'!A0` where `;` is the list separator).
_FORMULA = re.compile(r"(?:^|[,;\t\r\n])[=+\-@\t\r]")


class ExportTooLarge(ValidationFailed):
    """The export would exceed what one HTTP response may carry; JSON pages, bounded one by one, have no such limit."""

    slug, title = "export-too-large", "Export too large for one response"


def export_items(pool: ConnectionPool, job_id: UUID, owner: Owner | None, statuses: Collection[ItemStatus] | None,
                 export_format: ExportFormat, page_size: int = 1000, *, bom: bool = False) -> Iterator[str]:
    """Every matching item of a job in seq order, as text chunks, after a UTF-8 byte-order mark if `bom`;
    NotFound (at once) for another owner's job."""
    require_job(pool, job_id, owner)
    chunks = _stream(pool, job_id, owner, statuses, FORMATTERS[export_format], page_size)
    return _after(UTF8_BOM, chunks) if bom else chunks


def ndjson_chunks(items: Iterable[JobItem]) -> Iterator[str]:
    """One ItemView JSON object per line."""
    lines: list[str] = []
    for item in items:
        lines.append(ItemView.of(item).model_dump_json() + "\n")
        if len(lines) == ROWS_PER_CHUNK:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)


def csv_chunks(items: Iterable[JobItem]) -> Iterator[str]:
    """A header row, then one flattened, spreadsheet-safe row per item (RFC 4180, every cell quoted)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for count, item in enumerate(items, start=1):
        writer.writerow([spreadsheet_safe(value) for value in csv_row(item)])
        if count % ROWS_PER_CHUNK == 0:
            yield _drain(buffer)
    if tail := _drain(buffer):
        yield tail


def csv_row(item: JobItem) -> list[Any]:
    """An item flattened to CSV_COLUMNS: Open Graph fields as og_*, h1 texts joined, links counted, what was
    left out of the page as `links:12 texts:1`, and the item's final error only (`JobItem.final_error`)."""
    page = item.result or {}
    og = page.get("open_graph") or {}
    h1 = (page.get("headings") or {}).get("h1") or []
    links = page.get("links")
    error_code, error_message = item.final_error
    values = {
        "seq": item.seq, "url": item.url, "status": item.status.value, "attempts": item.attempts,
        "http_status": item.http_status, "final_url": item.final_url, "content_type": page.get("content_type"),
        "title": page.get("title"), "description": page.get("description"), "canonical": page.get("canonical"),
        "lang": page.get("lang"), "og_title": og.get("title"), "og_description": og.get("description"),
        "og_site_name": og.get("site_name"), "og_image": og.get("image"), "published_time": page.get("published_time"),
        "h1": H1_SEPARATOR.join(h1) if h1 else None, "word_count": page.get("word_count"),
        "links_count": None if links is None else len(links), "truncated": _truncation(page.get("truncated")),
        "excerpt": page.get("excerpt"), "text_sha256": page.get("text_sha256"), "error_code": error_code,
        "error_message": error_message, "duration_ms": item.duration_ms,
        "finished_at": item.finished_at,
    }
    return [values[column] for column in CSV_COLUMNS]


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that spreadsheet apps show as text: a string that starts like a formula, or has a formula
    trigger right after a separator, gets a leading single quote (OWASP "CSV injection"); None becomes
    empty, datetimes ISO 8601, numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and _FORMULA.search(value):
        return "'" + value
    return value


def collect(chunks: Iterator[str], max_bytes: int, hint: str) -> bytes:
    """The export as one UTF-8 body, stopping (and closing the stream) with ExportTooLarge past `max_bytes`."""
    body = bytearray()
    try:
        for chunk in chunks:
            body += chunk.encode()
            if len(body) > max_bytes:
                raise ExportTooLarge(f"the export is larger than {max_bytes} bytes; {hint}", max_bytes=max_bytes)
    finally:
        close: Callable[[], None] | None = getattr(chunks, "close", None)
        if close is not None:
            close()
    return bytes(body)


FORMATTERS: dict[ExportFormat, Callable[[Iterable[JobItem]], Iterator[str]]] = {
    "ndjson": ndjson_chunks,
    "csv": csv_chunks,
}


def _stream(pool: ConnectionPool, job_id: UUID, owner: Owner | None, statuses: Collection[ItemStatus] | None,
            formatter: Callable[[Iterable[JobItem]], Iterator[str]], page_size: int) -> Iterator[str]:
    with uow(pool) as tx:
        yield from formatter(tx.queries.iter_items(job_id, owner, statuses, page_size))


def _truncation(truncated: dict[str, int] | None) -> str | None:
    counts = " ".join(f"{name}:{count}" for name, count in (truncated or {}).items() if count)
    return counts or None


def _after(first: str, chunks: Iterator[str]) -> Iterator[str]:
    yield first
    yield from chunks


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
