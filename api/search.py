"""`GET /api/search`: full-text search over the latest version of each of the caller's pages."""
from __future__ import annotations

import azure.functions as func

from api.callers import READ, authorize
from api.http import handles_errors, json_response
from api.params import parse_query
from shared.composition import get_content_store, get_executors, get_pool
from shared.contract.page_schemas import SearchHitView, SearchPage, SearchQuery
from shared.services import pages

bp = func.Blueprint()


@bp.route(route="search", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
async def search_pages(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    query = parse_query(req, SearchQuery)
    found = await pages.search(get_pool(), get_content_store(), get_executors(), scope, query)
    items = [SearchHitView.of(hit, snippet) for hit, snippet in zip(found.hits, found.snippets, strict=True)]
    return json_response(SearchPage(items=items, next_cursor=found.next_cursor, capped=found.capped))
