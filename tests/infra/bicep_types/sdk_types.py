"""The type definitions the checker reads, built at test time from the azure-mgmt-* SDKs' model classes.

The SDKs are generated from the same REST API specs as Bicep's own types (Azure/bicep-types-az), and they
install from PyPI (pinned in requirements-dev.txt), so nothing generated is kept in the repository. Each
model class is msrest-style: `_attribute_map` gives every property's JSON key ('properties.siteConfig' for
the flattened `properties` envelope) and type ('str', '[Subnet]', '{str}', 'SiteConfig'); `_validation`
marks read-only properties; an enum property is 'str' in the map and names its enum class in `__init__`'s
annotation (`Union[str, "_models.ClientCertMode"]`); a polymorphic base lists its subclasses by
discriminator value in `_subtype_map`. The adapter turns that into the checker's entries (checker.TypeRef).

What the SDK cannot say, and so the check does not either: whether an enum is closed (every SDK enum
property also takes a plain string, so a free string parameter passes where Bicep may refuse it), and
which properties are required.
"""
from __future__ import annotations

import importlib
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.infra.bicep_types.checker import READ_ONLY, TypeRef

WRITABLE = 0


@dataclass(frozen=True)
class Model:
    """Where a resource type's body is described: the SDK models package, the class, and that package's
    API version (which may differ from the template's when no SDK release has the template's)."""

    package: str
    name: str
    api_version: str


# The resource types infra/ uses, as `type@apiVersion` (the template's version) -> the SDK model of the body
# a template writes. Where the SDK has a separate create model (…CreateParameters, …Add), that is the one:
# the GET model lacks some writable properties and reads like a response.
WEB = "azure.mgmt.web.v2024_04_01.models"  # azure-mgmt-web 8.0.0 (multi-API)
APIM = "azure.mgmt.apimanagement.models"  # azure-mgmt-apimanagement 5.0.0
POSTGRES = "azure.mgmt.postgresqlflexibleservers.models"  # azure-mgmt-postgresqlflexibleservers 1.1.0
STORAGE = "azure.mgmt.storage.v2023_05_01.models"  # azure-mgmt-storage 21.2.1 (multi-API)
RESOURCE_MODELS: dict[str, Model] = {
    "Microsoft.Web/sites@2024-04-01": Model(WEB, "Site", "2024-04-01"),
    "Microsoft.Web/serverfarms@2024-04-01": Model(WEB, "AppServicePlan", "2024-04-01"),
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01":
        Model(WEB, "CsmPublishingCredentialsPoliciesEntity", "2024-04-01"),
    "Microsoft.ApiManagement/service@2024-05-01": Model(APIM, "ApiManagementServiceResource", "2024-05-01"),
    "Microsoft.ApiManagement/service/apis@2024-05-01": Model(APIM, "ApiCreateOrUpdateParameter", "2024-05-01"),
    "Microsoft.ApiManagement/service/apis/policies@2024-05-01": Model(APIM, "PolicyContract", "2024-05-01"),
    "Microsoft.ApiManagement/service/backends@2024-05-01": Model(APIM, "BackendContract", "2024-05-01"),
    # azure-mgmt-authorization 4.0.0 (multi-API).
    "Microsoft.Authorization/roleAssignments@2022-04-01":
        Model("azure.mgmt.authorization.v2022_04_01.models", "RoleAssignmentCreateParameters", "2022-04-01"),
    "Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01": Model(POSTGRES, "Server", "2024-08-01"),
    "Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01":
        Model(POSTGRES, "ActiveDirectoryAdministratorAdd", "2024-08-01"),
    "Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01":
        Model(POSTGRES, "Configuration", "2024-08-01"),
    "Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01": Model(POSTGRES, "Database", "2024-08-01"),
    "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01":
        Model(POSTGRES, "FirewallRule", "2024-08-01"),
    # azure-mgmt-monitor 6.0.2, the last multi-API release: 7.x keeps only the latest version of each
    # operation group and drops diagnostic settings. Its newest scheduled query rules are 2022-08-01-preview.
    "Microsoft.Insights/actionGroups@2023-01-01":
        Model("azure.mgmt.monitor.v2023_01_01.models", "ActionGroupResource", "2023-01-01"),
    "Microsoft.Insights/metricAlerts@2018-03-01":
        Model("azure.mgmt.monitor.v2018_03_01.models", "MetricAlertResource", "2018-03-01"),
    "Microsoft.Insights/scheduledQueryRules@2023-12-01":
        Model("azure.mgmt.monitor.v2022_08_01_preview.models", "ScheduledQueryRuleResource", "2022-08-01-preview"),
    "Microsoft.Insights/diagnosticSettings@2021-05-01-preview":
        Model("azure.mgmt.monitor.v2021_05_01_preview.models", "DiagnosticSettingsResource", "2021-05-01-preview"),
    # azure-mgmt-applicationinsights 4.1.0 (multi-API).
    "Microsoft.Insights/components@2020-02-02":
        Model("azure.mgmt.applicationinsights.v2020_02_02.models", "ApplicationInsightsComponent", "2020-02-02"),
    "Microsoft.Insights/workbooks@2023-06-01":
        Model("azure.mgmt.applicationinsights.v2023_06_01.models", "Workbook", "2023-06-01"),
    # azure-mgmt-msi 7.0.0 (multi-API; 7.1.0 dropped 2023-01-31).
    "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31":
        Model("azure.mgmt.msi.v2023_01_31.models", "Identity", "2023-01-31"),
    # azure-mgmt-network 28.1.0 and azure-mgmt-privatedns 1.2.0, each one API version.
    "Microsoft.Network/virtualNetworks@2024-05-01": Model("azure.mgmt.network.models", "VirtualNetwork", "2024-05-01"),
    "Microsoft.Network/networkSecurityGroups@2024-05-01":
        Model("azure.mgmt.network.models", "NetworkSecurityGroup", "2024-05-01"),
    "Microsoft.Network/privateDnsZones@2024-06-01": Model("azure.mgmt.privatedns.models", "PrivateZone", "2024-06-01"),
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01":
        Model("azure.mgmt.privatedns.models", "VirtualNetworkLink", "2024-06-01"),
    # azure-mgmt-loganalytics 13.0.0b7: no release has 2023-09-01; 2022-10-01 is the nearest (the stable
    # 13.1.0 jumps to 2025-07-01, 12.0.0 is 2021-06-01).
    "Microsoft.OperationalInsights/workspaces@2023-09-01":
        Model("azure.mgmt.loganalytics.models", "Workspace", "2022-10-01"),
    # azure-mgmt-resource 23.3.0: no release has resources 2024-03-01; 2024-07-01 is the nearest.
    "Microsoft.Resources/resourceGroups@2024-03-01":
        Model("azure.mgmt.resource.resources.v2024_07_01.models", "ResourceGroup", "2024-07-01"),
    "Microsoft.Storage/storageAccounts@2023-05-01": Model(STORAGE, "StorageAccountCreateParameters", "2023-05-01"),
    "Microsoft.Storage/storageAccounts/blobServices@2023-05-01": Model(STORAGE, "BlobServiceProperties", "2023-05-01"),
    "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01":
        Model(STORAGE, "BlobContainer", "2023-05-01"),
    "Microsoft.Storage/storageAccounts/queueServices@2023-05-01":
        Model(STORAGE, "QueueServiceProperties", "2023-05-01"),
    "Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01": Model(STORAGE, "StorageQueue", "2023-05-01"),
    "Microsoft.Storage/storageAccounts/tableServices@2023-05-01":
        Model(STORAGE, "TableServiceProperties", "2023-05-01"),
    "Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01": Model(STORAGE, "Table", "2023-05-01"),
}

# msrest's primitive type names -> the checker's. Bicep has no floats: an int literal is what a template
# writes for them. Dates and durations ('PT5M') are strings in a template.
PRIMITIVE_ENTRIES: dict[str, dict[str, Any]] = {
    **dict.fromkeys(("str", "iso-8601", "rfc-1123", "duration", "date", "time", "bytearray", "base64"),
                    {"$type": "StringType"}),
    **dict.fromkeys(("int", "long", "float", "decimal", "unix-time"), {"$type": "IntegerType"}),
    "bool": {"$type": "BooleanType"},
    "object": {"$type": "AnyType"},
}
# A JSON key's dots separate flattened levels; a dot that is part of a name is escaped ('odata\\.type').
KEY_SEPARATOR = re.compile(r"(?<!\\)\.")
DEFAULT_API_VERSION = re.compile(r'(?:kwargs|_params)\.pop\("api[-_]version", "([^"]+)"\)')


def api_versions_in(package: str) -> set[str]:
    """The API versions an SDK package's client and operations send by default (its source says so)."""
    folder = Path(importlib.import_module(package).__file__ or "").parent.parent
    sources = [folder / "_configuration.py", *sorted((folder / "operations").glob("*.py"))]
    return {version for source in sources if source.is_file()
            for version in DEFAULT_API_VERSION.findall(source.read_text())}


class Nested(dict[str, Any]):
    """A level of a model's property tree made by flattened keys (a leaf is a plain {"type", "flags"})."""


class TypeTable:
    """Checker entries for one SDK models package, built on demand and shared by every type that uses them."""

    def __init__(self, package: str) -> None:
        self.models: ModuleType = importlib.import_module(package)
        self.entries: list[dict[str, Any]] = []
        self.index: dict[object, int] = {}
        self.hints: dict[type, dict[str, Any]] = {}

    def ref(self, key: object, build: Callable[[], dict[str, Any]]) -> dict[str, str]:
        """The entry for `key`, built once; its slot is taken before building, so recursive models end."""
        if key not in self.index:
            self.index[key] = len(self.entries)
            self.entries.append({})
            self.entries[self.index[key]] = build()
        return {"$ref": f"#/{self.index[key]}"}

    def type_ref(self, msrest_type: str, enum: type[Enum] | None = None) -> dict[str, str]:
        """'[X]', '{X}', a primitive or a model name; `enum` narrows the strings at the leaves."""
        if msrest_type.startswith("["):
            return self.ref(msrest_type + repr(enum), lambda: {
                "$type": "ArrayType", "itemType": self.type_ref(msrest_type[1:-1], enum)})
        if msrest_type.startswith("{"):
            return self.ref(msrest_type + repr(enum), lambda: {
                "$type": "ObjectType", "name": msrest_type, "properties": {},
                "additionalProperties": self.type_ref(msrest_type[1:-1], enum)})
        if msrest_type == "str" and enum is not None:
            return self.ref(enum, lambda: self.enum_entry(enum))
        if msrest_type in PRIMITIVE_ENTRIES:
            return self.ref(msrest_type, lambda: dict(PRIMITIVE_ENTRIES[msrest_type]))
        model = getattr(self.models, msrest_type)
        return self.ref(model, lambda: self.model_entry(model))

    def enum_entry(self, enum: type[Enum]) -> dict[str, Any]:
        """SDK enums are extensible (`str | Enum`): the listed values, or any string."""
        literals = [self.ref((enum, member.value), lambda m=member: {"$type": "StringLiteralType", "value": m.value})
                    for member in enum]
        return {"$type": "UnionType", "elements": [*literals, self.type_ref("str")]}

    def model_entry(self, model: type) -> dict[str, Any]:
        subtypes: dict[str, dict[str, str]] = model.__dict__.get("_subtype_map") or {}
        if subtypes:
            return self.discriminated_entry(model, subtypes)
        return self.object_entry(model, model.__name__, self.properties(model))

    def discriminated_entry(self, model: type, subtypes: dict[str, dict[str, str]]) -> dict[str, Any]:
        """A polymorphic base: the variants by discriminator value, as Bicep's DiscriminatedObjectType."""
        ((attribute, variants),) = subtypes.items()
        discriminator = json_key(model._attribute_map[attribute]["key"])[0]  # type: ignore[attr-defined]  # msrest class attribute
        declared = self.object_entry(model, model.__name__, self.properties(model))["properties"]
        base = {key: value for key, value in declared.items() if key != discriminator}
        return {"$type": "DiscriminatedObjectType", "name": model.__name__, "discriminator": discriminator,
                "baseProperties": base,
                "elements": {value: self.type_ref(name) for value, name in variants.items()}}

    def object_entry(self, model: type, name: str, tree: Nested) -> dict[str, Any]:
        """An object from the (possibly flattened) property tree; nested levels become their own types,
        named like Bicep's ('SiteProperties' for Site's 'properties')."""
        properties: dict[str, Any] = {}
        for key, declared in tree.items():
            if key == "":
                continue
            if isinstance(declared, Nested):
                nested = f"{name}{key[0].upper()}{key[1:]}"
                declared = {"type": self.ref((model, nested), lambda n=nested, t=declared: self.object_entry(
                    model, n, t)), "flags": WRITABLE}
            properties[key] = declared
        entry: dict[str, Any] = {"$type": "ObjectType", "name": name, "properties": properties}
        if "" in tree:
            entry["additionalProperties"] = tree[""]["type"]
        return entry

    def properties(self, model: type) -> Nested:
        """{JSON key: {"type", "flags"}}, flattened keys nested as {"properties": Nested(...)}; '' holds the
        type of additional properties when the model takes any."""
        tree = Nested()
        validation: dict[str, dict[str, Any]] = getattr(model, "_validation", {})
        for attribute, spec in model._attribute_map.items():  # type: ignore[attr-defined]  # msrest class attribute
            if spec["key"] == "":  # msrest's additional_properties: '{object}'
                tree[""] = {"type": self.type_ref(spec["type"][1:-1])}
                continue
            *parents, leaf = json_key(spec["key"])
            node = tree
            for parent in parents:
                node = node.setdefault(parent, Nested())
            flags = READ_ONLY if validation.get(attribute, {}).get("readonly") else WRITABLE
            node[leaf] = {"type": self.property_type(model, attribute, spec["type"]), "flags": flags}
        return tree

    def property_type(self, model: type, attribute: str, msrest_type: str) -> dict[str, str]:
        """A discriminator on a variant is its one value; an enum-typed string names its enum class in the
        constructor's annotation."""
        constant = discriminator_value(model, attribute)
        if constant is not None:
            return self.ref((model, attribute), lambda: {"$type": "StringLiteralType", "value": constant})
        return self.type_ref(msrest_type, self.annotated_enum(model, attribute))

    def annotated_enum(self, model: type, attribute: str) -> type[Enum] | None:
        if model not in self.hints:
            self.hints[model] = typing.get_type_hints(model.__init__, localns={"_models": self.models})
        pending = [self.hints[model].get(attribute)]
        while pending:
            current = pending.pop()
            if isinstance(current, type) and issubclass(current, Enum):
                return current
            pending.extend(typing.get_args(current))
        return None


def json_key(key: str) -> list[str]:
    return [part.replace("\\.", ".") for part in KEY_SEPARATOR.split(key)]


def discriminator_value(model: type, attribute: str) -> str | None:
    """The value a polymorphic base's `_subtype_map` gives this class for `attribute`, if any."""
    for base in model.__mro__[1:]:
        variants = base.__dict__.get("_subtype_map", {}).get(attribute, {})
        value = next((value for value, name in variants.items() if name == model.__name__), None)
        if value is not None:
            return value
    return None


class SdkLibrary:
    """The checker's library: the body type of each mapped `type@apiVersion`, built from its SDK model."""

    def __init__(self, models: dict[str, Model] = RESOURCE_MODELS) -> None:
        self.models = {name.lower(): model for name, model in models.items()}
        self.tables: dict[str, TypeTable] = {}

    def names(self) -> set[str]:
        return set(self.models)

    def resource(self, type_and_version: str) -> TypeRef | None:
        """The body type of a `type@apiVersion`, or None when no SDK model is mapped for it. The body is the
        model with `name` writable: the SDK reads it back from Azure, a template sets it."""
        model = self.models.get(type_and_version.lower())
        if model is None:
            return None
        if model.package not in self.tables:
            self.tables[model.package] = TypeTable(model.package)
        table = self.tables[model.package]
        body = table.entries[int(table.type_ref(model.name)["$ref"].removeprefix("#/"))]
        name = {"type": table.type_ref("str"), "flags": WRITABLE}
        entries = (*table.entries, {**body, "properties": {**body["properties"], "name": name}})
        return TypeRef(entries, len(entries) - 1)
