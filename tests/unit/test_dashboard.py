"""The dashboard's HTTP function (api/dashboard.py): hashed file names, caching, the CSP, what it refuses to
serve, and the sign-in configuration it derives from the settings."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest

from api import dashboard
from api.dashboard import APP_ROLES
from devhost.devauth import DEFAULT_AUDIENCE, DEFAULT_TENANT
from shared.contract.dashboard import MANIFEST, ROOT, build_bundle, content_security_policy, media_type, sign_in_config
from shared.settings import Settings, get_settings

LOCAL = {"TRAWL_ENVIRONMENT": "local", "TRAWL_DATABASE_URL": "postgresql://localhost/trawl",
         "TrawlStorage": "UseDevelopmentStorage=true", "TRAWL_AUTH_TENANT_IDS": DEFAULT_TENANT,
         "TRAWL_AUTH_AUDIENCES": DEFAULT_AUDIENCE}
DEV = {**LOCAL, "TRAWL_AUTH_MODE": "dev", "TRAWL_AUTH_JWKS_URL": "http://127.0.0.1:7071/.devhost/jwks"}
ENTRA = {**LOCAL, "TRAWL_AUTH_MODE": "entra", "TRAWL_AUTH_AUDIENCES": "api://trawl"}
HASHED = re.compile(r"\./((?:vendor/)?[a-z.-]+\.[0-9a-f]{12}\.(?:js|css|svg))")


def settings(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    for name in ("WEBSITE_INSTANCE_ID", "TRAWL_AUTH_JWKS_URL", "TRAWL_DASHBOARD_CLIENT_ID", "TRAWL_DASHBOARD_AUTHORITY",
                 "TRAWL_DASHBOARD_SCOPES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    clear_caches()
    return get_settings()


def clear_caches() -> None:
    get_settings.cache_clear()
    dashboard._current_sign_in.cache_clear()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """No settings built here outlive the test (the environment they came from does not)."""
    yield
    clear_caches()


@pytest.fixture
def dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    settings(monkeypatch, DEV)


def get(path: str) -> func.HttpResponse:
    route_path = path.removeprefix("/api/app").removeprefix("/")
    request = func.HttpRequest(method="GET", url=f"http://127.0.0.1:7071{path}", headers={}, body=b"",
                               route_params={"path": route_path} if route_path else {})
    response: func.HttpResponse = dashboard.dashboard(request)
    return response


def test_the_index_names_every_file_by_the_hash_of_its_content() -> None:
    bundle = build_bundle(ROOT, MANIFEST)
    named = set(HASHED.findall(bundle.index.decode()))

    assert {name.split(".")[0] for name in named} == {"favicon", "app"}  # app.js, app.css and the icon
    assert named <= set(bundle.assets)
    for name, asset in bundle.assets.items():
        stem, digest, _ = name.rsplit(".", 2)
        assert re.fullmatch(r"[0-9a-f]{12}", digest), name
        for reference in HASHED.findall(asset.body.decode()):
            assert reference in bundle.assets, f"{name} names {reference}, which is not served"
        unhashed = {f'"./{source}"' for source in MANIFEST}
        assert not [ref for ref in unhashed if ref.encode() in asset.body], f"{name} still names an unhashed file"


def test_an_edit_renames_the_file_and_every_file_that_refers_to_it(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<script type="module" src="./main.js"></script>')
    (tmp_path / "main.js").write_text('import { x } from "./lib.js";')
    (tmp_path / "lib.js").write_text("export const x = 1;")
    (tmp_path / "other.js").write_text("export const y = 2;")
    before = build_bundle(tmp_path, ("index.html", "main.js", "lib.js", "other.js"))
    (tmp_path / "lib.js").write_text("export const x = 2;")
    after = build_bundle(tmp_path, ("index.html", "main.js", "lib.js", "other.js"))

    assert set(before.assets) & set(after.assets) == {next(n for n in before.assets if n.startswith("other."))}
    assert before.index != after.index
    main = next(asset for name, asset in after.assets.items() if name.startswith("main."))
    lib = next(name for name in after.assets if name.startswith("lib."))
    assert main.body == f'import {{ x }} from "./{lib}";'.encode()


def test_files_that_refer_to_each_other_in_a_cycle_are_refused(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<script src="./a.js"></script>')
    (tmp_path / "a.js").write_text('import "./b.js";')
    (tmp_path / "b.js").write_text('import "./a.js";')
    with pytest.raises(ValueError, match="cycle"):
        build_bundle(tmp_path, ("index.html", "a.js", "b.js"))


@pytest.mark.usefixtures("dev_mode")
def test_the_index_is_revalidated_and_hashed_files_are_cached_for_a_year() -> None:
    index = get("/api/app/")
    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert index.headers["Cache-Control"] == "no-cache"
    for name in HASHED.findall(index.get_body().decode()):
        asset = get(f"/api/app/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert asset.headers["Content-Type"] == media_type(name)


@pytest.mark.usefixtures("dev_mode")
@pytest.mark.parametrize("path", ["/api/app/", "/api/app/config.json", "/api/app/nothing-here.js"])
def test_every_answer_carries_the_strict_csp_and_hardening_headers(path: str) -> None:
    headers = get(path).headers
    csp = {directive.split(" ", 1)[0]: directive.split(" ", 1)[1] for directive in
           headers["Content-Security-Policy"].split("; ")}
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    if path != "/api/app/nothing-here.js":  # the 404 is a problem document under the API's `default-src 'none'`
        assert {name: csp[name] for name in ("script-src", "style-src", "connect-src", "base-uri", "object-src")} == {
            "script-src": "'self'", "style-src": "'self'", "connect-src": "'self'", "base-uri": "'none'",
            "object-src": "'none'"}


@pytest.mark.usefixtures("dev_mode")
@pytest.mark.parametrize("path", [
    "/api/app/app.js",  # the unhashed name
    "/api/app/../function_app.py",
    "/api/app/..%2Ffunction_app.py",
    "/api/app/vendor/../app.css",
    "/api/app//etc/passwd",
    "/api/app/package.json",
    "/api/app/vendor/msal-browser.LICENSE",
    "/api/app/index.html",
])
def test_only_the_manifests_hashed_files_are_served(path: str) -> None:
    response = get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert json.loads(response.get_body())["type"].endswith("/not-found")


@pytest.mark.usefixtures("dev_mode")
def test_the_dashboard_without_its_trailing_slash_redirects_to_it() -> None:
    response = get("/api/app")
    assert response.status_code == 308
    assert response.headers["Location"] == "app/"


@pytest.mark.usefixtures("dev_mode")
def test_in_dev_mode_the_page_signs_in_with_devhosts_tokens() -> None:
    config = json.loads(get("/api/app/config.json").get_body())
    assert config == {"sign_in": "dev", "token_url": "/.devhost/token", "tenant": DEFAULT_TENANT,
                      "audience": DEFAULT_AUDIENCE, "roles": ["Jobs.Read", "Jobs.Submit", "Jobs.Admin"]}


def test_with_a_client_id_the_page_signs_in_with_entra_id(monkeypatch: pytest.MonkeyPatch) -> None:
    config = sign_in_config(settings(monkeypatch, {**ENTRA, "TRAWL_DASHBOARD_CLIENT_ID": "1111-client"}), APP_ROLES)

    assert config == {
        "sign_in": "entra", "client_id": "1111-client",
        "authority": f"https://login.microsoftonline.com/{DEFAULT_TENANT}",
        "scopes": ["api://trawl/Jobs.Read", "api://trawl/Jobs.Submit", "api://trawl/Jobs.Admin"],
        "roles": ["Jobs.Read", "Jobs.Submit", "Jobs.Admin"],
    }
    assert "connect-src 'self' https://login.microsoftonline.com;" in content_security_policy(config)


def test_the_entra_authority_and_scopes_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {**ENTRA, "TRAWL_AUTH_AUDIENCES": "0f0e0d0c-1111-4222-8333-444455556666", "TRAWL_DASHBOARD_CLIENT_ID": "c"}
    derived = sign_in_config(settings(monkeypatch, values), APP_ROLES)
    chosen = {**values, "TRAWL_DASHBOARD_AUTHORITY": "https://login.microsoftonline.us/contoso.onmicrosoft.com",
              "TRAWL_DASHBOARD_SCOPES": "api://custom/Jobs.Read, api://custom/Jobs.Submit"}
    config = sign_in_config(settings(monkeypatch, chosen), APP_ROLES)

    assert config["authority"] == "https://login.microsoftonline.us/contoso.onmicrosoft.com"
    assert config["scopes"] == ["api://custom/Jobs.Read", "api://custom/Jobs.Submit"]
    assert "connect-src 'self' https://login.microsoftonline.us;" in content_security_policy(config)
    assert derived["scopes"][0] == "api://0f0e0d0c-1111-4222-8333-444455556666/Jobs.Read"


def test_without_a_client_id_outside_dev_mode_signing_in_is_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    config = sign_in_config(settings(monkeypatch, ENTRA), APP_ROLES)
    assert config["sign_in"] == "none"
    assert "connect-src 'self';" in content_security_policy(config)


def test_the_dashboard_client_id_is_read_from_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    settings(monkeypatch, {**ENTRA, "TRAWL_DASHBOARD_CLIENT_ID": "from-the-environment"})
    assert json.loads(get("/api/app/config.json").get_body())["client_id"] == "from-the-environment"
