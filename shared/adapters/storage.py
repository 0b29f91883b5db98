"""Clients for the app's Storage account: the scrape queue and the quota table. A connection string
locally (Azurite), identity-based on Azure (no shared keys)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.adapters.identity import azure_credential
from shared.settings import Settings

# Enough pooled HTTP connections for every worker thread of an instance to send at once.
_HTTP_POOL_SIZE = 64


@lru_cache(maxsize=1)
def storage_transport() -> RequestsTransport:
    """One HTTP transport for the app's Storage clients. `requests` would otherwise re-read proxy and
    netrc settings from the environment on every call (trust_env), a measurable cost per message."""
    session = requests.Session()
    session.trust_env = False
    # As azure-core's own session setup: retries belong to the SDK's pipeline, not to urllib3.
    adapter = HTTPAdapter(pool_maxsize=_HTTP_POOL_SIZE,
                          max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=False)


def queue_client(settings: Settings, queue_name: str, **options: Any) -> QueueClient:
    """A client for one queue: connection string locally, identity-based on Azure (no shared keys).
    `options` go to the client (timeouts, retry settings)."""
    # The host decodes base64 by default (host.json messageEncoding); raw text would be poisoned.
    policies = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy(),
                "transport": storage_transport(), **options}
    if settings.storage_connection_string:
        return QueueClient.from_connection_string(settings.storage_connection_string, queue_name, **policies)
    return QueueClient(settings.storage_queue_service_uri, queue_name, credential=azure_credential(settings), **policies)


def container_client(settings: Settings, container_name: str) -> ContainerClient:
    """A client for one blob container, on the same account and transport as the queue."""
    if settings.storage_connection_string:
        return ContainerClient.from_connection_string(settings.storage_connection_string, container_name,
                                                      transport=storage_transport())
    return ContainerClient(settings.storage_blob_service_uri, container_name, credential=azure_credential(settings),
                           transport=storage_transport())


def table_client(settings: Settings, table_name: str) -> TableClient:
    """A client for one table, on the same account and transport as the queue."""
    if settings.storage_connection_string:
        return TableClient.from_connection_string(settings.storage_connection_string, table_name,
                                                  transport=storage_transport())
    return TableClient(settings.storage_table_service_uri, table_name, credential=azure_credential(settings),
                       transport=storage_transport())
