"""The auth seam end to end in one process: settings -> validator -> `authorize` -> problem responses,
with devhost's dev issuer behind a real JWKS endpoint on 127.0.0.1."""
from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import pytest
from pydantic import ValidationError

from api.callers import ADMIN, READ, SUBMIT, authorize
from api.http import handles_errors, json_response
from devhost.devauth import DEFAULT_AUDIENCE, DEFAULT_TENANT, DevIssuer
from shared.adapters import auth
from shared.adapters.auth import DEV_ISSUER
from shared.settings import Settings, get_settings
from tests.unit.test_auth import JwksServer

LOCAL = {"TRAWL_ENVIRONMENT": "local", "TRAWL_DATABASE_URL": "postgresql://localhost/trawl",
         "TrawlStorage": "UseDevelopmentStorage=true"}
AZURE = {"TRAWL_ENVIRONMENT": "azure", "TRAWL_DATABASE_URL": "postgresql://db.example.net/trawl",
         "TrawlStorage__queueServiceUri": "https://acct.queue.core.windows.net",
         "TrawlStorage__tableServiceUri": "https://acct.table.core.windows.net",
         "TrawlStorage__blobServiceUri": "https://acct.blob.core.windows.net",
         "TRAWL_AUTH_TENANT_IDS": DEFAULT_TENANT, "TRAWL_AUTH_AUDIENCES": "api://trawl"}


def settings(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    for name in ("WEBSITE_INSTANCE_ID", "TrawlStorage", "TRAWL_AUTH_MODE", "TRAWL_AUTH_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_entra_is_the_default_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings(monkeypatch, AZURE).auth_mode == "entra"


DEV = {"TRAWL_AUTH_MODE": "dev", "TRAWL_AUTH_JWKS_URL": "http://127.0.0.1:7071/.devhost/jwks",
       "TRAWL_AUTH_TENANT_IDS": DEFAULT_TENANT, "TRAWL_AUTH_AUDIENCES": DEFAULT_AUDIENCE}


def test_dev_mode_works_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings(monkeypatch, {**LOCAL, **DEV}).auth_mode == "dev"


@pytest.mark.parametrize(("base", "values"), [
    (AZURE, {}),
    (LOCAL, {"WEBSITE_INSTANCE_ID": "a1b2c3"}),
])
def test_dev_mode_is_refused_on_azure(monkeypatch: pytest.MonkeyPatch, base: dict[str, str],
                                      values: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="TRAWL_AUTH_MODE=dev is refused on Azure"):
        settings(monkeypatch, {**base, **DEV, **values})


def test_dev_mode_takes_keys_only_from_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="on this machine"):
        settings(monkeypatch, {**LOCAL, **DEV, "TRAWL_AUTH_JWKS_URL": "https://keys.example.com/jwks"})


@pytest.mark.parametrize(("values", "message"), [
    ({"TRAWL_AUTH_JWKS_URL": "http://login.example.com/keys"}, "must be https"),
    ({"TRAWL_AUTH_TENANT_IDS": "common"}, "UUID"),
    ({"TRAWL_AUTH_AUDIENCES": ""}, "TRAWL_AUTH_AUDIENCES are required"),
    ({"TRAWL_AUTH_AUDIENCES": "api://<your-app-id>"}, "placeholder"),
    ({"TRAWL_AUTH_ISSUER_VERSIONS": "3"}, "TRAWL_AUTH_ISSUER_VERSIONS"),
    ({"TRAWL_RATE_TABLE": "no-dashes"}, "TRAWL_RATE_TABLE"),
    ({"TrawlStorage__tableServiceUri": ""}, "TrawlStorage__tableServiceUri is required"),
    ({"TrawlStorage__blobServiceUri": ""}, "TrawlStorage__blobServiceUri is required"),
    ({"TRAWL_CONTENT_CONTAINER": "Not_A_Container"}, "TRAWL_CONTENT_CONTAINER|content_container"),
])
def test_auth_and_rate_settings_are_validated(monkeypatch: pytest.MonkeyPatch, values: dict[str, str],
                                              message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(monkeypatch, {**AZURE, **values})


def test_dev_issuer_is_the_one_devhost_signs_with() -> None:
    from devhost import devauth

    assert devauth.ISSUER == DEV_ISSUER


@pytest.fixture(scope="module")
def dev_issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer(tmp_path_factory.mktemp("devhost"))


@pytest.fixture
def dev_mode(monkeypatch: pytest.MonkeyPatch, dev_issuer: DevIssuer) -> Iterator[JwksServer]:
    """The app's settings in dev mode, trusting `dev_issuer`'s keys served on 127.0.0.1."""
    server = JwksServer(dev_issuer.jwks())
    settings(monkeypatch, {**LOCAL, **DEV, "TRAWL_AUTH_JWKS_URL": server.url})
    get_settings.cache_clear()
    auth.get_token_validator.cache_clear()
    yield server
    server.stop()
    get_settings.cache_clear()
    auth.get_token_validator.cache_clear()


def request(token: str | None = None, scheme: str = "Bearer") -> func.HttpRequest:
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    return func.HttpRequest(method="GET", url="http://127.0.0.1/api/jobs", headers=headers, body=b"")


@handles_errors
def endpoint(req: func.HttpRequest, role: str = READ) -> func.HttpResponse:
    caller = authorize(req, role)
    return json_response({"actor": caller.actor, "scoped": caller.scope is not None})


def test_no_token_is_401_with_a_bare_bearer_challenge(dev_mode: JwksServer) -> None:
    for req in (request(), request("abc", scheme="Basic")):
        response = endpoint(req)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.mimetype == "application/problem+json"
        assert json.loads(response.get_body())["status"] == 401


def test_an_invalid_token_is_401_invalid_token(dev_mode: JwksServer, dev_issuer: DevIssuer) -> None:
    for token in ("nonsense", dev_issuer.mint("alice", [READ], audience="api://another-api"),
                  dev_issuer.mint("alice", [READ], minutes=-5)):
        response = endpoint(request(token))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_token_of_another_tenant_is_401(dev_mode: JwksServer, dev_issuer: DevIssuer) -> None:
    token = dev_issuer.mint("alice", [READ], tenant="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
    assert endpoint(request(token)).status_code == 401


def test_a_valid_token_without_the_role_is_403(dev_mode: JwksServer, dev_issuer: DevIssuer) -> None:
    response = endpoint(request(dev_issuer.mint("alice", [READ])), SUBMIT)
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    assert json.loads(response.get_body())["required_role"] == SUBMIT


def test_a_valid_token_with_the_role_is_the_caller(dev_mode: JwksServer, dev_issuer: DevIssuer) -> None:
    caller = authorize(request(dev_issuer.mint("alice", [SUBMIT, READ])), SUBMIT)
    assert caller.owner.tenant_id == DEFAULT_TENANT
    assert caller.actor == f"{DEFAULT_TENANT}/{caller.owner.object_id}"
    assert caller.scope == caller.owner
    assert authorize(request(dev_issuer.mint("alice", [READ])), READ).owner == caller.owner  # same user, same oid
    assert authorize(request(dev_issuer.mint("bob", [READ])), READ).owner != caller.owner


def test_admin_holds_every_role_and_is_not_scoped(dev_mode: JwksServer, dev_issuer: DevIssuer) -> None:
    token = dev_issuer.mint("root", [ADMIN])
    for role in (READ, SUBMIT, ADMIN):
        assert authorize(request(token), role).scope is None


def test_the_jwks_is_fetched_once_for_many_requests(dev_mode: JwksServer, dev_issuer: DevIssuer) -> None:
    for user in ("a", "b", "c"):
        authorize(request(dev_issuer.mint(user, [READ])), READ)
    assert dev_mode.hits == 1


def test_responses_carry_hsts_and_the_other_security_headers(dev_mode: JwksServer, dev_issuer: DevIssuer) -> None:
    for response in (endpoint(request()), endpoint(request(dev_issuer.mint("alice", [READ])))):
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
