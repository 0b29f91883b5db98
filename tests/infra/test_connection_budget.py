"""The PostgreSQL connection budget: however the Function App scales, its instances cannot open more
sessions than the server's SKU admits. Checked by evaluating main.bicep's own expressions (the
instance cap and the pool size it sets) for every SKU, pool size and instance count it accepts."""
from __future__ import annotations

import re
from collections.abc import Callable
from itertools import product
from typing import Any

import pytest

from shared.settings import Settings
from tests.infra.conftest import REPO, Template, body

pytestmark = pytest.mark.infra

# Microsoft, "Limits in Azure Database for PostgreSQL flexible server", maximum connections table:
# "Maximum user connections" (max_connections less the 15 reserved for replication and monitoring).
MICROSOFT_MAX_USER_CONNECTIONS = {
    "Standard_B1ms": 35, "Standard_B2s": 414, "Standard_B2ms": 844, "Standard_B4ms": 1703, "Standard_B8ms": 3422,
    "Standard_D2ds_v5": 844, "Standard_D4ds_v5": 1703, "Standard_D8ds_v5": 3422, "Standard_D16ds_v5": 4985,
    "Standard_E2ds_v5": 1703, "Standard_E4ds_v5": 3422, "Standard_E8ds_v5": 4985,
}
TIER_PREFIXES = {"Standard_B": "Burstable", "Standard_D": "GeneralPurpose", "Standard_E": "MemoryOptimized"}
# Microsoft, "Azure Functions Flex Consumption plan hosting", Considerations: "The lowest maximum
# scale is currently 40. The highest currently supported value is 1000."
FLEX_LOWEST_MAXIMUM_INSTANCE_COUNT = 40
FLEX_HIGHEST_MAXIMUM_INSTANCE_COUNT = 1000
# The app's own sessions outside the pool: the event streams' LISTEN session (one per instance, held),
# and the schema migration (closed before the pool opens) with each /api/health probe (closed within
# seconds), budgeted together as one more: two per instance.
CONNECTIONS_OUTSIDE_THE_POOL = {"shared/adapters/db/listen.py", "shared/composition.py", "api/health.py"}
OUTSIDE_THE_POOL_PER_INSTANCE = 2
POOL = "shared/adapters/db/connection.py"
APP_CODE = ("function_app.py", "api", "activities", "orchestrators", "shared")


def evaluate(node: Any, template: Template, given: dict[str, Any]) -> Any:
    """The value of a parsed Bicep expression: `given` parameters, else their defaults; variables
    evaluated in turn. Covers what the budget uses: literals, min, string, + - * /, [index], .property."""
    if isinstance(node, bool | int):
        return node
    if isinstance(node, str):
        if node in given:
            return given[node]
        if node in template.params:
            return evaluate(template.params[node]["default"], template, given)
        if node in template.variables:
            return evaluate(template.var(node), template, given)
        return node
    if isinstance(node, list):
        return [evaluate(item, template, given) for item in node]
    if "function" in node:
        function = node["function"]
        args = [evaluate(arg, template, given) for arg in function["parameters"].values()]
        functions: dict[str, Callable[..., Any]] = {"min": min, "max": max, "string": str}
        return functions[function["type"]](*args)
    if "operator" in node:
        operator, operands = node["operator"]["type"], node["operator"]["operands"]
        if operator == "property_accessor":
            return evaluate(operands["operand_1"], template, given)[operands["operand_2"]]
        left, right = (evaluate(operands[key], template, given) for key in ("operand_1", "operand_2"))
        arithmetic = {"add": lambda a, b: a + b, "substract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
                      "divide": lambda a, b: a // b, "index_accessor": lambda a, b: a[b]}
        return arithmetic[operator](left, right)
    return {key: evaluate(value, template, given) for key, value in node.items()}


def decorator(template: Template, param: str, kind: str) -> Any:
    (value,) = [d["argument"] for d in template.params[param]["decorators"] if d["type"] == kind]
    return value


def budget(template: Template, **given: Any) -> tuple[int, int, int, int]:
    """(instances, connections per instance, reserved, server's user connections) for these parameters."""
    return (evaluate("functionInstanceLimit", template, given), evaluate("connectionsPerInstance", template, given),
            evaluate("postgresReservedConnections", template, given),
            evaluate("postgresMaxUserConnections", template, given))


def test_the_sku_table_is_microsofts(main_template: Template) -> None:
    skus = main_template.var("postgresSkus")
    assert decorator(main_template, "postgresSkuName", "allowed") == list(skus)
    for name, sku in skus.items():
        assert sku["maxUserConnections"] == MICROSOFT_MAX_USER_CONNECTIONS[name], name
        assert sku["tier"] == next(tier for prefix, tier in TIER_PREFIXES.items() if name.startswith(prefix))
    assert "Standard_B1ms" not in skus, "35 user connections cannot serve the 40 instances Flex allows at least"
    postgres_call = body(main_template.modules["postgres"]["config"])["params"]
    assert evaluate(postgres_call["skuTier"], main_template, {}) == "Burstable"


def test_no_accepted_parameters_let_the_instances_exceed_the_servers_connections(main_template: Template) -> None:
    assert decorator(main_template, "functionMaximumInstanceCount", "min_value") == FLEX_LOWEST_MAXIMUM_INSTANCE_COUNT
    assert decorator(main_template, "functionMaximumInstanceCount", "max_value") == FLEX_HIGHEST_MAXIMUM_INSTANCE_COUNT
    pools = range(decorator(main_template, "databasePoolSize", "min_value"),
                  decorator(main_template, "databasePoolSize", "max_value") + 1)
    requested = (FLEX_LOWEST_MAXIMUM_INSTANCE_COUNT, 100, FLEX_HIGHEST_MAXIMUM_INSTANCE_COUNT)
    for sku, pool, wanted in product(main_template.var("postgresSkus"), pools, requested):
        given = {"postgresSkuName": sku, "databasePoolSize": pool, "functionMaximumInstanceCount": wanted}
        instances, per_instance, reserved, server = budget(main_template, **given)
        assert per_instance == pool + OUTSIDE_THE_POOL_PER_INSTANCE, "the pool, the listener, migration/health"
        assert instances * per_instance + reserved <= server, given
        assert FLEX_LOWEST_MAXIMUM_INSTANCE_COUNT <= instances <= wanted, given


def test_the_default_deployment_keeps_its_instances_within_budget(main_template: Template) -> None:
    instances, per_instance, reserved, server = budget(main_template)
    assert (instances, per_instance, reserved, server) == (80, 5, 5, 414)
    assert instances == main_template.params["functionMaximumInstanceCount"]["default"], "not silently lowered"


def test_the_app_pools_what_the_budget_assumes(main_template: Template, app_settings: dict[str, Any]) -> None:
    assert app_settings["TRAWL_DATABASE_POOL_SIZE"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "databasePoolSize"}}}
    function_app = body(main_template.modules["functionApp"]["config"])["params"]
    assert function_app["maximumInstanceCount"] == "functionInstanceLimit"
    pool = main_template.params["databasePoolSize"]["default"]
    assert Settings.model_fields["database_pool_size"].default == pool, "a deployment without the setting stays in budget"


def test_every_connection_outside_the_pool_is_budgeted() -> None:
    """connectionsPerInstance adds two sessions per instance for code that calls connect() itself."""
    paths = [REPO / name for name in APP_CODE]
    files = [p for p in paths if p.is_file()] + [f for p in paths if p.is_dir() for f in p.rglob("*.py")]
    direct = {f.relative_to(REPO).as_posix() for f in files if re.search(r"(?<![\w.])connect\(", f.read_text())}
    assert direct - {POOL} == CONNECTIONS_OUTSIDE_THE_POOL


def test_the_readme_states_the_default_arithmetic(main_template: Template) -> None:
    instances, per_instance, reserved, server = budget(main_template)
    pool = per_instance - OUTSIDE_THE_POOL_PER_INSTANCE
    readme = (REPO / "README.md").read_text()
    stated = f"{instances} × ({pool} + 2) + {reserved} = {instances * per_instance + reserved} ≤ {server}"
    assert stated in readme, f"README.md, Deploy to Azure, should say: {stated}"
