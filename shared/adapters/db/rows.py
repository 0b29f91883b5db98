"""Turning database rows into domain models, and the owner scope every caller-facing query uses."""

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

from shared.domain.models import Job, JobEvent, JobItem, Owner, Progress

Row = Mapping[str, Any]

# Restricts a query on `jobs j` to one owner; both parameters NULL (owner None) means unscoped,
# for admin callers. psycopg2 interpolates on the client, so the planner sees literals and the
# NULL branch folds away.
OWNER_SCOPE = """(%(owner_tenant_id)s::text IS NULL
    OR (j.owner_tenant_id = %(owner_tenant_id)s AND j.owner_object_id = %(owner_object_id)s))"""


def owner_params(owner: Owner | None) -> dict[str, str | None]:
    """Parameters for OWNER_SCOPE."""
    if owner is None:
        return {"owner_tenant_id": None, "owner_object_id": None}
    return {"owner_tenant_id": owner.tenant_id, "owner_object_id": owner.object_id}


def status_values(statuses: Collection[StrEnum] | None) -> list[str] | None:
    """A status filter as a text[] parameter; None means no filter."""
    return None if statuses is None else [status.value for status in statuses]


def job_from_row(row: Row) -> Job:
    """A `jobs` row as a Job."""
    fields = dict(row)
    owner = Owner(tenant_id=fields.pop("owner_tenant_id"), object_id=fields.pop("owner_object_id"))
    return Job.model_validate({**fields, "owner": owner})


def item_from_row(row: Row) -> JobItem:
    """A `job_items` row as a JobItem."""
    return JobItem.model_validate(dict(row))


def event_from_row(row: Row) -> JobEvent:
    """A `job_events` row as a JobEvent."""
    return JobEvent.model_validate(dict(row))


def progress_from_row(row: Row) -> Progress:
    """A `jobs` row as the Progress the orchestrator polls."""
    return Progress(
        job_id=row["id"],
        status=row["status"],
        total=row["total"],
        succeeded=row["succeeded"],
        failed=row["failed"],
        skipped=row["skipped"],
        cancel_requested=row["cancel_requested_at"] is not None,
        deadline_at=row["deadline_at"],
    )
