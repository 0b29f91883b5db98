"""Storage accounts and names for devhost's bindings, resolved from app settings as the Functions host does.

- `%NAME%` in a binding property is replaced by the app setting NAME (the host's name resolver); a
  reference to a missing setting is an error, as on Azure ("'%NAME%' does not resolve to a value.").
- A binding's `connection` names a setting the WebJobs way: `AzureWebJobs<connection>` first, then
  `<connection>` (so the default, empty connection means `AzureWebJobsStorage`). A setting with a value is
  a connection string (`UseDevelopmentStorage=true` selects Azurite, which azure-storage-queue understands
  itself). A setting with no value but children (`<name>__queueServiceUri`, `<name>__serviceUri` or
  `<name>__accountName`) is an identity-based connection, authenticated with DefaultAzureCredential
  (`<name>__clientId` selects a user-assigned managed identity). App setting names are case-insensitive,
  as .NET configuration keys are.
- Queue names are lower-cased and validated like the Storage Queues extension does before it polls.
- Clients send through a transport whose requests session ignores the environment (`trust_env` off):
  otherwise requests looks up proxy settings and reads ~/.netrc on every call, ~7% of devhost's CPU under
  load. The proxy and CA bundle settings requests would honour are read once, when the client is built.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import requests.utils
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.config import ConfigError, lookup_setting, resolve_setting_references

ServiceClient = TypeVar("ServiceClient", QueueServiceClient, TableServiceClient)

DEFAULT_CONNECTION = "Storage"
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
# azure-storage-queue's transport settings (_shared/constants.py), which a transport passed in replaces.
_CONNECTION_TIMEOUT = 20
_READ_TIMEOUT = 60
_DATA_BLOCK_SIZE = 256 * 1024


def queue_name(binding: dict[str, object], environ: Mapping[str, str] = os.environ) -> str:
    """The binding's queueName after %SETTING% resolution, lower-cased and checked as the extension does."""
    name = resolve_setting_references(str(binding.get("queueName") or ""), environ).lower()
    if not _QUEUE_NAME.match(name):
        raise ConfigError(
            f"Invalid queue name: '{name}'. A queue name is 3-63 characters of lowercase letters, digits and "
            "single dashes, and starts and ends with a letter or digit."
        )
    return name


@dataclass
class QueueAccounts:
    """One QueueServiceClient per connection name, created on first use and shared by all bindings."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _clients: dict[str, QueueServiceClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def service(self, connection: str | None) -> QueueServiceClient:
        """The client for the account a binding's `connection` names; ConfigError if it names nothing."""
        name = connection or DEFAULT_CONNECTION
        with self._lock:
            if name not in self._clients:
                self._clients[name] = service_client(QueueServiceClient, "queue", name, self.environ)
            return self._clients[name]

    def close(self) -> None:
        """Close every client created so far."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def service_client(client_type: type[ServiceClient], service: str, connection: str | None,
                   environ: Mapping[str, str] = os.environ) -> ServiceClient:
    """A `service` ("queue", "table") client for the account `connection` names, as the WebJobs SDK resolves it."""
    transport = _transport(environ)
    client = _client(client_type, service, connection or DEFAULT_CONNECTION, environ, transport)
    _read_proxies_once(transport, client.url)
    return client


def _client(client_type: type[ServiceClient], service: str, name: str, environ: Mapping[str, str],
            transport: RequestsTransport) -> ServiceClient:
    for setting in (f"AzureWebJobs{name}", name):
        value = lookup_setting(environ, setting)
        if value:
            return client_type.from_connection_string(value, transport=transport, user_agent_use_env=False)
        section = _section(environ, setting)
        if section:
            return client_type(_identity_url(setting, section, service), credential=_credential(section),
                               transport=transport, user_agent_use_env=False)
    raise ConfigError(
        f"Storage account connection string 'AzureWebJobs{name}' does not exist. "
        "Make sure that it is a defined App Setting."
    )


def _transport(environ: Mapping[str, str]) -> RequestsTransport:
    """A transport whose session has trust_env off, with requests' CA bundle settings read now.

    `use_env_settings=False` rather than a session passed in: azure-core then builds the session itself
    (its adapter, with retries left to the pipeline) and closes it with the client.
    """
    bundle = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    return RequestsTransport(use_env_settings=False, connection_verify=bundle or True,
                             connection_timeout=_CONNECTION_TIMEOUT, read_timeout=_READ_TIMEOUT,
                             connection_data_block_size=_DATA_BLOCK_SIZE)


def _read_proxies_once(transport: RequestsTransport, url: str) -> None:
    """The proxies requests would pick for `url` on every call (HTTP(S)_PROXY unless NO_PROXY matches)."""
    transport.open()
    transport.session.proxies = requests.utils.get_environ_proxies(url)


def _identity_url(setting: str, section: dict[str, str], service: str) -> str:
    url = section.get(f"{service}serviceuri") or section.get("serviceuri")
    if not url and section.get("accountname"):
        url = f"https://{section['accountname']}.{service}.core.windows.net"
    if not url:
        raise ConfigError(
            f"Connection '{setting}' has settings ({', '.join(sorted(section))}) but no {service}ServiceUri, "
            "serviceUri or accountName to say which storage account to use."
        )
    return url


def _credential(section: dict[str, str]) -> TokenCredential:
    from azure.identity import DefaultAzureCredential  # slow to import, and only identity connections need it

    return DefaultAzureCredential(managed_identity_client_id=section.get("clientid"))


def _section(environ: Mapping[str, str], name: str) -> dict[str, str]:
    """The `<name>__<key>` settings (also `<name>:<key>`), keys lower-cased."""
    prefixes = (f"{name}__".lower(), f"{name}:".lower())
    section = {}
    for key, value in environ.items():
        lowered = key.lower()
        prefix = next((p for p in prefixes if lowered.startswith(p)), None)
        if prefix is not None:
            section[lowered[len(prefix):]] = value
    return section
