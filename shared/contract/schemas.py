"""The API's request and response bodies: validated at the edge, and the source of the OpenAPI document."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from shared.domain.content import BODY_FORMATS, DEFAULT_FORMATS, ContentFormat, PageChange
from shared.domain.models import ItemStatus, Job, JobEvent, JobEventType, JobItem, JobStatus
from shared.domain.pages import ScrapeResult
from shared.domain.stream import ItemFilter
from shared.scraping.netpolicy import (
    ALLOWED_SCHEMES,
    BlockedTarget,
    InvalidTarget,
    IPNetwork,
    is_address_allowed,
    normalise_host,
)
from shared.settings import Settings

MAX_CURSOR_CHARS = 512
MAX_EVENT_ID = 2**63 - 1


# --- submitted URLs: what the fetcher would refuse whatever DNS answers is refused at submit -------------

MERGED_DUPLICATES = "merged_duplicates"  # where a job's options row keeps how many duplicate URLs were merged
URL_RULES = "url_rules"  # the validation context key under which `parse_body` passes the UrlRules
# Control characters (C0, DEL, C1) and the Unicode line separators: never meaningful raw in a URL.
_UNSAFE_URL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class UrlRules:
    """The settings a submitted URL is checked against, as the fetcher will check it."""

    allowed_ports: frozenset[int] = frozenset({80, 443})
    max_length: int = 2048
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> UrlRules:
        return cls(settings.allowed_ports, settings.max_url_length, settings.allowed_networks)


@dataclass(frozen=True)
class UrlRefusal:
    """Why a submitted URL cannot be scraped: a stable code and a sentence for people."""

    code: str
    reason: str


def url_refusal(url: str, rules: UrlRules) -> UrlRefusal | None:
    """Why the fetcher would refuse `url` without resolving it, or None if it may be scraped."""
    if len(url) > rules.max_length:
        return UrlRefusal("url_too_long", f"is longer than {rules.max_length} characters")
    if _UNSAFE_URL_CHARS.search(url):
        return UrlRefusal("url_control_character",
                          "contains a control character or line break (CR, LF, NUL, ...): percent-encode it")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return UrlRefusal("url_unparsable", "cannot be parsed: its port must be a number from 1 to 65535 and an "
                                            "IPv6 host needs both brackets")
    return _authority_refusal(parts, port, rules)


def normalised_url(url: str) -> str:
    """The form in which two submitted URLs are the same page: scheme and host in lower case (hosts as
    the fetcher normalises them: IDNA, IPv4 spellings), no default port, no fragment, an empty path as
    `/`; the path and the query, whose order can matter to a site, stay as they are."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = normalise_host(parts.hostname or "")
    port = parts.port or ALLOWED_SCHEMES[scheme]
    bracketed = f"[{host}]" if ":" in host else host
    netloc = bracketed if port == ALLOWED_SCHEMES[scheme] else f"{bracketed}:{port}"
    return SplitResult(scheme, netloc, parts.path or "/", parts.query, "").geturl()


def _authority_refusal(parts: SplitResult, port: int | None, rules: UrlRules) -> UrlRefusal | None:
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES or not parts.hostname:
        return UrlRefusal("url_not_http", "is not an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        return UrlRefusal("url_user_info", "holds a user name or password before the host (user-info), "
                                           "which is never sent: remove it")
    port = ALLOWED_SCHEMES[scheme] if port is None else port
    if port not in rules.allowed_ports:
        allowed = ", ".join(str(p) for p in sorted(rules.allowed_ports))
        return UrlRefusal("url_port_not_allowed", f"uses port {port}; the ports allowed are {allowed}")
    return _host_refusal(parts.hostname, rules)


def _host_refusal(hostname: str, rules: UrlRules) -> UrlRefusal | None:
    try:
        host = normalise_host(hostname)
    except InvalidTarget:
        return UrlRefusal("url_invalid_host", "has an invalid host name (letters, digits, hyphens and dots; "
                                              "no spaces)")
    except BlockedTarget:
        return UrlRefusal("url_blocked_address", "names this machine (localhost), which is never fetched")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: its addresses are checked when it is fetched
    if not is_address_allowed(address, rules.allowed_networks):
        return UrlRefusal("url_blocked_address", f"points at the non-public address {address}, which is never fetched")
    return None


def _screened_url(url: str, info: ValidationInfo) -> str:
    """Refuse a URL the fetcher would refuse, unless the request asked to skip those (then the service
    sorts them out and lists them in its answer)."""
    if info.data.get("skip_invalid_urls"):
        return url
    rules = (info.context or {}).get(URL_RULES, UrlRules())
    refusal = url_refusal(url, rules)
    if refusal is not None:
        raise PydanticCustomError(refusal.code, "{reason}", {"reason": refusal.reason})
    return url


def _without_nul(text: str) -> str:
    """PostgreSQL cannot store NUL in text (pydantic's strict `str` already refuses lone surrogates)."""
    if "\x00" in text:
        raise PydanticCustomError("text_nul", "may not contain NUL characters")
    return text


SubmittedUrl = Annotated[str, AfterValidator(_screened_url)]


class JobOptions(BaseModel):
    """Per-job options."""

    model_config = ConfigDict(extra="forbid", strict=True)

    deadline_seconds: int | None = Field(
        None, ge=10, description="Seconds from submission until the job ends `timed_out`; default and maximum from settings."
    )
    formats: list[Annotated[ContentFormat, Strict(False)]] = Field(
        default_factory=lambda: list(DEFAULT_FORMATS), min_length=1, max_length=len(ContentFormat),
        description="What to keep of each page: `metadata` (title, description, headings, links, ... in the result), "
                    "`markdown` and `text` (the main content), `html` (the fetched page, decoded to UTF-8), `links`. "
                    "Bodies are stored apart and read with `GET /api/jobs/{id}/items/{seq}/content` or "
                    "`include=` on the results.")
    main_content_only: bool = Field(True, description="Markdown and text of the main content only (navigation, ads "
                                                      "and footers dropped); false converts the whole body.")
    max_age_seconds: int | None = Field(
        None, ge=0, le=365 * 86_400,
        description="Answer a URL from your page store, without fetching it, when your latest version of its page was "
                    "seen at most this many seconds ago and kept every body `formats` asks for; such items say "
                    "`cached: true`. Your scrapes only: one caller's pages never answer another's.")

    @field_validator("formats")
    @classmethod
    def _distinct(cls, formats: list[ContentFormat]) -> list[ContentFormat]:
        if len(set(formats)) != len(formats):
            raise PydanticCustomError("formats_repeated", "each format may be named once")
        return formats


class SubmitJobRequest(BaseModel):
    """`POST /api/jobs`: the URLs to scrape and the job's options.

    Strict: a number in quotes or `true` is not an integer. `skip_invalid_urls` comes before `urls`
    because the URLs' validator reads it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    skip_invalid_urls: bool = Field(False, description="Accept the job with the URLs that can be scraped and list "
                                                       "the others in `refused_urls`, instead of refusing it (422).")
    urls: list[SubmittedUrl] = Field(
        min_length=1, description="Absolute http(s) URLs without user-info, on an allowed port. A URL given twice "
                                  "(same after normalising the case of scheme and host, the default port and the "
                                  "fragment) is scraped once: see `merged_duplicates`.")
    options: JobOptions = Field(default_factory=JobOptions)


class CancelJobRequest(BaseModel):
    """`DELETE /api/jobs/{id}`: an optional reason, kept in the audit log."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Annotated[str, StringConstraints(max_length=500), AfterValidator(_without_nul)] | None = None


class ProgressView(BaseModel):
    total: int
    succeeded: int
    failed: int
    skipped: int
    pending: int


class CancellationView(BaseModel):
    requested_at: datetime
    requested_by: str | None
    reason: str | None


class RetryJobRequest(BaseModel):
    """`POST /api/jobs/{id}/retry`: which of a finished job's items to scrape again in a new job."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_skipped: bool = Field(False, description="Retry skipped items too, not only failed ones.")


class JobLinks(BaseModel):
    """Relative links to a job and what can be done with it."""

    self: str
    results: str
    logs: str
    events: str = Field(description="Follow the job live: server-sent events.")
    cancel: str = Field(description="`DELETE` this to cancel the job.")
    retry: str = Field(description="`POST` here once the job is final to retry its failed items in a new job.")
    parent: str | None = Field(None, description="The job this one retries, if any.")


class RefusedUrl(BaseModel):
    """A submitted URL left out of its job (`skip_invalid_urls`), named by its place in the list."""

    index: int = Field(description="Position of the URL in the submitted `urls`, from 0.")
    url: str = Field(description="The URL's scheme and host only: paths and queries may hold secrets.")
    reason: str
    type: str = Field(description="A stable code, e.g. `url_user_info` or `url_port_not_allowed`.")


class JobView(BaseModel):
    """A job as callers see it."""

    id: UUID
    status: JobStatus
    owner: str = Field(description="Who submitted the job, `<tenant id>/<object id>`, as its audit log names them.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    options: dict[str, Any]
    progress: ProgressView
    cancellation: CancellationView | None
    parent_job_id: UUID | None = Field(None, description="The job this one retries (`POST .../retry`), if any.")
    children: list[UUID] = Field(default_factory=list,
                                 description="Jobs created by retrying this one, oldest first.")
    merged_duplicates: int = Field(0, description="Submitted URLs left out because they repeat an earlier URL "
                                                  "of the job (each page is scraped once).")
    refused_urls: list[RefusedUrl] = Field(default_factory=list,
                                           description="Only in the answer to a submit with `skip_invalid_urls`: "
                                                       "the URLs left out and why.")
    links: JobLinks
    statusQueryGetUri: str = Field(description="This job's own status URL (the Durable HTTP async pattern).")

    @classmethod
    def of(cls, job: Job, base_url: str, children: Sequence[UUID] = (),
           refused_urls: Sequence[RefusedUrl] = ()) -> JobView:
        """The view of `job` with absolute status URL under `base_url` and its retries' ids. The count of
        merged duplicates is kept with the job's options (`MERGED_DUPLICATES`), shown apart from them."""
        path = f"/api/jobs/{job.id}"
        options = {name: value for name, value in job.options.items() if name != MERGED_DUPLICATES}
        cancellation = None
        if job.cancel_requested_at is not None:
            cancellation = CancellationView(requested_at=job.cancel_requested_at, requested_by=job.cancel_requested_by,
                                            reason=job.cancel_reason)
        parent = None if job.parent_job_id is None else f"/api/jobs/{job.parent_job_id}"
        return cls(
            id=job.id, status=job.status, owner=job.owner.actor, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, deadline_at=job.deadline_at, options=options,
            progress=ProgressView(total=job.total, succeeded=job.succeeded, failed=job.failed, skipped=job.skipped,
                                  pending=job.remaining),
            cancellation=cancellation, parent_job_id=job.parent_job_id, children=list(children),
            merged_duplicates=int(job.options.get(MERGED_DUPLICATES, 0)), refused_urls=list(refused_urls),
            links=JobLinks(self=path, results=f"{path}/results", logs=f"{path}/logs", events=f"{path}/events", cancel=path,
                           retry=f"{path}/retry", parent=parent),
            statusQueryGetUri=f"{base_url}{path}",
        )


class JobPage(BaseModel):
    """`GET /api/jobs`: one page of the caller's jobs, newest first."""

    items: list[JobView]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters) for the next page; "
                                                "null on the last page.")


class ItemError(BaseModel):
    """Why an item failed, or was skipped (a reason code such as `job_cancelled`); for a pending item, its
    last retryable error. A succeeded item has none: its failed attempts are in the job's log (`item_retried`)."""

    code: str | None
    message: str | None


# An inline body (`include=`) is cut at this many bytes (on a character boundary), and a page of results stops
# inlining once its inline bodies pass INLINE_PAGE_BYTES: the rest are read one by one from their `url`.
INLINE_BODY_BYTES = 256 * 1024
INLINE_PAGE_BYTES = 4 * 1024 * 1024


class BodyView(BaseModel):
    """One body an item kept (Markdown, text or HTML): stored once per content, addressed by its hash."""

    sha256: str = Field(description="SHA-256 of the body's UTF-8 bytes: equal bodies have equal hashes.")
    bytes: int = Field(description="Size of the body in UTF-8 bytes.")
    url: str = Field(description="`GET` it here (relative).")
    content: str | None = Field(None, description="The body itself, when asked for with `include=` (json only), cut "
                                                  "at 256 KiB; null when not asked or when the page had inlined 4 MiB "
                                                  "already.")
    truncated: bool = Field(False, description="`content` holds only the start of the body.")


class ItemView(BaseModel):
    """One URL of a job and what scraping it produced."""

    seq: int = Field(description="Position of the URL in the submitted list, from 0.")
    url: str
    status: ItemStatus
    attempts: int
    http_status: int | None = Field(description="The last attempt's HTTP status, for failed items too.")
    final_url: str | None = Field(description="Where the last attempt ended after redirects, for failed items too.")
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None = Field(description="How long the last attempt took, for failed items too.")
    error: ItemError | None
    result: ScrapeResult | None = Field(description="The extracted page, once the item succeeded.")
    content: dict[str, BodyView] = Field(
        default_factory=dict, description="The bodies the job's `formats` asked for, by format (`markdown`, `text`, "
                                          "`html`), once the item succeeded.")
    cached: bool = Field(False, description="Answered from the page store without fetching (`max_age_seconds`).")
    change: PageChange | None = Field(None, description="How the page's main content compares with the latest "
                                                        "version of it this caller had seen: `new` (first seen), "
                                                        "`changed` or `unchanged`. Null without a body format.")

    @classmethod
    def of(cls, item: JobItem, inline: Mapping[ContentFormat, tuple[str, bool]] | None = None) -> ItemView:
        """The view of `item`; its stored page is validated against the scraper's own model. A succeeded
        item shows no error (`JobItem.final_error`). `inline`: bodies read for `include=`, and whether cut."""
        code, message = item.final_error
        error = None if code is None and message is None else ItemError(code=code, message=message)
        content: dict[str, BodyView] = {}
        for kind in BODY_FORMATS:
            body = item.body(kind)
            if body is not None:
                text, cut = (inline or {}).get(kind, (None, False))
                content[kind.value] = BodyView(sha256=body.sha256, bytes=body.size, content=text, truncated=cut,
                                         url=f"/api/jobs/{item.job_id}/items/{item.seq}/content?format={kind}")
        return cls(seq=item.seq, url=item.url, status=item.status, attempts=item.attempts,
                   http_status=item.http_status, final_url=item.final_url, started_at=item.started_at,
                   finished_at=item.finished_at, duration_ms=item.duration_ms, error=error,
                   result=None if item.result is None else ScrapeResult.model_validate(item.result),
                   content=content, change=item.change, cached=item.cached)


class ItemPage(BaseModel):
    """`GET /api/jobs/{id}/results?format=json`: one page of a job's items in submission order."""

    items: list[ItemView]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters) for the next page; "
                                                "null on the last page.")


class EventView(BaseModel):
    """One entry of a job's append-only audit log."""

    id: int = Field(description="Increasing; pass the last one seen as `after` to continue.")
    at: datetime
    actor: str = Field(description="`tenant/object` id of the caller, or `system`.")
    event: JobEventType
    reason: str | None
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: JobEvent) -> EventView:
        """The view of one audit row."""
        return cls(id=event.id, at=event.at, actor=event.actor, event=event.event, reason=event.reason,
                   data=event.data)


class EventPage(BaseModel):
    """`GET /api/jobs/{id}/logs`: audit log entries, oldest first."""

    items: list[EventView]
    next_after: int = Field(description="The last event id returned (or the `after` sent when none was): pass it "
                                        "as `after` to continue, or to follow a running job.")
    has_more: bool = Field(description="True when more events exist right now after `next_after`.")


class ProblemError(BaseModel):
    """One validation error of a request."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem; extension members (such as `errors` or `job_id`) depend on the type."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the problem type, e.g. `https://trawl.dev/problems/not-found`.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="The request path.")
    errors: list[ProblemError] | None = Field(None, description="Validation errors (400 and 422).")


class HealthCheck(BaseModel):
    """One dependency's check."""

    status: Literal["ok", "failing"]
    duration_ms: int | None = None
    error: str | None = Field(None, description="The exception type of a failing check; never details.")


class HealthView(BaseModel):
    """`GET /api/health`: liveness plus each dependency's check."""

    status: Literal["ok", "degraded"]
    checks: dict[str, HealthCheck]


# --- query parameters: validated by api/params.py and described by the OpenAPI document ------------------------

class JobListQuery(BaseModel):
    """Query of `GET /api/jobs`."""

    model_config = ConfigDict(extra="forbid")

    status: list[JobStatus] | None = Field(
        None, description="Only jobs in these statuses; repeat the parameter or separate values with commas.")
    created_after: AwareDatetime | None = Field(None, description="Only jobs created at or after this instant.")
    created_before: AwareDatetime | None = Field(None, description="Only jobs created before this instant.")
    cursor: str | None = Field(None, max_length=MAX_CURSOR_CHARS, description="`next_cursor` of the previous page.")
    limit: int = Field(20, ge=1, le=100, description="Jobs per page.")

    @field_validator("created_after", "created_before")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        return in_utc(moment)


def in_utc(moment: datetime | None) -> datetime | None:
    """UTC, as PostgreSQL takes it: its offsets stop at ±15:59, Python's at ±23:59."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is out of range") from None


class ResultsQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/results`."""

    model_config = ConfigDict(extra="forbid")

    status: list[ItemStatus] | None = Field(
        None, description="Only items in these statuses; repeat the parameter or separate values with commas.")
    format: Literal["json", "ndjson", "csv"] = Field(
        "json", description="`json`: one page of items. `ndjson` (one ItemView per line) or `csv` (flattened, "
                            "spreadsheet-safe): every matching item; `cursor` and `limit` are refused with them.")
    cursor: str | None = Field(None, max_length=MAX_CURSOR_CHARS,
                               description="`next_cursor` of the previous page (json only).")
    limit: int = Field(100, ge=1, le=1000, description="Items per page (json only); a page also ends before "
                                                       "its items pass about 4 MiB, with `next_cursor` set.")
    bom: bool = Field(False, description="csv only: begin with a UTF-8 byte-order mark, so that Excel reads "
                                         "accented text as UTF-8.")
    include: list[Literal["markdown", "text", "html"]] | None = Field(
        None, description="json only: put these bodies inline (`content.<format>.content`), each cut at 256 KiB, up "
                          "to 4 MiB of them per page; the rest are read from each body's `url`.")

    @field_validator("bom")
    @classmethod
    def _bom_csv_only(cls, bom: bool, info: ValidationInfo) -> bool:
        if bom and info.data.get("format", "json") != "csv":
            raise ValueError("bom applies to format=csv only")
        return bom

    @field_validator("include")
    @classmethod
    def _include_json_only(cls, include: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if include and info.data.get("format", "json") != "json":
            raise ValueError("include applies to format=json only: an export names each body's url")
        return include

    @field_validator("cursor", "limit")
    @classmethod
    def _pages_json_only(cls, value: Any, info: ValidationInfo) -> Any:
        """An export is the whole result set: a page size or position given with it would be silently
        ignored, so it is refused instead. Runs only for parameters actually given."""
        if info.data.get("format", "json") != "json":
            raise ValueError(f"{info.field_name} pages format=json only; format={info.data['format']} returns every "
                             "matching item")
        return value


class LogsQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/logs`."""

    model_config = ConfigDict(extra="forbid")

    after: int = Field(0, ge=0, le=MAX_EVENT_ID, description="Return events after this event id (`next_after`).")
    limit: int = Field(100, ge=1, le=1000, description="Events per page.")


class StreamStatus(BaseModel):
    """`data` of a `status` event: a state the job entered, with its counters when the event was read."""

    model_config = ConfigDict(extra="forbid")

    job_id: UUID
    status: JobStatus
    final: bool = Field(description="The job's final status: the stream's last event.")
    cancel_requested: bool
    at: datetime | None = Field(description="When the job entered this state.")
    total: int
    succeeded: int
    failed: int
    skipped: int


class StreamProgress(BaseModel):
    """`data` of a `progress` event: the job's counters, level with the item events sent before it."""

    model_config = ConfigDict(extra="forbid")

    total: int
    succeeded: int
    failed: int
    skipped: int
    remaining: int


class StreamItem(BaseModel):
    """`data` of an `item` event: one URL's final outcome."""

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(description="The URL's position in the submitted list.")
    host: str | None
    outcome: Literal["succeeded", "failed", "skipped"]
    error_code: str | None = Field(description="Why it failed or was skipped (the results' `error.code`).")
    http_status: int | None
    duration_ms: int | None


class DeletedDataView(BaseModel):
    """`DELETE /api/jobs/{id}/data`: what went (0s when it had gone already)."""

    items: int = Field(description="Items whose result and bodies were deleted.")
    versions: int = Field(description="Page versions that no other job's item used, deleted.")
    bodies: int = Field(description="Bodies named by nothing else any more, whose blobs the retention timer "
                                    "deletes within about an hour.")


class ContentQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/items/{seq}/content`."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["markdown", "text", "html"] = Field("markdown", description="Which body of the item.")


class EventsQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/events`."""

    model_config = ConfigDict(extra="forbid")

    items: ItemFilter = Field(ItemFilter.ALL, description="Which `item` events to send: every final item, only "
                              "failed ones, or none (status and progress only).")
    last_event_id: str | None = Field(None, max_length=32, description="Resume after this event id, for a first "
                                      "connection that cannot send the `Last-Event-ID` header (the header wins).")


class OrchestrationQuery(BaseModel):
    """Query of `GET /api/jobs/{id}/orchestration` (operators)."""

    model_config = ConfigDict(extra="forbid")

    history: bool = Field(False, description="Include the orchestration's history events.")
