"""The queue message a scrape worker receives: ids only, the data stays in PostgreSQL."""
from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class ItemMessage(BaseModel):
    """One URL of one job to scrape; `traceparent` carries the W3C trace context across the queue.

    `attempt` is how many fetches of the item PostgreSQL had counted when this message was sent: a
    delivery whose item has counted more is a stale duplicate. `outage_redeliveries` counts how
    often the message was put back because PostgreSQL was unreachable, which spends no attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: UUID
    seq: int
    attempt: int = Field(0, ge=0)
    outage_redeliveries: int = Field(0, ge=0)
    traceparent: str | None = None

    def log_context(self) -> dict[str, str | int]:
        """`extra=` for log calls: exported as custom dimensions, so an item's logs can be queried."""
        return {"trawl.job.id": str(self.job_id), "trawl.item.seq": self.seq}
