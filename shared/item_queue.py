"""Sends ItemMessages to the scrape queue with azure-storage-queue, encoded as the Functions host expects."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.messages import ItemMessage
from shared.settings import Settings

log = logging.getLogger(__name__)
_SEND_THREADS = 8


def storage_credential(settings: Settings) -> TokenCredential:
    """The managed identity named by AZURE_CLIENT_ID, else the default chain (developer sign-in)."""
    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return DefaultAzureCredential()


def queue_client(settings: Settings, queue_name: str) -> QueueClient:
    """A client for one queue: connection string locally, identity-based on Azure (no shared keys)."""
    # The host decodes base64 by default (host.json messageEncoding); raw text would be poisoned.
    policies = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
    if settings.storage_connection_string:
        return QueueClient.from_connection_string(settings.storage_connection_string, queue_name, **policies)
    return QueueClient(settings.storage_queue_service_uri, queue_name, credential=storage_credential(settings), **policies)


class ItemQueue:
    """The scrape-items queue. Sending is at-least-once: a retried batch may send duplicates,
    which workers absorb because items are keyed by (job_id, seq)."""

    def __init__(self, client: QueueClient) -> None:
        self.client = client
        self._ensured = False

    def ensure_exists(self) -> None:
        if self._ensured:
            return
        try:
            self.client.create_queue()
        except ResourceExistsError:
            pass  # created by another instance or a previous run: exactly what we want
        self._ensured = True

    def send(self, messages: Sequence[ItemMessage]) -> int:
        """Send all messages (in parallel, since each is one HTTP call); return how many were sent."""
        self.ensure_exists()
        with ThreadPoolExecutor(max_workers=_SEND_THREADS) as pool:
            list(pool.map(lambda m: self.client.send_message(m.model_dump_json()), messages))
        log.info("enqueued %d item messages on %s", len(messages), self.client.queue_name)
        return len(messages)
