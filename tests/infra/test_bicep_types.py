"""Bicep's type check, offline: every resource body under infra/ against Azure's type definitions, read
from the azure-mgmt-* SDKs' model classes (tests/infra/bicep_types/). pycep and checkov accept unknown
properties, wrong types and misspelt enum values; `bicep build` would not, and neither does this.

What the checker cannot know statically (function calls, property accesses, loop variables...) it
skips and counts; the counts are printed with the result, and so is every resource type checked against
an SDK API version other than the template's."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep_types.checker import MAPPING_HINT, Checker, Finding, Report
from tests.infra.bicep_types.sdk_types import RESOURCE_MODELS, SdkLibrary, api_versions_in
from tests.infra.conftest import INFRA, Template

pytestmark = pytest.mark.infra

LIBRARY = SdkLibrary()


def check(path: str, tree: dict[str, Any]) -> Report:
    return Checker(LIBRARY, path, tree).check_template()


def summary(report: Report, templates: int) -> str:
    lines = [f"Bicep type check: {report.resources} resource bodies in {templates} templates, "
             f"{report.checked} values checked, {report.skipped.total()} not statically known and skipped:"]
    lines += [f"  {count:4}  {reason}" for reason, count in report.skipped.most_common()]
    lines += ["Checked against another API version (no SDK release has the template's):"]
    lines += [f"  {name} against the SDK's {model.api_version} ({model.package}.{model.name})"
              for name, model in sorted(RESOURCE_MODELS.items())
              if name.rsplit("@", 1)[1] != model.api_version]
    return "\n".join(lines)


def test_every_resource_type_infra_uses_is_mapped(templates: dict[str, Template]) -> None:
    used = {f"{resource['type']}@{resource['api_version']}" for template in templates.values()
            for resource in template.resources.values()}
    missing = sorted(name for name in used if name.lower() not in LIBRARY.names())
    assert not missing, f"no type definition for {missing}: {MAPPING_HINT}"


@pytest.mark.parametrize("name", sorted(RESOURCE_MODELS))
def test_each_mapping_names_a_model_of_the_api_version_it_records(name: str) -> None:
    """The recorded SDK API version is one the installed package sends, so a new pin that moves a package
    to another version fails here until the table (and the summary) say so; and the model has a body."""
    model = RESOURCE_MODELS[name]
    assert model.api_version in api_versions_in(model.package), (name, sorted(api_versions_in(model.package)))
    body = LIBRARY.resource(name)
    assert body is not None and body.kind == "ObjectType" and "name" in body.entry["properties"], name


def test_resource_bodies_type_check_against_the_sdk_types(templates: dict[str, Template],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """No finding in any template; what went unchecked is printed even when the test passes."""
    report = Report()
    for path, template in sorted(templates.items()):
        report.merge(check(path, template.tree))
    with capsys.disabled():
        print("\n" + summary(report, len(templates)))
    assert report.resources == sum(len(template.resources) for template in templates.values())
    assert not report.findings, "against the SDK type definitions:\n" + "\n".join(map(str, report.findings))


@dataclass(frozen=True)
class Mutation:
    """One edit to one template and the finding it must produce (the message's start: unknown-property
    findings go on to list the allowed properties)."""

    name: str
    template: str
    before: str
    after: str
    where: str
    message: str


MUTATIONS = [
    Mutation("unknown siteConfig property", "modules/function-app.bicep",
             "siteConfig: {", "siteConfig: {\n      remoteDebugingEnabled: false",
             "modules/function-app.bicep functionApp.properties.siteConfig.remoteDebugingEnabled",
             "SiteConfig has no property 'remoteDebugingEnabled'"),
    # authConfig exists on the PostgreSQL flexible server (Entra-only sign-in), not on the site or API Management.
    Mutation("unknown authConfig property", "modules/postgres.bicep",
             "passwordAuth: 'Disabled'", "passwordAuthentication: 'Disabled'",
             "modules/postgres.bicep server.properties.authConfig.passwordAuthentication",
             "AuthConfig has no property 'passwordAuthentication'"),
    Mutation("publicNetworkAccess outside Enabled | Disabled", "modules/api-management.bicep",
             "publicNetworkAccess: 'Enabled'", "publicNetworkAccess: 'Enable'",
             "modules/api-management.bicep service.properties.publicNetworkAccess",
             "'Enable' is not one of 'Enabled' | 'Disabled'"),
    Mutation("timeAggregation outside its enum", "modules/alerts.bicep",
             "timeAggregation: 'Total'", "timeAggregation: 'Totally'",
             "modules/alerts.bicep logAlertRules.properties.criteria.allOf[0].timeAggregation",
             "'Totally' is not one of 'Count' | 'Average' | 'Minimum' | 'Maximum' | 'Total'"),
    Mutation("string where a bool belongs", "modules/function-app.bicep",
             "httpsOnly: true", "httpsOnly: 'true'",
             "modules/function-app.bicep functionApp.properties.httpsOnly",
             "is string, the property takes bool"),
    Mutation("write to a read-only property", "modules/function-app.bicep",
             "httpsOnly: true", "httpsOnly: true\n    defaultHostName: 'func.example.net'",
             "modules/function-app.bicep functionApp.properties.defaultHostName",
             "is read-only in SiteProperties"),
    Mutation("enum value in a variable, chosen by a condition", "modules/postgres.bicep",
             "publicNetworkAccess: 'Enabled'", "publicNetworkAccess: 'Enable'",
             "modules/postgres.bicep server.properties.network (if true) (variable publicNetwork).publicNetworkAccess",
             "'Enable' is not one of 'Enabled' | 'Disabled'"),
    Mutation("@allowed parameter value outside the enum", "modules/postgres.bicep",
             "'MemoryOptimized'", "'MemoryOptimised'",
             "modules/postgres.bicep server.sku.tier (parameter skuTier, @allowed)",
             "'MemoryOptimised' is not one of 'Burstable' | 'GeneralPurpose' | 'MemoryOptimized'"),
    # pycep parses `a == b ? c : d` as `a == (b ? c : d)`; the checker reads it as Bicep does.
    Mutation("string in a ternary after a comparison", "modules/api-management.bicep",
             "== 'Consumption' ? 0 : 1", "== 'Consumption' ? '0' : 1",
             "modules/api-management.bicep service.sku.capacity (if true)",
             "is string, the property takes int"),
    Mutation("unknown property in a for-expression's body", "modules/network.bicep",
             "serviceName: subnet.delegation", "service: subnet.delegation",
             "modules/network.bicep vnet.properties.subnets[for].properties.delegations[0].properties.service",
             "DelegationProperties has no property 'service' (it takes serviceName)"),
    Mutation("API version with no mapped SDK model", "modules/function-app.bicep",
             "'Microsoft.Web/sites@2024-04-01'", "'Microsoft.Web/sites@2099-01-01'",
             "modules/function-app.bicep functionApp",
             "no type definition for Microsoft.Web/sites@2099-01-01: map it to its SDK model"),
    # The metric alert's criteria are polymorphic ('odata.type'), and so are their items ('criterionType').
    Mutation("discriminator value outside the variants", "modules/alerts.bicep",
             "'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'",
             "'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriterion'",
             "modules/alerts.bicep postgresMetricAlerts.properties.criteria.odata.type",
             "'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriterion' is not one of"),
    Mutation("enum inside a polymorphic variant's item", "modules/alerts.bicep",
             "operator: 'GreaterThan'\n          threshold: alert.threshold\n          timeAggregation: alert",
             "operator: 'Greater'\n          threshold: alert.threshold\n          timeAggregation: alert",
             "modules/alerts.bicep postgresMetricAlerts.properties.criteria.allOf[0].operator",
             "'Greater' is not one of 'Equals' | 'GreaterThan'"),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_a_mutated_template_fails_the_check(mutation: Mutation, tmp_path: Path,
                                            parse_bicep: Callable[[Path], dict[str, Any]]) -> None:
    """The template, changed in one place and parsed by pycep as in the other infra tests, yields
    exactly the one finding the change deserves."""
    text = (INFRA / mutation.template).read_text()
    assert text.count(mutation.before) == 1, f"{mutation.template} no longer has one {mutation.before!r}"
    copy = tmp_path / mutation.template
    copy.parent.mkdir(parents=True)
    copy.write_text(text.replace(mutation.before, mutation.after))
    findings: list[Finding] = check(mutation.template, parse_bicep(tmp_path)[mutation.template]).findings
    assert len(findings) == 1, "\n".join(map(str, findings))
    assert findings[0].where == mutation.where and findings[0].message.startswith(mutation.message), findings[0]
