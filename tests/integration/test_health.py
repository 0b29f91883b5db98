"""`GET /api/health` answers within seconds whatever is down: each probe has short timeouts and no
retries (the SDK's defaults took 85 s with Azurite down)."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import azure.functions as func
import pytest

from api import health
from devhost.devauth import DEFAULT_AUDIENCE, DEFAULT_TENANT
from shared.settings import get_settings

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers: the slowest way for a dependency to be down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(100)
        yield int(sock.getsockname()[1])


@pytest.fixture
def app_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name, value in {"TRAWL_ENVIRONMENT": "local", "TRAWL_AUTH_MODE": "dev",
                        "TRAWL_AUTH_JWKS_URL": "http://127.0.0.1:7071/.devhost/jwks",
                        "TRAWL_AUTH_TENANT_IDS": DEFAULT_TENANT, "TRAWL_AUTH_AUDIENCES": DEFAULT_AUDIENCE}.items():
        monkeypatch.setenv(name, value)
    yield monkeypatch
    get_settings.cache_clear()
    health._probe_queue.cache_clear()


def check(monkeypatch: pytest.MonkeyPatch, db_url: str, storage: str) -> tuple[func.HttpResponse, float]:
    monkeypatch.setenv("TRAWL_DATABASE_URL", db_url)
    monkeypatch.setenv("TrawlStorage", storage)
    get_settings.cache_clear()
    health._probe_queue.cache_clear()
    started = time.monotonic()
    response = health.health(func.HttpRequest(method="GET", url="http://127.0.0.1/api/health", body=b""))
    return response, time.monotonic() - started


def storage_at(port: int) -> str:
    return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")


def test_healthy_dependencies_answer_200(app_settings: pytest.MonkeyPatch, db_url: str, azurite: str) -> None:
    response, _ = check(app_settings, db_url, azurite)

    body = json.loads(response.get_body())
    assert response.status_code == 200, body
    assert {name: c["status"] for name, c in body["checks"].items()} == {"database": "ok", "storage": "ok"}


def test_everything_down_answers_503_within_five_seconds(app_settings: pytest.MonkeyPatch) -> None:
    for silent in black_hole():
        response, seconds = check(app_settings, f"postgresql://trawl@127.0.0.1:{silent}/trawl",
                                  storage_at(silent))

        body = json.loads(response.get_body())
        assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
        assert {name: c["status"] for name, c in body["checks"].items()} == {"database": "failing",
                                                                            "storage": "failing"}
        assert seconds < 5


def test_storage_refusing_connections_answers_at_once(app_settings: pytest.MonkeyPatch, db_url: str) -> None:
    response, seconds = check(app_settings, db_url, storage_at(closed_port()))

    body = json.loads(response.get_body())
    assert response.status_code == 503 and body["checks"]["storage"]["status"] == "failing"
    assert body["checks"]["database"]["status"] == "ok"
    assert seconds < 5
