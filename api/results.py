"""`GET /api/jobs/{id}/results`: a job's per-URL results as JSON pages, or whole as NDJSON or CSV."""
from __future__ import annotations

import azure.functions as func

from api.callers import READ, authorize
from api.http import SECURITY_HEADERS, handles_errors, json_response
from api.params import job_id_of, parse_query
from shared.composition import get_content_store, get_pool
from shared.contract.schemas import INLINE_BODY_BYTES, INLINE_PAGE_BYTES, ItemPage, ItemView, ResultsQuery
from shared.domain.content import ContentFormat
from shared.services import exports, job_service, page_content

bp = func.Blueprint()

# Python Functions build a response whole, so an export is buffered (one body per request, besides the one
# 4 MiB page it reads at a time): past this, page with format=json, whose pages are bounded by bytes too.
MAX_EXPORT_BYTES = 64 * 1024 * 1024


@bp.route(route="jobs/{id}/results", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def job_results(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    query = parse_query(req, ResultsQuery)
    job_id = job_id_of(req)
    if query.format == "json":
        listing = job_service.list_results(get_pool(), job_id, scope, query)
        kinds = [ContentFormat(kind) for kind in query.include or ()]
        inline = page_content.inline_bodies(get_content_store(), listing.items, kinds, INLINE_BODY_BYTES,
                                            INLINE_PAGE_BYTES) if kinds else {}
        return json_response(ItemPage(items=[ItemView.of(item, inline.get(item.seq)) for item in listing.items],
                                      next_cursor=listing.next_cursor))
    chunks = exports.export_items(get_pool(), job_id, scope, query.status, query.format, bom=query.bom)
    body = exports.collect(chunks, MAX_EXPORT_BYTES, f"page through /api/jobs/{job_id}/results?format=json instead")
    disposition = f'attachment; filename="trawl-{job_id}.{query.format}"'
    headers = {**SECURITY_HEADERS, "Content-Type": exports.MEDIA_TYPES[query.format], "Content-Disposition": disposition}
    return func.HttpResponse(body, status_code=200, headers=headers)
