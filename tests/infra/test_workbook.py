"""The operators' workbook (infra/modules/workbook.bicep), and every KQL query under infra/queries/ (the
workbook's and the alerts') checked against the telemetry the app really produces.

The app's telemetry is produced here, in-process: the app's own code records its spans and metrics through
shared/adapters/telemetry.py into in-memory OpenTelemetry providers, and the Azure Monitor exporter the app
ships with converts each into the envelope it would send. An envelope becomes a row of a workspace table
(AppRequests, AppDependencies, AppMetrics, AppTraces, AppExceptions) as Microsoft documents it: the envelope
fields are Application Insights' data model, stored under the classic names (requests.resultCode,
customMetrics.valueSum...) that the workspace renames (ResultCode, Sum...). A light KQL tokenizer then checks
that each query reads one table, only the columns Microsoft documents for it and, for the App* tables, only
the names, columns and custom properties that the app's rows carry. Naming rule for the queries: a column
the query computes starts in lower case; every PascalCase name is a table column.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from uuid import uuid4

import azure.functions as func
import pytest
from azure.monitor.opentelemetry.exporter.export.metrics._exporter import _convert_point_to_envelope
from azure.monitor.opentelemetry.exporter.export.trace._exporter import (
    _convert_span_events_to_envelopes,
    _convert_span_to_envelope,
)
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from api.http import handles_errors, json_response
from shared.adapters.db.connection import ConnectionPool, UrlDatabase
from shared.adapters.telemetry import JOBS_SUBMITTED, record_queue_latency
from shared.domain.content import METADATA_ONLY
from shared.domain.errors import DatabaseUnavailable, NotFound
from shared.domain.messages import ItemMessage
from shared.domain.models import (
    FinaliseOutcome,
    ItemOutcome,
    ItemStatus,
    Job,
    JobOutcome,
    JobStatus,
    Owner,
    WorkItem,
)
from shared.domain.retry_policy import RetryPolicy
from shared.scraping.fetch import FetchError, FetchLimits
from shared.scraping.scrape import scrape_page
from shared.services import item_worker, orchestration_steps
from tests.conftest import memory_span_exporter
from tests.infra.conftest import INFRA, Template, body, expr

pytestmark = pytest.mark.infra

QUERIES = INFRA / "queries"

# Columns of the workspace tables: Azure Monitor Logs table reference,
# https://learn.microsoft.com/azure/azure-monitor/reference/tables/<table>.
_INGESTION = {"TenantId", "SourceSystem", "Type", "_ResourceId", "_SubscriptionId", "_BilledSize", "_IsBillable"}
_APP_COMMON = _INGESTION | {
    "AppRoleInstance", "AppRoleName", "AppVersion", "ClientBrowser", "ClientCity", "ClientCountryOrRegion",
    "ClientIP", "ClientModel", "ClientOS", "ClientStateOrProvince", "ClientType", "IKey", "OperationId",
    "OperationName", "ParentId", "Properties", "ResourceGUID", "SDKVersion", "SessionId", "SyntheticSource",
    "TimeGenerated", "UserAccountId", "UserAuthenticatedId", "UserId", "ItemCount",
}
TABLE_COLUMNS: dict[str, frozenset[str]] = {
    "AppRequests": frozenset(_APP_COMMON | {
        "DurationMs", "Id", "Measurements", "Name", "ReferencedItemId", "ReferencedType", "ResultCode", "Source",
        "Success", "Url"}),
    "AppDependencies": frozenset(_APP_COMMON | {
        "Data", "DependencyType", "DurationMs", "Id", "Measurements", "Name", "ReferencedItemId", "ReferencedType",
        "ResultCode", "Success", "Target"}),
    "AppMetrics": frozenset(_APP_COMMON | {"Max", "Min", "Name", "Sum"}),
    "AppTraces": frozenset(_APP_COMMON | {
        "Measurements", "Message", "ReferencedItemId", "ReferencedType", "SeverityLevel"}),
    "AppExceptions": frozenset(_APP_COMMON | {
        "Assembly", "Details", "ExceptionType", "HandledAt", "InnermostAssembly", "InnermostMessage",
        "InnermostMethod", "InnermostType", "Measurements", "Message", "Method", "OuterAssembly", "OuterMessage",
        "OuterMethod", "OuterType", "ProblemId", "SeverityLevel"}),
    "FunctionAppLogs": frozenset(_INGESTION | {
        "TimeGenerated", "ActivityId", "AppName", "Category", "EventId", "EventName", "ExceptionDetails",
        "ExceptionMessage", "ExceptionType", "FunctionInvocationId", "FunctionName", "HostInstanceId",
        "HostVersion", "Level", "LevelId", "Location", "Message", "ProcessId", "RoleInstance"}),
    "StorageQueueLogs": frozenset(_INGESTION | {
        "TimeGenerated", "AccountName", "AuthenticationHash", "AuthenticationType", "AuthorizationDetails",
        "CallerIpAddress", "Category", "ClientRequestId", "ConditionsUsed", "ContentLengthHeader", "CorrelationId",
        "DurationMs", "Etag", "LastModifiedTime", "Location", "OperationCount", "OperationName", "OperationVersion",
        "Protocol", "ReferrerHeader", "RequestBodySize", "RequesterAppId", "RequesterAudience",
        "RequesterObjectId", "RequesterTenantId", "RequesterTokenIssuer", "RequesterUpn", "RequestHeaderSize",
        "RequestMd5", "ResponseBodySize", "ResponseHeaderSize", "ResponseMd5", "SchemaVersion", "ServerLatencyMs",
        "ServiceType", "StatusCode", "StatusText", "TlsVersion", "Uri", "UserAgentHeader"}),
    "AzureMetrics": frozenset(_INGESTION | {
        "TimeGenerated", "Average", "Count", "Maximum", "MetricName", "Minimum", "Resource", "ResourceGroup",
        "ResourceId", "ResourceProvider", "SubscriptionId", "TimeGrain", "Total", "UnitName"}),
}
APP_TABLES = frozenset(name for name in TABLE_COLUMNS if name.startswith("App"))

# Classic Application Insights names, which a query on the workspace cannot use: "Migrate to workspace-based
# Application Insights resources", Table structure and Table schemas
# (https://learn.microsoft.com/azure/azure-monitor/app/convert-classic-resource).
CLASSIC_TABLES = frozenset({
    "requests", "dependencies", "customMetrics", "traces", "exceptions", "customEvents", "pageViews",
    "availabilityResults", "browserTimings", "performanceCounters"})
CLASSIC_COLUMNS = frozenset({
    "timestamp", "itemType", "itemCount", "itemId", "customDimensions", "customMeasurements", "operation_Id",
    "operation_Name", "operation_ParentId", "operation_SyntheticSource", "session_Id", "user_Id",
    "user_AuthenticatedId", "user_AccountId", "application_Version", "client_Type", "client_Model", "client_OS",
    "client_IP", "client_City", "client_StateOrProvince", "client_CountryOrRegion", "client_Browser",
    "cloud_RoleName", "cloud_RoleInstance", "appId", "appName", "iKey", "sdkVersion", "name", "id", "duration",
    "success", "resultCode", "url", "source", "performanceBucket", "target", "type", "data", "value",
    "valueCount", "valueSum", "valueMin", "valueMax", "valueStdDev", "message", "severityLevel", "problemId",
    "handledAt", "assembly", "method", "outerType", "outerMessage", "outerAssembly", "outerMethod",
    "innermostType", "innermostMessage", "innermostAssembly", "innermostMethod", "details", "size", "location"})

# Envelope to workspace row. The envelope's context tags and data fields are Application Insights' data model
# (https://learn.microsoft.com/azure/azure-monitor/app/data-model-complete), stored as the classic columns and
# renamed in the workspace per the schema tables of the page above, e.g. ai.operation.id -> operation_Id ->
# OperationId, MetricDataPoint.value -> valueSum -> Sum.
ENVELOPE_TABLES = {"RequestData": "AppRequests", "RemoteDependencyData": "AppDependencies",
                   "MetricData": "AppMetrics", "MessageData": "AppTraces", "ExceptionData": "AppExceptions"}
TAG_COLUMNS = {
    "ai.operation.id": "OperationId", "ai.operation.parentId": "ParentId", "ai.operation.name": "OperationName",
    "ai.operation.syntheticSource": "SyntheticSource", "ai.cloud.role": "AppRoleName",
    "ai.cloud.roleInstance": "AppRoleInstance", "ai.application.ver": "AppVersion",
    "ai.internal.sdkVersion": "SDKVersion", "ai.session.id": "SessionId", "ai.user.id": "UserId",
    "ai.user.authUserId": "UserAuthenticatedId", "ai.user.accountId": "UserAccountId", "ai.location.ip": "ClientIP",
    "ai.device.type": "ClientType", "ai.device.model": "ClientModel", "ai.device.osVersion": "ClientOS",
}
FIELD_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "RequestData": {
        "name": ("Name",), "id": ("Id",), "duration": ("DurationMs",), "response_code": ("ResultCode",),
        "success": ("Success",), "url": ("Url",), "source": ("Source",), "properties": ("Properties",),
        "measurements": ("Measurements",)},
    "RemoteDependencyData": {
        "name": ("Name",), "id": ("Id",), "duration": ("DurationMs",), "result_code": ("ResultCode",),
        "success": ("Success",), "data": ("Data",), "target": ("Target",), "type": ("DependencyType",),
        "properties": ("Properties",), "measurements": ("Measurements",)},
    "MetricData": {
        "metrics.0.name": ("Name",), "metrics.0.value": ("Sum",), "metrics.0.count": ("ItemCount",),
        "metrics.0.min": ("Min",), "metrics.0.max": ("Max",), "properties": ("Properties",)},
    "MessageData": {
        "message": ("Message",), "severity_level": ("SeverityLevel",), "properties": ("Properties",),
        "measurements": ("Measurements",)},
    "ExceptionData": {
        "exceptions": ("Details",), "exceptions.0.type_name": ("ExceptionType", "OuterType", "InnermostType"),
        "exceptions.0.message": ("OuterMessage", "InnermostMessage"), "severity_level": ("SeverityLevel",),
        "problem_id": ("ProblemId",), "properties": ("Properties",), "measurements": ("Measurements",)},
}
# Set at ingestion for every row: the item count of a sampled span or log record comes from its sample rate.
INGESTED = frozenset(_INGESTION | {"IKey", "ResourceGUID", "ItemCount"})
# The exporter's result code when it knows none (every span that is not HTTP).
NO_RESULT_CODE = "0"

# The panes the issue asks for, by workbook item name.
PANES = {"jobs", "items-per-minute", "fetch-latency", "queue-depth", "queue-age", "poison", "failing-hosts",
         "http-5xx", "postgres"}


@dataclass(frozen=True)
class Row:
    """One workspace row the app's telemetry becomes: its table and its populated columns."""

    table: str
    columns: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.columns.get("Name", ""))

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.columns.get("Properties", {}))


def _field(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if data is None:
            return None
        data = data[int(part)] if part.isdigit() else getattr(data, part, None)
    return data


def _populated(column: str, value: Any) -> bool:
    return value not in (None, "", {}, []) and not (column == "ResultCode" and value == NO_RESULT_CODE)


def workspace_row(envelope: Any) -> Row:
    """The row an envelope becomes in the workspace, with only the columns it fills."""
    base_type = envelope.data.base_type
    values: dict[str, Any] = {column: envelope.tags[tag] for tag, column in TAG_COLUMNS.items()
                              if tag in envelope.tags}
    values["TimeGenerated"] = envelope.time
    for field, columns in FIELD_COLUMNS[base_type].items():
        values.update(dict.fromkeys(columns, _field(envelope.data.base_data, field)))
    return Row(ENVELOPE_TABLES[base_type], {c: v for c, v in values.items() if _populated(c, v)})


class _Sender:
    """Where a worker sends an item's next message: kept in memory."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, int]] = []

    def send_later(self, message: Any, delay_s: int) -> None:
        self.sent.append((message, delay_s))


def _record_app_telemetry() -> None:
    """The app's code paths that record spans and metrics, run without I/O: PostgreSQL is a refused port, a
    fetch a blocked address, and the two steps whose metric comes after a database answer get that answer
    in place of the database (the call sites that record the metrics run as they are)."""
    _serve_api_requests()
    unreachable = ConnectionPool(UrlDatabase("postgresql://trawl@127.0.0.1:1/trawl"), acquire_timeout_s=1)
    message = ItemMessage(job_id=uuid4(), seq=7)
    sender = _Sender()
    config = item_worker.WorkerConfig(FetchLimits(), RetryPolicy())
    assert item_worker.process_item(unreachable, sender, message, config).action == "delayed_by_outage"
    assert [sent.seq for sent, _ in sender.sent] == [message.seq], "the outage put the item back"
    with pytest.raises(FetchError):
        item_worker._fetch(scrape_page, "http://127.0.0.1:1/private?token=secret", FetchLimits(), METADATA_ONLY)
    record_queue_latency(datetime.now(UTC) - timedelta(seconds=3))
    JOBS_SUBMITTED.add(1)  # its one call site (api/jobs.py) adds no attributes
    work = WorkItem(job_status=JobStatus.RUNNING, cancel_requested=False,
                    deadline_at=datetime.now(UTC) + timedelta(hours=1), url="https://example.com/",
                    status=ItemStatus.PENDING, attempts=5, queued_attempt=5, next_attempt_at=None,
                    last_error_code="timeout", last_error_message="read timed out", http_status=None,
                    owner=Owner(tenant_id="t", object_id="o"))
    finished = FinaliseOutcome(changed=True, job=Job.model_construct(id=message.job_id,
                                                                     status=JobStatus.COMPLETED_WITH_ERRORS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item_worker, "read", lambda pool, step: work)
        patch.setattr(item_worker, "in_transaction",
                      lambda pool, step: ItemOutcome(changed=True, job_status=JobStatus.RUNNING, remaining=0))
        assert item_worker.give_up_item(unreachable, message).action == "failed"
        patch.setattr(orchestration_steps, "in_transaction", lambda pool, step: finished)
        orchestration_steps.finalise_job(unreachable, message.job_id, JobOutcome.COMPLETED)


def _serve_api_requests() -> None:
    """The API's server spans, through the real `handles_errors`: a 2xx, a 4xx and a 5xx."""
    def ok(req: func.HttpRequest) -> func.HttpResponse:
        return json_response({"ok": True})

    def missing(req: func.HttpRequest) -> func.HttpResponse:
        raise NotFound("no such job")

    async def outage(req: func.HttpRequest) -> func.HttpResponse:
        raise DatabaseUnavailable()

    for endpoint in (ok, missing):
        handles_errors(endpoint)(func.HttpRequest("GET", "http://localhost/api/jobs", headers={}, body=b""))
    asyncio.run(handles_errors(outage)(func.HttpRequest("POST", "http://localhost/api/jobs", headers={}, body=b"")))


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    """The workspace rows the app's telemetry becomes: its spans (and their exception events) and metrics,
    recorded in memory and converted by the Azure Monitor exporter's own functions (the exporter object
    would start its statsbeat and control-plane threads)."""
    spans = memory_span_exporter()
    reader = InMemoryMetricReader()
    if isinstance(metrics.get_meter_provider(), MeterProvider):
        pytest.fail("an SDK meter provider is already installed in this process: its metrics cannot be read here")
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    _record_app_telemetry()

    envelopes = []
    for span in spans.get_finished_spans():
        envelopes += [_convert_span_to_envelope(span), *_convert_span_events_to_envelopes(span)]
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                envelopes += [_convert_point_to_envelope(point, metric.name, resource_metrics.resource,
                                                         scope_metrics.scope) for point in metric.data.data_points]
    return [workspace_row(envelope) for envelope in envelopes]


TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*)
  | (?P<string>@"[^"]*"|@'[^']*'|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\d+(?:\.\d+)?[a-z]*)
  | (?P<op>==|!=|=~|!~|>=|<=|\.\.|\S)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str

    @property
    def value(self) -> str:
        """A string literal's text without its quotes (and without the @ of a verbatim string)."""
        return self.text.lstrip("@")[1:-1]


@dataclass(frozen=True)
class Query:
    """One KQL query, tokenized: the tables, columns, names and custom properties it reads."""

    text: str

    @cached_property
    def tokens(self) -> list[Token]:
        found = [Token(m.lastgroup or "", m.group()) for m in TOKEN.finditer(self.text)]
        return [token for token in found if token.kind != "comment"]

    def _names(self) -> Iterator[tuple[int, Token]]:
        """Names that are not a dynamic value's member (Properties.key): tables, columns, functions, keywords."""
        for index, token in enumerate(self.tokens):
            if token.kind == "name" and (index == 0 or self.tokens[index - 1].text != "."):
                yield index, token

    @property
    def tables(self) -> set[str]:
        return {t.text for _, t in self._names() if t.text in TABLE_COLUMNS or t.text in CLASSIC_TABLES}

    @property
    def columns(self) -> set[str]:
        """Every PascalCase name: by the queries' naming rule, a table column."""
        return {t.text for _, t in self._names() if re.match(r"_?[A-Z]", t.text) and t.text not in TABLE_COLUMNS}

    @property
    def classic_names(self) -> set[str]:
        return {t.text for _, t in self._names() if t.text in CLASSIC_COLUMNS | CLASSIC_TABLES}

    def compared_to(self, column: str) -> set[str]:
        """The string literals the query compares `column` with (`==`, `=~`, `in (...)`)."""
        values: set[str] = set()
        for index, token in self._names():
            if token.text != column:
                continue
            rest = self.tokens[index + 1:]
            if len(rest) > 1 and rest[0].text in ("==", "=~") and rest[1].kind == "string":
                values.add(rest[1].value)
            elif len(rest) > 1 and rest[0].text == "in" and rest[1].text == "(":
                for item in rest[2:]:
                    if item.text == ")":
                        break
                    if item.kind == "string":
                        values.add(item.value)
        return values

    @property
    def property_keys(self) -> set[str]:
        """The custom properties read: Properties["key"] or Properties.key."""
        keys = set()
        for index, token in self._names():
            rest = self.tokens[index + 1:index + 4]
            if token.text == "Properties" and len(rest) == 3 and rest[0].text == "[" and rest[1].kind == "string":
                keys.add(rest[1].value)
            elif token.text == "Properties" and len(rest) >= 2 and rest[0].text == "." and rest[1].kind == "name":
                keys.add(rest[1].text)
        return keys


def problems(query: Query, rows: list[Row]) -> list[str]:
    """What in `query` the app's telemetry and the workspace's tables would not give it."""
    found = [f"classic Application Insights name {name!r}: the workspace calls it otherwise"
             for name in sorted(query.classic_names)]
    tables = query.tables - CLASSIC_TABLES
    if len(tables) != 1:
        return [*found, f"reads {sorted(tables)}: each query reads exactly one workspace table"]
    (table,) = tables
    found += [f"{table} has no column {column!r}" for column in sorted(query.columns - TABLE_COLUMNS[table])]
    if table not in APP_TABLES:
        return found
    emitted = [row for row in rows if row.table == table]
    names = query.compared_to("Name")
    found += [f"the app sends no {table} row named {name!r}" for name in sorted(names - {r.name for r in emitted})]
    selected = [row for row in emitted if row.name in names] if names else emitted
    filled = INGESTED.union(*(row.columns for row in selected))
    found += [f"the app's {table} rows {sorted(names)} leave {column} empty"
              for column in sorted(query.columns & TABLE_COLUMNS[table] - filled)]
    carried = set().union(*(row.properties for row in selected))
    found += [f"no {table} row {sorted(names)} carries the custom property {key!r}"
              for key in sorted(query.property_keys - carried)]
    return found


def query_files() -> list[str]:
    return sorted(path.name for path in QUERIES.glob("*.kql"))


@pytest.mark.parametrize("file", query_files())
def test_every_query_reads_what_the_app_and_the_workspace_provide(file: str, rows: list[Row]) -> None:
    query = Query((QUERIES / file).read_text())
    assert not problems(query, rows), f"infra/queries/{file}:\n" + "\n".join(problems(query, rows))


@pytest.mark.parametrize(("kql", "problem"), [
    ('customMetrics | where name == "trawl.poison.count" | summarize sum(valueSum)',
     "classic Application Insights name 'customMetrics'"),
    ('AppMetrics | where Name == "trawl.jobs.done" | summarize jobs = sum(Sum)',
     "the app sends no AppMetrics row named 'trawl.jobs.done'"),
    ('AppMetrics | where Name == "trawl.poison.count" | summarize poisoned = sum(Value)',
     "AppMetrics has no column 'Value'"),
    ('AppDependencies | where Name == "fetch" | summarize count() by code = tostring(Properties["http.response.status_code"])',
     "no AppDependencies row ['fetch'] carries the custom property 'http.response.status_code'"),
    ('AppDependencies | where Name == "fetch" | summarize count() by ResultCode',
     "the app's AppDependencies rows ['fetch'] leave ResultCode empty"),
    ('AppRequests | summarize count() by Url', "the app's AppRequests rows [] leave Url empty"),
    ('AppMetrics | where Name == "trawl.items.processed" | summarize sum(Sum) by tostring(Properties.result)',
     "no AppMetrics row ['trawl.items.processed'] carries the custom property 'result'"),
    ('FunctionAppLogs | where Severity == "Error" | summarize count()', "FunctionAppLogs has no column 'Severity'"),
    ('AppRequests | join (AppDependencies) on OperationId', "each query reads exactly one workspace table"),
], ids=["classic-table", "unknown-metric", "unknown-column", "filtered-attribute", "default-result-code",
        "unset-url", "unknown-dimension", "resource-log-column", "two-tables"])
def test_the_check_rejects_what_the_telemetry_does_not_have(kql: str, problem: str, rows: list[Row]) -> None:
    """The check can fail: each of these reads something the app or the workspace does not provide."""
    found = problems(Query(kql), rows)
    assert any(problem in line for line in found), found


def test_the_telemetry_under_check_is_the_apps(rows: list[Row]) -> None:
    """The rows come from the app's code: its metrics with their dimensions, its spans with their properties."""
    metric_names = {row.name for row in rows if row.table == "AppMetrics"}
    assert {"trawl.jobs.submitted", "trawl.jobs.finished", "trawl.items.processed", "trawl.poison.count",
            "trawl.fetch.duration", "trawl.queue.latency"} <= metric_names
    [finished] = [row for row in rows if row.name == "trawl.jobs.finished"]
    assert finished.properties == {"status": "completed_with_errors"}
    [fetch] = [row for row in rows if row.table == "AppDependencies" and row.name == "fetch"]
    assert fetch.properties == {"url.host": "127.0.0.1", "trawl.error.code": "blocked_address"}
    assert fetch.columns["Success"] is False
    codes = sorted(row.columns.get("ResultCode", "") for row in rows if row.table == "AppRequests")
    assert codes == ["", "200", "404", "503"], "the scrape item request, and the API's three responses"
    assert any(row.table == "AppExceptions" for row in rows), "the failed fetch's exception event"


def _workbook_items(module: Callable[[str], Template]) -> list[dict[str, Any]]:
    workbook = module("workbook")
    (resource,) = workbook.resources_of_type("Microsoft.Insights/workbooks")
    data = resource["properties"]["serializedData"]["function"]
    assert data["type"] == "string", "serializedData is the workbook object, serialized"
    items = data["parameters"]["value_to_convert"]["items"]["function"]["parameters"]
    assert items["arg_2"] == "queryItems"
    loop = workbook.var("queryItems")
    assert loop["loop_type"]["detail"]["array_name"] == "panes"
    assert items["arg_1"] == ["timeRange"]
    return list(workbook.var("panes"))


def test_the_workbook_has_a_pane_per_signal_the_issue_lists(module: Callable[[str], Template]) -> None:
    panes = {pane["name"]: pane for pane in _workbook_items(module)}
    assert set(panes) == PANES
    for name, pane in panes.items():
        load = pane["query"]["function"]
        assert load["type"] == "load_text_content", f"pane {name}: its query is a file under infra/queries/"
        assert load["parameters"]["file_path"] == f"../queries/workbook-{name}.kql"


@pytest.mark.parametrize(("pane", "reads"), [
    ("jobs", {"trawl.jobs.submitted", "trawl.jobs.finished"}),
    ("items-per-minute", {"trawl.items.processed"}),
    ("fetch-latency", {"fetch"}),
    ("queue-age", {"trawl.queue.latency"}),
    ("poison", {"trawl.poison.count"}),
    ("failing-hosts", {"fetch"}),
])
def test_each_app_pane_reads_its_signal(pane: str, reads: set[str]) -> None:
    assert Query((QUERIES / f"workbook-{pane}.kql").read_text()).compared_to("Name") == reads


def test_the_fetch_latency_pane_shows_p50_and_p95_of_the_fetch_spans() -> None:
    text = (QUERIES / "workbook-fetch-latency.kql").read_text()
    assert Query(text).tables == {"AppDependencies"}
    assert re.findall(r"percentilew\(DurationMs, ItemCount, (\d+)\)", text) == ["50", "95"]


def test_the_resource_panes_read_the_queue_log_and_the_postgres_metrics() -> None:
    depth = Query((QUERIES / "workbook-queue-depth.kql").read_text())
    assert depth.tables == {"StorageQueueLogs"}
    # Queue service REST operations: https://learn.microsoft.com/rest/api/storageservices/queue-service-rest-api
    assert depth.compared_to("OperationName") == {"PutMessage", "DeleteMessage"}
    postgres = Query((QUERIES / "workbook-postgres.kql").read_text())
    assert postgres.tables == {"AzureMetrics"}
    # Supported metrics for Microsoft.DBforPostgreSQL/flexibleServers (names in the REST API).
    assert postgres.compared_to("MetricName") == {"cpu_percent", "active_connections", "connections_failed"}
    assert postgres.compared_to("ResourceProvider") == {"Microsoft.DBforPostgreSQL"}


def test_the_http_5xx_pane_counts_by_response_code() -> None:
    text = (QUERIES / "workbook-http-5xx.kql").read_text()
    assert Query(text).tables == {"AppRequests"} and "status >= 500" in text and "Success" not in text


def test_every_pane_queries_the_workspace_over_the_chosen_time_range(module: Callable[[str], Template]) -> None:
    workbook = module("workbook")
    scope = workbook.var("workspaceScope")
    assert scope == {"queryType": 0, "resourceType": "microsoft.operationalinsights/workspaces",
                     "crossComponentResources": ["logAnalyticsWorkspaceId"]}
    content = workbook.var("queryItems")["config"]["content"]["function"]
    assert content["type"] == "union" and content["parameters"]["arg_1"] == "workspaceScope"
    assert content["parameters"]["arg_2"]["timeContextFromParameter"] == "TimeRange"
    [parameter] = workbook.var("timeRange")["content"]["parameters"]
    assert parameter["name"] == "TimeRange" and parameter["type"] == 4


def test_the_workbook_is_a_shared_workbook_of_the_workspace(module: Callable[[str], Template]) -> None:
    (resource,) = module("workbook").resources_of_type("Microsoft.Insights/workbooks")
    assert resource["kind"] == "shared"
    properties = resource["properties"]
    assert (properties["category"], properties["version"]) == ("workbook", "Notebook/1.0")
    assert properties["sourceId"] == "logAnalyticsWorkspaceId"
    assert resource["name"]["function"]["type"] == "guid", "a workbook's name is a GUID"
    call = body(module("monitoring").modules["workbook"]["config"])
    assert expr(call["params"]["logAnalyticsWorkspaceId"]) == "workspace.id"
    assert module("monitoring").modules["workbook"]["detail"]["path"] == "workbook.bicep"


def test_every_query_file_is_used_once_and_every_query_is_a_file() -> None:
    """Alerts and workbook load their KQL from infra/queries/: no inline query, no file left unused."""
    loaded: list[str] = []
    for name in ("alerts", "workbook"):
        text = (INFRA / "modules" / f"{name}.bicep").read_text()
        loaded += re.findall(r"loadTextContent\('\.\./queries/([\w.-]+\.kql)'\)", text)
        assert not re.search(r"'''", text), f"{name}.bicep: a query written inline"
    assert sorted(loaded) == query_files()
