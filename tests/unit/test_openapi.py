"""The OpenAPI document: a valid 3.1 document that covers exactly the app's HTTP functions, generated
from the request and response models, with the README's API section generated from it, and its 3.0
rendering (what API Management imports): valid 3.0 that admits the same values."""
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator, OAS31Validator
from openapi_spec_validator import OpenAPIV30SpecValidator, validate
from pydantic import BaseModel

import api.openapi
import function_app
from api.openapi import OPERATIONS, README, README_END, README_START, openapi_document, readme_with_api_section
from shared.contract.openapi import openapi_30, replace_block
from shared.contract.schemas import JobListQuery, JobView, LogsQuery, ResultsQuery

ANONYMOUS = {("get", "/api/health"), ("get", "/api/openapi.json")}
# Values of every JSON type, and near the bounds the rendering cases below use.
PROBES = [None, "", "a", "b", "v", "2024-05-01T12:00:00Z", 0, 1, 5, 10, 2.5, True, False, [], ["a"], [None], {},
          {"a": None}, {"a": "x"}, {"a": 1}]
OTHER = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, methods in document["paths"].items() for method, op in methods.items()}


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"


# Not part of the API: the dashboard's web page and its files (api/dashboard.py).
WEB_PAGES = {("get", "/api/app/{*path}")}


def test_it_documents_exactly_the_http_functions_the_app_registers(document: dict[str, Any]) -> None:
    registered = set()
    for function in function_app.app.get_functions():
        trigger = function.get_trigger().get_dict_repr()
        if trigger["type"] == "httpTrigger":
            registered |= {(str(method.value).lower(), f"/api/{trigger['route']}") for method in trigger["methods"]}

    assert set(operations(document)) == registered - WEB_PAGES


def test_every_job_operation_needs_a_jobs_role_and_only_health_and_the_document_are_anonymous(
        document: dict[str, Any]) -> None:
    for key, op in operations(document).items():
        if key in ANONYMOUS:
            assert op["security"] == [], key
            continue
        [bearer, entra] = op["security"]
        assert bearer["bearer"] == entra["entra"] and bearer["bearer"][0].startswith("Jobs."), key
        assert {"401", "403"} <= set(op["responses"]), key
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert set(schemes["entra"]["flows"]["clientCredentials"]["scopes"]) == {"Jobs.Submit", "Jobs.Read", "Jobs.Admin"}


def test_errors_are_problem_details_with_their_status(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    for op in operations(document).values():
        for status, response in op["responses"].items():
            if "$ref" in response:
                problem = responses[response["$ref"].rsplit("/", 1)[1]]
                assert list(problem["content"]) == ["application/problem+json"], status
    assert "Retry-After" in responses["TooManyRequests"]["headers"]
    assert "WWW-Authenticate" in responses["Unauthorized"]["headers"]


@pytest.mark.parametrize(("path", "model"), [
    ("/api/jobs", JobListQuery), ("/api/jobs/{id}/results", ResultsQuery), ("/api/jobs/{id}/logs", LogsQuery)])
def test_query_parameters_come_from_the_models_that_validate_them(
        document: dict[str, Any], path: str, model: type[BaseModel]) -> None:
    parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"}

    assert set(parameters) == set(model.model_fields)
    limit = model.model_fields["limit"]
    bounds = {type(m).__name__: m for m in limit.metadata}
    assert parameters["limit"]["schema"] == {"type": "integer", "default": limit.default,
                                             "minimum": bounds["Ge"].ge, "maximum": bounds["Le"].le}
    assert all(not p["required"] and "null" not in str(p["schema"]) for p in parameters.values())


def test_status_filters_are_repeatable_enums(document: dict[str, Any]) -> None:
    [status] = [p for p in document["paths"]["/api/jobs"]["get"]["parameters"] if p["name"] == "status"]
    assert (status["style"], status["explode"]) == ("form", True)
    assert status["schema"] == {"type": "array", "items": {"$ref": "#/components/schemas/JobStatus"}}
    assert document["components"]["schemas"]["JobStatus"]["enum"] == [
        "pending", "running", "succeeded", "completed_with_errors", "failed", "cancelled", "timed_out"]


def test_job_responses_use_the_job_view_schema(document: dict[str, Any]) -> None:
    get_job = document["paths"]["/api/jobs/{id}"]["get"]["responses"]["200"]
    assert get_job["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobView"}
    schema = document["components"]["schemas"]["JobView"]
    assert set(schema["properties"]) == set(JobView.model_fields)


def test_results_offer_json_pages_ndjson_and_csv(document: dict[str, Any]) -> None:
    content = document["paths"]["/api/jobs/{id}/results"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["application/json", "application/x-ndjson", "text/csv"]


def test_every_operation_is_in_the_table_once() -> None:
    assert len({(op.method, op.path) for op in OPERATIONS}) == len(OPERATIONS)
    assert len({op.operation_id for op in OPERATIONS}) == len(OPERATIONS)


def test_the_readme_api_section_matches_the_document() -> None:
    readme = README.read_text()
    assert readme_with_api_section(readme) == readme, "README is stale: run `python -m api.openapi --readme`"


def test_the_readme_section_lists_every_operation_with_its_role() -> None:
    section = readme_with_api_section(f"x\n{README_START}\nold\n{README_END}\ny").split("\n")
    assert "| `POST` | `/api/jobs/{id}/retry` | Retry a job's failed items | `Jobs.Submit` | 202, 200 |" in section
    assert "| `GET` | `/api/health` | Health | anonymous | 200 |" in section
    assert section[0] == "x" and section[-1] == "y" and "old" not in section


def test_replace_block_refuses_a_readme_without_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers here", "block", README_START, README_END)


def accepts(validator: Callable[[dict[str, Any]], Any], document: dict[str, Any], schema: str, value: Any) -> bool:
    """Whether `value` is valid against components.schemas/`schema` (a JSON pointer under it) of `document`."""
    root = {"components": document["components"], "$ref": f"#/components/schemas/{schema}"}
    return bool(validator(root).is_valid(value))


def schema_pointers(schemas: dict[str, Any]) -> list[str]:
    """Each component schema and each of its properties."""
    return [pointer for name, schema in schemas.items()
            for pointer in [name, *(f"{name}/properties/{prop}" for prop in schema.get("properties", {}))]]


def test_the_apim_rendering_is_valid_openapi_3_0_and_leaves_the_served_document_as_it_is(
        document: dict[str, Any]) -> None:
    served = copy.deepcopy(document)

    rendered = openapi_30(document)

    validate(rendered, cls=OpenAPIV30SpecValidator)
    assert rendered["openapi"] == "3.0.3"
    assert document == served and document["openapi"] == "3.1.0"
    assert rendered["paths"].keys() == document["paths"].keys()
    assert rendered["components"]["schemas"].keys() == document["components"]["schemas"].keys()


def test_the_apim_rendering_admits_exactly_the_values_the_served_document_admits(document: dict[str, Any]) -> None:
    rendered = openapi_30(document)

    for pointer in schema_pointers(document["components"]["schemas"]):
        for value in PROBES:
            assert accepts(OAS31Validator, document, pointer, value) == accepts(OAS30Validator, rendered, pointer,
                                                                                value), (pointer, value)
    assert accepts(OAS30Validator, rendered, "JobView/properties/cancellation", None), "a nullable $ref stays nullable"
    assert accepts(OAS30Validator, rendered, "JobView/properties/finished_at", None)
    assert not accepts(OAS30Validator, rendered, "JobView/properties/id", None)


@pytest.mark.parametrize(("schema_31", "schema_30"), [
    ({"type": ["integer", "null"], "minimum": 0}, {"type": "integer", "nullable": True, "minimum": 0}),
    ({"anyOf": [{"type": "string", "maxLength": 1}, {"type": "null"}], "default": None},
     {"type": "string", "maxLength": 1, "nullable": True, "default": None}),
    ({"anyOf": [{"$ref": "#/components/schemas/Other"}, {"type": "null"}]},
     {"anyOf": [{"$ref": "#/components/schemas/Other"}, {"nullable": True, "enum": [None]}]}),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
     {"oneOf": [{"type": "string"}, {"type": "integer"}, {"nullable": True, "enum": [None]}]}),
    ({"type": ["string", "integer", "null"]},
     {"anyOf": [{"type": "string"}, {"type": "integer"}, {"nullable": True, "enum": [None]}]}),
    ({"type": "null"}, {"anyOf": [{"nullable": True, "enum": [None]}]}),
    ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "maximum": 5},
     {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 5}),
    ({"type": "integer", "minimum": 1, "exclusiveMinimum": 1, "exclusiveMaximum": 5},
     {"type": "integer", "minimum": 1, "exclusiveMinimum": True, "maximum": 5, "exclusiveMaximum": True}),
    ({"type": "string", "examples": ["a", "b"]}, {"type": "string", "example": "a"}),
    ({"type": "string", "const": "v"}, {"type": "string", "enum": ["v"]}),
    ({"$ref": "#/components/schemas/Other", "description": "Other, described here."},
     {"description": "Other, described here.", "allOf": [{"$ref": "#/components/schemas/Other"}]}),
    ({"type": "object", "properties": {"a": {"type": ["string", "null"], "examples": ["x"]}},
      "additionalProperties": {"const": 1}},
     {"type": "object", "properties": {"a": {"type": "string", "nullable": True, "example": "x"}},
      "additionalProperties": {"enum": [1]}}),
    ({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
     {"type": "array", "items": {"type": "string", "nullable": True}}),
])
def test_each_31_keyword_takes_its_30_form_and_admits_the_same_values(
        schema_31: dict[str, Any], schema_30: dict[str, Any]) -> None:
    operation = {"parameters": [{"name": "q", "in": "query", "schema": schema_31}],
                 "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_31}}}}}
    document = {"openapi": "3.1.0", "info": {"title": "T", "version": "1"}, "paths": {"/x": {"get": operation}},
                "components": {"schemas": {"Case": schema_31, "Other": OTHER}}}

    rendered = openapi_30(document)

    validate(rendered, cls=OpenAPIV30SpecValidator)
    get = rendered["paths"]["/x"]["get"]
    assert rendered["components"]["schemas"]["Case"] == schema_30
    assert get["parameters"][0]["schema"] == get["responses"]["200"]["content"]["application/json"]["schema"] == schema_30
    for value in [*PROBES, {"a": "x", "b": None}]:
        assert accepts(OAS31Validator, document, "Case", value) == accepts(OAS30Validator, rendered, "Case", value), value


def test_the_apim_command_writes_the_30_rendering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.openapi, "APIM_DOCUMENT", tmp_path / "openapi.json")

    assert api.openapi.main(["--apim"]) == 0

    assert json.loads((tmp_path / "openapi.json").read_text()) == openapi_30(openapi_document())
