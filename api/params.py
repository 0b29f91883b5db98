"""Request parameters at the HTTP edge: the job id of the route, and query strings validated by a model
(repeated parameters however the host delivers them; a parameter the model does not name is a 400)."""
from __future__ import annotations

import types
import typing
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import azure.functions as func
from pydantic import BaseModel, ValidationError

from api.http import validation_errors
from shared.domain.errors import BadRequest, NotFound

Q = TypeVar("Q", bound=BaseModel)


def job_id_of(req: func.HttpRequest) -> UUID:
    """The `{id}` route parameter; a malformed id is a job that does not exist (404)."""
    raw = req.route_params.get("id", "")
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"job {raw} not found") from None


def parse_query(req: func.HttpRequest, model: type[Q]) -> Q:
    """Validate the query string against `model`; 400 with the errors when it does not match.

    A list field takes every value of a repeated parameter (`status=a&status=b`) and comma-separated
    values (`status=a,b`): the Functions host joins repeated parameters with commas in `req.params`,
    so the raw URL is read first and the joined value is split either way.
    """
    values = _query_values(req)
    _refuse_unknown(values, model)
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        raw = [value for value in values.get(field.alias or name, []) if value.strip()]
        if not raw:  # absent or blank (as an HTML form sends an empty field): the default
            continue
        if _is_list(field.annotation):
            data[name] = [part.strip() for value in raw for part in value.split(",") if part.strip()]
        else:
            data[name] = ",".join(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("the query parameters are not valid", errors=validation_errors(exc)) from exc


def _refuse_unknown(values: dict[str, list[str]], model: type[BaseModel]) -> None:
    """A misspelt parameter (`stauts=failed`) would otherwise be ignored and answer the wrong page."""
    known = {field.alias or name for name, field in model.model_fields.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        errors = [{"loc": [name], "msg": f"is not a parameter of this endpoint (it takes {', '.join(sorted(known))})",
                   "type": "extra_forbidden"} for name in unknown]
        raise BadRequest(f"unknown query parameter {', '.join(unknown)}", errors=errors)


def _query_values(req: func.HttpRequest) -> dict[str, list[str]]:
    from_url = parse_qs(urlsplit(req.url).query, keep_blank_values=True)
    return from_url or {name: [value] for name, value in req.params.items()}


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return typing.get_origin(annotation) is list
