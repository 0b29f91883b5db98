"""Trawl's configuration: one validated pydantic-settings object, built on first use.

Never built at import time: a failing import would leave the Functions host with no functions and
no useful error. Every field here appears in local.settings.sample.json and in the Bicep app
settings under the same name.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_PLACEHOLDERS = ("changeme", "<", "placeholder", "xxx")
DEV_STORAGE = "UseDevelopmentStorage=true"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Settings(BaseSettings):
    """Everything Trawl reads from app settings (environment variables)."""

    model_config = SettingsConfigDict(env_prefix="TRAWL_", extra="ignore", frozen=True, populate_by_name=True)

    environment: Literal["local", "azure"] = "azure"
    public_base_url: str = ""

    database_auth: Literal["url", "entra"] = "url"
    database_url: str = ""
    database_host: str = ""
    database_name: str = "trawl"
    database_user: str = ""
    # Connections per instance; infra/main.bicep sizes the Azure value from the server's connection limit.
    database_pool_size: int = Field(3, ge=1, le=100)

    storage_connection_string: str = Field("", validation_alias="TrawlStorage")
    storage_queue_service_uri: str = Field("", validation_alias="TrawlStorage__queueServiceUri")
    storage_table_service_uri: str = Field("", validation_alias="TrawlStorage__tableServiceUri")
    storage_blob_service_uri: str = Field("", validation_alias="TrawlStorage__blobServiceUri")
    # Page bodies (Markdown, text, HTML), content-addressed and compressed; PostgreSQL keeps their hashes.
    content_container: str = Field("trawl-content", pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    managed_identity_client_id: str = Field("", validation_alias="AZURE_CLIENT_ID")
    queue_name: str = "scrape-items"

    max_urls_per_job: int = Field(1000, ge=1, le=100_000)
    max_url_length: int = Field(2048, ge=64, le=65_536)
    default_deadline_seconds: int = Field(3600, ge=10)
    max_deadline_seconds: int = Field(86_400, ge=10)
    progress_tick_seconds: int = Field(15, ge=1, le=3600)
    enqueue_batch_size: int = Field(250, ge=1, le=5000)
    reconcile_grace_seconds: int = Field(60, ge=0)

    fetch_connect_timeout: float = Field(5.0, gt=0)
    fetch_read_timeout: float = Field(15.0, gt=0)
    fetch_total_timeout: float = Field(30.0, gt=0)
    fetch_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    fetch_allowed_networks: str = ""
    fetch_allowed_ports: str = "80,443"
    fetch_max_attempts: int = Field(5, ge=1, le=20)
    retry_base_delay_seconds: int = Field(5, ge=1, le=3600)
    retry_max_delay_seconds: int = Field(300, ge=1, le=86_400)

    api_threads: int = Field(8, ge=1, le=64)
    # Days a finished job keeps its results and bodies (0: forever); the retention timer deletes them after.
    retention_days: int = Field(90, ge=0, le=36_500)
    # Event-stream requests one caller may hold open at once on one instance (GET /api/jobs/{id}/events).
    streams_per_caller: int = Field(10, ge=1, le=1000)

    # The dashboard's Entra ID sign-in (MSAL.js, authorization code + PKCE): the application (client) id of an
    # app registration with the single-page-application redirect URI https://<host>/api/app/; the authority
    # (default: the first of auth_tenant_ids on login.microsoftonline.com); comma-separated scopes (default:
    # the API's delegated scopes under the first of auth_audiences).
    dashboard_client_id: str = ""
    dashboard_authority: str = ""
    dashboard_scopes: str = ""

    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=100 * 1024 * 1024)

    auth_mode: Literal["entra", "dev"] = "entra"
    auth_tenant_ids: str = ""
    auth_audiences: str = ""
    auth_issuer_versions: str = "1,2"
    auth_jwks_url: str = ""
    auth_jwks_refetch_seconds: int = Field(300, ge=1, le=86_400)
    website_instance_id: str = Field("", validation_alias="WEBSITE_INSTANCE_ID")

    rate_table: str = "trawlquotas"
    rate_submissions_per_minute: int = Field(30, ge=1, le=100_000)
    rate_urls_per_day: int = Field(50_000, ge=1, le=100_000_000)
    rate_running_jobs: int = Field(10, ge=1, le=10_000)

    @field_validator("fetch_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("fetch_allowed_ports")
    @classmethod
    def _ports_parse(cls, value: str) -> str:
        if any(not 0 < p < 65536 for p in parse_ports(value)):
            raise ValueError("ports must be between 1 and 65535")
        return value

    @field_validator("auth_tenant_ids")
    @classmethod
    def _tenants_are_guids(cls, value: str) -> str:
        for tenant in parse_list(value):
            UUID(tenant)  # "common" or "organizations" would let any tenant in
        return value

    @field_validator("auth_issuer_versions")
    @classmethod
    def _versions_known(cls, value: str) -> str:
        if not parse_list(value) or not set(parse_list(value)) <= {"1", "2"}:
            raise ValueError("TRAWL_AUTH_ISSUER_VERSIONS lists 1 (sts.windows.net) and/or 2 (login.microsoftonline.com)")
        return value

    @field_validator("rate_table")
    @classmethod
    def _table_name_valid(cls, value: str) -> str:
        if not _TABLE_NAME.match(value):
            raise ValueError("TRAWL_RATE_TABLE must be 3-63 letters and digits, starting with a letter")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.default_deadline_seconds > self.max_deadline_seconds:
            raise ValueError("TRAWL_DEFAULT_DEADLINE_SECONDS exceeds TRAWL_MAX_DEADLINE_SECONDS")
        if self.database_auth == "url" and not self.database_url:
            raise ValueError("TRAWL_DATABASE_URL is required when TRAWL_DATABASE_AUTH=url")
        if self.database_auth == "entra" and not (self.database_host and self.database_user):
            raise ValueError("TRAWL_DATABASE_HOST and TRAWL_DATABASE_USER are required when TRAWL_DATABASE_AUTH=entra")
        if not (self.storage_connection_string or self.storage_queue_service_uri):
            raise ValueError("TrawlStorage (a connection string) or TrawlStorage__queueServiceUri is required")
        if self.environment != "local":
            self._reject_local_values()
        return self

    @model_validator(mode="after")
    def _auth_consistent(self) -> Settings:
        """Dev auth never runs on Azure; Entra auth on Azure names its tenants and audiences."""
        if self.auth_mode == "dev":
            if self.environment != "local" or self.website_instance_id:
                raise ValueError("TRAWL_AUTH_MODE=dev is refused on Azure (TRAWL_ENVIRONMENT=azure or WEBSITE_INSTANCE_ID set)")
            if urlsplit(self.auth_jwks_url).hostname not in _LOOPBACK_HOSTS:
                raise ValueError("TRAWL_AUTH_MODE=dev needs TRAWL_AUTH_JWKS_URL on this machine (the devhost's /.devhost/jwks)")
        elif self.auth_jwks_url and urlsplit(self.auth_jwks_url).scheme != "https":
            raise ValueError("TRAWL_AUTH_JWKS_URL must be https in entra mode")
        if (self.auth_mode == "dev" or self.environment != "local") and not (self.tenant_ids and self.audiences):
            raise ValueError("TRAWL_AUTH_TENANT_IDS and TRAWL_AUTH_AUDIENCES are required")
        if self.environment != "local" and any(marker in self.auth_audiences.lower() for marker in _PLACEHOLDERS):
            raise ValueError("TRAWL_AUTH_AUDIENCES still holds a placeholder value")
        if not (self.storage_connection_string or self.storage_table_service_uri):
            raise ValueError("TrawlStorage (a connection string) or TrawlStorage__tableServiceUri is required")
        if not (self.storage_connection_string or self.storage_blob_service_uri):
            raise ValueError("TrawlStorage (a connection string) or TrawlStorage__blobServiceUri is required")
        return self

    def _reject_local_values(self) -> None:
        """Outside local mode, a sample or emulator value is a deployment mistake: fail fast."""
        if self.storage_connection_string == DEV_STORAGE:
            raise ValueError("TrawlStorage points at the storage emulator outside TRAWL_ENVIRONMENT=local")
        for name in ("database_url", "database_host", "database_user", "storage_connection_string"):
            value = getattr(self, name).lower()
            if any(marker in value for marker in _PLACEHOLDERS):
                raise ValueError(f"{name} still holds a placeholder value")

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.fetch_allowed_networks)

    @property
    def allowed_ports(self) -> frozenset[int]:
        return frozenset(parse_ports(self.fetch_allowed_ports))

    @property
    def tenant_ids(self) -> frozenset[str]:
        return frozenset(str(UUID(tenant)) for tenant in parse_list(self.auth_tenant_ids))

    @property
    def audiences(self) -> frozenset[str]:
        return frozenset(parse_list(self.auth_audiences))

    @property
    def issuer_versions(self) -> frozenset[str]:
        return frozenset(parse_list(self.auth_issuer_versions))


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """Parse comma-separated CIDRs, e.g. "127.0.0.0/8, ::1/128"."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


def parse_ports(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip()]


def parse_list(value: str) -> list[str]:
    """Parse a comma-separated setting into its non-empty, stripped parts."""
    return [part.strip() for part in value.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
