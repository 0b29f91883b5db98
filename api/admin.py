"""Operator endpoints for Jobs.Admin: `GET /api/jobs/{id}/orchestration`, a job's Durable management payload.

Not under `admin/`: the Functions host reserves every function route starting with `admin` for its
own API (whatever the routePrefix) and refuses to load such a function.
"""
from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from api.callers import ADMIN, authorize
from api.http import handles_errors, json_response
from api.params import job_id_of
from shared.domain.errors import NotFound

bp = df.Blueprint()


@bp.route(route="jobs/{id}/orchestration", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@handles_errors
async def get_job_orchestration(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    authorize(req, ADMIN)
    job_id = job_id_of(req)
    history = req.params.get("history", "").lower() == "true"
    status = await client.get_status(str(job_id), show_history=history, show_input=True)
    if not status:
        raise NotFound(f"job {job_id} has no orchestration")
    return json_response(_management_payload(status))


def _management_payload(status: DurableOrchestrationStatus) -> dict[str, object]:
    """The status as the Durable HTTP API shows it (the SDK's `to_json` leaves out `historyEvents`)."""
    payload: dict[str, object] = dict(status.to_json())
    events = getattr(status, "historyEvents", None)
    if events is not None:
        payload["historyEvents"] = events
    return payload
