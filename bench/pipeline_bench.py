"""Pipeline throughput: a 1,000-URL job through the whole app on devhost, against a baseline of the same
fetch+parse code (`shared.scrape.scrape`) in a thread pool of the same concurrency, in one script.

The ratio (pipeline pages/s over baseline pages/s) is the cost of durability: PostgreSQL writes,
queue round trips, orchestration. Also records the longest Durable history the job reached.

    .venv/bin/python bench/pipeline_bench.py [--urls 1000]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import psycopg2
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devhost.services import Azurite  # noqa: E402
from shared.db import connect, migrate, UrlDatabase  # noqa: E402
from shared.fetch import FetchLimits  # noqa: E402
from shared.scrape import scrape  # noqa: E402
from shared.settings import parse_networks  # noqa: E402
from tests.devhost.conftest import start_devhost  # noqa: E402
from tests.e2e.conftest import app_env, session_for  # noqa: E402
from tests.e2e.site import TestSite  # noqa: E402

# devhost runs up to batchSize + newBatchThreshold messages at once per queue (host.json: 16 + 8).
CONCURRENCY = 24


def baseline(urls: list[str], site: TestSite) -> float:
    limits = FetchLimits(allowed_networks=parse_networks("127.0.0.0/8"), allowed_ports=frozenset({site.port}))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        results = list(pool.map(lambda url: scrape(url, limits), urls))
    assert all(r.status == 200 for r in results)
    return len(urls) / (time.perf_counter() - started)


def pipeline(urls: list[str], site: TestSite, db_url: str, log_dir: Path) -> tuple[float, int]:
    env = app_env(db_url, site, f"bench-{uuid.uuid4().hex[:8]}", TRAWL_MAX_URLS_PER_JOB=str(len(urls)))
    host = start_devhost(REPO, log_dir / "devhost.log", env)
    http = session_for()
    try:
        started = time.perf_counter()
        response = http.post(f"{host.base_url}/api/jobs", json={"urls": urls}, timeout=60)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        longest = _longest_history(host.base_url, job_id)
        while http.get(f"{host.base_url}/api/jobs/{job_id}", timeout=30).json()["status"] != "succeeded":
            time.sleep(0.1)
        return len(urls) / (time.perf_counter() - started), longest
    finally:
        host.stop()


def _longest_history(base_url: str, job_id: str) -> int:
    url = f"{base_url}/runtime/webhooks/durabletask/instances/{job_id}?showHistory=true"
    seen = [0]

    def poll() -> None:
        while True:
            body = requests.get(url, timeout=30).json()
            seen[0] = max(seen[0], len(body.get("historyEvents") or []))
            if body.get("runtimeStatus") == "Completed":
                return
            time.sleep(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    thread.join(timeout=600)
    return seen[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", type=int, default=1000)
    args = parser.parse_args()
    import pgserver

    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        with closing(connect(UrlDatabase(server.get_uri()))) as conn:
            migrate(conn)
        azurite = Azurite(REPO / ".devhost")
        azurite.start()
        site = TestSite().start()
        try:
            urls = [site.url(f"/page/{n}") for n in range(args.urls)]
            base = baseline(urls, site)
            piped, history = pipeline(urls, site, server.get_uri(), Path(tmp))
        finally:
            site.stop()
            azurite.stop()
            server.cleanup()
    print(json.dumps({"urls": args.urls, "concurrency": CONCURRENCY, "baseline_pages_per_s": round(base, 1),
                      "pipeline_pages_per_s": round(piped, 1), "ratio": round(piped / base, 3),
                      "longest_history_events": history}))


if __name__ == "__main__":
    main()
