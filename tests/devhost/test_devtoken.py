"""devhost's `POST /.devhost/token` (the dashboard's dev sign-in): tokens signed with the key `/.devhost/jwks`
publishes, for the user and roles asked, and only for a same-origin JSON request to a loopback host name."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from devhost import devauth
from tests.devhost.conftest import APPS, DevhostProcess, start_devhost

pytestmark = pytest.mark.devhost

OTHER_TENANT = "7d1c2b3a-0000-4000-8000-0000000000aa"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    app_dir = tmp_path_factory.mktemp("http_app")
    shutil.copytree(APPS / "http_app", app_dir, dirs_exist_ok=True)
    started = start_devhost(app_dir, app_dir / "devhost.log")
    yield started
    assert started.stop() == 0


def ask(host: DevhostProcess, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{host.base_url}{devauth.TOKEN_PATH}", data=json.dumps(body), timeout=10,
                         headers={"Content-Type": "application/json", **(headers or {})})


def verified(host: DevhostProcess, token: str, audience: str = devauth.DEFAULT_AUDIENCE) -> dict[str, Any]:
    keys = jwt.PyJWKClient(f"{host.base_url}{devauth.JWKS_PATH}")
    claims: dict[str, Any] = jwt.decode(token, keys.get_signing_key_from_jwt(token).key, algorithms=["RS256"],
                                        audience=audience)
    return claims


def test_a_token_for_the_user_and_roles_asked_signed_with_the_published_key(host: DevhostProcess) -> None:
    response = ask(host, {"user": "dana", "roles": ["Jobs.Read", "Jobs.Submit"]},
                   {"Origin": host.base_url})

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    claims = verified(host, body["access_token"])
    assert claims["roles"] == ["Jobs.Read", "Jobs.Submit"]
    assert claims["oid"] == devauth.object_id("dana")
    assert claims["iss"] == devauth.ISSUER.format(tenant=devauth.DEFAULT_TENANT)
    assert claims["exp"] - claims["iat"] == 3600


def test_the_tenant_and_audience_the_app_expects_can_be_asked_for(host: DevhostProcess) -> None:
    response = ask(host, {"user": "erin", "roles": [], "tenant": OTHER_TENANT, "audience": "api://elsewhere"})

    claims = verified(host, response.json()["access_token"], audience="api://elsewhere")
    assert claims["tid"] == OTHER_TENANT
    assert claims["roles"] == []


@pytest.mark.parametrize(("body", "complaint"), [
    ({"user": "frank", "roles": ["Jobs.Everything"]}, "roles is a list of Trawl's roles"),
    ({"user": "", "roles": []}, "user is 1 to 64"),
    ({"user": "a b", "roles": []}, "user is 1 to 64"),
    ({"user": "gina", "roles": "Jobs.Read"}, "roles is a list"),
    ({"user": "hal", "tenant": "common"}, "tenant is a tenant id"),
    ({"user": "ivy", "minutes": 99999}, "a JSON object with user, roles"),
    (["ivy"], "a JSON object with user, roles"),
])
def test_a_malformed_request_is_refused_with_a_problem(host: DevhostProcess, body: Any, complaint: str) -> None:
    response = ask(host, body)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert complaint in response.json()["detail"]


@pytest.mark.parametrize("headers", [
    {"Origin": "https://attacker.example"},
    {"Host": "rebound.attacker.example"},
    {"Content-Type": "text/plain"},
])
def test_requests_another_site_could_make_are_refused(host: DevhostProcess, headers: dict[str, str]) -> None:
    response = ask(host, {"user": "mallory", "roles": ["Jobs.Admin"]}, headers)
    assert response.status_code == 403
    assert "access_token" not in response.text


def test_only_post_is_answered(host: DevhostProcess) -> None:
    response = requests.get(f"{host.base_url}{devauth.TOKEN_PATH}", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
