"""Sends ItemMessages to the scrape queue (a client from `shared.adapters.storage`)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from shared.domain.messages import ItemMessage

log = logging.getLogger(f"trawl.{__name__}")
_SEND_THREADS = 8
# Messages never expire: an item waits in the queue however long its job's backlog is (the default is 7 days).
_NEVER_EXPIRES = -1


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
