"""One job's trace and metrics, exported by the app over OTLP to an in-memory receiver in this test."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devhost.conftest import REPO, start_devhost, wait_until
from tests.e2e.conftest import Trawl, app_env
from tests.e2e.otlp import OtlpReceiver, ReceivedSpan
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e

OTLP_SERVER, OTLP_PRODUCER = 2, 4  # the OTLP protobuf's SpanKind numbers


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


def test_a_job_is_one_trace_with_the_right_metrics(tmp_path: Path, azurite: str, db_url: str, site: TestSite,
                                                   receiver: OtlpReceiver) -> None:
    env = app_env(
        db_url, site, f"items-{uuid.uuid4().hex[:10]}",
        TRAWL_TELEMETRY_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        TRAWL_TELEMETRY_EXPORT_INTERVAL_SECONDS="1",
        TRAWL_FETCH_MAX_ATTEMPTS="2")
    app = Trawl(start_devhost(REPO, tmp_path / "devhost.log", env), db_url, env["TRAWL_QUEUE_NAME"])
    try:
        urls = [site.url("/page/1?sig=secret-signature"), site.url("/missing"), site.url("/always500/telemetry")]
        job = app.wait_final(app.submit(urls)["id"])
        assert job["status"] == "completed_with_errors"
        wait_until(lambda: receiver.metric_total("trawl.jobs.finished", status="completed_with_errors") == 1)
        wait_until(lambda: len([s for s in list(receiver.spans) if s.name == "fetch"]) == 4)
    finally:
        app.host.stop()

    assert receiver.metric_total("trawl.jobs.submitted") == 1
    assert receiver.metric_total("trawl.items.processed", outcome="succeeded") == 1
    assert receiver.metric_total("trawl.items.processed", outcome="failed") == 2  # the 404, the 500 twice over
    assert receiver.metric_total("trawl.items.processed", outcome="retry_scheduled") == 1
    assert receiver.metric_total("trawl.poison.count") == 0, "a failing site is retried by the worker, not poisoned"
    assert receiver.metric_total("trawl.fetch.duration") == 4
    assert receiver.metric_total("trawl.queue.latency") >= 4

    server = _only(_job_spans(receiver, job["id"], "POST /api/jobs"))
    enqueue = _only(_job_spans(receiver, job["id"], "enqueue items"))
    consumers = _job_spans(receiver, job["id"], "scrape item")
    assert (server.kind, enqueue.kind) == (OTLP_SERVER, OTLP_PRODUCER)
    assert enqueue.parent_span_id == server.span_id
    assert {c.parent_span_id for c in consumers} == {enqueue.span_id}
    trace_ids = {server.trace_id, enqueue.trace_id} | {c.trace_id for c in consumers}
    fetches = [s for s in receiver.spans if s.name == "fetch" and s.trace_id in trace_ids]
    databases = [s for s in receiver.spans if s.name == "postgresql transaction" and s.trace_id in trace_ids]
    assert len(trace_ids) == 1
    assert {f.parent_span_id for f in fetches} <= {c.span_id for c in consumers}
    assert {f.attributes["url.host"] for f in fetches} == {"127.0.0.1"}
    assert any(d.parent_span_id in {c.span_id for c in consumers} for d in databases)
    assert not [s for s in receiver.spans if any("secret-signature" in str(v) for v in s.attributes.values())]


def _job_spans(receiver: OtlpReceiver, job_id: str, name: str) -> list[ReceivedSpan]:
    return [s for s in list(receiver.spans) if s.name == name and s.attributes.get("trawl.job.id") == job_id]


def _only(spans: list[ReceivedSpan]) -> ReceivedSpan:
    assert len(spans) == 1, spans
    return spans[0]
