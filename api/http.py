"""The HTTP edge: body parsing, JSON and RFC 9457 problem responses, one error translation for all endpoints."""
from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import azure.functions as func
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError

from shared.adapters.outages import as_unavailable
from shared.adapters.telemetry import span
from shared.domain.errors import BadRequest, PayloadTooLarge, TrawlError, UnsupportedMediaType, ValidationFailed
from shared.settings import get_settings

log = logging.getLogger(f"trawl.{__name__}")

M = TypeVar("M", bound=BaseModel)
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
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
    challenge = _bearer_challenge(error)
    if challenge:
        headers["WWW-Authenticate"] = challenge
    return func.HttpResponse(json.dumps(error.problem(instance=_path(req)), default=str), status_code=error.status,
                             mimetype="application/problem+json", headers=headers)


def parse_body(req: func.HttpRequest, model: type[M], *, optional: bool = False,
               context: dict[str, Any] | None = None) -> M:
    """Decode and validate a JSON body (`context` goes to the model's validators); 413 when too large,
    415 when declared as something other than JSON, 400 when not JSON, 422 when invalid."""
    raw = req.get_body() or b""
    limit = get_settings().max_body_bytes
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is {len(raw)} bytes; at most {limit} are accepted")
    if not raw.strip():
        if optional:
            return model()
        raise BadRequest("a JSON body is required")
    _require_json(req.headers.get("Content-Type"))
    try:
        return model.model_validate(_json(raw), context=context)
    except ValidationError as exc:
        raise ValidationFailed("the body is not valid", errors=validation_errors(exc)) from exc


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the problem's `errors`: where (`loc`), a sentence for people (`msg`, without
    pydantic's prefixes or our class names) and a stable code (`type`)."""
    return [{"loc": list(e["loc"]), "msg": _message(e), "type": e["type"]} for e in exc.errors(include_url=False)]


def _require_json(content_type: str | None) -> None:
    """A body declared as anything but JSON is refused; an undeclared one is read as JSON."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type and not _JSON_MEDIA_TYPE.match(media_type):
        raise UnsupportedMediaType(f"the body must be JSON (Content-Type: application/json), not {media_type}")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError:  # arrays or objects nested a thousand deep
        raise BadRequest("the body is not valid JSON: it is nested too deeply") from None


def _message(error: Any) -> str:
    kind, context = error["type"], error.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(**context)
    if kind == "value_error":  # our own validators' ValueError: the text is the message
        return str(context.get("error", error["msg"]))
    return _PYDANTIC_PREFIX.sub("must", error["msg"])


_JSON_MEDIA_TYPE = re.compile(r"^application/(?:[a-z0-9.\-]+\+)?json$")
_PYDANTIC_PREFIX = re.compile(r"^Input should")
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field this request takes",
    "int_type": "must be an integer", "int_parsing": "must be an integer", "int_from_float": "must be an integer",
    "string_type": "must be a string", "string_unicode": "is not valid Unicode text (it holds a lone surrogate)",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "list_type": "must be a list", "model_type": "must be a JSON object", "dict_type": "must be a JSON object",
    "too_short": "must have at least {min_length} item(s)", "too_long": "may have at most {max_length} items",
    "string_too_long": "must be at most {max_length} characters",
    "greater_than_equal": "must be at least {ge}", "less_than_equal": "must be at most {le}",
}


def base_url(req: func.HttpRequest) -> str:
    """The public origin for absolute links: configured (behind API Management) or this request's."""
    configured = get_settings().public_base_url
    if configured:
        return configured.rstrip("/")
    scheme, _, rest = req.url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def handles_errors(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Run the endpoint in a server span (continuing the caller's `traceparent`), translating domain
    errors into problem responses and anything unexpected into a bare 500."""
    if inspect.iscoroutinefunction(endpoint):
        @functools.wraps(endpoint)
        async def async_wrapper(req: func.HttpRequest, *args: Any, **kwargs: Any) -> func.HttpResponse:
            with _server_span(req) as current:
                try:
                    response: func.HttpResponse = await endpoint(req, *args, **kwargs)
                except Exception as exc:
                    response = _translate(exc, req)
                _record_status(current, response)
                return response
        return async_wrapper

    @functools.wraps(endpoint)
    def wrapper(req: func.HttpRequest, *args: Any, **kwargs: Any) -> func.HttpResponse:
        with _server_span(req) as current:
            try:
                response: func.HttpResponse = endpoint(req, *args, **kwargs)
            except Exception as exc:
                response = _translate(exc, req)
            _record_status(current, response)
            return response
    return wrapper


def _server_span(req: func.HttpRequest) -> AbstractContextManager[Span]:
    route = _ID_SEGMENT.sub("/{id}", _path(req))
    return span(f"{req.method} {route}", traceparent=req.headers.get("traceparent"), kind=SpanKind.SERVER,
                attributes={"http.request.method": req.method, "http.route": route})


def _record_status(current: Span, response: func.HttpResponse) -> None:
    """The response's status code on the server span, and an ERROR status for a 5xx: the server failed.
    A 4xx is the caller's mistake and leaves the status unset (OpenTelemetry's HTTP server convention);
    without the ERROR, Azure Monitor records a 500 as a successful request."""
    current.set_attribute("http.response.status_code", response.status_code)
    if response.status_code >= 500:
        current.set_status(Status(StatusCode.ERROR))


# Ids in paths would make every span name unique; the route template keeps them groupable.
_ID_SEGMENT = re.compile(r"/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)")


def _translate(exc: Exception, req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(exc, TrawlError):
        return problem_response(exc, req)
    outage = as_unavailable(exc)
    if outage is not None:
        log.warning("%s %s: a dependency is unavailable: %s: %s", req.method, _path(req), type(exc).__name__, exc)
        return problem_response(outage, req)
    log.exception("unhandled error in %s %s", req.method, _path(req))
    return problem_response(TrawlError("an unexpected error occurred; it has been logged"), req)


def _bearer_challenge(error: TrawlError) -> str | None:
    """RFC 6750 challenge: plain `Bearer` on a 401, with `error="..."` when the error names one."""
    code = getattr(error, "bearer_error", None)
    if code:
        return f'Bearer error="{code}"'
    return "Bearer" if error.status == 401 else None


def _path(req: func.HttpRequest) -> str:
    rest = req.url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"
