"""Sends ItemMessages to the scrape queue with azure-storage-queue, encoded as the Functions host expects."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import lru_cache
from typing import Any

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.messages import ItemMessage
from shared.settings import Settings

log = logging.getLogger(__name__)
_SEND_THREADS = 8
# Enough pooled HTTP connections for every worker thread of an instance to send at once.
_HTTP_POOL_SIZE = 64
# Messages never expire: an item waits in the queue however long its job's backlog is (the default is 7 days).
_NEVER_EXPIRES = -1


def storage_credential(settings: Settings) -> TokenCredential:
    """The managed identity named by AZURE_CLIENT_ID, else the default chain (developer sign-in)."""
    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return DefaultAzureCredential()


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
    return QueueClient(settings.storage_queue_service_uri, queue_name, credential=storage_credential(settings), **policies)


class ItemQueue:
    """The scrape-items queue. Sending is at-least-once: a retried batch may send duplicates,
    which workers absorb because items are keyed by (job_id, seq)."""

    def __init__(self, client: QueueClient) -> None:
        self.client = client
        self._ensured = False
        self._senders = ThreadPoolExecutor(max_workers=_SEND_THREADS, thread_name_prefix="queue-send")

    def ensure_exists(self) -> None:
        if self._ensured:
            return
        # Created by another instance or a previous run: exactly what we want.
        with suppress(ResourceExistsError):
            self.client.create_queue()
        self._ensured = True

    def send(self, messages: Sequence[ItemMessage]) -> int:
        """Send all messages (in parallel, since each is one HTTP call); return how many were sent."""
        self.ensure_exists()
        list(self._senders.map(lambda m: self.send_later(m, 0), messages))
        log.info("enqueued %d item messages on %s", len(messages), self.client.queue_name)
        return len(messages)

    def send_later(self, message: ItemMessage, delay_s: int) -> None:
        """Send one message that becomes visible after `delay_s` seconds (a retry's backoff)."""
        self.client.send_message(message.model_dump_json(), visibility_timeout=delay_s or None,
                                 time_to_live=_NEVER_EXPIRES)
