"""The whole app (function_app.py at the repo root) on devhost, with real Azurite, PostgreSQL and a local site.

The app runs with TRAWL_AUTH_MODE=dev: tests call it with tokens of devhost's dev issuer (its key in
`.devhost/devauth/`). Its JWKS is served here, from the test process, so an app restarted on another
port (test_recovery) keeps trusting the same keys; tests/e2e/test_security.py checks devhost's own
`/.devhost/jwks` route and `python -m devhost token`.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from psycopg2.extras import RealDictCursor

from devhost import devauth
from shared.adapters.auth import READ, SUBMIT
from shared.domain.models import Owner
from tests.conftest import create_database
from tests.devhost.conftest import REPO, DevhostProcess, start_devhost
from tests.e2e.site import TestSite

FINAL = {"succeeded", "completed_with_errors", "failed", "cancelled", "timed_out"}
DEV_ISSUER = devauth.DevIssuer(REPO / ".devhost")
DEFAULT_USER = "alice"
DEFAULT_ROLES = (SUBMIT, READ)


@lru_cache(maxsize=1)
def dev_jwks_url() -> str:
    """The dev issuer's JWKS, served from this process for as long as it runs."""
    document = json.dumps(DEV_ISSUER.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/.devhost/jwks"


def dev_token(user: str = DEFAULT_USER, roles: Sequence[str] = DEFAULT_ROLES, **kwargs: Any) -> str:
    return DEV_ISSUER.mint(user, list(roles), **kwargs)


def dev_owner(user: str = DEFAULT_USER) -> Owner:
    return Owner(tenant_id=devauth.DEFAULT_TENANT, object_id=devauth.object_id(user))


def session_for(user: str = DEFAULT_USER, roles: Sequence[str] = DEFAULT_ROLES) -> requests.Session:
    """A requests session that sends this dev user's bearer token."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {dev_token(user, roles)}"
    return session


def app_env(db_url: str, site: TestSite, queue: str, **overrides: str) -> dict[str, str]:
    """Settings for one isolated app instance: its own database, queue and task hub, fast retries and ticks."""
    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "TrawlStorage": "UseDevelopmentStorage=true",
        "TRAWL_ENVIRONMENT": "local",
        "TRAWL_DATABASE_AUTH": "url",
        "TRAWL_DATABASE_URL": db_url,
        "TRAWL_TASK_HUB": f"hub{uuid.uuid4().hex[:8]}",
        "TRAWL_QUEUE_NAME": queue,
        "TRAWL_PROGRESS_TICK_SECONDS": "1",
        "TRAWL_ENQUEUE_BATCH_SIZE": "20",
        "TRAWL_RECONCILE_SCHEDULE": "*/2 * * * * *",
        "TRAWL_RETENTION_SCHEDULE": "0 17 * * * *",
        "TRAWL_RECONCILE_GRACE_SECONDS": "3",
        "TRAWL_FETCH_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TRAWL_FETCH_ALLOWED_PORTS": f"80,443,{site.port}",
        "TRAWL_FETCH_TOTAL_TIMEOUT": "10",
        "TRAWL_RETRY_BASE_DELAY_SECONDS": "1",
        "TRAWL_RETRY_MAX_DELAY_SECONDS": "2",  # five attempts in about 7 s rather than 15
        "TRAWL_AUTH_MODE": "dev",
        "TRAWL_AUTH_TENANT_IDS": devauth.DEFAULT_TENANT,
        "TRAWL_AUTH_AUDIENCES": devauth.DEFAULT_AUDIENCE,
        "TRAWL_AUTH_JWKS_URL": dev_jwks_url(),
        "TRAWL_RATE_TABLE": f"quotas{uuid.uuid4().hex[:12]}",
        "TRAWL_RATE_SUBMISSIONS_PER_MINUTE": "1000",
        "TRAWL_RATE_URLS_PER_DAY": "10000000",
        "TRAWL_RATE_RUNNING_JOBS": "100",
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.500",
        **overrides,
    }


@dataclass
class Trawl:
    """A running Trawl instance and its database, with the calls tests make as `user` (`http` sends its token)."""

    host: DevhostProcess
    db_url: str
    queue: str
    user: str = DEFAULT_USER
    http: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.http = session_for(self.user)

    @property
    def api(self) -> str:
        return f"{self.host.base_url}/api"

    @property
    def owner(self) -> Owner:
        """The owner of the jobs `user` submits (for rows written straight into the database)."""
        return dev_owner(self.user)

    def submit(self, urls: list[str], **options: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.api}/jobs", json={"urls": urls, "options": options}, timeout=30)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.api}/jobs/{job_id}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_final(self, job_id: str, seconds: float = 90) -> dict[str, Any]:
        return self.wait(job_id, lambda job: job["status"] in FINAL, seconds)

    def wait(self, job_id: str, ready: Callable[[dict[str, Any]], bool], seconds: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if ready(job):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} not ready after {seconds}s: {self.job(job_id)}\n{self.host.logs()[-4000:]}")

    def rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with closing(psycopg2.connect(self.db_url)) as conn, conn.cursor(cursor_factory=RealDictCursor) as cur:
            cur.execute(query, params or None)
            return [dict(row) for row in cur.fetchall()]


@pytest.fixture(scope="module")
def site() -> Iterator[TestSite]:
    server = TestSite().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_db_url(pg_server: Any, template_db: str) -> str:
    return str(pg_server.get_uri(database=create_database(pg_server, template=template_db)))


@pytest.fixture(scope="module")
def trawl(tmp_path_factory: pytest.TempPathFactory, azurite: str, module_db_url: str, site: TestSite) -> Iterator[Trawl]:
    log_dir: Path = tmp_path_factory.mktemp("trawl")
    queue = f"items-{uuid.uuid4().hex[:10]}"
    host = start_devhost(REPO, log_dir / "devhost.log", app_env(module_db_url, site, queue))
    yield Trawl(host, module_db_url, queue)
    host.stop()
