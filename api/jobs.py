"""The job endpoints: submit (202 + status URL), list, read with progress, cancel, retry. Thin: parse, call, respond."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from uuid import UUID

import azure.durable_functions as df
import azure.functions as func
from opentelemetry import trace

from api.callers import READ, SUBMIT, authorize
from api.http import base_url, handles_errors, json_response, parse_body
from api.params import job_id_of, parse_query
from orchestrators.job import CANCEL_EVENT, ORCHESTRATOR_NAME
from shared.adapters.executors import Work
from shared.adapters.telemetry import JOBS_SUBMITTED, current_traceparent
from shared.composition import get_executors, get_pool, get_quotas
from shared.contract.schemas import (
    URL_RULES,
    CancelJobRequest,
    JobListQuery,
    JobPage,
    JobView,
    RefusedUrl,
    RetryJobRequest,
    SubmitJobRequest,
    UrlRules,
)
from shared.domain.errors import BadRequest
from shared.domain.models import Job
from shared.services import job_service
from shared.services.quotas import submission_quota
from shared.settings import Settings, get_settings

bp = df.Blueprint()
log = logging.getLogger(f"trawl.{__name__}")

POLL_AFTER_SECONDS = "2"


@bp.route(route="jobs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@handles_errors
async def submit_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    who = authorize(req, SUBMIT)
    settings = get_settings()
    key = _idempotency_key(req)
    plan = submission_plan(req, settings)
    async with submission_quota(get_quotas(), get_executors(), who.owner, len(plan.urls)):
        submission = await get_executors().run(Work.API, job_service.submit_job, get_pool(), who.owner, plan, settings, key)
    if not submission.replayed:
        await _start_orchestration(client, submission.job)
    return _job_response(req, submission.job, 200 if submission.replayed else 202, refused_urls=plan.refused)


@bp.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    listing = job_service.list_jobs(get_pool(), authorize(req, READ).scope, parse_query(req, JobListQuery))
    base = base_url(req)
    views = [JobView.of(job, base, listing.children.get(job.id, ())) for job in listing.jobs]
    return json_response(JobPage(items=views, next_cursor=listing.next_cursor))


@bp.route(route="jobs/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    scope = authorize(req, READ).scope
    job = job_service.get_job(get_pool(), job_id_of(req), scope)
    return _job_response(req, job, 200, job_service.child_job_ids(get_pool(), job.id, scope))


@bp.route(route="jobs/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@handles_errors
async def cancel_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    who = authorize(req, SUBMIT)
    request = parse_body(req, CancelJobRequest, optional=True)
    job = await get_executors().run(Work.API, job_service.cancel_job, get_pool(), job_id_of(req), who.scope, who.actor, request.reason)
    try:
        await client.raise_event(str(job.id), CANCEL_EVENT, None)
    except Exception as exc:  # the request is recorded; the orchestration sees it at its next tick anyway
        log.warning("job %s: could not raise %s: %s", job.id, CANCEL_EVENT, exc)
    return _job_response(req, job, 202)


@bp.route(route="jobs/{id}/retry", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@handles_errors
async def retry_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    who = authorize(req, SUBMIT)
    request = parse_body(req, RetryJobRequest, optional=True)
    key = _idempotency_key(req)
    plan = await get_executors().run(Work.API, job_service.plan_retry, get_pool(), job_id_of(req), who.scope, request)
    async with submission_quota(get_quotas(), get_executors(), plan.parent.owner, len(plan.urls)):
        submission = await get_executors().run(Work.API, job_service.create_retry, get_pool(), plan, get_settings(), key)
    if not submission.replayed:
        await _start_orchestration(client, submission.job)
    return _job_response(req, submission.job, 200 if submission.replayed else 202)


def submission_plan(req: func.HttpRequest, settings: Settings) -> job_service.SubmissionPlan:
    """The submitted body checked against the service's limits and URL rules: the URLs the job will hold,
    and those it leaves out. Every problem is a 4xx here, before anything is stored."""
    request = parse_body(req, SubmitJobRequest, context={URL_RULES: UrlRules.of(settings)})
    return job_service.plan_submission(request, settings)


async def _start_orchestration(client: df.DurableOrchestrationClient, job: Job) -> None:
    JOBS_SUBMITTED.add(1)
    orchestration_input = job_service.orchestration_input(job, get_settings(), current_traceparent())
    try:
        await client.start_new(ORCHESTRATOR_NAME, str(job.id), orchestration_input)
    except Exception:  # the job is saved as pending: the reconciler starts its orchestration
        log.exception("job %s: starting its orchestration failed; the reconciler will retry", job.id)


def _job_response(req: func.HttpRequest, job: Job, status: int, children: Sequence[UUID] = (),
                  refused_urls: Sequence[RefusedUrl] = ()) -> func.HttpResponse:
    view = JobView.of(job, base_url(req), children, refused_urls)
    trace.get_current_span().set_attribute("trawl.job.id", str(job.id))
    headers = {"Location": view.links.self}
    if not job.status.is_final:
        headers["Retry-After"] = POLL_AFTER_SECONDS
    return json_response(view, status, headers)


def _idempotency_key(req: func.HttpRequest) -> str | None:
    """The header's key: 1 to 200 printable ASCII characters (a UUID fits), so it is stored and logged as is."""
    # HttpRequest.headers is unannotated in azure-functions; its ABC declares Mapping[str, str].
    key: str | None = req.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1 to 200 printable ASCII characters, such as a UUID")
    return key


_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,200}")
