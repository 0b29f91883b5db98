"""`GET /api/pages`, `GET /api/pages/{id}` and `GET /api/pages/{id}/diff`: the caller's pages, the versions of
each, and what changed between two of them."""
from __future__ import annotations

from uuid import UUID

import azure.functions as func

from api.callers import READ, authorize
from api.http import SECURITY_HEADERS, handles_errors, json_response
from api.params import parse_query
from shared.composition import get_content_store, get_pool
from shared.contract.page_schemas import (
    DiffQuery,
    PageHistoryView,
    PageListQuery,
    PagePage,
    PageVersionsQuery,
    PageView,
)
from shared.domain.errors import NotFound
from shared.services import pages

bp = func.Blueprint()

DIFF_MEDIA_TYPE = "text/x-diff; charset=utf-8"


@bp.route(route="pages", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def list_pages(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    listing = pages.list_pages(get_pool(), scope, parse_query(req, PageListQuery))
    return json_response(PagePage(items=[PageView.of(page) for page in listing.pages],
                                  next_cursor=listing.next_cursor))


@bp.route(route="pages/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def get_page(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    page, cursor = pages.page_history(get_pool(), page_id_of(req), scope, parse_query(req, PageVersionsQuery))
    return json_response(PageHistoryView.of_history(page, cursor))


@bp.route(route="pages/{id}/diff", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def page_diff(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    diff = pages.page_diff(get_pool(), get_content_store(), page_id_of(req), scope, parse_query(req, DiffQuery))
    return func.HttpResponse(diff.encode(), status_code=200,
                             headers={**SECURITY_HEADERS, "Content-Type": DIFF_MEDIA_TYPE})


def page_id_of(req: func.HttpRequest) -> UUID:
    """The `{id}` route parameter; a malformed id is a page that does not exist (404)."""
    raw = req.route_params.get("id", "")
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"page {raw} not found") from None
