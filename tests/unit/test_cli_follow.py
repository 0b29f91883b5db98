"""Following a job through its event stream, against a local HTTP server that speaks the API's wire format
(`/api/jobs/{id}`, `/logs`, `/events`): resuming after the last event id, honouring `retry:` and a 503's
Retry-After, stopping at the final status or a 204, polling where the server has no stream, `logs --follow`.

The server answers each `/events` request with the next response of a script; sending one can move the job
(what `GET /api/jobs/{id}` answers) and its log forward, as the service would have by then. The CLI's waits
are recorded, not slept."""
from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from trawl_cli.__main__ import main
from trawl_cli.client import MAX_STREAM_RESPONSE_BYTES, JobReply, RetryPolicy, TrawlClient
from trawl_cli.errors import ApiError, CliError, JobUnsuccessful, NetworkError, UnexpectedResponse
from trawl_cli.jobs import follow_job
from trawl_cli.logs import follow_events
from trawl_cli.render import Terminal
from trawl_cli.sse import MAX_EVENT_BYTES

JOB_ID = "0d7f5d1e-8a8e-4b43-9a3c-4f1f2b3c4d5e"
JOB_PATH = f"/api/jobs/{JOB_ID}"
NOT_FOUND = {"type": "https://trawl.dev/problems/not-found", "title": "Not found", "status": 404,
             "detail": f"job {JOB_ID} not found"}
UNAVAILABLE = {"type": "https://trawl.dev/problems/unavailable", "title": "A dependency is unavailable",
               "status": 503, "detail": "the database is unavailable"}


def job_data(status: str = "running", succeeded: int = 0, failed: int = 0, total: int = 10) -> dict[str, Any]:
    final = status not in ("pending", "running")
    return {"id": JOB_ID, "status": status, "created_at": "2025-01-01T10:00:00+00:00",
            "started_at": None if status == "pending" else "2025-01-01T10:00:01+00:00",
            "finished_at": "2025-01-01T10:00:12.5+00:00" if final else None, "cancellation": None,
            "progress": {"total": total, "succeeded": succeeded, "failed": failed, "skipped": 0,
                         "pending": total - succeeded - failed}}


def status_event(event_id: str, status: str, succeeded: int = 0, failed: int = 0) -> tuple[str, str, dict[str, Any]]:
    final = status not in ("pending", "running")
    return "status", event_id, {"job_id": JOB_ID, "status": status, "final": final, "cancel_requested": False,
                                "total": 10, "succeeded": succeeded, "failed": failed, "skipped": 0}


def progress_event(event_id: str, succeeded: int, failed: int = 0) -> tuple[str, str, dict[str, Any]]:
    return "progress", event_id, {"total": 10, "succeeded": succeeded, "failed": failed, "skipped": 0,
                                  "remaining": 10 - succeeded - failed}


def sse(*events: tuple[str, str, dict[str, Any]], retry: int = 250) -> str:
    """A stream response as the server writes it: `retry:` first, then each event, or a heartbeat if none."""
    blocks = [f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n" for kind, event_id, data in events]
    return f"retry: {retry}\n\n" + ("".join(blocks) or ": heartbeat\n\n")


def log_entry(entry_id: int, event: str) -> dict[str, Any]:
    return {"id": entry_id, "at": f"2025-01-01T10:00:{entry_id:02d}+00:00", "actor": "system", "event": event,
            "reason": None, "data": {}}


@dataclass
class Reply:
    """One scripted answer to `/events`; once sent, `job` is the job and `log` entries of the log exist."""

    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream; charset=utf-8"})
    job: dict[str, Any] | None = None
    log: int | None = None
    broken: bool = False  # the connection drops before the body's announced end
    stalled: bool = False  # the body stops coming before its announced end, until the test is over


def problem(body: dict[str, Any], **headers: str) -> Reply:
    return Reply(body["status"], json.dumps(body), {"Content-Type": "application/problem+json", **headers})


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    last_event_id: str | None


NO_ROUTE = Reply(404, "", {})  # what Functions and devhost answer for a route the app does not have


class StreamApi:
    """The API for one job on 127.0.0.1: `job` until a reply moves it; `stream` scripts `/events`; `polls` are
    what successive `GET /api/jobs/{id}` answer instead, for a client that polls."""

    def __init__(self, job: dict[str, Any], stream: list[Reply], polls: list[dict[str, Any]] | None = None,
                 log: list[dict[str, Any]] | None = None, log_visible: int = 0) -> None:
        self.job = job
        self.stream = stream
        self.polls = polls or []
        self.log = log or []
        self.log_visible = log_visible
        self.requests: list[Request] = []
        self.over = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval: shutdown() at the end of each test waits for the serving loop's next look.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def requested(self, path: str) -> list[Request]:
        return [request for request in self.requests if request.path == path]

    def client(self, slept: list[float], trace: list[str] | None = None) -> TrawlClient:
        return TrawlClient(self.url, lambda: "token", sleep=recorder(slept),
                           on_request=None if trace is None else trace.append)

    def answer(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path == f"{JOB_PATH}/events":
            reply = self.stream.pop(0)
            self.job = reply.job or self.job
            self.log_visible = self.log_visible if reply.log is None else reply.log
            return reply
        if path == JOB_PATH:
            if self.polls:
                self.job = self.polls.pop(0)
            return Reply(200, json.dumps(self.job), {"Content-Type": "application/json"})
        if path == f"{JOB_PATH}/logs":
            after = int(query["after"][0])
            items = [entry for entry in self.log[:self.log_visible] if entry["id"] > after]
            page = {"items": items, "next_after": items[-1]["id"] if items else after, "has_more": False}
            return Reply(200, json.dumps(page), {"Content-Type": "application/json"})
        return problem({**NOT_FOUND, "detail": f"no route {path}"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK wait between

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                api.requests.append(Request(parts.path, query, self.headers.get("Last-Event-ID")))
                reply = api.answer(parts.path, query)
                body = reply.body.encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body) + (100 if reply.broken or reply.stalled else 0)))
                self.end_headers()
                self.wfile.write(body)
                if reply.stalled:
                    api.over.wait()
                self.close_connection = reply.broken or reply.stalled

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.over.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[list[StreamApi]]:
    started: list[StreamApi] = []
    yield started
    for api in started:
        api.close()


def start(serve: list[StreamApi], *args: Any, **kwargs: Any) -> StreamApi:
    api = StreamApi(*args, **kwargs)
    serve.append(api)
    return api


MAX_POLLS = 20


def recorder(waits: list[float]) -> Callable[[float], None]:
    """Records each wait instead of sleeping; a client that polls on and on fails the test rather than hang it."""
    def wait(seconds: float) -> None:
        waits.append(seconds)
        assert len(waits) <= MAX_POLLS, f"still waiting after {MAX_POLLS} waits: {waits}"
    return wait


@dataclass
class Followed:
    outcome: int | Exception
    lines: list[str]
    slept: list[float]  # the client's waits: `retry:`, Retry-After, backoff after a broken response
    polled: list[float]  # the polling fallback's waits
    trace: list[str]


def follow(api: StreamApi) -> Followed:
    """`follow_job` as `trawl watch` calls it: the job as the API gives it, and the client's event stream."""
    slept: list[float] = []
    polled: list[float] = []
    trace: list[str] = []
    out = io.StringIO()
    client = api.client(slept, trace)
    try:
        outcome: int | Exception = follow_job(client, Terminal(out), JobReply(client.get_job(JOB_ID).job, None),
                                              sleep=recorder(polled), events=client.job_events)
    except CliError as exc:
        outcome = exc
    return Followed(outcome, out.getvalue().splitlines(), slept, polled, trace)


def shown(lines: list[str]) -> list[str]:
    """Each progress line without its rate and ETA (they depend on the clock), and the summary without its time."""
    return [re.sub(r" \(\d+ succeeded.*| in [\d.]+s", "", line) for line in lines]


def test_watch_follows_the_stream_and_resumes_after_the_last_event_id(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("pending"), [
        Reply(body=sse(status_event("0.0", "pending"), status_event("0.1", "running"), progress_event("0.1", 0)),
              job=job_data("running")),
        Reply(body=sse()),  # nothing happened for 15 s: a heartbeat, and the cursor stays
        Reply(body=sse(progress_event("4.1", 3, 1)), job=job_data("running", 3, 1)),
        Reply(body=sse(progress_event("10.1", 9, 1), status_event("10.3", "completed_with_errors", 9, 1), retry=0),
              job=job_data("completed_with_errors", 9, 1)),
    ])

    followed = follow(api)

    assert followed.outcome == 0
    streamed = api.requested(f"{JOB_PATH}/events")
    assert [request.last_event_id for request in streamed] == [None, "0.1", "0.1", "4.1"]
    assert all(request.query == {"items": ["none"]} for request in streamed)
    assert followed.slept == [0.25, 0.25, 0.25] and followed.polled == []
    # The job is read once before the stream and once after each response with a status change.
    assert len(api.requested(JOB_PATH)) == 3
    assert shown(followed.lines) == [
        f"job {JOB_ID} pending: 0/10 done",
        f"job {JOB_ID} running: 0/10 done",
        f"job {JOB_ID} running: 4/10 done",
        f"job {JOB_ID} completed_with_errors: 10/10 done",
        f"job {JOB_ID} completed with errors: 9 succeeded, 1 failed, 0 skipped of 10; some URLs failed, "
        f"see `trawl results {JOB_ID}`",
    ]


def test_a_503_waits_its_retry_after_and_resumes_from_the_same_event(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("running"), [
        Reply(body=sse(status_event("0.0", "pending"), status_event("0.1", "running"), progress_event("0.1", 0))),
        problem(UNAVAILABLE, **{"Retry-After": "7"}),
        Reply(body=sse(progress_event("10.1", 10), status_event("10.3", "succeeded", 10)),
              job=job_data("succeeded", 10)),
    ])

    followed = follow(api)

    assert followed.outcome == 0
    assert shown(followed.lines)[-1] == f"job {JOB_ID} succeeded: 10 succeeded, 0 failed, 0 skipped of 10"
    assert [request.last_event_id for request in api.requested(f"{JOB_PATH}/events")] == [None, "0.1", "0.1"]
    assert followed.slept == [0.25, 7.0]
    assert any(line.endswith(f"{JOB_PATH}/events: HTTP 503; retrying in 7s") for line in followed.trace)


def test_a_response_that_breaks_off_is_asked_for_again_from_the_same_event(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("running"), [
        Reply(body=sse(status_event("0.1", "running"))),
        Reply(body=sse(progress_event("2.1", 2)), broken=True, job=job_data("running", 2)),
        Reply(body=sse(progress_event("10.1", 10), status_event("10.3", "succeeded", 10)),
              job=job_data("succeeded", 10)),
    ])

    followed = follow(api)

    assert followed.outcome == 0
    assert [request.last_event_id for request in api.requested(f"{JOB_PATH}/events")] == [None, "0.1", "0.1"]
    assert followed.slept == [0.25, RetryPolicy().base_delay]
    assert (f"the event stream of job {JOB_ID} broke off (the connection closed before the end of the response); "
            "asking again in 0.5s") in followed.trace


def test_responses_that_keep_breaking_off_end_in_a_network_error(serve: list[StreamApi]) -> None:
    broken = [Reply(body=sse(progress_event("1.1", 1)), broken=True) for _ in range(RetryPolicy().attempts)]
    api = start(serve, job_data("running"), broken)

    followed = follow(api)

    assert isinstance(followed.outcome, NetworkError)
    assert str(followed.outcome) == (f"the event stream of job {JOB_ID} from {api.url} broke off 4 times in a row: "
                                     "the connection closed before the end of the response")
    assert len(api.requested(f"{JOB_PATH}/events")) == 4 and followed.slept == [0.5, 1.0, 2.0]


def test_a_response_that_stops_coming_times_out_and_is_asked_for_again(serve: list[StreamApi],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trawl_cli.client.STREAM_TIMEOUT", (5.0, 0.2))  # rather than the 45 s a server may go quiet
    api = start(serve, job_data("running"), [
        Reply(body=sse(status_event("0.1", "running")), stalled=True),
        Reply(body=sse(progress_event("10.1", 10), status_event("10.3", "succeeded", 10)),
              job=job_data("succeeded", 10)),
    ])

    followed = follow(api)

    assert followed.outcome == 0
    assert [request.last_event_id for request in api.requested(f"{JOB_PATH}/events")] == [None, None]
    assert f"the event stream of job {JOB_ID} broke off (timed out); asking again in 0.5s" in followed.trace


def test_counts_behind_those_already_shown_are_left_out(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("pending"), [
        # Catching up on many items, a response counts only those it carries (more follow at once: retry 0)...
        Reply(body=sse(status_event("0.0", "pending"), status_event("0.1", "running"), progress_event("2.1", 2),
                       retry=0), job=job_data("running", 8)),
        # ...so the next can still be behind the job read after the status change: 8 done.
        Reply(body=sse(progress_event("5.1", 5), retry=0)),
        Reply(body=sse(progress_event("10.1", 10), status_event("10.3", "succeeded", 10)),
              job=job_data("succeeded", 10)),
    ])

    followed = follow(api)

    assert followed.outcome == 0
    assert shown(followed.lines)[:-1] == [f"job {JOB_ID} pending: 0/10 done", f"job {JOB_ID} running: 8/10 done",
                                          f"job {JOB_ID} succeeded: 10/10 done"]


def test_a_204_ends_the_stream_and_the_job_says_how_it_ended(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("running"), [
        Reply(body=sse(progress_event("3.1", 3)), job=job_data("running", 3)),
        Reply(204, "", {}, job=job_data("cancelled", 3)),
    ])

    followed = follow(api)

    assert isinstance(followed.outcome, JobUnsuccessful) and str(followed.outcome) == f"job {JOB_ID} ended cancelled"
    assert shown(followed.lines)[-2:] == [f"job {JOB_ID} cancelled: 3/10 done",
                                          f"job {JOB_ID} cancelled: 3 succeeded, 0 failed, 0 skipped of 10"]
    assert len(api.requested(f"{JOB_PATH}/events")) == 2 and followed.polled == []


def test_json_prints_the_job_at_each_change_and_quiet_prints_nothing(serve: list[StreamApi],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def script() -> list[Reply]:
        return [
            Reply(body=sse(status_event("0.0", "pending"), status_event("0.1", "running"), progress_event("0.1", 0),
                           retry=0), job=job_data("running")),
            Reply(body=sse(progress_event("6.1", 6), retry=0), job=job_data("running", 6)),
            Reply(body=sse(progress_event("10.1", 10), status_event("10.3", "succeeded", 10), retry=0),
                  job=job_data("succeeded", 10)),
        ]
    api = start(serve, job_data("pending"), script())

    assert main(["--api-url", api.url, "--token", "t", "--json", "watch", JOB_ID]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert [(job["status"], job["progress"]["succeeded"], job["progress"]["pending"]) for job in records] == [
        ("pending", 0, 10), ("running", 0, 10), ("running", 6, 4), ("succeeded", 10, 0)]
    assert records[-1] == job_data("succeeded", 10)  # the final line is the API's job as is

    quiet = start(serve, job_data("pending"), script())
    assert main(["--api-url", quiet.url, "--token", "t", "--quiet", "watch", JOB_ID]) == 0
    assert capsys.readouterr() == ("", "")
    assert len(quiet.requested(f"{JOB_PATH}/events")) == 3


ROUTE_MISSING = {  # how a server without the route answers `/events`
    "404 with an empty body (Functions, devhost)": NO_ROUTE,
    "404 with a gateway's JSON": Reply(404, json.dumps({"statusCode": 404, "message": "Resource not found"}),
                                       {"Content-Type": "application/json"}),
    "404 with another problem": problem({**NOT_FOUND, "type": "https://gateway.example/problems/no-operation"}),
    "405": Reply(405, "", {"Allow": "DELETE, GET"}),
}


@pytest.mark.parametrize("missing", ROUTE_MISSING.values(), ids=ROUTE_MISSING.keys())
def test_without_a_stream_the_job_is_polled_and_only_verbose_says_so(
        missing: Reply, serve: list[StreamApi], capsys: pytest.CaptureFixture[str]) -> None:
    api = start(serve, job_data("running"), [missing], polls=[job_data("running"), job_data("running", 4),
                                                               job_data("running", 4), job_data("succeeded", 10)])

    followed = follow(api)

    assert followed.outcome == 0
    assert len(api.requested(f"{JOB_PATH}/events")) == 1 and len(api.requested(JOB_PATH)) == 4
    assert followed.polled == [1.0, 1.0, 1.5] and followed.slept == []
    assert shown(followed.lines) == [f"job {JOB_ID} running: 0/10 done", f"job {JOB_ID} running: 4/10 done",
                                     f"job {JOB_ID} succeeded: 10/10 done",
                                     f"job {JOB_ID} succeeded: 10 succeeded, 0 failed, 0 skipped of 10"]
    assert [line for line in followed.trace if not line.startswith("GET ")] == [
        f"no event stream for job {JOB_ID} (HTTP {missing.status}): following it by polling"]
    assert capsys.readouterr() == ("", "")  # --verbose's trace is all it says: nothing on stdout or stderr


def test_a_stream_that_says_the_job_is_not_found_is_an_error_not_a_fallback(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("running"), [problem(NOT_FOUND)])

    followed = follow(api)

    assert isinstance(followed.outcome, ApiError) and str(followed.outcome) == f"404 Not found: job {JOB_ID} not found"
    assert len(api.requested(JOB_PATH)) == 1  # the first GET only: nothing polled


def test_an_event_larger_than_the_bound_ends_the_command_with_one_line(serve: list[StreamApi],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    huge = ("progress", "1.1", {"padding": "x" * MAX_EVENT_BYTES})
    api = start(serve, job_data("running"), [Reply(body=sse(huge))])

    assert main(["--api-url", api.url, "--token", "t", "watch", JOB_ID]) == 3
    assert capsys.readouterr().err == ("trawl: the API sent a server-sent event of more than 1 MiB; this client reads "
                                       "no events that large\n")


def test_a_response_larger_than_the_bound_ends_the_command(serve: list[StreamApi]) -> None:
    half_the_event_bound = {"padding": "x" * (MAX_EVENT_BYTES // 2)}
    many = [("progress", f"{n}.1", half_the_event_bound) for n in range(MAX_STREAM_RESPONSE_BYTES // MAX_EVENT_BYTES * 2)]
    api = start(serve, job_data("running"), [Reply(body=sse(*many))])

    followed = follow(api)

    assert isinstance(followed.outcome, UnexpectedResponse)
    assert str(followed.outcome) == ("the API sent an event stream response of more than 16 MiB; this client reads "
                                     "none that large")


def test_a_stream_response_that_is_not_an_event_stream_is_refused(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("running"), [Reply(200, "<html>sign in</html>", {"Content-Type": "text/html"})])

    followed = follow(api)

    assert isinstance(followed.outcome, UnexpectedResponse)
    assert str(followed.outcome) == f"the API answered the event stream of job {JOB_ID} with 200 text/html"


LOG = [log_entry(1, "submitted"), log_entry(2, "started"), log_entry(3, "item_retried"), log_entry(4, "finished")]


def follow_log(api: StreamApi) -> tuple[list[str], list[float]]:
    out, slept, polled = io.StringIO(), list[float](), list[float]()
    client = api.client(slept)
    follow_events(client, Terminal(out), JOB_ID, sleep=recorder(polled), events=client.job_events)
    return [line.split()[2] for line in out.getvalue().splitlines()], polled


def test_logs_follow_reads_new_entries_after_each_response_until_the_final_status(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("running"), [
        Reply(body=sse(status_event("0.0", "pending"), status_event("0.1", "running"), progress_event("0.1", 0)),
              log=2),
        Reply(body=sse(), log=3),  # a retry is logged, not streamed: an idle response reads the log too
        Reply(body=sse(progress_event("10.1", 10), status_event("10.3", "succeeded", 10)), log=4,
              job=job_data("succeeded", 10)),
    ], log=LOG, log_visible=1)

    printed, polled = follow_log(api)

    assert printed == ["submitted", "started", "item_retried", "finished"] and polled == []
    streamed = api.requested(f"{JOB_PATH}/events")
    assert [request.last_event_id for request in streamed] == [None, "0.1", "0.1"]
    assert [request.query["after"] for request in api.requested(f"{JOB_PATH}/logs")] == [["0"], ["2"], ["3"]]
    assert all(request.query == {"items": ["none"]} for request in streamed)
    assert api.requests[-1].path == f"{JOB_PATH}/logs"  # the final status's entries were read after it, then it ended


def test_logs_follow_of_a_job_that_has_ended_prints_its_log_without_a_stream(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("succeeded", 10), [], log=LOG, log_visible=4)

    assert follow_log(api) == (["submitted", "started", "item_retried", "finished"], [])
    assert api.requested(f"{JOB_PATH}/events") == []


def test_logs_follow_polls_where_the_server_has_no_stream(serve: list[StreamApi]) -> None:
    api = start(serve, job_data("running"), [NO_ROUTE], polls=[job_data("running"), job_data("running", 3),
                                                          job_data("succeeded", 10)], log=LOG, log_visible=4)

    printed, polled = follow_log(api)

    assert printed == ["submitted", "started", "item_retried", "finished"]
    assert len(api.requested(f"{JOB_PATH}/events")) == 1 and polled == [1.0]
