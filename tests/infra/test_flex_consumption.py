"""The Function App asks Flex Consumption only for what that plan accepts: no site property or app
setting from Microsoft's Flex deprecations table, instance sizes the plan offers, and Microsoft's
Durable Functions recommendations for the plan (one always-ready `durable` instance, the plan's own
queue polling default)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import REPO, Template, body

pytestmark = pytest.mark.infra

# Microsoft, "App settings reference for Azure Functions", Flex Consumption plan deprecations: site
# properties that "shouldn't be used" on Flex (ftpsState: "FTPS not supported", error 51021).
FLEX_DEPRECATED_SITE_PROPERTIES = {
    "alwaysOn", "containerSize", "ftpsState", "isReserved", "IsXenon", "javaVersion", "linuxFxVersion",
    "netFrameworkVersion", "powerShellVersion", "functionAppScaleLimit", "preWarmedInstanceCount",
    "use32BitWorkerProcess", "vnetBackupRestoreEnabled", "vnetContentShareEnabled", "vnetImagePullEnabled",
    "vnetRouteAllEnabled", "windowsFxVersion",
}
# What Microsoft's Flex Consumption samples (Azure-Samples/azure-functions-flex-consumption-samples,
# functions-quickstart-python-http-azd) put in siteConfig, and what this template adds on top, each
# listed in README.md under what to confirm on the first deployment.
SAMPLE_SITE_CONFIG = {"appSettings"}
KEPT_TO_CONFIRM = {"minTlsVersion"}
# Microsoft, "Azure Functions Flex Consumption plan hosting", Instance sizes.
FLEX_INSTANCE_MEMORY_MB = [512, 2048, 4096]


def site(module: Any) -> dict[str, Any]:
    sites: list[dict[str, Any]] = module("function-app").resources_of_type("Microsoft.Web/sites")
    return sites[0]


def deploy_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("\n## Deploy to Azure\n", 1)[1].split("\n## ", 1)[0]


def test_the_site_config_holds_only_what_flex_accepts(module: Any) -> None:
    config = site(module)["properties"]["siteConfig"]
    assert set(config) == SAMPLE_SITE_CONFIG | KEPT_TO_CONFIRM
    for kept in KEPT_TO_CONFIRM:
        assert f"`siteConfig.{kept}`" in deploy_section(), f"README.md: list siteConfig.{kept} to confirm"


def test_no_site_property_is_one_flex_deprecates(module: Any) -> None:
    properties = site(module)["properties"]
    used = set(properties) | set(properties["siteConfig"])
    assert not {name.lower() for name in used} & {name.lower() for name in FLEX_DEPRECATED_SITE_PROPERTIES}


def test_instance_memory_is_a_size_flex_offers(main_template: Template, module: Any) -> None:
    for template, param in ((main_template, "functionInstanceMemoryMB"), (module("function-app"), "instanceMemoryMB")):
        (allowed,) = [d["argument"] for d in template.params[param]["decorators"] if d["type"] == "allowed"]
        assert allowed == FLEX_INSTANCE_MEMORY_MB, f"{template.path}: {param}"
        assert template.params[param]["default"] == 2048


def test_the_durable_group_keeps_one_always_ready_instance(main_template: Template, module: Any) -> None:
    """Microsoft's Durable Functions guidance for Flex Consumption: always ready 1 for `durable`."""
    assert main_template.params["functionDurableAlwaysReadyInstances"]["default"] == 1
    call = body(main_template.modules["functionApp"]["config"])["params"]
    assert call["durableAlwaysReadyInstances"] == "functionDurableAlwaysReadyInstances"
    always_ready = site(module)["properties"]["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"]
    operands = always_ready["operator"]["operands"]
    assert operands["condition"] == {"operator": {"type": "greater_than", "operands": {
        "operand_1": "durableAlwaysReadyInstances", "operand_2": 0}}}
    assert operands["true_value"] == [{"name": "durable", "instanceCount": "durableAlwaysReadyInstances"}]
    assert operands["false_value"] == [], "0 turns it off"


def test_durable_polls_its_queues_at_the_flex_default() -> None:
    """On Flex Consumption the Durable extension polls at most every second by default (its
    AzureStorageOptions tests: MaxQueuePollingInterval_FlexConsumption_DefaultValue); a longer
    maxQueuePollingInterval only delays orchestrations."""
    provider = json.loads((REPO / "host.json").read_text())["extensions"]["durableTask"]["storageProvider"]
    assert "maxQueuePollingInterval" not in provider
