"""Secrets in scraped URLs reach neither the host's log nor the exported spans, whatever happens to the URL.

The app scrapes URLs carrying a secret in every position (user-info, `api_key=`, `X-Amz-Signature=`,
`client_secret=`, a token in the path, a fragment) that succeed, fail, are retried, redirect (to a page, to
a blocked address, to a URL with user-info), time out and cannot connect; then the devhost log file and
every OTLP export (span names, attributes, exception events, statuses) are searched for each secret.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.devhost.conftest import REPO, free_port, start_devhost, wait_until
from tests.e2e.conftest import Trawl, app_env
from tests.e2e.otlp import OtlpReceiver
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e

# Each secret is unique to its position, so a hit says which path leaked it.
SECRETS = {name: f"{name}-{uuid.uuid4().hex[:10]}" for name in (
    "password", "apikey", "amzsig", "clientsecret", "pathtoken", "fragment", "redirectquery", "blockedpath",
    "redirectpassword", "timeoutpath", "refusedquery", "refusedpath", "skippedpassword", "skippedblocked")}
S = SECRETS


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


@pytest.fixture
def closed_port() -> int:
    """An allowed port nothing listens on: fetches there are refused."""
    return free_port()


@pytest.fixture
def app(tmp_path: Path, azurite: str, db_url: str, site: TestSite, receiver: OtlpReceiver,
        closed_port: int) -> Iterator[Trawl]:
    env = app_env(db_url, site, f"items-{uuid.uuid4().hex[:10]}",
                  TRAWL_TELEMETRY_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                  TRAWL_TELEMETRY_EXPORT_INTERVAL_SECONDS="1", TRAWL_FETCH_TOTAL_TIMEOUT="2",
                  TRAWL_FETCH_ALLOWED_PORTS=f"80,443,{site.port},{closed_port}", TRAWL_FETCH_MAX_ATTEMPTS="2")
    trawl = Trawl(start_devhost(REPO, tmp_path / "devhost.log", env), db_url, env["TRAWL_QUEUE_NAME"])
    yield trawl
    trawl.host.stop()


def urls(site: TestSite, closed_port: int) -> list[str]:
    def redirect(location: str) -> str:
        return site.url(f"/redirect/r?to={quote(location, safe='')}")

    return [
        site.url(f"/page/1?api_key={S['apikey']}"),                                          # succeeds
        site.url(f"/missing/{S['pathtoken']}?X-Amz-Signature={S['amzsig']}"),                # 404
        site.url(f"/always500/x?client_secret={S['clientsecret']}"),                          # retried, then fails
        site.url(f"/page/2#access_token={S['fragment']}"),                                   # fragment
        redirect(f"/page/3?session_token={S['redirectquery']}"),                             # redirect, succeeds
        redirect(f"http://169.254.169.254/latest/{S['blockedpath']}?sig={S['blockedpath']}"),  # redirect, blocked
        redirect(f"http://user:{S['redirectpassword']}@127.0.0.1:{site.port}/page/4"),        # redirect to user-info
        site.url(f"/hang/{S['timeoutpath']}?api_key={S['timeoutpath']}"),                    # times out
        f"http://127.0.0.1:{closed_port}/reset/{S['refusedpath']}?token={S['refusedquery']}",  # connection refused
    ]


def test_no_secret_of_a_scraped_url_reaches_the_log_or_the_spans(app: Trawl, site: TestSite, receiver: OtlpReceiver,
                                                                 closed_port: int) -> None:
    with_password = site.url("/page/5").replace("://", f"://user:{S['password']}@")
    refused = app.http.post(f"{app.api}/jobs", json={"urls": [with_password]}, timeout=30)
    assert refused.status_code == 422 and refused.json()["errors"][0]["type"] == "url_user_info", refused.text

    skipped = [with_password.replace(S["password"], S["skippedpassword"]),
               f"http://169.254.169.254/{S['skippedblocked']}"]
    accepted = app.http.post(f"{app.api}/jobs", json={"urls": skipped + urls(site, closed_port),
                                                      "skip_invalid_urls": True}, timeout=30)
    assert accepted.status_code == 202, accepted.text
    assert [r["url"] for r in accepted.json()["refused_urls"]] == [site.url(""), "http://169.254.169.254"]
    job = app.wait_final(accepted.json()["id"], seconds=120)
    items = app.rows("SELECT seq, status, attempts, last_error_code FROM job_items WHERE job_id = %s ORDER BY seq",
                     job["id"])
    attempts = sum(item["attempts"] for item in items)
    wait_until(lambda: sum(s.name == "fetch" for s in list(receiver.spans)) >= attempts, timeout=30)
    app.host.stop()

    assert {item["last_error_code"] for item in items if item["status"] == "failed"} == {
        "http_error", "blocked_address", "timeout", "connection_error"}, items  # every path was taken
    spans = b"".join(receiver.raw_traces)
    assert b"exception.stacktrace" in spans  # exceptions were recorded, so they were searched too
    log = app.host.logs()
    leaks = {name: where for name, secret in SECRETS.items()
             for where in (["log"] if secret in log else []) + (["spans"] if secret.encode() in spans else [])}
    assert leaks == {}, f"secrets leaked: {leaks}"
    assert not [line for line in log.splitlines() if "\u2028" in line or "\x85" in line]
