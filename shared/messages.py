"""The queue message a scrape worker receives: ids only, the data stays in PostgreSQL."""
from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict


class ItemMessage(BaseModel):
    """One URL of one job to scrape; `traceparent` carries the W3C trace context across the queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: UUID
    seq: int
    traceparent: str | None = None

    def log_context(self) -> dict[str, str | int]:
        """`extra=` for log calls: exported as custom dimensions, so an item's logs can be queried."""
        return {"trawl.job.id": str(self.job_id), "trawl.item.seq": self.seq}
