"""`GET /api/jobs/{id}/items/{seq}/content`: one body an item kept (Markdown, text or HTML)."""
from __future__ import annotations

import azure.functions as func

from api.callers import READ, authorize
from api.http import SECURITY_HEADERS, handles_errors
from api.params import job_id_of, parse_query
from shared.composition import get_content_store, get_pool
from shared.contract.schemas import ContentQuery
from shared.domain.content import MEDIA_TYPES, ContentFormat
from shared.domain.errors import BadRequest
from shared.services import page_content

bp = func.Blueprint()


@bp.route(route="jobs/{id}/items/{seq}/content", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def item_content(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    kind = ContentFormat(parse_query(req, ContentQuery).format)
    body = page_content.item_body(get_pool(), job_id_of(req), _seq_of(req), scope, kind)
    # A body's address is its content: the ETag never changes meaning, so a revalidation costs no blob read.
    etag = f'"{body.sha256}"'
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "private, max-age=86400"}
    if etag in req.headers.get("If-None-Match", ""):
        return func.HttpResponse(status_code=304, headers=headers)
    # Python functions build a response whole; a body is bounded by the fetch limit (5 MiB of HTML by default).
    data = b"".join(get_content_store().chunks(body.sha256))
    return func.HttpResponse(data, status_code=200, headers={**headers, "Content-Type": MEDIA_TYPES[kind]})


def _seq_of(req: func.HttpRequest) -> int:
    text = req.route_params.get("seq", "")
    if not text.isdigit() or len(text) > 9:
        raise BadRequest("the item number must be a whole number from 0", parameter="seq")
    return int(text)
