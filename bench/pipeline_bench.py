"""Pipeline throughput: a job through the whole app on devhost, against the same fetch+parse code in threads and
against Scrapy, on one local site, in one script.

Three contenders fetch and parse the same URLs from bench/local_site.py (its own process, so the site never shares
a GIL with what is measured; `--page-kib` sets the page size, `--page-delay-ms` how long each response is held):
- baseline: `shared.scraping.scrape.scrape` in a thread pool of 24 (devhost runs batchSize 16 + newBatchThreshold 8
  messages at once), in this process;
- pipeline: one job through the whole app on devhost (HTTP submit, orchestration, enqueue, queue-triggered
  workers, PostgreSQL), a fresh devhost per run on an Azurite and an embedded PostgreSQL of the benchmark's own
  (free ports, temporary data); the orchestration's history is polled and the longest it got is kept;
- scrapy: a Scrapy crawl with 24 concurrent requests and comparable parsing, in a fresh process per run
  (Twisted's reactor cannot restart).
Runs alternate (baseline, pipeline, scrapy) so all see the same machine load. The JSON summary gives medians
of pages/s, the ratios pipeline/baseline and pipeline/scrapy, and CPU ms per page per process: this process
(baseline), devhost, Azurite, PostgreSQL (their process trees), Scrapy, and the site.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/pipeline_bench.py --urls 1000 --runs 3 [--page-kib 40] [--page-delay-ms 200]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.local_site import LocalSite, page_html  # noqa: E402
from devhost.services import Azurite, port_open  # noqa: E402
from shared.adapters.db import UrlDatabase, connect, migrate  # noqa: E402
from shared.scraping.fetch import FetchLimits  # noqa: E402
from shared.scraping.scrape import scrape  # noqa: E402
from shared.settings import parse_networks  # noqa: E402
from tests.devhost.conftest import DevhostProcess, free_port, start_devhost  # noqa: E402
from tests.e2e.conftest import FINAL, app_env, session_for  # noqa: E402

CONCURRENCY = 24
JOB_TIMEOUT_S = 1800
HISTORY_POLL_S = 0.2
# Azurite's well-known development account (public, in Microsoft's documentation and the Storage SDKs).
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SCRAPY_SETTINGS = {
    "CONCURRENT_REQUESTS": CONCURRENCY,
    "CONCURRENT_REQUESTS_PER_DOMAIN": CONCURRENCY,
    "AUTOTHROTTLE_ENABLED": False,
    "ROBOTSTXT_OBEY": False,
    "DOWNLOAD_DELAY": 0,
    "TELNETCONSOLE_ENABLED": False,
    "LOG_LEVEL": "WARNING",
}


@dataclass
class Run:
    """One contender's pass over the URLs."""

    contender: str
    pages_per_s: float
    cpu_ms_per_page: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


def cpu_seconds(process: psutil.Process, descendants: bool) -> float:
    """User + system CPU of a process, and of its descendants, living or exited (reaped ones count in
    their parent's children_* times)."""
    processes = [process, *process.children(recursive=True)] if descendants else [process]
    total = 0.0
    for each in processes:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue  # exited since listed: its time is now in its parent's children_* times
        total += times.user + times.system
        if descendants:
            total += times.children_user + times.children_system
    return total


@contextmanager
def cpu_meter(pages: int, processes: dict[str, tuple[psutil.Process, bool]]) -> Iterator[dict[str, float]]:
    """Fills the yielded dict with CPU ms per page for each named (process, with descendants) on exit."""
    before = {name: cpu_seconds(*spec) for name, spec in processes.items()}
    per_page: dict[str, float] = {}
    yield per_page
    for name, spec in processes.items():
        per_page[name] = round((cpu_seconds(*spec) - before[name]) * 1000 / pages, 2)


def run_baseline(urls: list[str], site: LocalSite) -> Run:
    """The app's fetch+parse code, alone, at the pipeline's concurrency."""
    limits = FetchLimits(allowed_networks=parse_networks("127.0.0.0/8"), allowed_ports=frozenset({site.port}))
    meters = {"bench": (psutil.Process(), False), "site": (site.process, False)}
    with cpu_meter(len(urls), meters) as cpu, ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda url: scrape(url, limits), urls))
        elapsed = time.perf_counter() - started
    if any(result.status != 200 for result in results):
        raise RuntimeError("the baseline got pages that are not 200")
    return Run("baseline", len(urls) / elapsed, cpu)


@dataclass
class Services:
    """What the pipeline runs on besides devhost, with the processes whose CPU is counted."""

    db_url: str
    storage: str  # connection string
    azurite: psutil.Process
    postgres: psutil.Process
    log_dir: Path


@contextmanager
def private_azurite(data: Path) -> Iterator[tuple[str, psutil.Process]]:
    """Azurite of this benchmark's own, on free ports: its CPU is the pipeline's alone, and test runs that
    start and stop the shared one on 10000-10002 cannot pull it away mid-run. Yields its connection string."""
    binary = Azurite(REPO / ".devhost")._install()  # devhost's npm install of its pinned version, done once
    ports = {service: free_port() for service in ("blob", "queue", "table")}
    arguments = [f"--{option}" for option in ("silent", "skipApiVersionCheck", "loose", "disableTelemetry")]
    for service, port in ports.items():
        arguments += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    with (data / "azurite.log").open("wb") as log:
        popen = subprocess.Popen([str(binary), *arguments, "--location", str(data)],
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not all(port_open(port) for port in ports.values()):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Azurite did not start: {(data / 'azurite.log').read_text()[-2000:]}")
            time.sleep(0.2)
        endpoints = "".join(f"{service.capitalize()}Endpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
                            for service, port in ports.items())
        yield (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};{endpoints}",
               psutil.Process(popen.pid))
    finally:
        popen.terminate()
        popen.wait(timeout=30)


def run_pipeline(urls: list[str], site: LocalSite, services: Services) -> Run:
    """One job of all the URLs through the app on a fresh devhost, submit to final status."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = app_env(services.db_url, site, queue,  # type: ignore[arg-type]  # app_env reads only the site's .port
                  AzureWebJobsStorage=services.storage, TrawlStorage=services.storage,
                  TRAWL_MAX_URLS_PER_JOB=str(len(urls)), TRAWL_ENQUEUE_BATCH_SIZE="250")
    database_before = database_counters(services.db_url)
    host = start_devhost(REPO, services.log_dir / f"devhost-{uuid.uuid4().hex[:6]}.log", env)
    try:
        meters = {"devhost": (psutil.Process(host.process.pid), True), "azurite": (services.azurite, True),
                  "postgres": (services.postgres, True), "site": (site.process, False)}
        with cpu_meter(len(urls), meters) as cpu:
            started = time.perf_counter()
            job, history = _submit_and_wait(host, urls)
            elapsed = time.perf_counter() - started
    finally:
        host.stop()
    if job["status"] != "succeeded":
        raise RuntimeError(f"the job ended {job['status']}: {job['progress']}\n{host.logs()[-4000:]}")
    database = {name: value - database_before[name] for name, value in database_counters(services.db_url).items()}
    return Run("pipeline", len(urls) / elapsed, cpu, {"longest_history_events": history,
                                                      "postgres_sessions": database["sessions"],
                                                      "postgres_commits_per_page": round(
                                                          database["xact_commit"] / len(urls), 2)})


def database_counters(db_url: str) -> dict[str, int]:
    """PostgreSQL's own counters for the database: sessions opened and transactions committed. Read after the
    host stopped, when its backends have exited and flushed their statistics; the counts include this
    script's own status polls (about ten per second of the run) and this query's session."""
    with closing(psycopg2.connect(db_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = current_database()")
        sessions, commits = cur.fetchone()
    return {"sessions": int(sessions), "xact_commit": int(commits)}


def _submit_and_wait(host: DevhostProcess, urls: list[str]) -> tuple[dict[str, Any], int]:
    """Submit the job, wait for a final status; the job and the longest history seen meanwhile."""
    http = session_for()
    response = http.post(f"{host.base_url}/api/jobs", json={"urls": urls}, timeout=60)
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    job_id = response.json()["id"]
    done = threading.Event()
    longest = [0]
    poller = threading.Thread(target=_poll_history, args=(host.base_url, job_id, done, longest), daemon=True)
    poller.start()
    deadline = time.monotonic() + JOB_TIMEOUT_S
    try:
        while (job := http.get(f"{host.base_url}/api/jobs/{job_id}", timeout=30).json())["status"] not in FINAL:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} not final after {JOB_TIMEOUT_S} s: {job['progress']}")
            time.sleep(0.1)
    finally:
        done.set()
        poller.join(timeout=30)
    return job, longest[0]


def _poll_history(base_url: str, job_id: str, done: threading.Event, longest: list[int]) -> None:
    """Keep in longest[0] the most events the job's orchestration history had at any poll."""
    url = f"{base_url}/runtime/webhooks/durabletask/instances/{job_id}?showHistory=true"
    with requests.Session() as http:
        while not done.is_set():
            response = http.get(url, timeout=30)
            if response.ok:  # 202 while the orchestration runs, 200 once it has completed; 404 before it starts
                longest[0] = max(longest[0], len(response.json().get("historyEvents") or []))
            done.wait(HISTORY_POLL_S)


def run_scrapy(urls: list[str], site: LocalSite) -> Run:
    """The peer: a Scrapy crawl of the same URLs, in a fresh process."""
    with (cpu_meter(len(urls), {"site": (site.process, False)}) as cpu,
          ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool):
        elapsed, cpu_s, pages = pool.submit(crawl_with_scrapy, urls).result()
    if pages != len(urls):
        raise RuntimeError(f"Scrapy extracted {pages} of {len(urls)} pages")
    return Run("scrapy", pages / elapsed, {"scrapy": round(cpu_s * 1000 / pages, 2), **cpu})


def crawl_with_scrapy(urls: list[str]) -> tuple[float, float, int]:
    """In a fresh process: crawl the URLs, items to nowhere. Seconds and CPU seconds from the spider's opening
    to its closing, and the number of pages extracted."""
    from scrapy import Spider, signals
    from scrapy.crawler import CrawlerProcess

    class PageSpider(Spider):
        name = "bench"
        start_urls = urls

        def parse(self, response: Any) -> Iterator[dict[str, Any]]:
            yield scrapy_page_data(response)

    marks: dict[str, tuple[float, float]] = {}

    def opened() -> None:
        marks["opened"] = (time.perf_counter(), time.process_time())

    def closed() -> None:
        marks["closed"] = (time.perf_counter(), time.process_time())

    process = CrawlerProcess(settings=SCRAPY_SETTINGS)
    crawler = process.create_crawler(PageSpider)
    crawler.signals.connect(opened, signal=signals.spider_opened)
    crawler.signals.connect(closed, signal=signals.spider_closed)
    process.crawl(crawler)
    process.start()
    (wall_0, cpu_0), (wall_1, cpu_1) = marks["opened"], marks["closed"]
    return wall_1 - wall_0, cpu_1 - cpu_0, int(crawler.stats.get_value("item_scraped_count", 0))


HIDDEN = "ancestor::script or ancestor::style or ancestor::noscript or ancestor::template"


def scrapy_page_data(response: Any) -> dict[str, Any]:
    """With Scrapy's selectors, what shared.scraping.extract keeps: title, metadata, headings, links, text digest."""
    def meta(key: str) -> str | None:
        value: str | None = response.xpath(f"//meta[@name='{key}' or @property='{key}']/@content").get()
        return value

    text = " ".join(" ".join(response.xpath(f"//body//text()[not({HIDDEN})]").getall()).split())
    links: dict[str, bool] = {}
    for anchor in response.xpath("//a[@href]"):
        href = anchor.attrib["href"]
        if not href.strip().startswith("#"):
            url = response.urljoin(href)
            links[url] = links.get(url, True) and "nofollow" in anchor.attrib.get("rel", "").lower().split()
    return {
        "url": response.url,
        "title": " ".join((response.xpath("//title/text()").get() or "").split()) or None,
        "description": meta("description"),
        "canonical": response.urljoin(response.xpath("//link[@rel='canonical']/@href").get() or ""),
        "lang": response.xpath("/html/@lang").get(),
        "open_graph": {**{key: meta(f"og:{key}") for key in ("title", "description", "site_name")},
                       "image": response.urljoin(meta("og:image") or "")},
        "published_time": meta("article:published_time"),
        "headings": {level: [" ".join(h.split()) for h in response.xpath(f"//{level}").xpath("string()").getall()]
                     for level in ("h1", "h2", "h3")},
        "links": [{"url": url, "nofollow": nofollow} for url, nofollow in links.items()],
        "word_count": len(text.split()),
        "excerpt": text[:300],
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def summarize(args: argparse.Namespace, runs: list[Run], page_bytes: float) -> dict[str, Any]:
    """Medians per contender, the ratios, and every run."""
    by_contender = {name: [run for run in runs if run.contender == name] for name in ("baseline", "pipeline", "scrapy")}
    rates = {name: round(statistics.median(run.pages_per_s for run in own), 2) for name, own in by_contender.items()}
    cpu = {name: {process: round(statistics.median(run.cpu_ms_per_page[process] for run in own), 2)
                  for process in own[0].cpu_ms_per_page}
           for name, own in by_contender.items()}
    return {
        "urls": args.urls, "runs": args.runs, "concurrency": CONCURRENCY, "page_kib": args.page_kib,
        "mean_page_bytes": round(page_bytes), "page_delay_ms": args.page_delay_ms,
        "pages_per_s": rates,
        "ratios": {"pipeline/baseline": round(rates["pipeline"] / rates["baseline"], 3),
                   "pipeline/scrapy": round(rates["pipeline"] / rates["scrapy"], 3)},
        "cpu_ms_per_page": cpu,
        "longest_history_events": max(run.details["longest_history_events"] for run in runs if run.details),
        "every_run": [{"contender": run.contender, "pages_per_s": round(run.pages_per_s, 2),
                       "cpu_ms_per_page": run.cpu_ms_per_page, **run.details} for run in runs],
    }


def main() -> None:
    """Start PostgreSQL, Azurite and the site, alternate the contenders, print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender, alternating")
    parser.add_argument("--page-kib", type=int, default=0, help="page size; 0: the smallest page, about 4 KiB")
    parser.add_argument("--page-delay-ms", type=int, default=0, help="how long the site holds each response")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep devhost's logs here (default: discarded)")
    args = parser.parse_args()
    import pgserver  # dev-only dependency, as in devhost.services

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        stack.callback(server.cleanup)
        with closing(connect(UrlDatabase(server.get_uri()))) as conn:
            migrate(conn)
        (Path(tmp) / "azurite").mkdir()
        storage, azurite = stack.enter_context(private_azurite(Path(tmp) / "azurite"))
        site = LocalSite(args.page_kib, args.page_delay_ms, args.urls).start()
        stack.callback(site.stop)
        services = Services(server.get_uri(), storage, azurite, psutil.Process(server.get_pid()),
                            args.log_dir or Path(tmp))
        urls = [site.url(f"/page/{n}") for n in range(args.urls)]
        runs: list[Run] = []
        for number in range(1, args.runs + 1):
            for contender in (run_baseline, partial(run_pipeline, services=services), run_scrapy):
                runs.append(contender(urls, site))
                print(f"run {number}: {runs[-1].contender} {runs[-1].pages_per_s:.1f} pages/s "
                      f"{runs[-1].cpu_ms_per_page} {runs[-1].details}", file=sys.stderr, flush=True)
    page_bytes = statistics.mean(len(page_html(n, args.page_kib).encode()) for n in range(min(args.urls, 100)))
    print(json.dumps(summarize(args, runs, page_bytes), indent=2))


if __name__ == "__main__":
    main()
