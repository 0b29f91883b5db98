"""The Function App's app settings in Bicep agree with what the code reads: every field of
shared.settings.Settings (names derived from the model, so a new TRAWL_* field fails here until
main.bicep sets it), every %SETTING% binding expression, every local.settings.sample.json entry;
and the Azure values pass the app's own validation."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import AliasChoices

from shared.settings import Settings
from tests.infra.conftest import REPO, Template

pytestmark = pytest.mark.infra

APP_CODE = ("function_app.py", "api", "activities", "orchestrators", "shared")

# Read by the code but deliberately not set by Bicep, and why.
NOT_SET_ON_AZURE = {
    "TRAWL_DATABASE_URL": "entra mode signs in with the identity's token; a URL would carry a password",
    "TrawlStorage": "a connection string needs the shared key the account disables; TrawlStorage__* uses the identity",
    "WEBSITE_INSTANCE_ID": "set by App Service on every instance",
    "TRAWL_TELEMETRY_EXPORTER": "local exporter; on Azure APPLICATIONINSIGHTS_CONNECTION_STRING selects Azure Monitor",
    "TRAWL_TELEMETRY_EXPORT_INTERVAL_SECONDS": "only used with TRAWL_TELEMETRY_EXPORTER",
}
# In local.settings.sample.json but not for Azure, and why.
LOCAL_ONLY = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig.runtime and rejects it",
    "AzureWebJobsStorage": "the emulator's connection string; Azure uses the identity-based AzureWebJobsStorage__*",
    "TrawlStorage": "the emulator's connection string; Azure uses the identity-based TrawlStorage__*",
    "TRAWL_DATABASE_URL": "devhost's embedded PostgreSQL; Azure uses TRAWL_DATABASE_AUTH=entra",
    "TRAWL_TELEMETRY_EXPORTER": "local exporters; Azure exports to Application Insights by its connection string",
    "TRAWL_TELEMETRY_EXPORT_INTERVAL_SECONDS": "the local exporters' interval",
}
# App settings Flex Consumption rejects, or that would bring keys back.
FORBIDDEN_ON_FLEX = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                     "WEBSITE_CONTENTSHARE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_NODE_DEFAULT_VERSION",
                     "AzureWebJobsStorage", "TrawlStorage", "APPINSIGHTS_INSTRUMENTATIONKEY"}
# What the non-literal Bicep values look like once deployed, to run Settings validation on them.
DEPLOYED_VALUES = {
    "TrawlStorage__queueServiceUri": "https://sttrawlabc.queue.core.windows.net/",
    "TrawlStorage__tableServiceUri": "https://sttrawlabc.table.core.windows.net/",
    "TrawlStorage__blobServiceUri": "https://sttrawlabc.blob.core.windows.net/",
    "AZURE_CLIENT_ID": "0b9c9d52-39c5-4a3c-9e0a-5d8f64f9b1a7",
    "TRAWL_PUBLIC_BASE_URL": "https://apim-trawl-abc.azure-api.net",
    "TRAWL_DATABASE_HOST": "psql-trawl-abc.postgres.database.azure.com",
    "TRAWL_DATABASE_USER": "id-trawl-abc",
    "TRAWL_AUTH_TENANT_IDS": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "TRAWL_AUTH_AUDIENCES": "api://trawl",
    "TRAWL_DASHBOARD_CLIENT_ID": "5e1f0c1a-0000-4000-8000-00000000c11e",
}
BINDING_EXPRESSION = re.compile(r"%([A-Z][A-Za-z0-9_]+)%")
ENVIRONMENT_READ = re.compile(r"""(?:environ(?:\.get)?\s*[\[(]|getenv\()\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")


def settings_env_names() -> dict[str, set[str]]:
    """Field -> the environment names it is read from (TRAWL_<FIELD> or its validation alias)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: dict[str, set[str]] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if alias is None:
            names[field] = {f"{prefix}{field}".upper()}
        elif isinstance(alias, str):
            names[field] = {alias}
        else:
            assert isinstance(alias, AliasChoices), f"{field}: teach this test about {type(alias).__name__}"
            names[field] = {choice for choice in alias.choices if isinstance(choice, str)}
    return names


def app_code_text() -> str:
    paths = [REPO / name for name in APP_CODE]
    files = [p for p in paths if p.is_file()] + [f for p in paths if p.is_dir() for f in p.rglob("*.py")]
    return "".join(f.read_text() for f in files) + (REPO / "host.json").read_text()


def binding_settings() -> set[str]:
    """Settings named in %...% binding expressions (queue names, schedules, hub name)."""
    return set(BINDING_EXPRESSION.findall(app_code_text()))


def literal(value: Any, template: Template) -> str | None:
    """The deployed value of a parsed Bicep value when it is known before deployment, else None;
    `string(param)` counts as known: the parameter's default, what a plain `azd up` deploys."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict) and value.get("function", {}).get("type") == "string":
        argument = value["function"]["parameters"]["value_to_convert"]
        return literal(template.params[argument]["default"], template) if argument in template.params else None
    if not isinstance(value, str) or "${" in value:
        return None
    if value in template.variables:
        return literal(template.var(value), template)
    if value in template.params:
        return None
    return value


def test_names_are_derived_from_the_model() -> None:
    names = set().union(*settings_env_names().values())
    assert {"TRAWL_ENVIRONMENT", "TRAWL_DATABASE_AUTH", "TrawlStorage__queueServiceUri", "AZURE_CLIENT_ID"} <= names
    assert {"TRAWL_TASK_HUB", "TRAWL_RECONCILE_SCHEDULE", "TRAWL_QUEUE_NAME"} <= binding_settings()


def test_every_setting_the_settings_model_reads_is_set_on_azure(app_settings: dict[str, Any]) -> None:
    missing = {}
    for field, names in settings_env_names().items():
        if names & NOT_SET_ON_AZURE.keys():
            continue
        if not names & app_settings.keys():
            missing[field] = sorted(names)
    assert not missing, f"add to appSettings in infra/main.bicep (one line each): {missing}"


def test_every_binding_expression_setting_is_set_on_azure(app_settings: dict[str, Any]) -> None:
    assert binding_settings() - app_settings.keys() == set()


def direct_reads() -> set[str]:
    """Variables the app code reads straight from the environment (telemetry, before Settings exist)."""
    return set(ENVIRONMENT_READ.findall(app_code_text()))


def test_every_variable_the_code_reads_directly_is_set_or_excused(app_settings: dict[str, Any]) -> None:
    assert {"APPLICATIONINSIGHTS_CONNECTION_STRING", "AZURE_CLIENT_ID"} <= direct_reads()
    assert direct_reads() - app_settings.keys() - NOT_SET_ON_AZURE.keys() == set()


def test_settings_not_set_on_azure_are_really_absent(app_settings: dict[str, Any]) -> None:
    assert NOT_SET_ON_AZURE.keys() & app_settings.keys() == set()
    assert FORBIDDEN_ON_FLEX & app_settings.keys() == set()


def test_every_trawl_setting_in_bicep_is_read_by_the_code(app_settings: dict[str, Any]) -> None:
    """A TRAWL_* setting nobody reads is a typo or a leftover."""
    read = set().union(*settings_env_names().values()) | binding_settings() | direct_reads()
    unread = {name for name in app_settings if name.startswith(("TRAWL_", "TrawlStorage")) and name not in read}
    assert unread <= {"TrawlStorage__credential", "TrawlStorage__clientId"}, unread


def test_storage_connections_are_identity_based(app_settings: dict[str, Any]) -> None:
    for connection in ("AzureWebJobsStorage", "TrawlStorage"):
        assert app_settings[f"{connection}__credential"] == "managedidentity"
        assert app_settings[f"{connection}__clientId"] == app_settings["AZURE_CLIENT_ID"]
    for service in ("blob", "queue", "table"):
        assert f"AzureWebJobsStorage__{service}ServiceUri" in app_settings
    for service in ("queue", "table"):
        assert f"TrawlStorage__{service}ServiceUri" in app_settings


def test_every_local_sample_setting_is_on_azure_or_local_only(app_settings: dict[str, Any]) -> None:
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    unaccounted = sample.keys() - app_settings.keys() - LOCAL_ONLY.keys()
    assert not unaccounted, f"add to infra/main.bicep appSettings, or to LOCAL_ONLY with a reason: {unaccounted}"
    assert LOCAL_ONLY.keys() <= sample.keys(), f"stale LOCAL_ONLY entries: {LOCAL_ONLY.keys() - sample.keys()}"
    assert LOCAL_ONLY.keys() & app_settings.keys() == set()


def test_azure_values_pass_the_apps_own_validation(main_template: Template, app_settings: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    read = set().union(*settings_env_names().values())
    for name in read:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123456789abcdef")
    for name in read & app_settings.keys():
        value = literal(app_settings[name], main_template)
        if value is None:
            assert name in DEPLOYED_VALUES, f"give {name} a deployed-looking value in DEPLOYED_VALUES"
            value = DEPLOYED_VALUES[name]
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.environment == "azure"
    assert settings.database_auth == "entra"
    assert settings.auth_mode == "entra"
    assert settings.storage_connection_string == ""
