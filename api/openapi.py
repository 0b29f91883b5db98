"""`GET /api/openapi.json` (anonymous): the API's OpenAPI 3.1 contract, and the table of operations it is built from.

`python -m api.openapi` prints the document; `python -m api.openapi --readme` rewrites the README's
API section from it, and `python -m api.openapi --apim` writes its OpenAPI 3.0 rendering to
infra/apim/openapi.json, the copy API Management imports (its 3.1 import is partial). Tests fail when
either drifts from the document.
"""
from __future__ import annotations

import argparse
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import azure.functions as func

from api.callers import ADMIN, READ, SUBMIT
from api.http import json_response
from shared.contract import sse
from shared.contract.openapi import (
    Body,
    Header,
    Operation,
    Security,
    Success,
    build_document,
    openapi_30,
    readme_section,
    replace_block,
)
from shared.contract.page_schemas import (
    DiffQuery,
    PageHistoryView,
    PageListQuery,
    PagePage,
    PageVersionsQuery,
    SearchPage,
    SearchQuery,
)
from shared.contract.schemas import (
    CancelJobRequest,
    ContentQuery,
    DeletedDataView,
    EventPage,
    EventsQuery,
    HealthView,
    ItemPage,
    JobListQuery,
    JobPage,
    JobView,
    LogsQuery,
    OrchestrationQuery,
    ResultsQuery,
    RetryJobRequest,
    SubmitJobRequest,
)

bp = func.Blueprint()

TITLE = "Trawl"
VERSION = "0.1.0"
DESCRIPTION = ("Durable web-scraping jobs: submit URLs, follow the job, read per-URL results and the audit log. "
               "Errors are RFC 9457 problem details.")
README = Path(__file__).resolve().parents[1] / "README.md"
README_START, README_END = "<!-- api:start -->", "<!-- api:end -->"
APIM_DOCUMENT = README.parent / "infra" / "apim" / "openapi.json"
ENTRA_AUTHORITY = "https://login.microsoftonline.com/organizations/oauth2/v2.0"
SECURITY = Security(
    roles={SUBMIT: "Submit, cancel and retry your jobs.", READ: "Read your jobs, their results and logs.",
           ADMIN: "See and act on every owner's jobs."},
    authorization_url=f"{ENTRA_AUTHORITY}/authorize",
    token_url=f"{ENTRA_AUTHORITY}/token",
)

IDEMPOTENCY_KEY = Header("Idempotency-Key", "Makes the request safe to repeat for 24 hours: the same key and body "
                         "return the job it created (200); the same key with another body is a 422.",
                         {"type": "string", "minLength": 1, "maxLength": 200})
JOB_HEADERS = ("Location", "Retry-After")
JOB = Body("application/json", JobView)
JOB_PROBLEMS = (401, 403, 404, 429, 503)

OPERATIONS = (
    Operation(
        "post", "/api/jobs", "submitJob", "Submit a job", "Creates a job of URLs to scrape and starts it. Poll "
        "`statusQueryGetUri` (or `Location`) until its status is final.", "jobs", SUBMIT,
        {202: Success("Accepted: the job is created and starts.", [JOB], JOB_HEADERS),
         200: Success("The job an earlier request with the same Idempotency-Key and body created.", [JOB],
                      JOB_HEADERS)},
        (400, 401, 403, 413, 422, 429, 503), body=SubmitJobRequest, body_required=True, headers=[IDEMPOTENCY_KEY]),
    Operation(
        "get", "/api/jobs", "listJobs", "List your jobs", "Your jobs, newest first, one page at a time.", "jobs", READ,
        {200: Success("One page of jobs.", [Body("application/json", JobPage)])},
        (400, 401, 403, 429, 503), query=JobListQuery),
    Operation(
        "get", "/api/jobs/{id}", "getJob", "Get a job", "The job's status, progress, cancellation and retries; "
        "`Retry-After` while it runs.", "jobs", READ,
        {200: Success("The job.", [JOB], JOB_HEADERS)}, JOB_PROBLEMS),
    Operation(
        "delete", "/api/jobs/{id}", "cancelJob", "Cancel a job", "Asks a pending or running job to stop; items not "
        "yet scraped are skipped. The optional reason is kept in the audit log.", "jobs", SUBMIT,
        {202: Success("Accepted: the job is being cancelled.", [JOB], JOB_HEADERS)},
        (400, 409, 413, 422, *JOB_PROBLEMS), body=CancelJobRequest),
    Operation(
        "post", "/api/jobs/{id}/retry", "retryJob", "Retry a job's failed items", "Creates a new job (its "
        "`parent_job_id` is this job, which lists it in `children`) for the failed, and optionally skipped, URLs of "
        "a final job. 409 while the job runs, 422 `nothing-to-retry` when no item qualifies.", "jobs", SUBMIT,
        {202: Success("Accepted: the new job is created and starts.", [JOB], JOB_HEADERS),
         200: Success("The job an earlier request with the same Idempotency-Key created.", [JOB], JOB_HEADERS)},
        (400, 409, 413, 422, *JOB_PROBLEMS), body=RetryJobRequest, headers=[IDEMPOTENCY_KEY]),
    Operation(
        "get", "/api/jobs/{id}/results", "getJobResults", "Get a job's results", "Per-URL results in submission "
        "order: a page of JSON (at most `limit` items and about 4 MiB), or every matching item as NDJSON or CSV (422 "
        "`export-too-large` past 64 MiB: page with `format=json`).", "results", READ,
        {200: Success("The results.", [
            Body("application/json", ItemPage),
            Body("application/x-ndjson", description="One ItemView JSON object per line."),
            Body("text/csv", description="A header row, then one flattened row per item, every cell quoted; "
                                         "a cell with a formula trigger (=, +, -, @) at its start or after a "
                                         "separator is prefixed with a single quote. `bom=true` starts the file "
                                         "with a UTF-8 byte-order mark."),
        ], ("Content-Disposition",))},
        (400, 422, *JOB_PROBLEMS), query=ResultsQuery),
    Operation(
        "delete", "/api/jobs/{id}/data", "deleteJobData", "Delete a job's data",
        "Deletes a final job's results and the bodies its items kept; the job, its items' URLs, statuses and errors, "
        "and its audit log (which records who deleted it) stay. Page versions that other jobs' items used are kept. "
        "Bodies nothing else names are deleted from Blob Storage by the retention timer within about an hour. "
        "Idempotent: a repeat deletes nothing. 409 while the job runs. `TRAWL_RETENTION_DAYS` does the same for "
        "every job that finished longer ago.", "results", SUBMIT,
        {200: Success("What was deleted.", [Body("application/json", DeletedDataView)])},
        (409, *JOB_PROBLEMS)),
    Operation(
        "get", "/api/jobs/{id}/items/{seq}/content", "getItemContent", "Get one body an item kept",
        "The item's Markdown, text (both of the main content, unless the job set `main_content_only: false`) or HTML "
        "(the fetched page decoded to UTF-8), as its job's `formats` asked. Bodies are stored once per content: the "
        "`ETag` is the body's SHA-256, and `If-None-Match` with it answers 304. 404 when the item kept no such body.",
        "results", READ,
        {200: Success("The body.", [Body("text/markdown"), Body("text/plain"), Body("text/html")], ("ETag",)),
         304: Success("Not modified: the body has the SHA-256 given in `If-None-Match`.", [], ("ETag",))},
        (400, *JOB_PROBLEMS), query=ContentQuery,
        headers=(Header("If-None-Match", "The `ETag` of a copy you hold.", {"type": "string"}),)),
    Operation(
        "get", "/api/pages", "listPages", "List your pages", "Every URL your jobs scraped with a body format is a page; "
        "each distinct main content of it is a version (a page seen again unchanged only moves `last_seen_at`). "
        "Pages by host, then URL, with their newest `versions` versions; `url=` finds one page.", "pages", READ,
        {200: Success("One page of pages.", [Body("application/json", PagePage)])},
        (400, 401, 403, 429, 503), query=PageListQuery),
    Operation(
        "get", "/api/pages/{id}", "getPage", "Get a page and its versions", "The page with its versions, newest "
        "first, a page of them at a time: when each was first and last seen, the hash that tells them apart, the "
        "bodies its item kept (hash, size, URL) and the job and item that first saw it.", "pages", READ,
        {200: Success("The page.", [Body("application/json", PageHistoryView)])},
        (400, *JOB_PROBLEMS), query=PageVersionsQuery),
    Operation(
        "get", "/api/pages/{id}/diff", "getPageDiff", "Diff two versions of a page",
        "A unified diff (`difflib`) of the Markdown (or text) bodies of two versions of the page: by default its "
        "latest version from the one before (the first version's diff is from `/dev/null`). Empty when the bodies "
        "are equal. 404 for a version of another page or a body the version's job did not keep; 422 "
        "`diff-too-large` when either body is over 2 MiB (read the bodies from their URLs instead).", "pages", READ,
        {200: Success("The diff.", [Body("text/x-diff", description="A unified diff, UTF-8: `---`/`+++` lines name "
                                                                   "the page's URL, each version and when it was "
                                                                   "first seen.")])},
        (400, 422, *JOB_PROBLEMS), query=DiffQuery),
    Operation(
        "get", "/api/search", "searchPages", "Search your pages", "Full-text search (PostgreSQL) over the latest "
        "version of each of your pages: web search syntax (`\"a phrase\"`, `or`, `-word`), each page in its own "
        "language's configuration (stemming and stop words; `simple` where PostgreSQL has none), ranked by cover "
        "density (ts_rank_cd), with a snippet around the matches cut from the page's text or Markdown (its first "
        "256 KiB). Filter by job, host or last change; page with `next_cursor`. 400 when the query has no word to "
        "look for (only stop words or exclusions).", "pages", READ,
        {200: Success("One page of hits, best first.", [Body("application/json", SearchPage)])},
        (400, 401, 403, 429, 503), query=SearchQuery),
    Operation(
        "get", "/api/jobs/{id}/logs", "getJobLogs", "Get a job's audit log", "What happened to the job and who did "
        "it, oldest first.", "jobs", READ,
        {200: Success("Audit log entries.", [Body("application/json", EventPage)])},
        (400, *JOB_PROBLEMS), query=LogsQuery),
    Operation(
        "get", "/api/jobs/{id}/events", "getJobEvents", "Follow a job live (server-sent events)",
        "The job's `status` events (each state change; the final one is the stream's last event), `progress` "
        "events (its counters, coalesced) and `item` events (each URL's outcome as it becomes final), read from the "
        "database, so any instance serves any job. Each response is a complete `text/event-stream` body: the events "
        "after `Last-Event-ID`, at once if there are some, else as soon as the job changes, else a `: heartbeat` "
        "comment after 15 s. Reconnect after the `retry:` milliseconds it names with the id of the last event "
        "received, as EventSource does by itself: nothing is lost or repeated. A first request without an id gets "
        "the job's history from the start. 204 once the final status was received.", "jobs", READ,
        {200: Success("Events after the cursor, or a heartbeat.", [Body(
            sse.MEDIA_TYPE, description="`retry: <ms>`, then blocks of `id:`, `event:` (status, progress or "
            "item) and `data:` (one JSON object) lines. The schema describes one event.", schema=sse.EVENT_SCHEMA,
            refers_to=tuple(sse.EVENT_MODELS.values()))]),
         204: Success("The stream has ended: the final status was already received.", [])},
        (400, *JOB_PROBLEMS), query=EventsQuery,
        headers=(Header("Last-Event-ID", "The id of the last event received: resume after it.",
                        {"type": "string", "maxLength": 32}),)),
    Operation(
        "get", "/api/jobs/{id}/orchestration", "getJobOrchestration", "Get a job's orchestration (operators)",
        "The Durable Functions status of the job's orchestration (instance id = job id) with its input, and its "
        "history if asked: for diagnosing a job. 404 also when the job has no orchestration.", "operations", ADMIN,
        {200: Success("The orchestration's status.", [
            Body("application/json", description="Durable Functions orchestration status", schema={"type": "object"})])},
        JOB_PROBLEMS, query=OrchestrationQuery),
    Operation(
        "get", "/api/health", "health", "Health", "Liveness plus database and storage reachability.", "service",
        None, {200: Success("Healthy.", [Body("application/json", HealthView)]),
               503: Success("A dependency is failing.", [Body("application/json", HealthView)])}),
    Operation(
        "get", "/api/openapi.json", "openapi", "This document", "The OpenAPI 3.1 contract of this API.", "service",
        None, {200: Success("The OpenAPI document.", [Body("application/json", description="OpenAPI 3.1", schema={"type": "object"})])}),
)


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document (built once per process)."""
    return build_document(TITLE, VERSION, DESCRIPTION, OPERATIONS, SECURITY)


def readme_with_api_section(readme: str) -> str:
    """`readme` with its API section regenerated from the document."""
    return replace_block(readme, readme_section(openapi_document()), README_START, README_END)


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi_document())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.openapi", description=__doc__)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--readme", action="store_true", help="rewrite README.md's API section instead of printing")
    target.add_argument("--apim", action="store_true",
                        help="write the OpenAPI 3.0 rendering API Management imports to infra/apim/openapi.json")
    args = parser.parse_args(argv)
    if args.readme:
        README.write_text(readme_with_api_section(README.read_text()))
    elif args.apim:
        APIM_DOCUMENT.write_text(json.dumps(openapi_30(openapi_document()), indent=2) + "\n")
    else:
        json.dump(openapi_document(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
