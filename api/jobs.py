"""The job endpoints: submit (202 + status URL), read with progress, cancel. Thin: parse, call, respond."""
from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import azure.durable_functions as df
import azure.functions as func

from api.callers import READ, SUBMIT, authorize
from api.http import base_url, handles_errors, json_response, parse_body
from orchestrators.job import CANCEL_EVENT, ORCHESTRATOR_NAME
from shared import job_service
from shared.errors import BadRequest, NotFound
from shared.models import Job
from shared.resources import get_pool
from shared.schemas import CancelJobRequest, JobView, SubmitJobRequest
from shared.settings import get_settings

bp = df.Blueprint()
log = logging.getLogger(__name__)

POLL_AFTER_SECONDS = "2"


@bp.route(route="jobs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@handles_errors
async def submit_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    who = authorize(req, SUBMIT)
    request = parse_body(req, SubmitJobRequest)
    settings = get_settings()
    key = _idempotency_key(req)
    submission = await asyncio.to_thread(job_service.submit_job, get_pool(), who.owner, request, settings, key)
    if not submission.replayed:
        await _start_orchestration(client, submission.job)
    return _job_response(req, submission.job, 200 if submission.replayed else 202)


@bp.route(route="jobs/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    job = job_service.get_job(get_pool(), _job_id(req), authorize(req, READ).scope)
    return _job_response(req, job, 200)


@bp.route(route="jobs/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@handles_errors
async def cancel_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    who = authorize(req, SUBMIT)
    request = parse_body(req, CancelJobRequest, optional=True)
    job = await asyncio.to_thread(job_service.cancel_job, get_pool(), _job_id(req), who.scope, who.actor, request.reason)
    try:
        await client.raise_event(str(job.id), CANCEL_EVENT, None)
    except Exception as exc:  # the request is recorded; the orchestration sees it at its next tick anyway
        log.warning("job %s: could not raise %s: %s", job.id, CANCEL_EVENT, exc)
    return _job_response(req, job, 202)


async def _start_orchestration(client: df.DurableOrchestrationClient, job: Job) -> None:
    try:
        await client.start_new(ORCHESTRATOR_NAME, str(job.id), job_service.orchestration_input(job, get_settings()))
    except Exception:  # the job is saved as pending: the reconciler starts its orchestration
        log.exception("job %s: starting its orchestration failed; the reconciler will retry", job.id)


def _job_response(req: func.HttpRequest, job: Job, status: int) -> func.HttpResponse:
    view = JobView.of(job, base_url(req))
    headers = {"Location": view.links["self"]}
    if not job.status.is_final:
        headers["Retry-After"] = POLL_AFTER_SECONDS
    return json_response(view, status, headers)


def _job_id(req: func.HttpRequest) -> UUID:
    raw = req.route_params.get("id", "")
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"job {raw} not found") from None


def _idempotency_key(req: func.HttpRequest) -> str | None:
    key = req.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise BadRequest("Idempotency-Key must be 1 to 200 characters")
    return key
