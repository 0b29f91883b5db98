"""`DELETE /api/jobs/{id}/data`: delete a final job's results and bodies (the job and its audit log stay)."""
from __future__ import annotations

import azure.functions as func

from api.callers import SUBMIT, authorize
from api.http import handles_errors, json_response
from api.params import job_id_of
from shared.composition import get_pool
from shared.contract.schemas import DeletedDataView
from shared.services import retention

bp = func.Blueprint()


@bp.route(route="jobs/{id}/data", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def delete_job_data(req: func.HttpRequest) -> func.HttpResponse:
    who = authorize(req, SUBMIT)
    deleted = retention.delete_job_data(get_pool(), job_id_of(req), who.scope, who.actor)
    return json_response(DeletedDataView(items=deleted.items, versions=deleted.versions, bodies=deleted.bodies))
