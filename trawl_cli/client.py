"""An HTTP client of Trawl's public API over requests: bearer tokens, problem+json errors as `ApiError`,
retries of transient failures that honour `Retry-After`, a job's event stream, and the polling backoff used to
follow jobs where the server has no stream."""
from __future__ import annotations

import email.utils
import itertools
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import requests
import urllib3

from trawl_cli import __version__
from trawl_cli.errors import ApiError, NetworkError, NoEventStream, UnexpectedResponse
from trawl_cli.sse import Event, EventStreamParser

FINAL_STATUSES = frozenset({"succeeded", "completed_with_errors", "failed", "cancelled", "timed_out"})
TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
EXPORT_TIMEOUT = (5.0, 300.0)  # an export is built whole before its first byte is sent
STREAM_TIMEOUT = (5.0, 45.0)  # a stream response with nothing to say waits 15 s, then ends with a heartbeat
STREAM_CHUNK_BYTES = 64 * 1024
# A response's events are kept until it ends; the server's are far smaller (a few events without items).
MAX_STREAM_RESPONSE_BYTES = 16 * 1024 * 1024
DEFAULT_STREAM_RETRY_MS = 3000  # until a response says otherwise; the server's responses all begin with `retry:`
NOT_FOUND_PROBLEM = "https://trawl.dev/problems/not-found"
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Statuses that say the request was not carried out, so even a non-idempotent call may be sent again.
NOT_PERFORMED_STATUSES = frozenset({429, 503})
MAX_RESULTS_PAGE = 1000
MAX_LOGS_PAGE = 1000
ONE_LINE_CHARS = 300
ERRORS_SHOWN = 3  # of a 422's request errors, in its one-line message

TokenSource = Callable[[], str]


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The `Retry-After` header in seconds from now (delta-seconds or an HTTP-date); None if absent or invalid."""
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures (429, 502-504, connection errors) are retried: exponential backoff from
    `base_delay`, or the server's `Retry-After` when it says more; a longer `Retry-After` than
    `max_delay` is not waited for but reported (a daily quota is not worth sleeping on)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1` (0-based), or None to give up."""
        if attempt + 1 >= self.attempts or (retry_after is not None and retry_after > self.max_delay):
            return None
        backoff = min(self.base_delay * 2.0**attempt, self.max_delay)
        return backoff if retry_after is None else max(backoff, retry_after)


@dataclass
class Backoff:
    """Polling intervals for following a job: `initial` after a change, growing by `factor` while nothing
    changes up to `maximum`, and never sooner than the server's `Retry-After`."""

    initial: float = 1.0
    factor: float = 1.5
    maximum: float = 10.0
    _current: float = field(default=0.0, init=False)

    def next_delay(self, changed: bool, retry_after: float | None) -> float:
        """Seconds until the next poll, given whether the last poll saw progress."""
        if changed or not self._current:
            self._current = self.initial
        else:
            self._current = min(self._current * self.factor, self.maximum)
        return max(self._current, retry_after or 0.0)


@dataclass(frozen=True)
class Job:
    """The fields of a job (`JobView`) the CLI works with; `data` is the whole body."""

    id: str
    status: str
    total: int
    succeeded: int
    failed: int
    skipped: int
    created_at: datetime
    finished_at: datetime | None
    data: dict[str, Any]

    @classmethod
    def from_json(cls, data: Any) -> Job:
        try:
            progress = data["progress"]
            return cls(id=str(data["id"]), status=str(data["status"]), total=int(progress["total"]),
                       succeeded=int(progress["succeeded"]), failed=int(progress["failed"]),
                       skipped=int(progress["skipped"]), created_at=datetime.fromisoformat(data["created_at"]),
                       finished_at=_optional_time(data.get("finished_at")), data=data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UnexpectedResponse(f"the API sent a job this client cannot read ({exc!r})") from None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return self.succeeded, self.failed, self.skipped, self.total

    @property
    def nothing_succeeded(self) -> bool:
        """Ended without a single scraped page, whatever its status says (all failed or skipped)."""
        return self.is_final and self.succeeded == 0


@dataclass(frozen=True)
class JobReply:
    """A job as one response gave it: `created` is False when an Idempotency-Key replayed an earlier job."""

    job: Job
    retry_after: float | None
    created: bool = True


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream (`status`, `progress` or `item`) and its JSON object."""

    type: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> JobEvent:
        try:
            data = json.loads(event.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise UnexpectedResponse(f"the API sent a {event.type!r} event whose data is not a JSON object: "
                                     f"{one_line(event.data, 80)!r}")
        return cls(event.type, data)

    @property
    def is_final(self) -> bool:
        """The job's final status: the stream's last event."""
        return self.type == "status" and self.data.get("final") is True


EventSource = Callable[[str], Iterator[list[JobEvent]]]  # a job id -> its stream's responses' events (job_events)


@dataclass(frozen=True)
class LogPage:
    items: list[dict[str, Any]]
    next_after: int
    has_more: bool


class TrawlClient:
    """Calls `<api_url>/api/...` with a bearer token from `token`; every failure becomes a `CliError`."""

    def __init__(self, api_url: str, token: TokenSource, *, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, on_request: Callable[[str], None] | None = None,
                 session: requests.Session | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._retry = retry
        self._sleep = sleep
        self._on_request = on_request
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = f"trawl-cli/{__version__}"

    # --- jobs ------------------------------------------------------------------------------------------------

    def submit_job(self, urls: Sequence[str], deadline_seconds: int | None, idempotency_key: str) -> JobReply:
        options = {} if deadline_seconds is None else {"deadline_seconds": deadline_seconds}
        response = self._request("POST", "/api/jobs", json={"urls": list(urls), "options": options},
                                 headers={"Idempotency-Key": idempotency_key}, idempotent=True)
        return self._job_reply(response)

    def get_job(self, job_id: str) -> JobReply:
        return self._job_reply(self._request("GET", _job_path(job_id)))

    def list_jobs(self, statuses: Sequence[str], limit: int, cursor: str | None = None) -> tuple[list[Job], str | None]:
        """One page of the caller's jobs, newest first, and the cursor of the next page (None on the last)."""
        params: dict[str, Any] = {"status": list(statuses) or None, "limit": limit, "cursor": cursor}
        page = _json(self._request("GET", "/api/jobs", params=params))
        return [Job.from_json(item) for item in _field(page, "items")], _field(page, "next_cursor")

    def cancel_job(self, job_id: str, reason: str | None) -> Job:
        body = None if reason is None else {"reason": reason}
        return Job.from_json(_json(self._request("DELETE", _job_path(job_id), json=body, idempotent=False)))

    def retry_job(self, job_id: str, include_skipped: bool, idempotency_key: str) -> JobReply:
        response = self._request("POST", f"{_job_path(job_id)}/retry", json={"include_skipped": include_skipped},
                                 headers={"Idempotency-Key": idempotency_key}, idempotent=True)
        return self._job_reply(response)

    # --- results and logs -----------------------------------------------------------------------------------

    def iter_results(self, job_id: str, statuses: Sequence[str] = (),
                     include: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Every item of a job (in these statuses, if any) in submission order, following `next_cursor`; `include`
        asks for these bodies inline (each cut at 256 KiB, up to 4 MiB a page: `content.<format>.truncated`)."""
        cursor: str | None = None
        while True:
            params = {"format": "json", "limit": MAX_RESULTS_PAGE, "cursor": cursor, "status": list(statuses) or None,
                      "include": list(include) or None}
            page = _json(self._request("GET", f"{_job_path(job_id)}/results", params=params))
            yield from _field(page, "items")
            cursor = _field(page, "next_cursor")
            if cursor is None:
                return

    def export_results(self, job_id: str, export_format: str) -> Iterator[bytes]:
        """A job's whole result set as NDJSON or CSV, streamed in chunks; API errors are raised at once."""
        response = self._request("GET", f"{_job_path(job_id)}/results", params={"format": export_format},
                                 stream=True, timeout=EXPORT_TIMEOUT)
        return self._chunks(response)

    def body(self, url: str) -> str:
        """A body the API names by its relative URL (an item's `content.<format>.url`), as text."""
        if not url.startswith("/api/"):
            raise UnexpectedResponse(f"the API named a body at {one_line(url, 80)!r}, not under /api/")
        return self._request("GET", url).content.decode("utf-8", errors="replace")

    # --- pages and search -----------------------------------------------------------------------------------

    def list_pages(self, filters: Mapping[str, Any], limit: int,
                   cursor: str | None = None) -> tuple[list[Any], str | None]:
        """One page of the caller's pages (`url`, `host`, `changed_since`, `versions` filters), by host then URL,
        and the cursor of the next page (None on the last)."""
        page = _json(self._request("GET", "/api/pages", params={**filters, "limit": limit, "cursor": cursor}))
        return list(_field(page, "items")), _field(page, "next_cursor")

    def search(self, q: str, filters: Mapping[str, Any], limit: int,
               cursor: str | None = None) -> tuple[list[Any], str | None, bool]:
        """One page of hits of a full-text search (`host`, `job_id`, `changed_since` filters), best first, the
        cursor of the next page (None on the last), and whether only the most recently changed matches were
        ranked (`capped`)."""
        page = _json(self._request("GET", "/api/search", params={"q": q, **filters, "limit": limit, "cursor": cursor}))
        return list(_field(page, "items")), _field(page, "next_cursor"), page.get("capped") is True

    def logs_page(self, job_id: str, after: int) -> LogPage:
        """Audit log entries after event id `after`, oldest first."""
        page = _json(self._request("GET", f"{_job_path(job_id)}/logs", params={"after": after, "limit": MAX_LOGS_PAGE}))
        return LogPage(_field(page, "items"), int(_field(page, "next_after")), bool(_field(page, "has_more")))

    # --- the event stream -----------------------------------------------------------------------------------

    def job_events(self, job_id: str) -> Iterator[list[JobEvent]]:
        """A job's status and progress events from its start (`items=none`: the CLI shows counts, not items), as
        one list per long-poll response (empty when nothing happened for a while), until the server answers 204.

        After each response it waits what `retry:` asked and asks for the events after the last id received
        (`Last-Event-ID`); a 503 or 429 waits its `Retry-After` and asks again from the same id, as every GET's
        transient failures do; a response that breaks off is asked for again, after the retry policy's backoff.
        NoEventStream where the server has no event stream.
        """
        cursor, retry_ms, breaks = "", DEFAULT_STREAM_RETRY_MS, 0
        while True:
            with self._open_job_events(job_id, cursor) as response:
                if response.status_code == HTTPStatus.NO_CONTENT:
                    return
                parser = EventStreamParser(cursor)
                events, broke_off = self._read_events(response, parser)
            if broke_off is None:
                yield events
                cursor, breaks = parser.last_event_id, 0
                retry_ms = retry_ms if parser.retry_ms is None else parser.retry_ms
                self._sleep(retry_ms / 1000)
                continue
            breaks += 1
            delay = self._retry.delay(breaks - 1, None)
            if delay is None:
                raise NetworkError(f"the event stream of job {job_id} from {self.api_url} broke off {breaks} times "
                                   f"in a row: {broke_off}")
            self._trace(f"the event stream of job {job_id} broke off ({broke_off}); asking again in {delay:g}s")
            self._sleep(delay)

    def _open_job_events(self, job_id: str, last_event_id: str) -> requests.Response:
        """The response of one request for a job's events after `last_event_id` (from the start when empty), unread."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            response = self._request("GET", f"{_job_path(job_id)}/events", params={"items": "none"}, headers=headers,
                                     stream=True, timeout=STREAM_TIMEOUT)
        except ApiError as error:
            # A route the server lacks is a 404 without our problem body (or a 405); the job's own 404 has one.
            if error.status == HTTPStatus.METHOD_NOT_ALLOWED or (error.status == HTTPStatus.NOT_FOUND
                                                                  and error.type != NOT_FOUND_PROBLEM):
                self._trace(f"no event stream for job {job_id} (HTTP {error.status}): following it by polling")
                raise NoEventStream(error.status, error.title, error.detail, error.problem) from None
            raise
        media_type = _media_type(response)
        if response.status_code not in (HTTPStatus.OK, HTTPStatus.NO_CONTENT) or (
                response.status_code == HTTPStatus.OK and media_type != "text/event-stream"):
            response.close()
            raise UnexpectedResponse(f"the API answered the event stream of job {job_id} with "
                                     f"{response.status_code} {media_type or '(no Content-Type)'}")
        return response

    def _read_events(self, response: requests.Response,
                     parser: EventStreamParser) -> tuple[list[JobEvent], str | None]:
        """The events of one whole response, or why it broke off (its events are then asked for again)."""
        events: list[JobEvent] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=STREAM_CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_STREAM_RESPONSE_BYTES:
                    raise UnexpectedResponse(f"the API sent an event stream response of more than "
                                             f"{MAX_STREAM_RESPONSE_BYTES // 2**20} MiB; this client reads none that "
                                             "large")
                events += [JobEvent.of(event) for event in parser.feed(chunk)]
        except requests.RequestException as exc:
            return [], _reason(exc)
        return events, None

    # --- transport ------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, idempotent: bool = True, timeout: tuple[float, float] = TIMEOUT,
                 headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """Send with retries: GETs and keyed POSTs on any transient failure, others only when not performed."""
        url = self.api_url + path
        for attempt in itertools.count(1):
            response, failure = self._send(method, url, timeout, headers or {}, kwargs)
            delay = self._retry_delay(attempt - 1, response, failure, idempotent)
            if delay is None:
                break
            outcome = failure if response is None else f"HTTP {response.status_code}"
            self._trace(f"{method} {url}: {outcome}; retrying in {delay:g}s")
            self._sleep(delay)
        if response is None:
            raise NetworkError(f"cannot reach {self.api_url}: {failure} ({method} {path}, "
                               f"{attempt} attempt{'s' if attempt > 1 else ''})")
        if response.status_code >= 400:
            raise api_error(response)
        return response

    def _send(self, method: str, url: str, timeout: tuple[float, float], headers: dict[str, str],
              kwargs: dict[str, Any]) -> tuple[requests.Response | None, str | None]:
        """One attempt: the response, or None and why the transport failed."""
        started = time.monotonic()
        try:
            response = self._session.request(method, url, timeout=timeout,
                                             headers={**headers, "Authorization": f"Bearer {self._token()}"}, **kwargs)
        except requests.RequestException as exc:
            return None, _reason(exc)
        self._trace(f"{method} {url} -> {response.status_code} ({time.monotonic() - started:.2f}s)")
        return response, None

    def _retry_delay(self, attempt: int, response: requests.Response | None, failure: str | None,
                     idempotent: bool) -> float | None:
        """Seconds to wait before sending again, or None when the outcome stands."""
        if response is None:
            retryable = idempotent and not (failure or "").startswith("TLS")
            return self._retry.delay(attempt, None) if retryable else None
        allowed = RETRYABLE_STATUSES if idempotent else NOT_PERFORMED_STATUSES
        if response.status_code not in allowed:
            return None
        delay = self._retry.delay(attempt, retry_after_seconds(response.headers))
        if delay is not None:
            response.close()
        return delay

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        with response:
            try:
                yield from response.iter_content(chunk_size=64 * 1024)
            except requests.RequestException as exc:
                raise NetworkError(f"the download from {self.api_url} broke off: {_reason(exc)}") from None

    def _job_reply(self, response: requests.Response) -> JobReply:
        job = Job.from_json(_json(response))
        return JobReply(job, retry_after_seconds(response.headers), created=response.status_code != 200)

    def _trace(self, line: str) -> None:
        if self._on_request is not None:
            self._on_request(line)


def api_error(response: requests.Response) -> ApiError:
    """The typed error of an error response: its problem+json body, or the status and a snippet of text."""
    problem = _problem_body(response)
    status = response.status_code
    if problem is None:
        title = response.reason or _phrase(status)
        return ApiError(status, title, one_line(response.text or ""))
    return problem_error(status, problem, response.reason)


def problem_error(status: int, problem: dict[str, Any], reason: str | None = None) -> ApiError:
    """The error of a problem+json body: its title, then its detail and the request errors it lists."""
    title = str(problem.get("title") or reason or _phrase(status))
    detail = str(problem.get("detail") or "")
    errors = problem.get("errors")
    if isinstance(errors, list) and errors:
        detail = f"{detail} ({_describe_errors(errors)})" if detail else _describe_errors(errors)
    return ApiError(status, one_line(title), one_line(detail), problem)


def one_line(text: str, limit: int = ONE_LINE_CHARS) -> str:
    """`text` with all whitespace runs collapsed to single spaces, cut at `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _problem_body(response: requests.Response) -> dict[str, Any] | None:
    if _media_type(response) not in ("application/problem+json", "application/json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and ("title" in body or "detail" in body) else None


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _describe_errors(errors: list[Any]) -> str:
    """The first few request errors as `where: what`, and how many more there are."""
    shown = [_describe_error(error if isinstance(error, dict) else {}) for error in errors[:ERRORS_SHOWN]]
    more = len(errors) - ERRORS_SHOWN
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _describe_error(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", []))
    return f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", ""))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _reason(exc: requests.RequestException) -> str:
    """A short reason for a transport failure: `Connection refused`, `timed out`, `TLS: ...`."""
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS: {one_line(str(exc), 120)}"
    # requests raises a read timeout while the body is read as a ConnectionError around urllib3's.
    if isinstance(exc, requests.Timeout) or any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection closed before the end of the response"
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if match:
        return match.group(1).strip()
    return type(exc).__name__


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        snippet = one_line(response.text or "", 80)
        raise UnexpectedResponse(
            f"the API answered {response.status_code} with a body that is not JSON: {snippet!r}") from None


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or name not in body:
        raise UnexpectedResponse(f"the API's answer has no {name!r}")
    return body[name]


def _job_path(job_id: str) -> str:
    return f"/api/jobs/{quote(job_id.strip(), safe='')}"


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
