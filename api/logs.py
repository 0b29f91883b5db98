"""`GET /api/jobs/{id}/logs`: a job's audit trail, oldest first, continued with `after`."""
from __future__ import annotations

import azure.functions as func

from api.callers import READ, authorize
from api.http import handles_errors, json_response
from api.params import job_id_of, parse_query
from shared.composition import get_pool
from shared.contract.schemas import EventPage, EventView, LogsQuery
from shared.services import job_service

bp = func.Blueprint()


@bp.route(route="jobs/{id}/logs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def job_logs(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    listing = job_service.list_events(get_pool(), job_id_of(req), scope, parse_query(req, LogsQuery))
    return json_response(EventPage(items=[EventView.of(event) for event in listing.events],
                                   next_after=listing.next_after, has_more=listing.has_more))
