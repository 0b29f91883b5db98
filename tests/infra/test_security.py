"""Security properties of the parsed templates: identity everywhere, no shared keys or passwords,
HTTPS and TLS 1.2 only, Entra-only PostgreSQL, nothing secret in an output. checkov has no Bicep
checks for several of these resources (PostgreSQL flexible servers, for one), so they are here."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.conftest import INFRA, Template, body, dig, expr

pytestmark = pytest.mark.infra

SECRET_WORDS = re.compile(r"key|secret|password|connectionstring|sas|token", re.IGNORECASE)
# Outputs whose names contain one of those words but hold an id, not a secret.
NOT_SECRET_OUTPUTS = {"resourceId"}


def all_infra_text() -> str:
    return "".join(path.read_text() for path in INFRA.rglob("*") if path.is_file())


def test_no_shared_key_or_connection_string_anywhere() -> None:
    text = all_infra_text()
    for forbidden in ("AccountKey", "listKeys", "listkeys", "SharedAccessSignature", "InstrumentationKey=",
                      "listConnectionStrings", "administratorLoginPassword"):
        assert forbidden not in text, f"{forbidden} appears under infra/"


def test_storage_disables_shared_keys_and_public_blobs_and_requires_https_tls12(module: Any) -> None:
    account = module("storage").resources_of_type("Microsoft.Storage/storageAccounts")[0]["properties"]
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["supportsHttpsTrafficOnly"] is True
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["defaultToOAuthAuthentication"] is True
    container = module("storage").resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers")[0]
    assert container["properties"]["publicAccess"] == "None"


def test_function_app_is_https_only_tls12_no_ftp_no_basic_auth(module: Any) -> None:
    """FTP is off through the publishing-credentials policies: Flex Consumption rejects siteConfig.ftpsState."""
    app = module("function-app")
    site = app.resources_of_type("Microsoft.Web/sites")[0]
    assert site["kind"] == "functionapp,linux"
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    policies = app.resources_of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(p["name"] for p in policies) == ["ftp", "scm"]
    assert all(p["properties"]["allow"] is False for p in policies)


def test_function_app_is_flex_consumption_python_311_with_identity_deployment(module: Any,
                                                                              main_template: Template) -> None:
    app = module("function-app")
    plan = app.resources_of_type("Microsoft.Web/serverfarms")[0]
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["kind"] == "functionapp" and plan["properties"]["reserved"] is True
    flex = app.resources_of_type("Microsoft.Web/sites")[0]["properties"]["functionAppConfig"]
    assert flex["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert app.params["pythonVersion"]["default"] == "3.11"
    storage = flex["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "UserAssignedIdentity",
                                         "userAssignedIdentityResourceId": "identityResourceId"}
    scale = flex["scaleAndConcurrency"]
    assert (scale["instanceMemoryMB"], scale["maximumInstanceCount"]) == ("instanceMemoryMB", "maximumInstanceCount")
    call = main_template.modules["functionApp"]["config"]["params"]
    assert call["instanceMemoryMB"] == "functionInstanceMemoryMB"
    assert call["maximumInstanceCount"] == "functionInstanceLimit", "capped by the PostgreSQL connection budget"


def test_function_app_runs_as_the_user_assigned_identity(module: Any) -> None:
    site = module("function-app").resources_of_type("Microsoft.Web/sites")[0]
    assert site["identity"]["type"] == "UserAssigned"
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityResourceId}'"]


def test_postgres_is_version_16_entra_only_with_tls_required(module: Any) -> None:
    postgres = module("postgres")
    server = postgres.resources_of_type("Microsoft.DBforPostgreSQL/flexibleServers")[0]["properties"]
    assert server["version"] == "16"
    auth = server["authConfig"]
    assert auth["activeDirectoryAuth"] == "Enabled" and auth["passwordAuth"] == "Disabled"
    assert "administratorLogin" not in server and "administratorLoginPassword" not in server
    parameters = {p["name"]: p["value"] for p in postgres.var("serverParameters")}
    assert parameters["require_secure_transport"] == "ON"
    assert parameters["ssl_min_protocol_version"] == "TLSv1.2"
    admins = postgres.resources_of_type("Microsoft.DBforPostgreSQL/flexibleServers/administrators")
    assert len(admins) == 1 and expr(dig(admins[0], "properties.principalType")) == "admin.principalType"
    databases = postgres.resources_of_type("Microsoft.DBforPostgreSQL/flexibleServers/databases")
    assert [d["name"] for d in databases] == ["databaseName"] and postgres.params["databaseName"]["default"] == "trawl"


def test_postgres_backup_ha_and_network_mode_are_parameters(module: Any) -> None:
    server = module("postgres").resources_of_type("Microsoft.DBforPostgreSQL/flexibleServers")[0]["properties"]
    assert server["backup"]["backupRetentionDays"] == "backupRetentionDays"
    text = json.dumps(server)
    assert "zoneRedundantHa" in text and "ZoneRedundant" in text
    assert "publicAccess" in text
    private = module("postgres").var("privateNetwork")
    assert private["publicNetworkAccess"] == "Disabled" and private["delegatedSubnetResourceId"] == "delegatedSubnetId"


def test_the_only_postgres_administrator_is_the_deployer_or_a_group_never_the_app(main_template: Template) -> None:
    """The app's identity signs in under a plain role the post-provision hook creates; one Entra
    administrator (the principal running azd, or a group) is the only one with azure_pg_admin."""
    call = body(main_template.modules["postgres"]["config"])["params"]
    assert call["administrators"] == "postgresAdministrators"
    chosen = main_template.var("postgresAdministrators")["operator"]["operands"]
    assert chosen["condition"]["function"] == {"type": "empty", "parameters": {"item_to_test": "postgresAdminGroupObjectId"}}
    assert (chosen["true_value"], chosen["false_value"]) == ("developerAdministrator", "groupAdministrator")
    (group,) = main_template.var("groupAdministrator")
    assert group == {"objectId": "postgresAdminGroupObjectId", "principalName": "postgresAdminGroupName",
                     "principalType": "Group"}
    developer = main_template.var("developerAdministrator")["operator"]["operands"]
    assert developer["condition"] == "developerCanBeAdministrator" and developer["false_value"] == []
    assert developer["true_value"] == [{"objectId": "principalId", "principalName": "principalName",
                                        "principalType": "principalType"}]
    assert "identity.outputs" not in json.dumps(main_template.var("postgresAdministrators"))
    settings = main_template.var("appSettings")
    assert expr(settings["TRAWL_DATABASE_USER"]) == "identity.outputs.name", "the app signs in as its own role"


def test_application_insights_accepts_only_entra_authenticated_telemetry(module: Any,
                                                                          app_settings: dict[str, Any]) -> None:
    component = module("monitoring").resources_of_type("Microsoft.Insights/components")[0]["properties"]
    assert component["DisableLocalAuth"] is True
    assert app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "Authorization=AAD;ClientId=${identity.outputs.clientId}")


def test_role_assignments_grant_the_identity_the_data_roles_it_needs(module: Any) -> None:
    """The three roles Microsoft's Durable Functions managed-identity guide names; not Blob Data Owner."""
    roles = module("role-assignments")
    storage_roles = {role["name"]: role["id"] for role in roles.var("storageRoles")}
    assert storage_roles == {"Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
                             "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
                             "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"}
    assignments = roles.resources_of_type("Microsoft.Authorization/roleAssignments")
    principals = sorted(a["properties"]["principalId"] for a in assignments)
    assert principals == ["developerPrincipalId", "identityPrincipalId", "identityPrincipalId"]
    assert roles.var("monitoringMetricsPublisherRoleId") == "3913510d-42f4-4e42-8a64-420c390055eb"


def test_diagnostic_settings_send_logs_to_log_analytics(templates: dict[str, Template]) -> None:
    scopes = {}
    for template in templates.values():
        for setting in template.resources_of_type("Microsoft.Insights/diagnosticSettings"):
            assert setting["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
            scopes[template.path] = setting["scope"]
    assert scopes == {"modules/function-app.bicep": "functionApp", "modules/storage.bicep": "queueService",
                      "modules/postgres.bicep": "server", "modules/api-management.bicep": "service"}


def test_outputs_are_names_and_endpoints_never_secrets(templates: dict[str, Template]) -> None:
    for template in templates.values():
        for name, output in template.outputs.items():
            assert not any(d["type"] == "secure" for d in output["decorators"]), f"{template.path}: {name}"
            if name not in NOT_SECRET_OUTPUTS:
                assert not SECRET_WORDS.search(name), f"{template.path}: output {name} looks secret"
            value = json.dumps(output["value"])
            assert not re.search(r"ConnectionString|InstrumentationKey|list[A-Z]\w*\(|keys", value), \
                f"{template.path}: output {name} = {value}"


def test_api_management_is_https_only_and_validates_entra_tokens(module: Any) -> None:
    apim = module("api-management")
    api = apim.resources_of_type("Microsoft.ApiManagement/service/apis")[0]["properties"]
    assert api["protocols"] == ["https"]
    assert api["serviceUrl"].startswith("https://")
    assert api["format"] == "openapi+json"
    backend = apim.resources_of_type("Microsoft.ApiManagement/service/backends")[0]["properties"]
    assert backend["url"].startswith("https://")
    assert backend["tls"] == {"validateCertificateChain": True, "validateCertificateName": True}
    policy = (INFRA / "apim" / "policy.xml").read_text()
    assert "<validate-azure-ad-token" in policy


def test_api_management_tls_settings_go_only_to_tiers_that_accept_them(main_template: Template, module: Any) -> None:
    """Consumption, Basic v2 and Standard v2 refuse changes to the protocol and cipher configuration
    (Microsoft, "Manage protocols and ciphers in Azure API Management")."""
    apim = module("api-management")
    (tiers,) = [d["argument"] for d in apim.params["skuName"]["decorators"] if d["type"] == "allowed"]
    accepting = set(apim.var("tiersWithTlsSettings"))
    assert accepting == {"Developer", "Basic", "Standard", "Premium"}
    assert set(tiers) - accepting == {"Consumption", "BasicV2", "StandardV2"}
    service = apim.resources_of_type("Microsoft.ApiManagement/service")[0]["properties"]
    chosen = service["customProperties"]["operator"]["operands"]
    assert chosen["condition"] == {"function": {"type": "contains", "parameters": {
        "container": "tiersWithTlsSettings", "item_to_find": "skuName"}}}
    assert (chosen["true_value"], chosen["false_value"]) == ("tlsHardening", {})
    assert all(value == "false" for value in apim.var("tlsHardening").values())
    (main_tiers,) = [d["argument"] for d in main_template.params["apiManagementSku"]["decorators"]
                     if d["type"] == "allowed"]
    assert main_tiers == tiers
