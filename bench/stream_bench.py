"""Live job events: how soon a change in PostgreSQL reaches a reader of `GET /api/jobs/{id}/events`, and what 200
open streams cost `GET /api/jobs/{id}` on the same instance.

Everything runs against devhost with an Azurite and an embedded PostgreSQL of the benchmark's own (free ports,
temporary data). The queue workers are switched off (`AzureWebJobs.<name>.Disabled`), so the jobs' items stay
pending and only this script makes them final, as the worker does (`tx.jobs.complete_item` in one statement).

1. latency: one job per pattern of spacing (every 50 ms, 200 ms, 1 s, random with a mean of 300 ms), each
   followed by a reader thread that behaves as EventSource does (complete long-poll responses, reconnect after
   `retry:` ms with Last-Event-ID; `trawl_cli.sse` parses the bodies). The script completes an item, notes the
   time the commit returned, and the time the reader parsed the item's event (matched by seq). Patterns
   alternate in rounds so they share the machine's load; p50/p95/max per pattern over all rounds, and the HTTP
   responses per second the stream took.
2. load: `GET /api/jobs/{id}` timed sequentially (p50/p90/p99/max) with no stream open (idle), with `--streams` readers
   open and no job changing (quiet), and with them open while items complete at `--load-rate` a second spread
   over their jobs (flowing). The readers run in a process of their own (asyncio, one pooled aiohttp session),
   `--streams-per-user` per dev user and one job per user, so no caller passes TRAWL_STREAMS_PER_CALLER (10).
   Their first requests are spread over `--stagger-s` (one heartbeat period), as readers who opened the page at
   different times. Each state: `--observe-s` with no GET (devhost's CPU and threads for the streams alone), then
   `--gets` timed GETs, each on a fresh connection (see the note on devhost's sends below). The three states
   alternate for `--rounds` rounds; medians per state, and each loaded p99 over the idle one.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/stream_bench.py [--events 100] [--rounds 3] [--streams 200] [--load-rate 20]
    .venv/bin/python bench/stream_bench.py --skip-latency --load-rate 5 [--setting TRAWL_DATABASE_POOL_SIZE=10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from http.client import HTTPConnection, HTTPMessage
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import psutil
import psycopg2
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pipeline_bench import cpu_seconds, private_azurite  # noqa: E402
from shared.adapters.db import ConnectionPool, UrlDatabase, connect, in_one_statement, migrate  # noqa: E402
from tests.devhost.conftest import DevhostProcess, free_port, start_devhost  # noqa: E402
from tests.e2e.conftest import app_env, dev_token, session_for  # noqa: E402
from trawl_cli.sse import EventStreamParser  # noqa: E402

RETRY_FALLBACK_MS = 500  # the server's default retry, for a response that sets none
RECEIVE_TIMEOUT_S = 30  # how long after its commit an item's event may take before it counts as lost
READY_TIMEOUT_S = 180
GET_WARMUP = 10
SETTLE_S = 2.0  # pacing: after the readers' first responses, before timing, so all are parked in a long poll
RESULT = {"title": "stream bench", "word_count": 1}
# devhost's HTTP server (http.server) writes a response's headers and its body in two sends without TCP_NODELAY:
# on a kept-alive connection the body waits for the client's delayed ACK, about 40 ms a response, which the
# Functions host on Azure does not add. The timed requests (`get_fresh`) take a connection each (a new connection
# starts in quick-ACK mode), so they time the app; the load readers keep theirs alive, as browsers do.


@dataclass(frozen=True)
class Pattern:
    """A spacing of changes: the gap before each next one."""

    name: str
    gap: Callable[[random.Random], float]


PATTERNS = [
    Pattern("every 50 ms", lambda _: 0.05),
    Pattern("every 200 ms", lambda _: 0.2),
    Pattern("every 1 s", lambda _: 1.0),
    Pattern("random (exponential, mean 300 ms)", lambda rng: rng.expovariate(1 / 0.3)),
]


@dataclass(frozen=True)
class UnservedSite:
    """What app_env takes for a site (it reads the port). The jobs' URLs name 127.0.0.1:80, where nothing need
    listen: the workers that would fetch them are switched off."""

    port: int


@dataclass
class App:
    """devhost, the URL of its database, a pool for this script's own writes, and PostgreSQL's process."""

    host: DevhostProcess
    db_url: str
    pool: ConnectionPool
    postgres: psutil.Process

    @property
    def api(self) -> str:
        return f"{self.host.base_url}/api"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# --- the app and its jobs ------------------------------------------------------------------------------------------

def start_app(stack: ExitStack, tmp: Path, max_urls: int, log_dir: Path, settings: dict[str, str]) -> App:
    """PostgreSQL, Azurite and devhost with the queue workers off; production tick and reconcile schedules, so
    the orchestrations of the waiting jobs cost what they would in service."""
    import pgserver  # dev-only dependency, as in devhost.services

    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    stack.callback(server.cleanup)
    with closing(connect(UrlDatabase(server.get_uri()))) as conn:
        migrate(conn)
    (tmp / "azurite").mkdir()
    storage, _ = stack.enter_context(private_azurite(tmp / "azurite"))
    env = app_env(server.get_uri(), UnservedSite(free_port()),  # type: ignore[arg-type]  # app_env reads only .port
                  f"stream-{uuid.uuid4().hex[:8]}", AzureWebJobsStorage=storage, TrawlStorage=storage,
                  TRAWL_MAX_URLS_PER_JOB=str(max_urls), TRAWL_ENQUEUE_BATCH_SIZE="250",
                  TRAWL_PROGRESS_TICK_SECONDS="15", TRAWL_RECONCILE_SCHEDULE="0 * * * * *",
                  **{"AzureWebJobs.scrape_item.Disabled": "true", "AzureWebJobs.give_up_on_item.Disabled": "true"},
                  **settings)
    host = start_devhost(REPO, log_dir / f"devhost-{uuid.uuid4().hex[:6]}.log", env)
    stack.callback(host.stop)
    pool = ConnectionPool(UrlDatabase(server.get_uri()), maxconn=4)
    stack.callback(pool.closeall)
    return App(host, server.get_uri(), pool, psutil.Process(server.get_pid()))


def submit_running_job(app: App, http: requests.Session, items: int) -> UUID:
    """Submit a job of `items` URLs that nobody fetches (the workers are off); `wait_running` waits for it."""
    urls = [f"http://127.0.0.1/unserved/{uuid.uuid4().hex}/{n}" for n in range(items)]
    response = http.post(f"{app.api}/jobs", json={"urls": urls, "options": {"deadline_seconds": 7200}}, timeout=120)
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    return UUID(response.json()["id"])


def wait_running(app: App, http: requests.Session, job_ids: list[UUID], seconds: float = 600) -> None:
    """Poll until every job is `running` and its orchestration has sent every item's message (devhost spends
    seconds of CPU on sending thousands, which must not overlap a measurement); fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while (waiting := [job_id for job_id in job_ids if not _dispatched(app, http, job_id)]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs not running and dispatched after {seconds} s: {waiting}\n"
                               f"{app.host.logs()[-4000:]}")
        time.sleep(0.5)


def _dispatched(app: App, http: requests.Session, job_id: UUID) -> bool:
    if http.get(f"{app.api}/jobs/{job_id}", timeout=30).json()["status"] != "running":
        return False
    with closing(psycopg2.connect(app.db_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM job_items WHERE job_id = %s AND queued_attempt IS NULL", (str(job_id),))
        row = cur.fetchone()
    return row is not None and int(row[0]) == 0


def get_fresh(url: str, headers: dict[str, str], timeout: float) -> tuple[int, HTTPMessage, bytes]:
    """GET on a connection of its own, closed after the response (see the note on devhost's sends above)."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path,
                     headers={**headers, "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def complete(pool: ConnectionPool, job_id: UUID, seq: int) -> float:
    """Make an item final as the worker does (one statement, autocommit); the time its commit returned."""
    outcome = in_one_statement(pool, lambda tx: tx.jobs.complete_item(job_id, seq, RESULT, 200, None, 5))
    if not outcome.changed:
        raise RuntimeError(f"job {job_id} item {seq} was already final")
    return time.perf_counter()


# --- 1. latency ----------------------------------------------------------------------------------------------------

class StreamFollower(threading.Thread):
    """One reader of a job's stream, as EventSource: a complete response, then `retry` ms, then the next request
    with Last-Event-ID. Keeps when each item event was parsed and when each response ended."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(name="stream-follower", daemon=True)
        self._url = url
        self._token = token
        self._stopping = threading.Event()
        self.arrived = threading.Condition()
        self.parsed_at: dict[int, float] = {}  # seq -> perf_counter when its event was parsed
        self.responses: list[float] = []  # perf_counter when each response had been read
        self.statuses: Counter[int] = Counter()

    def stop(self) -> None:
        """Send no further request; the one in flight ends at its heartbeat at the latest."""
        self._stopping.set()

    def run(self) -> None:
        last_id = ""
        while not self._stopping.is_set():
            headers = {"Authorization": f"Bearer {self._token}", **({"Last-Event-ID": last_id} if last_id else {})}
            status, response_headers, body = get_fresh(self._url, headers, 60)
            parser = EventStreamParser(last_id)
            events = parser.feed(body) if status == 200 else []
            now = time.perf_counter()
            with self.arrived:
                self.responses.append(now)
                self.statuses[status] += 1
                for event in events:
                    if event.type == "item":
                        self.parsed_at[json.loads(event.data)["seq"]] = now
                self.arrived.notify_all()
            if status == 204:
                return
            last_id = parser.last_event_id
            delay_ms = parser.retry_ms if parser.retry_ms is not None else RETRY_FALLBACK_MS
            if status != 200:
                delay_ms = 1000 * int(response_headers.get("Retry-After", "1"))
            self._stopping.wait(delay_ms / 1000)

    def wait_for(self, seqs: list[int], timeout: float) -> None:
        with self.arrived:
            self.arrived.wait_for(lambda: all(seq in self.parsed_at for seq in seqs), timeout)


@dataclass
class PatternRun:
    """One pattern's changes in one round: commit and parse times, and the stream's responses meanwhile."""

    pattern: str
    latencies: list[float]
    lost: int
    responses: int
    seconds: float


def drive_pattern(app: App, job_id: UUID, follower: StreamFollower, pattern: Pattern, seqs: list[int],
                  rng: random.Random) -> PatternRun:
    """Complete `seqs` spaced by the pattern (paced on a schedule, so slow commits do not stretch it), then wait
    for the reader to have parsed them all, or RECEIVE_TIMEOUT_S."""
    committed: dict[int, float] = {}
    due = time.perf_counter()
    for seq in seqs:
        time.sleep(max(0.0, due - time.perf_counter()))
        committed[seq] = complete(app.pool, job_id, seq)
        due += pattern.gap(rng)
    follower.wait_for(seqs, RECEIVE_TIMEOUT_S)
    with follower.arrived:
        parsed = {seq: follower.parsed_at[seq] for seq in seqs if seq in follower.parsed_at}
        if not parsed:
            raise RuntimeError(f"the reader of job {job_id} got none of {len(seqs)} item events ({pattern.name}): "
                               f"statuses {dict(follower.statuses)}\n{app.host.logs()[-4000:]}")
        start, end = min(committed.values()), max([*parsed.values(), max(committed.values())])
        responses = sum(1 for at in follower.responses if start <= at <= end)
    return PatternRun(pattern.name, [parsed[seq] - committed[seq] for seq in parsed], len(seqs) - len(parsed),
                      responses, end - start)


def measure_latency(app: App, events: int, rounds: int, seed: int) -> list[PatternRun]:
    """One job and one reader per pattern; the patterns alternate, `events` changes each per round."""
    http = session_for("stream-bench-latency")
    jobs = [submit_running_job(app, http, events * rounds + 1) for _ in PATTERNS]  # +1: no job ever finishes
    wait_running(app, http, jobs)
    followers = [StreamFollower(f"{app.api}/jobs/{job_id}/events", dev_token("stream-bench-latency"))
                 for job_id in jobs]
    for follower in followers:
        follower.start()
    rng = random.Random(seed)
    runs: list[PatternRun] = []
    try:
        for number in range(rounds):
            seqs = list(range(number * events, (number + 1) * events))
            for pattern, job_id, follower in zip(PATTERNS, jobs, followers, strict=True):
                runs.append(drive_pattern(app, job_id, follower, pattern, seqs, rng))
                run = runs[-1]
                print(f"latency round {number + 1} {pattern.name}: p50 {ms(percentile(run.latencies, 0.5))} ms "
                      f"p95 {ms(percentile(run.latencies, 0.95))} ms max {ms(max(run.latencies))} ms, lost "
                      f"{run.lost}, {run.responses / run.seconds:.2f} responses/s", file=sys.stderr, flush=True)
    finally:
        for follower in followers:
            follower.stop()
        for follower in followers:
            follower.join(timeout=30)
    statuses = sum((follower.statuses for follower in followers), Counter[int]())
    if set(statuses) - {200}:
        print(f"latency readers got statuses {dict(statuses)}", file=sys.stderr)
    return runs


def summarize_latency(runs: list[PatternRun]) -> list[dict[str, Any]]:
    rows = []
    for pattern in PATTERNS:
        own = [run for run in runs if run.pattern == pattern.name]
        latencies = [value for run in own for value in run.latencies]
        rows.append({"pattern": pattern.name, "events": len(latencies), "lost": sum(run.lost for run in own),
                     "p50_ms": ms(percentile(latencies, 0.5)), "p95_ms": ms(percentile(latencies, 0.95)),
                     "max_ms": ms(max(latencies)),
                     "responses_per_s": round(sum(run.responses for run in own) / sum(run.seconds for run in own), 2),
                     "p95_per_round_ms": [ms(percentile(run.latencies, 0.95)) for run in own]})
    return rows


# --- 2. load -------------------------------------------------------------------------------------------------------

@dataclass
class ReaderCounters:
    """Shared with the readers' process: responses by kind, events, and readers that had a first response."""

    ok: Synchronized[int]
    other: Synchronized[int]
    events: Synchronized[int]
    started: Synchronized[int]

    @classmethod
    def create(cls, context: Any) -> ReaderCounters:
        return cls(*(context.Value("q", 0) for _ in range(4)))

    def snapshot(self) -> dict[str, int]:
        return {"ok": self.ok.value, "other": self.other.value, "events": self.events.value}


def run_readers(url_template: str, targets: list[tuple[str, str]], stagger_s: float, counters: ReaderCounters,
                stopping: Any) -> None:
    """In a process of its own: one asyncio reader per (token, job id) on one pooled aiohttp session, until
    `stopping` is set; each then finishes the request it has in flight. Their first requests are spread evenly
    over `stagger_s`, so their heartbeats (and reconnects) are too, as those of readers who opened the page
    at different times; 0 starts them together."""
    asyncio.run(_read_all(url_template, targets, stagger_s, counters, stopping))


async def _read_all(url_template: str, targets: list[tuple[str, str]], stagger_s: float, counters: ReaderCounters,
                    stopping: Any) -> None:
    import aiohttp  # the durable functions SDK's dependency; only this process needs it

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def relay_stop() -> None:
        stopping.wait()
        loop.call_soon_threadsafe(stop.set)

    loop.run_in_executor(None, relay_stop)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(_follow(session, url_template.format(job_id=job_id), token, counters, stop,
                                       stagger_s * number / len(targets))
                               for number, (token, job_id) in enumerate(targets)))


async def _follow(session: Any, url: str, token: str, counters: ReaderCounters, stop: asyncio.Event,
                  start_after_s: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), start_after_s)
    last_id, first = "", True
    while not stop.is_set():
        headers = {"Authorization": f"Bearer {token}", **({"Last-Event-ID": last_id} if last_id else {})}
        async with session.get(url, headers=headers) as response:
            body, status, retry_after = await response.read(), response.status, response.headers.get("Retry-After")
        if first:
            first = False
            _count(counters.started, 1)
        if status == 204:
            return
        delay_ms = 1000 * int(retry_after or 1)
        if status == 200:
            parser = EventStreamParser(last_id)
            _count(counters.events, len(parser.feed(body)))
            last_id = parser.last_event_id
            delay_ms = parser.retry_ms if parser.retry_ms is not None else RETRY_FALLBACK_MS
        _count(counters.ok if status == 200 else counters.other, 1)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay_ms / 1000)


def _count(counter: Synchronized[int], amount: int) -> None:
    with counter.get_lock():
        counter.value += amount


@contextmanager
def open_streams(app: App, targets: list[tuple[str, str]],
                 stagger_s: float) -> Iterator[tuple[ReaderCounters, psutil.Process]]:
    """The readers' process, once every reader had its first response (plus SETTLE_S); on exit, the readers
    stop and the requests they have in flight end (at their heartbeat at the latest), so no stream outlives it."""
    context = multiprocessing.get_context("spawn")
    counters = ReaderCounters.create(context)
    stopping = context.Event()
    process = context.Process(target=run_readers, args=(f"{app.api}/jobs/{{job_id}}/events", targets, stagger_s,
                                                        counters, stopping), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + stagger_s + READY_TIMEOUT_S
        while counters.started.value < len(targets):
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{counters.started.value} of {len(targets)} readers started")
            time.sleep(0.2)
        time.sleep(SETTLE_S)
        yield counters, psutil.Process(process.pid)
    finally:
        stopping.set()
        process.join(timeout=60)
        if process.exitcode != 0:
            raise RuntimeError(f"the readers' process ended {process.exitcode}")


class LoadCompleter(threading.Thread):
    """Completes items at `rate` a second, the load jobs in turn, each from where it left off."""

    def __init__(self, pool: ConnectionPool, jobs: list[UUID], capacity: int, rate: float,
                 next_seq: dict[UUID, int]) -> None:
        super().__init__(name="load-completer", daemon=True)
        self._pool, self._jobs, self._capacity, self._gap = pool, jobs, capacity, 1 / rate
        self._next_seq = next_seq
        self._stopping = threading.Event()
        self.completed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        due = time.perf_counter()
        try:
            while not self._stopping.wait(max(0.0, due - time.perf_counter())):
                job_id = self._jobs[self.completed % len(self._jobs)]
                if self._next_seq[job_id] >= self._capacity - 1:
                    raise RuntimeError(f"job {job_id} has no pending item left: raise --load-items")
                complete(self._pool, job_id, self._next_seq[job_id])
                self._next_seq[job_id] += 1
                self.completed += 1
                due += self._gap
        except BaseException as exc:  # handed to the main thread, which raises it after the run
            self.error = exc

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)
        if self.error is not None:
            raise RuntimeError("the load completer failed") from self.error


class ThreadSampler(threading.Thread):
    """The most threads a process had, sampled every 0.25 s."""

    def __init__(self, process: psutil.Process) -> None:
        super().__init__(name="thread-sampler", daemon=True)
        self._process = process
        self._stopping = threading.Event()
        self.most = process.num_threads()

    def run(self) -> None:
        while not self._stopping.wait(0.25):
            self.most = max(self.most, self._process.num_threads())

    def stop(self) -> int:
        self._stopping.set()
        self.join()
        return int(self.most)


@contextmanager
def metered(app: App, extra: dict[str, psutil.Process]) -> Iterator[dict[str, Any]]:
    """Fills the yielded dict on exit: the block's seconds, the CPU of devhost, PostgreSQL and `extra` (their
    process trees) in % of one core, and the most threads devhost had."""
    devhost = psutil.Process(app.host.process.pid)
    processes = {"devhost": devhost, "postgres": app.postgres, **extra}
    before = {name: cpu_seconds(process, True) for name, process in processes.items()}
    sampler = ThreadSampler(devhost)
    sampler.start()
    started = time.perf_counter()
    found: dict[str, Any] = {}
    yield found
    wall = time.perf_counter() - started
    found.update({"seconds": round(wall, 1), "devhost_threads_max": sampler.stop(),
                  "cpu_pct": {name: round(100 * (cpu_seconds(process, True) - before[name]) / wall, 1)
                              for name, process in processes.items()}})


def time_gets(app: App, token: str, job_id: UUID, count: int) -> list[float]:
    """`count` sequential GET /api/jobs/{id}, each on a fresh connection, after GET_WARMUP untimed ones."""
    url, headers = f"{app.api}/jobs/{job_id}", {"Authorization": f"Bearer {token}"}
    for _ in range(GET_WARMUP):
        get_fresh(url, headers, 30)
    latencies = []
    for _ in range(count):
        sent = time.perf_counter()
        status, _, body = get_fresh(url, headers, 30)
        latencies.append(time.perf_counter() - sent)
        if status != 200:
            raise RuntimeError(f"GET {url} answered {status}: {body[:2000]!r}")
    return latencies


@dataclass
class LoadSetup:
    """The readers' jobs and tokens, the job whose GET is timed, and the measurement's settings."""

    targets: list[tuple[str, str]]
    jobs: list[UUID]
    get_token: str
    get_job: UUID
    next_seq: dict[UUID, int]
    args: argparse.Namespace


@dataclass
class LoadRun:
    """One state's run: the timed GETs, what the processes did over `observe_s` without them (`streams`) and
    while they ran (`gets`), and what the readers got over `observe_s`."""

    state: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    streams: dict[str, Any]
    gets: dict[str, Any]
    readers: dict[str, float] = field(default_factory=dict)


def prepare_load(app: App, args: argparse.Namespace) -> LoadSetup:
    """One job per dev user, `--streams-per-user` readers on each; the timed GETs read a job of another user."""
    per_user = args.streams_per_user
    users = [f"stream-bench-{number:03d}" for number in range(math.ceil(args.streams / per_user))]
    jobs = [submit_running_job(app, session_for(user), args.load_items) for user in users]
    get_http = session_for("stream-bench-get")
    get_job = submit_running_job(app, get_http, args.load_items)
    wait_running(app, get_http, [get_job])
    for user, job_id in zip(users, jobs, strict=True):
        wait_running(app, session_for(user), [job_id])
    tokens = {user: dev_token(user) for user in users}
    targets = [(tokens[users[n // per_user]], str(jobs[n // per_user])) for n in range(args.streams)]
    return LoadSetup(targets, jobs, dev_token("stream-bench-get"), get_job, {job_id: 0 for job_id in jobs}, args)


def run_state(app: App, setup: LoadSetup, state: str) -> LoadRun:
    """idle: no stream; quiet: the readers open, no job changing; flowing: items completing at `--load-rate`.
    First `--observe-s` with no GET (the streams' own cost), then the timed GETs."""
    args = setup.args
    with ExitStack() as stack:
        extra: dict[str, psutil.Process] = {}
        counters: ReaderCounters | None = None
        completer: LoadCompleter | None = None
        if state != "idle":
            counters, extra["readers"] = stack.enter_context(open_streams(app, setup.targets, args.stagger_s))
        if state == "flowing":
            completer = LoadCompleter(app.pool, setup.jobs, args.load_items, args.load_rate, setup.next_seq)
            completer.start()
            stack.callback(completer.stop)
        before = (counters.snapshot() if counters else {}, completer.completed if completer else 0)
        with metered(app, extra) as streams:
            time.sleep(args.observe_s)  # pacing: the window in which the streams alone are measured
        after = (counters.snapshot() if counters else {}, completer.completed if completer else 0)
        with metered(app, extra) as gets:
            latencies = time_gets(app, setup.get_token, setup.get_job, args.gets)
    readers = {f"{key}_per_s": round((after[0][key] - before[0][key]) / streams["seconds"], 1) for key in after[0]}
    readers["items_completed_per_s"] = round((after[1] - before[1]) / streams["seconds"], 1)
    p50, p90, p99 = (ms(percentile(latencies, fraction)) for fraction in (0.5, 0.9, 0.99))
    return LoadRun(state, p50, p90, p99, ms(max(latencies)), ms(statistics.mean(latencies)), streams, gets, readers)


def measure_load(app: App, setup: LoadSetup) -> list[LoadRun]:
    """idle, quiet, flowing, alternating for `--rounds` rounds."""
    runs: list[LoadRun] = []
    for number in range(setup.args.rounds):
        for state in ("idle", "quiet", "flowing"):
            runs.append(run := run_state(app, setup, state))
            print(f"load round {number + 1} {state}: GET p50 {run.p50_ms} ms p90 {run.p90_ms} ms p99 {run.p99_ms} ms "
                  f"max {run.max_ms} ms mean {run.mean_ms} ms; streams alone "
                  f"{run.streams}; during GETs {run.gets}; readers {run.readers}", file=sys.stderr, flush=True)
    return runs


def summarize_load(runs: list[LoadRun]) -> dict[str, Any]:
    """Medians per state, and the ratios of the loaded p99s to the idle one."""
    states: dict[str, Any] = {}
    for state in ("idle", "quiet", "flowing"):
        own = [run for run in runs if run.state == state]
        states[state] = {
            **{f"get_{name}_ms": statistics.median(getattr(run, f"{name}_ms") for run in own)
               for name in ("p50", "p90", "p99", "max", "mean")},
            "devhost_cpu_pct_streams_alone": statistics.median(run.streams["cpu_pct"]["devhost"] for run in own),
            "devhost_cpu_pct_during_gets": statistics.median(run.gets["cpu_pct"]["devhost"] for run in own),
            "devhost_threads_max": max(max(run.streams["devhost_threads_max"], run.gets["devhost_threads_max"])
                                       for run in own),
            "cpu_pct_streams_alone": {name: statistics.median(run.streams["cpu_pct"][name] for run in own)
                                      for name in own[0].streams["cpu_pct"]},
            "readers": {key: statistics.median(run.readers[key] for run in own) for key in own[0].readers},
        }
    idle = states["idle"]["get_p99_ms"]
    return {"states": states,
            "p99_vs_idle": {state: round(states[state]["get_p99_ms"] / idle, 2) for state in ("quiet", "flowing")},
            "every_run": [asdict(run) for run in runs]}


def main() -> None:
    """Start PostgreSQL, Azurite and devhost; measure latency, then load; print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100, help="changes per pattern per round (latency)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement, alternating")
    parser.add_argument("--streams", type=int, default=200, help="open streams (load)")
    parser.add_argument("--streams-per-user", type=int, default=10, help="TRAWL_STREAMS_PER_CALLER's default")
    parser.add_argument("--gets", type=int, default=1000, help="timed GET /api/jobs/{id} per run (load)")
    parser.add_argument("--observe-s", type=float, default=5.0, help="seconds the streams' own cost is read (load)")
    parser.add_argument("--stagger-s", type=float, default=15.0,
                        help="the readers' first requests spread over this many seconds (load; 0: all at once)")
    parser.add_argument("--load-rate", type=float, default=20.0, help="items completed per second (flowing)")
    parser.add_argument("--load-items", type=int, default=1000, help="items per job the readers follow")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an app setting for devhost, e.g. TRAWL_DATABASE_POOL_SIZE=10 (repeatable)")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep devhost's log here (default: discarded)")
    args = parser.parse_args()
    summary: dict[str, Any] = {key: value for key, value in vars(args).items() if key != "log_dir"}
    summary["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_before": [round(load, 2) for load in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        settings = dict(setting.split("=", 1) for setting in args.setting)
        app = start_app(stack, Path(tmp), max(args.events * args.rounds + 1, args.load_items), args.log_dir or Path(tmp),
                        settings)
        if not args.skip_latency:
            summary["latency"] = summarize_latency(measure_latency(app, args.events, args.rounds, args.seed))
        if not args.skip_load:
            summary["load"] = summarize_load(measure_load(app, prepare_load(app, args)))
    summary["machine"]["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
