"""The templates parse, follow the azd layout and the Azure Verified Modules conventions, and are
wired together consistently (names, parameters, hooks)."""
from __future__ import annotations

import json
import os
import re
import subprocess
from fnmatch import fnmatch
from typing import Any

import pytest

from tests.infra.conftest import INFRA, REPO, Template, body, dig

pytestmark = pytest.mark.infra

BICEP_FILES = sorted(path.relative_to(INFRA).as_posix() for path in INFRA.rglob("*.bicep"))
DESCRIPTION = re.compile(r"^(Required|Optional)\. \S")


def test_the_templates_are_there() -> None:
    assert {"main.bicep", "modules/function-app.bicep", "modules/postgres.bicep"} <= set(BICEP_FILES)


@pytest.mark.parametrize("path", BICEP_FILES)
def test_every_template_parses_with_pycep(parsed: dict[str, Any], path: str) -> None:
    tree = parsed["bicep"][path]
    assert "error" not in tree, f"pycep-parser cannot parse infra/{path} (so checkov skips it): {tree.get('error')}"


@pytest.mark.parametrize("path", BICEP_FILES)
def test_every_parameter_is_described_avm_style(templates: dict[str, Template], path: str) -> None:
    """`@description('Required. ...')` exactly when the parameter has no default, else `Optional. ...`."""
    for name, param in templates[path].params.items():
        descriptions = [d["argument"] for d in param["decorators"] if d["type"] == "description"]
        assert len(descriptions) == 1 and DESCRIPTION.match(descriptions[0]), f"{path}: param {name}"
        expected = "Optional." if "default" in param and param["default"] is not None else "Required."
        assert descriptions[0].startswith(expected), f"{path}: param {name} should be {expected}"


def test_modules_are_local_files(templates: dict[str, Template]) -> None:
    """No registry (br:) or template-spec (ts:) references: everything is checkable offline."""
    for template in templates.values():
        for name, mod in template.modules.items():
            assert mod["type"] == "local", f"{template.path}: module {name} is {mod['type']}"
            target = (INFRA / template.path).parent / mod["detail"]["path"]
            assert target.is_file(), f"{template.path}: module {name} points at missing {target}"
    assert not re.search(r"'(br|ts)[:/]", "".join(p.read_text() for p in INFRA.rglob("*.bicep")))


def test_main_is_subscription_scoped_and_creates_the_resource_group(main_template: Template) -> None:
    assert main_template.tree["globals"]["scope"]["value"] == "subscription"
    assert main_template.resources_of_type("Microsoft.Resources/resourceGroups")
    assert all(body(m["config"])["scope"] == "rg" for m in main_template.modules.values())


def test_names_come_from_unique_string_and_the_abbreviations(main_template: Template) -> None:
    token = json.dumps(main_template.var("resourceToken"))
    assert "unique_string" in token and "environmentName" in token and "subscription" in token
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", (INFRA / "main.bicep").read_text()))
    assert used and used <= abbreviations.keys(), f"unknown abbreviations: {used - abbreviations.keys()}"


def test_parameters_file_feeds_main_from_the_azd_environment(main_template: Template) -> None:
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert values["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert values["location"]["value"] == "${AZURE_LOCATION}"
    assert values["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert values.keys() <= main_template.params.keys(), "main.parameters.json sets a parameter main.bicep lacks"
    required = {name for name, p in main_template.params.items() if p.get("default") is None}
    assert required <= values.keys(), f"azd would prompt for {required - values.keys()}"


def test_module_calls_pass_only_parameters_the_module_declares(templates: dict[str, Template]) -> None:
    for mod in templates["main.bicep"].modules.values():
        target = templates[mod["detail"]["path"]]
        given = set(body(mod["config"])["params"])
        assert given <= target.params.keys(), f"{mod['detail']['path']}: unknown {given - target.params.keys()}"
        required = {n for n, p in target.params.items() if p.get("default") is None}
        assert required <= given, f"{mod['detail']['path']}: missing {required - given}"


def test_azure_yaml_deploys_this_folder_as_the_python_function_app(parsed: dict[str, Any], module: Any) -> None:
    azure_yaml = parsed["azure_yaml"]
    assert azure_yaml["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    site = module("function-app").resources_of_type("Microsoft.Web/sites")[0]
    assert "'azd-service-name'" in json.dumps(site["tags"]), "azd finds the app by its azd-service-name tag"


def test_azd_hooks_exist_and_are_valid_bash(parsed: dict[str, Any]) -> None:
    hooks = parsed["azure_yaml"]["hooks"]
    assert {"preprovision", "postprovision"} <= hooks.keys()
    for name, hook in hooks.items():
        script = REPO / hook["posix"]["run"].removeprefix("bash ").strip()
        assert script.is_file() and os.access(script, os.X_OK), f"{name}: {script}"
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_postprovision_creates_the_identity_role_with_an_entra_token() -> None:
    script = (INFRA / "hooks" / "postprovision.sh").read_text()
    assert "pgaadauth_create_principal_with_oid" in script
    assert "--resource-type oss-rdbms" in script, "the psql password must be an Entra token"
    assert "PGSSLMODE=require" in script
    assert "trap remove_rule EXIT" in script, "the temporary firewall rule must be removed"


def test_every_output_the_hooks_read_is_a_main_output(main_template: Template) -> None:
    hooks = "".join(p.read_text() for p in (INFRA / "hooks").glob("*.sh"))
    # Set by azd itself or recorded by preprovision.sh with `azd env set`, not by main.bicep.
    from_azd = {"AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_NAME", "AZURE_PRINCIPAL_TYPE"}
    read = set(re.findall(r"\$\{?(AZURE_[A-Z_]+)", hooks)) - from_azd
    assert read <= main_template.outputs.keys(), f"hooks read {read - main_template.outputs.keys()}"


def test_host_json_configures_durable_for_flex_consumption_and_stays_devhost_compatible(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = json.loads((REPO / "host.json").read_text())
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert host["telemetryMode"] == "OpenTelemetry"
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"] == "%TRAWL_TASK_HUB%"
    # Durable's Azure Storage provider, on the identity-based AzureWebJobsStorage__* connection.
    assert durable["storageProvider"]["connectionName"] == "AzureWebJobsStorage"
    assert durable["maxConcurrentActivityFunctions"] > 0 and durable["maxConcurrentOrchestratorFunctions"] > 0
    assert set(host["extensions"]["queues"]) == {"batchSize", "newBatchThreshold", "maxPollingInterval",
                                                  "visibilityTimeout", "maxDequeueCount", "messageEncoding"}
    from devhost.config import HostConfig  # devhost reads the same file; it must still load it

    monkeypatch.setenv("TRAWL_TASK_HUB", "trawlhub")  # set on Azure by main.bicep, locally by local.settings.json
    config = HostConfig.load(REPO)
    assert config.function_timeout == 600 and config.queues.max_dequeue_count == 5
    assert config.durable_hub_name == "trawlhub"


def test_bicep_files_have_no_tabs_or_trailing_spaces() -> None:
    for path in INFRA.rglob("*.bicep"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert "\t" not in line and line == line.rstrip(), f"{path.relative_to(REPO)}:{number}"


def test_the_poison_queue_and_table_match_the_app_settings(main_template: Template, module: Any) -> None:
    storage_call = body(main_template.modules["storage"]["config"])["params"]
    assert storage_call["queueNames"] == ["itemQueueName", "${itemQueueName}-poison"]
    assert storage_call["tableNames"] == ["rateLimitTableName"]
    settings = main_template.var("appSettings")
    assert settings["TRAWL_QUEUE_NAME"] == "itemQueueName" and settings["TRAWL_RATE_TABLE"] == "rateLimitTableName"
    assert main_template.var("itemQueueName") == "scrape-items"
    assert main_template.var("rateLimitTableName") == "ratelimits"
    assert dig(module("storage").resources_of_type("Microsoft.Storage/storageAccounts/queueServices/queues")[0],
               "name") == "queueName"


def ignore_patterns(name: str) -> list[str]:
    lines = (REPO / name).read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("local_state", [".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                                         ".import_linter_cache", ".coverage", ".coverage.1234", ".devhost",
                                         ".venv", ".venv-infra", ".azure", "local.settings.json", ".env"])
def test_the_package_leaves_out_test_caches_and_local_state(local_state: str) -> None:
    """azd packages the folder minus .funcignore (gitignore syntax); caches and devhost state would
    bloat the package, and local settings hold local secrets."""
    assert any(fnmatch(local_state, pattern) for pattern in ignore_patterns(".funcignore")), local_state


def test_nothing_git_ignores_is_packaged() -> None:
    """Whatever git keeps out of the repository (caches, state, build output) stays out of the package."""
    funcignore = ignore_patterns(".funcignore")
    for pattern in ignore_patterns(".gitignore"):
        assert any(fnmatch(pattern, packaged) for packaged in funcignore), f"add {pattern} to .funcignore"


def test_the_postgres_administrator_is_added_last_so_a_second_provision_converges(module: Any) -> None:
    """Adding an Entra administrator right after the server is created can fail with
    AadAuthOperationCannotBePerformedWhenServerIsNotAccessible (Azure/azure-postgresql#127). As the
    last change to the server, nothing else is left undone by it, and the next provision only adds it."""
    postgres = module("postgres")
    children = {name: body(resource["config"]) for name, resource in postgres.resources.items()
                if body(resource["config"]).get("parent") == "server"}
    assert {"parameters", "database", "firewall", "entraAdministrators"} <= children.keys()

    def after(name: str) -> set[str]:
        direct = set(children[name].get("dependsOn", []))
        return direct.union(*(after(dependency) for dependency in direct))

    assert after("entraAdministrators") == children.keys() - {"entraAdministrators"}
    assert not any("entraAdministrators" in after(name) for name in children)
