"""Alerts watch signals the app really emits: the custom metrics they query are instruments in
shared/adapters/telemetry.py and the job statuses they count are JobStatus values."""
from __future__ import annotations

import re
from typing import Any

import pytest

from shared.domain.models import JobStatus
from tests.infra.conftest import REPO

pytestmark = pytest.mark.infra

INSTRUMENT = re.compile(r"""create_(?:counter|histogram|up_down_counter|gauge)\(\s*["']([\w.]+)["']""")


def instruments() -> set[str]:
    return set(INSTRUMENT.findall((REPO / "shared" / "telemetry.py").read_text()))


def test_log_alerts_query_metrics_the_app_emits(module: Any) -> None:
    alerts = module("alerts")
    queried = set()
    for name in ("poisonQuery", "failedJobsQuery"):
        query = alerts.var(name)
        text = query if isinstance(query, str) else query["function"]["parameters"]["format_string"]
        queried |= set(re.findall(r'name == "([\w.]+)"', text))
    assert queried == {"trawl.poison.count", "trawl.jobs.finished"}
    assert queried <= instruments(), f"not emitted by shared/adapters/telemetry.py: {queried - instruments()}"


def test_failed_job_rate_counts_real_job_statuses(module: Any) -> None:
    text = module("alerts").var("failedJobsQuery")["function"]["parameters"]["format_string"]
    (statuses,) = re.findall(r"status in \(([^)]*)\)", text)
    counted = set(re.findall(r'"(\w+)"', statuses))
    assert counted == {JobStatus.FAILED.value, JobStatus.TIMED_OUT.value}


def test_every_alert_notifies_the_action_group(module: Any) -> None:
    alerts = module("alerts")
    (group,) = alerts.resources_of_type("Microsoft.Insights/actionGroups")
    assert group["properties"]["emailReceivers"][0]["emailAddress"] == "alertEmail"
    (log_rule,) = alerts.resources_of_type("Microsoft.Insights/scheduledQueryRules")
    assert log_rule["properties"]["scopes"] == ["applicationInsightsId"]
    assert log_rule["properties"]["actions"]["actionGroups"] == [
        {"operator": {"type": "property_accessor", "operands": {"operand_1": "actionGroup", "operand_2": "id"}}}]
    names = [alert["name"] for alert in alerts.var("logAlerts")]
    assert names == ["poison", "failed-jobs", "function-errors"]
    (metric_rule,) = alerts.resources_of_type("Microsoft.Insights/metricAlerts")
    assert metric_rule["properties"]["scopes"] == ["postgresServerId"]
    metrics = {alert["metricName"] for alert in alerts.var("postgresAlerts")}
    assert metrics == {"cpu_percent", "storage_percent"}
