"""Traces and metrics: Azure Monitor on Azure, an optional OTLP or console exporter locally.

One mechanism: `configure_telemetry()` calls `configure_azure_monitor()` when an Application Insights
connection string is set (the worker's own PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY switch stays
off). Unconfigured, every span and instrument here is the OpenTelemetry API's no-op. Trace context
crosses Durable Functions and the queue as a W3C `traceparent` string, since neither carries it.
Spans and attributes never hold a token or a full URL: only the URL's host. Exceptions are recorded
by `span()` itself, redacted, since their texts name URLs in full.
"""
from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared.adapters.redaction import redact, redact_multiline

log = logging.getLogger(f"trawl.{__name__}")

TRACER = trace.get_tracer("trawl")
METER = metrics.get_meter("trawl")

JOBS_SUBMITTED = METER.create_counter("trawl.jobs.submitted", description="Jobs accepted")
JOBS_FINISHED = METER.create_counter("trawl.jobs.finished", description="Jobs finalised, by status")
ITEMS_PROCESSED = METER.create_counter("trawl.items.processed", description="Items finished, by outcome")
FETCH_DURATION = METER.create_histogram("trawl.fetch.duration", unit="ms", description="Fetch and parse time")
POISONED = METER.create_counter("trawl.poison.count", description="Items given up after the queue's retries")
QUEUE_LATENCY = METER.create_histogram("trawl.queue.latency", unit="ms", description="Enqueue to worker start")

_configured: str | None = None


def configure_telemetry(environ: Mapping[str, str] = os.environ) -> str:
    """Set up exporters once per process; returns the mechanism chosen. Never raises: telemetry must
    not stop the app from starting."""
    global _configured
    if _configured is None:
        try:
            _configured = _configure(environ)
        except Exception:  # a broken exporter setup is logged and the app runs without telemetry
            log.exception("telemetry could not be configured; continuing without it")
            _configured = "none"
    return _configured


def _configure(environ: Mapping[str, str]) -> str:
    if environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        _configure_azure_monitor(environ)
        return "azure_monitor"
    exporter = environ.get("TRAWL_TELEMETRY_EXPORTER", "").lower()
    if exporter in ("otlp", "console"):
        _configure_local(exporter, float(environ.get("TRAWL_TELEMETRY_EXPORT_INTERVAL_SECONDS", "10")))
        return exporter
    return "none"


def _configure_azure_monitor(environ: Mapping[str, str]) -> None:
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    # The fetcher records its own spans with the host only; auto-instrumented HTTP spans would carry
    # every scraped URL in full, query strings included.
    options = {name: {"enabled": False} for name in ("requests", "urllib", "urllib3")}
    client_id = environ.get("AZURE_CLIENT_ID")
    credential = ManagedIdentityCredential(client_id=client_id) if client_id else None
    # Only the app's own records (its modules log under "trawl.<module>"): the SDKs' loggers would send every
    # Storage call azure-core logs at INFO.
    configure_azure_monitor(credential=credential, instrumentation_options=options, logger_name="trawl")


def _configure_local(exporter: str, interval_seconds: float) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({"service.name": "trawl"})
    span_exporter: SpanExporter
    metric_exporter: MetricExporter
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
    else:
        span_exporter, metric_exporter = ConsoleSpanExporter(), ConsoleMetricExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval_seconds * 1000)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def current_traceparent() -> str | None:
    """The current span's W3C traceparent, to carry across Durable history and queue messages."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def span(name: str, *, traceparent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
         attributes: Mapping[str, str | int | bool] | None = None) -> Iterator[Span]:
    """A span, child of `traceparent` when given (else of the current span), made current.

    An exception leaving it is recorded redacted (see `record_redacted_exception`), never by the SDK,
    whose event and status would carry the exception's text as is."""
    context = propagate.extract({"traceparent": traceparent}) if traceparent else None
    with TRACER.start_as_current_span(name, context=context, kind=kind, attributes=attributes,
                                      record_exception=False, set_status_on_exception=False) as current:
        try:
            yield current
        except Exception as exc:
            record_redacted_exception(current, exc)
            raise


def record_redacted_exception(current: Span, exc: BaseException) -> None:
    """Record `exc` on `current` as the SDK would (an `exception` event, an ERROR status), with every URL
    in its message, traceback and status description reduced to scheme and host: exceptions of the
    fetcher and of requests name the scraped URL, query string and all."""
    module, qualname = type(exc).__module__, type(exc).__qualname__
    current.add_event("exception", {
        "exception.type": qualname if module == "builtins" else f"{module}.{qualname}",
        "exception.message": redact(str(exc)),
        "exception.stacktrace": redact_multiline("".join(traceback.format_exception(exc))),
        "exception.escaped": "True",
    })
    current.set_status(Status(StatusCode.ERROR, redact(f"{type(exc).__name__}: {exc}")))


def record_queue_latency(enqueued_at: datetime | None) -> None:
    """How long a message waited between enqueue and its worker starting."""
    if enqueued_at is not None:
        QUEUE_LATENCY.record(max(0.0, (datetime.now(UTC) - enqueued_at).total_seconds() * 1000))


def url_host(url: str) -> str:
    """Only the host of a URL: paths and query strings may hold secrets (sig=, code=, tokens)."""
    return urlsplit(url).hostname or ""
