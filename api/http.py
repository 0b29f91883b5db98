"""The HTTP edge: body parsing, JSON and RFC 9457 problem responses, one error translation for all endpoints."""
from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from shared.errors import BadRequest, PayloadTooLarge, TrawlError, ValidationFailed
from shared.settings import get_settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 1024 * 1024
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    payload = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body, default=str)
    return func.HttpResponse(payload, status_code=status, mimetype="application/json",
                             headers={**SECURITY_HEADERS, **(headers or {})})


def problem_response(error: TrawlError, req: func.HttpRequest) -> func.HttpResponse:
    headers = dict(SECURITY_HEADERS)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return func.HttpResponse(json.dumps(error.problem(instance=_path(req)), default=str), status_code=error.status,
                             mimetype="application/problem+json", headers=headers)


def parse_body(req: func.HttpRequest, model: type[M], *, optional: bool = False) -> M:
    """Decode and validate a JSON body; 413 when too large, 400 when not JSON, 422 when invalid."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted")
    if not raw.strip():
        if optional:
            return model()
        raise BadRequest("a JSON body is required")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("the body does not match the schema", errors=_errors(exc)) from exc


def base_url(req: func.HttpRequest) -> str:
    """The public origin for absolute links: configured (behind API Management) or this request's."""
    configured = get_settings().public_base_url
    if configured:
        return configured.rstrip("/")
    scheme, _, rest = req.url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def handles_errors(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Translate domain errors into problem responses and anything unexpected into a bare 500."""
    if inspect.iscoroutinefunction(endpoint):
        @functools.wraps(endpoint)
        async def async_wrapper(req: func.HttpRequest, *args: Any, **kwargs: Any) -> func.HttpResponse:
            try:
                return await endpoint(req, *args, **kwargs)
            except Exception as exc:
                return _translate(exc, req)
        return async_wrapper

    @functools.wraps(endpoint)
    def wrapper(req: func.HttpRequest, *args: Any, **kwargs: Any) -> func.HttpResponse:
        try:
            return endpoint(req, *args, **kwargs)
        except Exception as exc:
            return _translate(exc, req)
    return wrapper


def _translate(exc: Exception, req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(exc, TrawlError):
        return problem_response(exc, req)
    log.exception("unhandled error in %s %s", req.method, _path(req))
    return problem_response(TrawlError("an unexpected error occurred; it has been logged"), req)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_url=False)]


def _path(req: func.HttpRequest) -> str:
    rest = req.url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"
