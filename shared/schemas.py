"""The API's request and response bodies: validated at the edge, and the source of the OpenAPI document."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.models import Job


class JobOptions(BaseModel):
    """Per-job options."""

    model_config = ConfigDict(extra="forbid")

    deadline_seconds: int | None = Field(
        None, ge=10, description="Seconds from submission until the job ends `timed_out`; default and maximum from settings."
    )


class SubmitJobRequest(BaseModel):
    """`POST /api/jobs`: the URLs to scrape and the job's options."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(min_length=1, description="Absolute http(s) URLs, scraped once each.")
    options: JobOptions = Field(default_factory=JobOptions)

    @field_validator("urls")
    @classmethod
    def _absolute_http_urls(cls, urls: list[str]) -> list[str]:
        for index, url in enumerate(urls):
            parts = urlsplit(url.strip())
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"urls[{index}] is not an absolute http(s) URL")
        return [url.strip() for url in urls]


class CancelJobRequest(BaseModel):
    """`DELETE /api/jobs/{id}`: an optional reason, kept in the audit log."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class ProgressView(BaseModel):
    total: int
    succeeded: int
    failed: int
    skipped: int
    pending: int


class CancellationView(BaseModel):
    requested_at: datetime
    requested_by: str | None
    reason: str | None


class JobView(BaseModel):
    """A job as callers see it."""

    id: UUID
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    options: dict[str, Any]
    progress: ProgressView
    cancellation: CancellationView | None
    parent_job_id: UUID | None = None
    links: dict[str, str]
    statusQueryGetUri: str = Field(description="This job's own status URL (the Durable HTTP async pattern).")

    @classmethod
    def of(cls, job: Job, base_url: str) -> JobView:
        path = f"/api/jobs/{job.id}"
        cancellation = None
        if job.cancel_requested_at is not None:
            cancellation = CancellationView(requested_at=job.cancel_requested_at, requested_by=job.cancel_requested_by,
                                            reason=job.cancel_reason)
        return cls(
            id=job.id, status=job.status, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, deadline_at=job.deadline_at, options=job.options,
            progress=ProgressView(total=job.total, succeeded=job.succeeded, failed=job.failed, skipped=job.skipped,
                                  pending=job.remaining),
            cancellation=cancellation, parent_job_id=job.parent_job_id,
            links={"self": path, "results": f"{path}/results", "logs": f"{path}/logs", "cancel": path,
                   "retry": f"{path}/retry"},
            statusQueryGetUri=f"{base_url}{path}",
        )
