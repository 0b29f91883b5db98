"""A 5xx is a failed request in Application Insights, a 4xx is not a server error: the API's server span,
converted to its envelope by the Azure Monitor exporter the app ships with, carries `success` and the
response code that the 5xx-rate alert (infra/queries/alert-http-5xx-rate.kql) counts.

The conversion is the exporter's own (`AzureMonitorTraceExporter._span_to_envelope` delegates to it);
constructing the exporter itself would start its statsbeat and control-plane threads."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import azure.functions as func
import pytest
from azure.monitor.opentelemetry.exporter.export.trace._exporter import _convert_span_to_envelope
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from api.http import handles_errors, json_response
from shared.adapters.db import ConnectionPool, UrlDatabase, read
from shared.domain.errors import DatabaseUnavailable, NotFound, RateLimited, TrawlError, Unauthorized


def _raising(error: Exception) -> Callable[[func.HttpRequest], func.HttpResponse]:
    def endpoint(req: func.HttpRequest) -> func.HttpResponse:
        raise error
    return endpoint


def _server_span(span_exporter: InMemorySpanExporter, endpoint: Callable[..., Any], path: str) -> ReadableSpan:
    """Call `endpoint` behind `handles_errors` (awaiting it when it is async) and return its server span."""
    span_exporter.clear()
    req = func.HttpRequest("GET", f"http://localhost/api/{path}", headers={}, body=b"")
    response = handles_errors(endpoint)(req)
    if asyncio.iscoroutine(response):
        asyncio.run(response)
    [server] = [s for s in span_exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    return server


def _request(server: ReadableSpan) -> Any:
    envelope = _convert_span_to_envelope(server)
    assert envelope.data is not None and envelope.data.base_type == "RequestData"
    return envelope.data.base_data


async def _async_database_outage(req: func.HttpRequest) -> func.HttpResponse:
    raise DatabaseUnavailable()


@pytest.mark.parametrize(("endpoint", "code"), [
    (_raising(RuntimeError("a bug")), "500"),
    (_raising(TrawlError("an internal error")), "500"),
    (_raising(DatabaseUnavailable()), "503"),
    (lambda req: json_response({"error": "returned, not raised"}, 502), "502"),
    (_async_database_outage, "503"),
], ids=["unexpected-error", "internal-trawl-error", "database-outage", "returned-502", "async-database-outage"])
def test_a_5xx_is_a_failed_request(span_exporter: InMemorySpanExporter, endpoint: Callable[..., Any], code: str) -> None:
    server = _server_span(span_exporter, endpoint, "jobs")
    request = _request(server)
    assert (request.response_code, request.success) == (code, False)
    assert server.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(("error", "code"), [
    (Unauthorized("no token"), "401"),
    (NotFound("no such job"), "404"),
    (RateLimited("slow down", retry_after=30), "429"),
], ids=["401", "404", "429"])
def test_a_4xx_leaves_the_span_status_alone(span_exporter: InMemorySpanExporter, error: Exception, code: str) -> None:
    """The caller's mistake is no server error. (The exporter still sets `success` false for any 4xx,
    Application Insights' own convention: the 5xx-rate alert counts by response code for that reason.)"""
    server = _server_span(span_exporter, _raising(error), "jobs")
    assert server.status.status_code is StatusCode.UNSET
    assert _request(server).response_code == code


def test_a_2xx_is_a_successful_request(span_exporter: InMemorySpanExporter) -> None:
    server = _server_span(span_exporter, lambda req: json_response({"ok": True}), "health")
    request = _request(server)
    assert (request.response_code, request.success, server.status.status_code) == ("200", True, StatusCode.UNSET)


def test_a_database_call_that_fails_is_a_failed_dependency(span_exporter: InMemorySpanExporter) -> None:
    unreachable = ConnectionPool(UrlDatabase("postgresql://trawl@127.0.0.1:1/trawl"), acquire_timeout_s=1)
    span_exporter.clear()
    with pytest.raises(DatabaseUnavailable):
        read(unreachable, lambda tx: tx.jobs.progress(uuid4()))

    [dependency] = [s for s in span_exporter.get_finished_spans() if s.name == "postgresql read"]
    # It used to end without the exception: every database call was a successful dependency.
    assert dependency.status.status_code is StatusCode.ERROR
    assert _convert_span_to_envelope(dependency).data.base_data.success is False
