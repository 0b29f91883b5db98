"""`GET /api/jobs/{id}/events`: a job's progress as server-sent events, one bounded response at a time.

Why long-poll responses rather than the Functions HTTP streams feature: README, "Watching a job live".
"""
from __future__ import annotations

import azure.functions as func

from api.callers import READ, authorize
from api.http import handles_errors
from api.params import job_id_of, parse_query
from shared.composition import get_executors, get_job_listener, get_pool, get_stream_slots
from shared.contract import sse
from shared.contract.schemas import EventsQuery
from shared.domain.stream import StreamCursor
from shared.services.job_stream import StreamTiming, next_reply

bp = func.Blueprint()

TIMING = StreamTiming()

# Proxies (and API Management, told so by this operation's policy) pass each response on unbuffered.
_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


@bp.route(route="jobs/{id}/events", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
async def job_events(req: func.HttpRequest) -> func.HttpResponse:
    who = authorize(req, READ)
    job_id = job_id_of(req)
    query = parse_query(req, EventsQuery)
    cursor = StreamCursor.parse(req.headers.get("Last-Event-ID") or query.last_event_id)
    with get_stream_slots().hold(who.owner):
        reply = await next_reply(get_pool(), get_executors(), get_job_listener(), job_id, who.scope, cursor,
                                 query.items, TIMING)
    if reply.finished:
        return func.HttpResponse(status_code=204, headers=_HEADERS)
    retry_ms = 0 if reply.more else TIMING.retry_ms
    return func.HttpResponse(sse.render(reply.events, retry_ms), status_code=200, headers=_HEADERS,
                             mimetype=sse.MEDIA_TYPE, charset="utf-8")
