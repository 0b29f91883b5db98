"""Helpers for the scrape worker's integration tests (their fixtures are in conftest.py)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.domain.messages import ItemMessage
from shared.domain.models import Job

FetchRows = Callable[..., list[dict[str, Any]]]


class RecordingSender:
    """An ItemSender that keeps what it was asked to send, and can fail like a Storage outage."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[ItemMessage, int]] = []
        self.failures = failures

    def send_later(self, message: ItemMessage, delay_s: int) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("storage unreachable")
        self.sent.append((message, delay_s))


def item(fetch_rows: FetchRows, job: Job) -> dict[str, Any]:
    """The one item row of a job made by the `job_of` fixture."""
    [row] = fetch_rows("SELECT * FROM job_items WHERE job_id = %s AND seq = 0", (job.id,))
    return row
