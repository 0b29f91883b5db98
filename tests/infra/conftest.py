"""Fixtures for the offline infra checks: the parsed Bicep templates and one checkov run per session.

Both tools live in .venv-infra (created by `make test` from requirements-infra.txt), apart from the
app's .venv; a missing tool fails the tests rather than skipping them, so CI cannot go green
without having checked the templates.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
INFRA_VENV = REPO / ".venv-infra"
INFRA_PYTHON = INFRA_VENV / "bin" / "python"
CHECKOV = INFRA_VENV / "bin" / "checkov"
TOOL_TIMEOUT_S = 120


@dataclass(frozen=True)
class Template:
    """One parsed .bicep file (pycep-parser's JSON), with lookups by kind of element."""

    path: str
    tree: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        return self.tree.get("parameters", {})

    @property
    def variables(self) -> dict[str, Any]:
        return self.tree.get("variables", {})

    @property
    def resources(self) -> dict[str, Any]:
        return self.tree.get("resources", {})

    @property
    def modules(self) -> dict[str, Any]:
        return self.tree.get("modules", {})

    @property
    def outputs(self) -> dict[str, Any]:
        return self.tree.get("outputs", {})

    def var(self, name: str) -> Any:
        return self.variables[name]["value"]

    def resources_of_type(self, resource_type: str) -> list[dict[str, Any]]:
        """The body of every resource of this type (a loop's item body for a resource loop)."""
        return [body(resource["config"]) for resource in self.resources.values()
                if resource["type"].lower() == resource_type.lower()]


def body(config: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's properties, whether it is plain, conditional or a loop."""
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def unquote(key: str) -> str:
    """pycep keeps the quotes of quoted object keys ('azd-env-name')."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def dig(node: Any, dotted: str) -> Any:
    """node["a"]["b"]... for "a.b...", failing with the path that is missing."""
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted}: no {part!r} in {node!r:.200}"
        node = node[part]
    return node


def expr(node: Any) -> str:
    """A Bicep-like rendering of a parsed reference, e.g. "identity.outputs.clientId"; other
    expressions come back as their JSON."""
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return f"{expr(operands['operand_1'])}.{expr(operands['operand_2'])}"
    return node if isinstance(node, str) else json.dumps(node)


def _run_tool(args: list[str]) -> subprocess.CompletedProcess[str]:
    if not Path(args[0]).is_file():
        pytest.fail(f"{args[0]} is missing: run `make test` (it creates .venv-infra from requirements-infra.txt)")
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)


@pytest.fixture(scope="session")
def parsed() -> dict[str, Any]:
    """pycep's parse of every .bicep file under infra/ (or the parse error per file), and azure.yaml."""
    run = _run_tool([str(INFRA_PYTHON), str(Path(__file__).with_name("bicep_ast.py")), str(INFRA),
                     str(REPO / "azure.yaml")])
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


@pytest.fixture(scope="session")
def parse_bicep() -> Callable[[Path], dict[str, Any]]:
    """parse_bicep(folder) -> pycep's parse of every .bicep file under folder (a mutated copy of
    infra/, say), by path relative to it."""
    def parse(folder: Path) -> dict[str, Any]:
        run = _run_tool([str(INFRA_PYTHON), str(Path(__file__).with_name("bicep_ast.py")), str(folder),
                         str(REPO / "azure.yaml")])
        assert run.returncode == 0, run.stderr
        result: dict[str, Any] = json.loads(run.stdout)["bicep"]
        return result
    return parse


@pytest.fixture(scope="session")
def templates(parsed: dict[str, Any]) -> dict[str, Template]:
    """Every template that parsed, by path relative to infra/ (e.g. "modules/storage.bicep")."""
    return {path: Template(path, tree) for path, tree in parsed["bicep"].items() if "error" not in tree}


@pytest.fixture(scope="session")
def main_template(templates: dict[str, Template]) -> Template:
    return templates["main.bicep"]


@pytest.fixture(scope="session")
def module(templates: dict[str, Template]) -> Iterator[Any]:
    """module("storage") -> the parsed infra/modules/storage.bicep."""
    yield lambda name: templates[f"modules/{name}.bicep"]


@pytest.fixture(scope="session")
def checkov_report() -> dict[str, Any]:
    """checkov's JSON report on infra/ (bicep framework), run once per session."""
    run = _run_tool([str(CHECKOV), "--framework", "bicep", "--directory", str(INFRA), "--output", "json",
                     "--skip-download"])
    assert run.returncode in (0, 1), f"checkov did not run (exit {run.returncode}):\n{run.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(run.stdout)
    return report


@pytest.fixture(scope="session")
def app_settings(main_template: Template, module: Any) -> dict[str, Any]:
    """Every app setting the Function App gets, by name (values as parsed): main.bicep's
    `appSettings`, which the function-app module lists in siteConfig.appSettings, plus the entries
    the module appends itself (the Application Insights connection string)."""
    settings = {unquote(k): v for k, v in main_template.var("appSettings").items()}
    assert body(main_template.modules["functionApp"]["config"])["params"]["appSettings"] == "appSettings"
    assert module("function-app").var("appSettingsList")["loop_type"]["detail"]["object_name"] == "appSettings"
    site = module("function-app").resources_of_type("Microsoft.Web/sites")[0]
    listed = dig(site, "properties.siteConfig.appSettings.function")
    assert listed["type"] == "concat" and listed["parameters"]["arg_1"] == "appSettingsList", listed
    appended = {entry["name"]: entry["value"] for entry in listed["parameters"]["arg_2"]}
    assert not settings.keys() & appended.keys(), "a setting is defined twice"
    return {**settings, **appended}
