"""HTTP trigger fidelity: routing, constraints, methods, request and response conversion."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.devhost.conftest import APPS, REPO, start_devhost

pytestmark = pytest.mark.devhost

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@pytest.fixture(scope="module")
def http_host(tmp_path_factory: pytest.TempPathFactory):
    app_dir = tmp_path_factory.mktemp("http_app")
    shutil.copytree(APPS / "http_app", app_dir, dirs_exist_ok=True)
    (app_dir / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {"FROM_FILE": "file", "OVERRIDDEN": "file"}}))
    host = start_devhost(app_dir, app_dir / "devhost.log", env={"OVERRIDDEN": "environment"})
    yield host
    assert host.stop() == 0


def test_route_prefix_and_guid_constraint(http_host) -> None:
    response = requests.get(f"{http_host.base_url}/svc/items/{GUID}")
    assert response.status_code == 200
    assert response.json() == {"id": GUID}
    assert response.headers["Content-Type"] == "application/json"


def test_constraints_pick_the_matching_route_and_literals_win(http_host) -> None:
    assert requests.get(f"{http_host.base_url}/svc/items/42").json() == {"number": "42"}
    assert requests.get(f"{http_host.base_url}/svc/items/special").text == "special"
    assert requests.get(f"{http_host.base_url}/svc/items/not-a-guid").status_code == 404


def test_catch_all_route(http_host) -> None:
    assert requests.get(f"{http_host.base_url}/svc/files/a/b/c.txt").text == "a/b/c.txt"


def test_unknown_route_is_404_and_wrong_method_is_405(http_host) -> None:
    assert requests.get(f"{http_host.base_url}/svc/nothing-here").status_code == 404
    assert requests.get(f"{http_host.base_url}/api/items/{GUID}").status_code == 404
    assert requests.delete(f"{http_host.base_url}/svc/items/{GUID}").status_code == 405
    assert requests.get(f"{http_host.base_url}/svc/echo").status_code == 405


def test_async_function_sees_method_url_query_headers_and_body(http_host) -> None:
    response = requests.put(f"{http_host.base_url}/svc/echo?a=1&a=2&b=x", json={"k": [1, 2]},
                            headers={"X-Trawl-Test": "hello"})
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    body = response.json()
    assert body["method"] == "PUT"
    assert body["url"].endswith("/svc/echo?a=1&a=2&b=x")
    assert body["params"] == {"a": "1,2", "b": "x"}  # the host joins repeated parameters with commas
    assert body["header"] == "hello"
    assert body["json"] == {"k": [1, 2]}


def test_sync_function_returning_str_is_200_text(http_host) -> None:
    response = requests.post(f"{http_host.base_url}/svc/text")
    assert (response.status_code, response.text) == (200, "plain text")
    assert response.headers["Content-Type"].startswith("text/plain")


def test_exception_is_500_and_logged_as_failed(http_host) -> None:
    assert requests.get(f"{http_host.base_url}/svc/boom").status_code == 500
    logs = http_host.logs()
    assert "Executing 'Functions.boom' (Reason='This function was programmatically called via the host APIs.'" in logs
    assert "Executed 'Functions.boom' (Failed, Id=" in logs
    assert "RuntimeError: kaboom" in logs


def test_local_settings_values_apply_and_environment_wins(http_host) -> None:
    assert requests.get(f"{http_host.base_url}/svc/settings/FROM_FILE").text == "file"
    assert requests.get(f"{http_host.base_url}/svc/settings/OVERRIDDEN").text == "environment"


def test_unsupported_binding_fails_at_start_naming_function_and_binding(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--script-root", str(APPS / "unsupported_app"), "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "function 'on_upload': binding 'blob' of type 'blobTrigger' is not supported" in result.stdout


def test_sigterm_stops_the_host_within_seconds(tmp_path: Path) -> None:
    host = start_devhost(APPS / "http_app", tmp_path / "log")
    started = time.monotonic()
    assert host.stop() == 0
    assert time.monotonic() - started < 10
    assert "devhost is stopping" in host.logs()


def test_function_timeout_from_host_json_settings_fails_the_invocation(tmp_path: Path) -> None:
    host = start_devhost(APPS / "http_app", tmp_path / "log", env={"AzureFunctionsJobHost__functionTimeout": "00:00:01"})
    try:
        assert requests.get(f"{host.base_url}/svc/slow?seconds=0", timeout=10).text == "finally"
        assert requests.get(f"{host.base_url}/svc/slow?seconds=3", timeout=10).status_code == 500
    finally:
        host.stop()
    assert "Timeout value of 00:00:01 exceeded by function 'Functions.slow'" in host.logs()
    assert "Executed 'Functions.slow' (Failed, Id=" in host.logs()
