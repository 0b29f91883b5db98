"""API Management: the imported OpenAPI document is the app's own, rendered as the OpenAPI 3.0 the
import format names, and the policy (rendered as modules/api-management.bicep renders it) is
well-formed and does what the README says."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from api.openapi import openapi_document
from shared.contract.openapi import openapi_30
from tests.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.infra

APIM = INFRA / "apim"
PLACEHOLDER = re.compile(r"__[A-Z_]+__")
LOAD_TEXT_CONTENT_LIMIT = 131_072  # characters Bicep's loadTextContent() accepts
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def render_policy(*, sku: str, audiences: list[str], client_ids: list[str]) -> ET.Element:
    """The policy XML as the module's replace() chain produces it."""
    rate_limit = (APIM / "rate-limit-by-oid.xml").read_text()
    rate_limit = rate_limit.replace("__CALLS__", "60").replace("__RENEWAL_PERIOD__", "60")
    client_xml = "".join(f"<application-id>{c}</application-id>" for c in client_ids)
    policy = (APIM / "policy.xml").read_text()
    policy = policy.replace("__TENANT_ID__", TENANT)
    policy = policy.replace("__AUDIENCES__", "".join(f"<audience>{a}</audience>" for a in audiences))
    policy = policy.replace("__CLIENT_APPLICATION_IDS__",
                            f"<client-application-ids>{client_xml}</client-application-ids>" if client_ids else "")
    policy = policy.replace("__RATE_LIMIT__", "" if sku == "Consumption" else rate_limit)
    policy = policy.replace("__BACKEND_ID__", "trawl-function-app")
    assert not PLACEHOLDER.search(policy)
    return ET.fromstring(policy)


def test_the_imported_document_is_the_apps_openapi_document_rendered_as_3_0() -> None:
    copy = json.loads((APIM / "openapi.json").read_text())
    assert copy == openapi_30(openapi_document()), (
        "infra/apim/openapi.json is stale: .venv/bin/python -m api.openapi --apim")


def test_the_imported_document_is_valid_openapi_3_0() -> None:
    copy = json.loads((APIM / "openapi.json").read_text())
    validate(copy, cls=OpenAPIV30SpecValidator)
    assert copy["openapi"] == "3.0.3", "API Management imports OpenAPI 3.0 up to 3.0.3; its 3.1 import is partial"


def test_the_document_fits_bicep_and_matches_the_empty_api_suffix() -> None:
    assert len((APIM / "openapi.json").read_text()) < LOAD_TEXT_CONTENT_LIMIT
    host = json.loads((REPO / "host.json").read_text())
    prefix = "/" + host["extensions"]["http"]["routePrefix"] + "/"
    assert all(path.startswith(prefix) for path in openapi_document()["paths"]), (
        "the APIM API has an empty URL suffix because every path carries the Functions route prefix")


def test_the_api_imports_the_checked_in_copy_and_forwards_to_the_function_app(module: Any) -> None:
    apim = module("api-management")
    api = apim.resources_of_type("Microsoft.ApiManagement/service/apis")[0]["properties"]
    assert api["path"] == "" and api["subscriptionRequired"] is False
    assert api["format"] == "openapi+json", "inline OpenAPI 3.0 JSON, what infra/apim/openapi.json is"
    assert api["serviceUrl"] == "https://${functionAppHostName}"
    assert api["value"]["function"] == {"type": "load_text_content",
                                        "parameters": {"file_path": "../apim/openapi.json", "encoding": None}}
    backends = apim.resources_of_type("Microsoft.ApiManagement/service/backends")
    assert [b["name"] for b in backends] == ["backendId"] and apim.var("backendId") == "trawl-function-app"


def test_the_module_fills_in_every_placeholder() -> None:
    in_xml = {p for path in APIM.glob("*.xml") for p in PLACEHOLDER.findall(path.read_text())}
    replaced = set(re.findall(r"'(__[A-Z_]+__)'", (INFRA / "modules" / "api-management.bicep").read_text()))
    assert in_xml == replaced


def test_policy_validates_entra_tokens_for_the_tenant_and_audiences() -> None:
    policy = render_policy(sku="Developer", audiences=["api://trawl", "app-id"], client_ids=[])
    validate = policy.find("inbound/validate-azure-ad-token")
    assert validate is not None
    assert validate.get("tenant-id") == TENANT and validate.get("header-name") == "Authorization"
    assert validate.get("failed-validation-httpcode") == "401"
    assert validate.get("output-token-variable-name") == "jwt"
    assert [a.text for a in validate.findall("audiences/audience")] == ["api://trawl", "app-id"]
    assert validate.find("client-application-ids") is None, "no client ids: any client of the tenant"


def test_policy_restricts_client_applications_when_given() -> None:
    policy = render_policy(sku="Developer", audiences=["api://trawl"], client_ids=["c1", "c2"])
    validate = policy.find("inbound/validate-azure-ad-token")
    assert validate is not None
    assert [c.text for c in validate.findall("client-application-ids/application-id")] == ["c1", "c2"]
    assert [child.tag for child in validate] == ["client-application-ids", "audiences"], "the policy's element order"


def test_policy_rate_limits_each_caller_by_the_tokens_oid() -> None:
    inbound = render_policy(sku="Developer", audiences=["api://trawl"], client_ids=[]).find("inbound")
    assert inbound is not None
    order = [child.tag for child in inbound]
    assert order == ["base", "validate-azure-ad-token", "rate-limit-by-key", "set-backend-service"]
    limit = inbound.find("rate-limit-by-key")
    assert limit is not None
    assert limit.get("calls") == "60" and limit.get("renewal-period") == "60"
    key = limit.get("counter-key", "")
    assert key.startswith("@(") and 'context.Variables["jwt"]' in key and '"oid"' in key
    backend = inbound.find("set-backend-service")
    assert backend is not None and backend.get("backend-id") == "trawl-function-app"
    # An event stream reconnects after every response: its requests do not use up the caller's calls
    # (the app caps each caller's open streams itself).
    condition = limit.get("increment-condition", "")
    assert condition.startswith("@(!") and '"/events"' in condition


def test_policy_forwards_the_event_stream_unbuffered_and_the_rest_as_before() -> None:
    backend = render_policy(sku="Developer", audiences=["api://trawl"], client_ids=[]).find("backend")
    assert backend is not None
    stream = backend.find("choose/when")
    other = backend.find("choose/otherwise/forward-request")
    assert stream is not None and other is not None
    assert '"/events"' in stream.get("condition", "") and 'Method == "GET"' in stream.get("condition", "")
    forward = stream.find("forward-request")
    assert forward is not None and forward.get("buffer-response") == "false"
    assert other.get("buffer-response") is None
    paths = openapi_document()["paths"]
    assert [path for path in paths if path.endswith("/events")] == ["/api/jobs/{id}/events"]
    assert "text/event-stream" in paths["/api/jobs/{id}/events"]["get"]["responses"]["200"]["content"]


def test_consumption_tier_gets_no_rate_limit_by_key() -> None:
    inbound = render_policy(sku="Consumption", audiences=["api://trawl"], client_ids=[]).find("inbound")
    assert inbound is not None
    assert inbound.find("rate-limit-by-key") is None
    assert inbound.find("validate-azure-ad-token") is not None
