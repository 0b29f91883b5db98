"""The OpenAPI 3.1 document, built from the pydantic models that validate requests and shape responses.

Pure: `build_document` turns a table of `Operation`s (the API's, in api/openapi.py) into the
document; `readme_section` renders the README's API table from that document, and `replace_block`
puts it between the README's markers. Schemas come from pydantic's JSON Schema (draft 2020-12,
which OpenAPI 3.1 uses as is): one source of truth for validation, responses and the contract.
`openapi_30` renders the same document as OpenAPI 3.0 for API Management, whose 3.1 import is partial.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.contract.schemas import Problem

OPENAPI_VERSION = "3.1.0"
OPENAPI_30_VERSION = "3.0.3"  # the newest 3.0 release API Management imports
PROBLEM_MEDIA_TYPE = "application/problem+json"
JSON_MEDIA_TYPE = "application/json"
REF = "#/components/schemas/{model}"
BEARER = "bearer"
ENTRA = "entra"

PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed: body not JSON, unknown or invalid query parameters or cursor, bad header."),
    401: ("Unauthorized", "No valid bearer token."),
    403: ("Forbidden", "The token lacks the role this operation needs."),
    404: ("NotFound", "No such job or page, or it belongs to someone else."),
    409: ("Conflict", "The job's status does not allow this (e.g. it is already final, or still running)."),
    413: ("PayloadTooLarge", "The request body is larger than 1 MiB."),
    415: ("UnsupportedMediaType", "The body is declared (`Content-Type`) as something other than JSON."),
    422: ("UnprocessableContent", "The request is well-formed but not acceptable; the problem's `type` says why."),
    429: ("TooManyRequests", "Quota or rate limit reached; retry after `Retry-After` seconds."),
    503: ("ServiceUnavailable", "A dependency is unavailable; retry after `Retry-After` seconds."),
}
HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "The job's URL (relative).", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before asking again.", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "`Bearer`: how to authenticate.", "schema": {"type": "string"}},
    "Content-Disposition": {"description": "Names the download.", "schema": {"type": "string"}},
    "ETag": {"description": "The body's SHA-256, quoted.", "schema": {"type": "string"}},
}
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "id": {"name": "id", "in": "path", "required": True, "description": "The job's id.",
           "schema": {"type": "string", "format": "uuid"}},
    "seq": {"name": "seq", "in": "path", "required": True, "description": "The item's position in the job, from 0.",
            "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999}},
}
_PROBLEM_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}
_NULL_TYPE = {"type": "null"}
_SUBSCHEMA = frozenset({"items", "additionalProperties", "not"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
_EXCLUSIVE_BOUNDS: tuple[tuple[str, str, Callable[[Any, Any], bool]], ...] = (
    ("exclusiveMinimum", "minimum", operator.gt), ("exclusiveMaximum", "maximum", operator.lt))


@dataclass(frozen=True)
class Body:
    """One representation of a response: a media type and its model, or else a plain JSON Schema."""

    media_type: str
    model: type[BaseModel] | None = None
    description: str = ""
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    # Models a plain `schema` refers to (`REF.format(model=...)`), added to the components.
    refers_to: Sequence[type[BaseModel]] = ()


@dataclass(frozen=True)
class Success:
    """A non-problem response of an operation."""

    description: str
    bodies: Sequence[Body]
    headers: Sequence[str] = ()


@dataclass(frozen=True)
class Header:
    """A request header parameter."""

    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One endpoint of the API: how it is called, who may call it, and what it answers."""

    method: Literal["get", "post", "put", "delete", "patch"]
    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    role: str | None
    responses: dict[int, Success]
    problems: Sequence[int] = ()
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = False
    headers: Sequence[Header] = field(default_factory=tuple)

    @property
    def path_params(self) -> list[str]:
        """Names of the `{parameters}` in the path."""
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


@dataclass(frozen=True)
class Security:
    """The security schemes: Entra ID access tokens, as a plain bearer JWT and as an OAuth2 scheme."""

    roles: dict[str, str]
    authorization_url: str
    token_url: str


def build_document(title: str, version: str, description: str, operations: Sequence[Operation],
                   security: Security) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`, with every model they name under components.schemas."""
    schemas, query_schemas = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, query_schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "tags": [{"name": tag} for tag in dict.fromkeys(operation.tag for operation in operations)],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {name: _problem_response(status, text) for status, (name, text) in PROBLEMS.items()},
            "securitySchemes": _security_schemes(security),
        },
    }


def readme_section(document: dict[str, Any]) -> str:
    """The README's API section: one row per operation, then how paging, idempotency and errors work."""
    rows = ["| Method | Path | Summary | Role | Success |", "| --- | --- | --- | --- | --- |"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            success = ", ".join(code for code in operation["responses"] if code.startswith("2"))
            rows.append(f"| `{method.upper()}` | `{path}` | {operation['summary']} | {_role(operation)} | {success} |")
    return "\n".join([
        "The contract is the OpenAPI 3.1 document served at `GET /api/openapi.json`, generated from the same",
        "pydantic models that validate requests and shape responses (`shared/contract/schemas.py`). This table is",
        "generated from it (`python -m api.openapi --readme`); a test fails when they drift.",
        "",
        *rows,
        "",
        "- **Auth**: an Entra ID access token (`Authorization: Bearer …`) whose `roles` hold the role shown",
        "  (`Jobs.Admin` holds every role and sees every owner's jobs); a delegated token's `scp` must hold it",
        "  too; `anonymous` endpoints need none.",
        "- **Paging**: listings answer `{items, next_cursor}`, newest job first or items in submission order. Pass",
        "  `next_cursor` back as `cursor` with the same filters (another filter set is a 400) until it is `null`;",
        "  pages are keyset-based, so jobs created meanwhile never shift or repeat rows. Logs page with",
        "  `after=<next_after>`. `format=ndjson` or `format=csv` returns a job's whole result set at once (CSV cells",
        "  that look like formulas are prefixed with `'`; `cursor` and `limit` are refused with them); very large",
        "  jobs page with `format=json`.",
        "- **Results** are bounded: a JSON page also ends before about 4 MiB of items (`next_cursor` continues),",
        "  one stored result is at most 256 KiB (`result.truncated` counts what was left out), and an export past",
        "  64 MiB is a `422` `export-too-large`. CSV quotes every cell and prefixes with `'` any cell with a formula",
        "  trigger at its start or after a separator; `bom=true` starts it with a UTF-8 byte-order mark for Excel.",
        "  An item's `error` is its final one: none once it succeeded (failed attempts are `item_retried` in its",
        "  job's log), a reason code when skipped; failed items keep `http_status`, `final_url` and `duration_ms`.",
        "- **Idempotency**: send `Idempotency-Key` with `POST /api/jobs` (or a retry). The same key with the same",
        "  body within 24 h answers `200` with the job it created; with a different body, `422`",
        "  `idempotency-key-reused` naming that job.",
        "- **Errors** are RFC 9457 `application/problem+json` bodies whose `type` names the problem; `errors`",
        "  names each invalid field (`loc`, e.g. `[\"urls\", 3]`) with a reason. Unknown body fields and query",
        "  parameters are refused, types are strict (`\"600\"` is not an integer), a body declared as anything",
        "  but JSON is a 415.",
    ])


def replace_block(text: str, block: str, start: str, end: str) -> str:
    """`text` with everything between the markers `start` and `end` replaced by `block`."""
    head, found_start, rest = text.partition(start)
    body, found_end, tail = rest.partition(end)
    if not (found_start and found_end):
        raise ValueError(f"markers {start} ... {end} not found")
    return f"{head}{start}\n{block}\n{end}{tail}"


def openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (OpenAPI 3.1) as OpenAPI 3.0.3, the same contract for tools whose 3.1 support is partial (API
    Management's import). Only Schema Objects change: each JSON Schema 2020-12 keyword 3.0 lacks takes its 3.0 form."""
    rendered: dict[str, Any] = _with_schemas_30(document)
    rendered["openapi"] = OPENAPI_30_VERSION
    return rendered


def _with_schemas_30(node: Any, name: str = "") -> Any:
    """`node`, part of an OpenAPI document, with each Schema Object in it (a `schema` field, the components'
    `schemas`) in its 3.0 form."""
    if name == "schema":
        return _schema_30(node)
    if name == "schemas":
        return {key: _schema_30(schema) for key, schema in node.items()}
    if isinstance(node, dict):
        return {key: _with_schemas_30(value, key) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_schemas_30(item) for item in node]
    return node


def _schema_30(schema: Any) -> Any:
    """One JSON Schema 2020-12 schema as an OpenAPI 3.0 Schema Object (a boolean schema stays as it is)."""
    if not isinstance(schema, dict):
        return schema
    rendered = _subschemas_30(_null_type_30(schema))
    # 3.0 cannot describe a string's content; the description still names it.
    rendered.pop("contentMediaType", None)
    rendered.pop("contentSchema", None)
    if "const" in rendered:
        rendered["enum"] = [rendered.pop("const")]
    if examples := rendered.pop("examples", None):
        rendered.setdefault("example", examples[0])
    for exclusive, inclusive, tighter in _EXCLUSIVE_BOUNDS:
        if exclusive in rendered:
            bound = rendered.pop(exclusive)
            if not (inclusive in rendered and tighter(rendered[inclusive], bound)):
                rendered[inclusive], rendered[exclusive] = bound, True
    return _ref_alone_30(rendered)


def _subschemas_30(schema: dict[str, Any]) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _SUBSCHEMA:
            value = _schema_30(value)
        elif keyword in _SUBSCHEMA_LISTS:
            value = [_schema_30(subschema) for subschema in value]
        elif keyword == "properties":
            value = {name: _schema_30(subschema) for name, subschema in value.items()}
        rendered[keyword] = value
    return rendered


def _null_type_30(schema: dict[str, Any]) -> dict[str, Any]:
    """3.0 has neither the null type nor type arrays: `nullable` beside the one other type admits null instead, or,
    where there is no such type (a `$ref`, several types), a branch that admits only null."""
    types = schema.get("type")
    if (isinstance(types, list) or types == "null") and "anyOf" not in schema:
        schema = {**{key: value for key, value in schema.items() if key != "type"},
                  "anyOf": [{"type": name} for name in (types if isinstance(types, list) else [types])]}
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword, [])
        if _NULL_TYPE not in branches:
            continue
        others = [branch for branch in branches if branch != _NULL_TYPE]
        rest = {key: value for key, value in schema.items() if key != keyword}
        if len(others) == 1 and isinstance(others[0].get("type"), str) and "$ref" not in others[0] \
                and not rest.keys() & others[0].keys():
            return {**rest, **others[0], "nullable": True}
        return {**rest, keyword: [*others, _only_null()]}
    return schema


def _only_null() -> dict[str, Any]:
    """A 3.0 schema that admits null alone: untyped, it admits any value (3.0.3) and `enum` keeps null; `nullable`
    says so to tools that read 3.0.0-3.0.2 as refusing null unless a schema is nullable."""
    return {"nullable": True, "enum": [None]}


def _ref_alone_30(schema: dict[str, Any]) -> dict[str, Any]:
    """3.0 ignores a `$ref`'s siblings (3.1 applies them): keep them in force by moving the reference into `allOf`."""
    if "$ref" not in schema or len(schema) == 1:
        return schema
    rendered = {key: value for key, value in schema.items() if key != "$ref"}
    rendered["allOf"] = [{"$ref": schema["$ref"]}, *rendered.get("allOf", [])]
    return rendered


def _schemas(operations: Sequence[Operation]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """components.schemas for every body and response model, and each query model's own schema."""
    models: dict[tuple[type[BaseModel], Literal["validation", "serialization"]], None] = {(Problem, "serialization"): None}
    for operation in operations:
        for model in (operation.query, operation.body):
            if model is not None:
                models[(model, "validation")] = None
        for success in operation.responses.values():
            models.update({(body.model, "serialization"): None for body in success.bodies if body.model})
            models.update({(model, "serialization"): None for body in success.bodies for model in body.refers_to})
    _, top = models_json_schema(list(models), ref_template=REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    queries = {operation.query for operation in operations if operation.query is not None}
    query_schemas = {model.__name__: schemas.pop(model.__name__) for model in queries}
    return schemas, query_schemas


def _operation(operation: Operation, query_schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": operation.description,
        "tags": [operation.tag],
        "security": _requirement(operation.role),
        "parameters": _parameters(operation, query_schemas),
        "responses": {str(status): _success(success) for status, success in operation.responses.items()},
    }
    problems = [*operation.problems, *([415] if operation.body is not None else [])]
    spec["responses"].update({str(status): {"$ref": f"#/components/responses/{PROBLEMS[status][0]}"}
                              for status in problems})
    if operation.body is not None:
        spec["requestBody"] = {"required": operation.body_required, "content": {
            JSON_MEDIA_TYPE: {"schema": {"$ref": REF.format(model=operation.body.__name__)}}}}
    if not spec["parameters"]:
        del spec["parameters"]
    return spec


def _path_parameter(path: str, name: str) -> dict[str, Any]:
    if name == "id" and path.startswith("/api/pages/"):
        return {**_PATH_PARAMETERS[name], "description": "The page's id."}
    return _PATH_PARAMETERS[name]


def _parameters(operation: Operation, query_schemas: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [_path_parameter(operation.path, name) for name in operation.path_params]
    if operation.query is not None:
        parameters += _query_parameters(query_schemas[operation.query.__name__])
    parameters += [{"name": header.name, "in": "header", "required": False, "description": header.description,
                    "schema": header.schema} for header in operation.headers]
    return parameters


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _not_null(prop)
        parameter = {"name": name, "in": "query", "required": name in required,
                     "description": prop.pop("description", ""), "schema": prop}
        if prop.get("type") == "array":
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
    return parameters


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: absent means default, so `null` is never a value to send."""
    prop = {key: value for key, value in prop.items() if key != "title"}
    variants = [variant for variant in prop.pop("anyOf", []) if variant.get("type") != "null"]
    if len(variants) == 1:
        prop.update(variants[0])
    elif variants:
        prop["anyOf"] = variants
    if prop.get("default", 0) is None:
        del prop["default"]
    return prop


def _success(success: Success) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for body in success.bodies:
        schema = {"$ref": REF.format(model=body.model.__name__)} if body.model else body.schema
        content[body.media_type] = {"schema": schema}
        if body.description:
            content[body.media_type]["schema"] = {**schema, "description": body.description}
    response: dict[str, Any] = {"description": success.description}
    if content:
        response["content"] = content
    if success.headers:
        response["headers"] = {name: HEADERS[name] for name in success.headers}
    return response


def _problem_response(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF.format(model=Problem.__name__)}}},
    }
    if status in _PROBLEM_HEADERS:
        response["headers"] = {name: HEADERS[name] for name in _PROBLEM_HEADERS[status]}
    return response


def _requirement(role: str | None) -> list[dict[str, list[str]]]:
    """Anonymous: no requirement. Otherwise an Entra ID token holding `role`, by either scheme."""
    return [] if role is None else [{BEARER: [role]}, {ENTRA: [role]}]


def _security_schemes(security: Security) -> dict[str, Any]:
    return {
        BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                 "description": "An Entra ID access token for Trawl's app registration; its `roles` claim holds "
                                "the app roles an operation lists."},
        ENTRA: {"type": "oauth2",
                "description": "Entra ID (OAuth 2.0). Daemons use client credentials with the scope "
                               "`api://<Trawl app id>/.default` and get the app roles granted to them; users sign "
                               "in with authorization code + PKCE and need both the role assigned to them and the "
                               "delegated scope of the same name granted to their client.",
                "flows": {
                    "clientCredentials": {"tokenUrl": security.token_url, "scopes": security.roles},
                    "authorizationCode": {"authorizationUrl": security.authorization_url,
                                          "tokenUrl": security.token_url, "scopes": security.roles},
                }},
    }


def _role(operation: dict[str, Any]) -> str:
    roles = {role for requirement in operation["security"] for roles in requirement.values() for role in roles}
    return ", ".join(f"`{role}`" for role in sorted(roles)) or "anonymous"
