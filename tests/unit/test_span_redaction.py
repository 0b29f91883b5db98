"""Exceptions leaving a span are recorded redacted: the exported event, stack trace and status name a URL by
its scheme and host only, whatever the exception's text (and its causes') said."""
from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from shared.adapters.telemetry import span

SECRETS = ("hunter2", "k-123", "sig-456", "tok-789", "frag-0")


def _fail_like_a_fetch() -> None:
    try:
        raise ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: "
                              "/reset/tok-789?api_key=k-123 (Caused by NewConnectionError('refused'))")
    except ConnectionError as cause:
        raise RuntimeError("GET http://user:hunter2@example.com/p?X-Amz-Signature=sig-456#frag-0\u2028forged "
                           "failed") from cause


def exported_span(span_exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [found] = [s for s in span_exporter.get_finished_spans() if s.name == name]
    return found


def test_an_escaping_exception_is_recorded_with_urls_reduced_to_their_host(span_exporter: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), span("fetch under test"):
        _fail_like_a_fetch()

    recorded = exported_span(span_exporter, "fetch under test")
    [event] = recorded.events
    attributes = dict(event.attributes or {})
    assert event.name == "exception"
    assert attributes["exception.type"] == "RuntimeError"
    assert attributes["exception.message"] == "GET http://example.com\\u2028forged failed"
    assert "with url: [REDACTED] (Caused by" in str(attributes["exception.stacktrace"])
    assert "Traceback (most recent call last):\n" in str(attributes["exception.stacktrace"])
    assert (recorded.status.status_code, recorded.status.description) == (
        StatusCode.ERROR, "RuntimeError: GET http://example.com\\u2028forged failed")
    everything = f"{recorded.attributes} {attributes} {recorded.status.description}"
    assert not [secret for secret in SECRETS if secret in everything]


def test_a_span_without_an_exception_has_no_event_and_no_error(span_exporter: InMemorySpanExporter) -> None:
    with span("quiet span under test", attributes={"url.host": "example.com"}):
        pass
    recorded = exported_span(span_exporter, "quiet span under test")
    assert (list(recorded.events), recorded.status.status_code) == ([], StatusCode.UNSET)
