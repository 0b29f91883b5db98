"""The dashboard's Entra ID sign-in, as far as it goes without Entra ID: the vendored MSAL.js loads and starts
under the CSP the server sends in Entra mode, and "Sign in with Microsoft" sends the browser to the tenant's
authorize endpoint for an authorization code with PKCE (S256), the API's scopes and the dashboard as redirect
URI. The app's config.json and CSP are replaced by their Entra versions in the browser; login.microsoftonline.com
is answered by the test (this machine has no route to it)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Route, expect

from api.dashboard import APP_ROLES
from devhost.devauth import DEFAULT_TENANT
from shared.contract.dashboard import content_security_policy
from tests.browser.conftest import Dashboard

pytestmark = pytest.mark.e2e

CLIENT_ID = "5e1f0c1a-0000-4000-8000-00000000c11e"
LOGIN = "https://login.microsoftonline.com"
AUTHORITY = f"{LOGIN}/{DEFAULT_TENANT}"
SCOPES = [f"api://trawl/{role}" for role in APP_ROLES]
CONFIG = {"sign_in": "entra", "client_id": CLIENT_ID, "authority": AUTHORITY, "scopes": SCOPES,
          "roles": ["Jobs.Read", "Jobs.Submit", "Jobs.Admin"]}
OPENID_CONFIGURATION = {
    "issuer": f"{LOGIN}/{DEFAULT_TENANT}/v2.0",
    "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
    "token_endpoint": f"{AUTHORITY}/oauth2/v2.0/token",
    "end_session_endpoint": f"{AUTHORITY}/oauth2/v2.0/logout",
    "jwks_uri": f"{LOGIN}/{DEFAULT_TENANT}/discovery/v2.0/keys",
}
INSTANCE_DISCOVERY = {
    "tenant_discovery_endpoint": f"{AUTHORITY}/v2.0/.well-known/openid-configuration", "api-version": "1.1",
    "metadata": [{"preferred_network": "login.microsoftonline.com", "preferred_cache": "login.windows.net",
                  "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com"]}],
}


def entra_login(route: Route) -> None:
    """Entra ID's metadata endpoints, and a stand-in page for its sign-in screen."""
    path = urlsplit(route.request.url).path
    if path.endswith("/openid-configuration"):
        route.fulfill(json=OPENID_CONFIGURATION)
    elif path.endswith("/discovery/instance"):
        route.fulfill(json=INSTANCE_DISCOVERY)
    else:
        route.fulfill(content_type="text/html", body="<!doctype html><title>Microsoft sign-in</title>")


def test_sign_in_with_microsoft_asks_for_a_code_with_pkce(dashboard: Dashboard) -> None:
    page = dashboard.page

    def entra_index(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response,
                      headers={**response.headers, "content-security-policy": content_security_policy(CONFIG)})

    page.route(dashboard.url, entra_index)
    page.route("**/api/app/config.json", lambda route: route.fulfill(json=CONFIG))
    page.route(f"{LOGIN}/**", entra_login)
    dashboard.open("#/jobs")

    button = page.get_by_role("button", name="Sign in with Microsoft")
    expect(button).to_be_visible()
    expect(page).to_have_url(f"{dashboard.url}#/signin")
    assert page.evaluate("typeof globalThis.msal.PublicClientApplication") == "function"
    assert dashboard.csp_violations() == []
    assert page.get_by_role("alert").text_content() == ""
    with page.expect_request(f"{AUTHORITY}/oauth2/v2.0/authorize*") as authorize:
        button.click()

    query = {name: values[0] for name, values in parse_qs(urlsplit(authorize.value.url).query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == dashboard.url
    assert {*SCOPES, "openid", "profile"} <= set(query["scope"].split())
