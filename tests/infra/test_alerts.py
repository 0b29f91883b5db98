"""Alerts watch the pipeline's health with what the app and the platform really emit: their queries are
files under infra/queries/ (checked against the app's telemetry in test_workbook.py), the item outcomes,
function names and metric names they count are the app's and Azure's own, and a dead target site pages no one."""
from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrators.job import ORCHESTRATOR_NAME
from shared.domain.retry_policy import RetryPolicy
from tests.infra.conftest import INFRA, REPO, Template, expr

pytestmark = pytest.mark.infra

QUERIES = INFRA / "queries"
LOG_ALERTS = ["poison-rate", "queue-age", "orchestration-failures", "function-failures", "http-5xx-rate",
              "database-unreachable"]
# Supported metrics for Microsoft.DBforPostgreSQL/flexibleServers, names in the REST API
# (https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-dbforpostgresql-flexibleservers-metrics).
POSTGRES_METRICS = {"cpu_percent", "storage_percent", "connections_failed", "active_connections", "memory_percent"}


def alert_query(name: str) -> str:
    """The alert's query file without its comments."""
    return re.sub(r"//[^\n]*", "", (QUERIES / f"alert-{name}.kql").read_text())


def strings(text: str) -> list[str]:
    """The double-quoted string literals of a query."""
    return re.findall(r'"([^"]*)"', text)


def worker_actions() -> set[str]:
    """Every outcome the scrape worker reports (WorkResult actions), the values of trawl.items.processed."""
    source = (REPO / "shared" / "services" / "item_worker.py").read_text()
    return set(re.findall(r'WorkResult(?:\.of)?\(\s*"(\w+)"', source))


def background_functions() -> dict[str, str]:
    """The functions of the blueprints that hold the non-HTTP triggers, with their trigger types, as the host
    indexes them. In an app of their own: an app checks its function names once, and function_app.app is
    indexed by test_openapi.py."""
    import azure.durable_functions as df

    from activities import job_steps, reconciler, scrape_worker
    from orchestrators import job

    app = df.DFApp()
    for module in (scrape_worker, reconciler, job, job_steps):
        assert f"app.register_functions({module.__name__.rsplit('.', 1)[-1]}.bp)" in (
            REPO / "function_app.py").read_text(), module.__name__
        app.register_functions(module.bp)
    return {f.get_function_name(): f.get_trigger().type for f in app.get_functions()}


def test_every_log_alert_runs_its_query_file(module: Any) -> None:
    alerts = module("alerts")
    by_name = {alert["name"]: alert for alert in alerts.var("logAlerts")}
    assert list(by_name) == LOG_ALERTS
    for name, alert in by_name.items():
        query = alert["query"]
        if isinstance(query, str):  # a query with tunables: `let` statements, then the file
            query = alerts.var(query)
            assert f"loadTextContent('../queries/alert-{name}.kql')" in query, name
        else:
            assert query["function"]["parameters"]["file_path"] == f"../queries/alert-{name}.kql", name


@pytest.mark.parametrize(("variable", "file", "let", "param"), [
    ("poisonRateQuery", "poison-rate", "minimumItems", "poisonMinimumItems"),
    ("http5xxRateQuery", "http-5xx-rate", "minimumRequests", "http5xxMinimumRequests"),
])
def test_a_querys_tunables_come_from_parameters(module: Any, variable: str, file: str, let: str, param: str) -> None:
    alerts = module("alerts")
    assert alerts.var(variable).startswith(f"let {let} = ${{{param}}};\\n"), "declared before the file's text"
    assert param in alerts.params
    text = alert_query(file)
    assert re.search(rf"\b{let}\b", text) and f"let {let}" not in text


def test_the_poison_rate_divides_by_every_item_that_finished() -> None:
    text = alert_query("poison-rate")
    assert set(strings(text)) == {"trawl.items.processed", "trawl.poison.count", "outcome", "succeeded", "failed",
                                  "skipped"}
    final = {"succeeded", "failed", "skipped"}
    assert final <= worker_actions(), f"not outcomes the worker reports: {final - worker_actions()}"
    assert "project poisonedPercent = 100.0 * poisoned / finished" in text
    assert "extend finished = settled + poisoned" in text, "a poisoned item never reports a final outcome"


def test_the_database_outage_alert_counts_the_workers_put_backs() -> None:
    outcomes = [s for s in strings(alert_query("database-unreachable")) if s not in ("trawl.items.processed", "outcome")]
    assert outcomes == ["delayed_by_outage"] and set(outcomes) <= worker_actions()


def test_failed_fetches_and_given_up_items_page_no_one(module: Any) -> None:
    """A dead site is the caller's problem: no alert reads the fetch spans or their exceptions, and the only item
    outcomes alerts count are the pipeline's (poisoned, delayed by an outage); `failed` only divides."""
    for name in LOG_ALERTS:
        text = alert_query(name)
        assert not {"AppDependencies", "AppExceptions", "fetch", "trawl.fetch.duration"} & set(
            re.findall(r"[\w.]+", text)), name
    assert "sumif(Sum, Name == \"trawl.poison.count\")" in alert_query("poison-rate")
    assert "gave_up" not in "".join(alert_query(name) for name in LOG_ALERTS)


def test_the_5xx_rate_counts_server_errors_by_response_code() -> None:
    """api/http.py marks only a 5xx as an error; the exporter reports every 4xx as unsuccessful too, so the
    rate counts response codes, never Success."""
    text = alert_query("http-5xx-rate")
    assert "failed = sumif(ItemCount, status >= 500)" in text and "Success" not in text
    assert "extend status = toint(ResultCode)" in text


def test_function_failures_watch_the_queue_and_timer_functions() -> None:
    """These triggers leave no request with telemetryMode OpenTelemetry: their failures are read from
    FunctionAppLogs, by the category the host logs each function's runs under."""
    functions = background_functions()
    background = {name for name, trigger in functions.items() if trigger in ("queueTrigger", "timerTrigger")}
    assert background == {"scrape_item", "give_up_on_item", "reconcile_jobs"}
    categories = {s for s in strings(alert_query("function-failures")) if s.startswith("Function.")}
    assert categories == {f"Function.{name}" for name in background}
    assert {"Error", "Executed ", "(Failed,"} <= set(strings(alert_query("function-failures")))


def test_orchestration_failures_watch_the_job_orchestrator() -> None:
    assert background_functions()[ORCHESTRATOR_NAME] == "orchestrationTrigger"
    text = alert_query("orchestration-failures")
    # The Durable extension's FunctionFailed log line: "{instanceId}: Function '{name} ({type})' failed with an error."
    assert f"'{ORCHESTRATOR_NAME} (Orchestrator)' failed with an error" in strings(text)
    assert {"Host.Triggers.DurableTask", "Error"} <= set(strings(text))


def test_the_queue_age_threshold_is_above_the_longest_retry_backoff(module: Any, main_template: Template) -> None:
    """A retried item waits its backoff in the queue on purpose: that wait must not page anyone."""
    param = module("alerts").params["queueAgeMinutesThreshold"]
    [minimum] = [d["argument"] for d in param["decorators"] if d["type"] == "min_value"]
    configured = int(main_template.var("appSettings")["TRAWL_RETRY_MAX_DELAY_SECONDS"])
    longest_backoff_s = max(configured, RetryPolicy().max_delay_s)
    assert minimum * 60 > longest_backoff_s and param["default"] * 60 > longest_backoff_s
    assert "oldestMinutes = max(Max) / 60000.0" in alert_query("queue-age"), "trawl.queue.latency is in ms"


def test_every_alert_notifies_the_action_group(module: Any) -> None:
    alerts = module("alerts")
    (group,) = alerts.resources_of_type("Microsoft.Insights/actionGroups")
    assert group["properties"]["emailReceivers"][0]["emailAddress"] == "alertEmail"
    (log_rule,) = alerts.resources_of_type("Microsoft.Insights/scheduledQueryRules")
    assert log_rule["properties"]["actions"]["actionGroups"] == [
        {"operator": {"type": "property_accessor", "operands": {"operand_1": "actionGroup", "operand_2": "id"}}}]
    (metric_rule,) = alerts.resources_of_type("Microsoft.Insights/metricAlerts")
    assert metric_rule["properties"]["scopes"] == ["postgresServerId"]
    assert expr(metric_rule["properties"]["actions"][0]["actionGroupId"]) == "actionGroup.id"


def test_log_alerts_query_the_workspace_of_the_component(module: Any) -> None:
    """FunctionAppLogs reaches only the workspace; the App* tables are there too."""
    alerts = module("alerts")
    (log_rule,) = alerts.resources_of_type("Microsoft.Insights/scheduledQueryRules")
    assert [expr(scope) for scope in log_rule["properties"]["scopes"]] == [
        "appInsights.properties.WorkspaceResourceId"]
    component = alerts.resources["appInsights"]
    assert component["existing"] and component["type"] == "Microsoft.Insights/components"
    name = component["config"]["name"]["function"]
    assert name["type"] == "last" and name["parameters"]["arg_1"]["function"]["parameters"]["input_string"] == (
        "applicationInsightsId")


def test_postgres_metric_alerts_use_the_servers_metrics(module: Any) -> None:
    alerts = {alert["metricName"]: alert for alert in module("alerts").var("postgresAlerts")}
    assert set(alerts) == {"cpu_percent", "storage_percent", "connections_failed"} <= POSTGRES_METRICS
    assert alerts["connections_failed"]["aggregation"] == "Total", "a count of failures, not an average"
    assert {alerts[m]["aggregation"] for m in ("cpu_percent", "storage_percent")} == {"Average"}
