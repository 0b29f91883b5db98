"""Per-caller quotas on job submissions, enforced across instances in Azure Table storage.

Three limits, checked in this order when a caller submits a job:

- **running jobs**: the caller's pending and running jobs, *counted in PostgreSQL* (the source of
  truth, so the count cannot drift from the jobs), plus the submissions admitted but not yet
  committed, which hold a *reservation* in the caller's quota entity. The reservation is what
  makes the check exact across instances (see below). It is freed as soon as its job is committed
  (the job then counts in PostgreSQL) or its submission failed; one that a crashed instance leaves
  behind expires after `RESERVATION_SECONDS`. Nothing has to happen when a job finishes, so there
  is no second counter to keep in step with finalisation.
- **submissions per minute** and **URLs per day**: fixed windows aligned to the Unix epoch (UTC
  days). The entity holds each window's start and how much of it is used; the first admission of a
  new window starts it again at zero. Azure Tables has no expiry, so one entity per caller, rather
  than one per caller and window, keeps the table from growing forever.

All three live in one entity per caller (PartitionKey: tenant and object id), so an admission is
one read and one conditional write, whatever the limits: read the entity (with its ETag), count
in PostgreSQL, check, then write only if the entity is unchanged (`update_entity(...,
etag=..., match_condition=IfNotModified)`, or `create_entity` for a caller's first). A 412 or a
create conflict means another instance admitted something first: read and check again. Of two
racing admissions, the later writer has therefore read the earlier one's reservation, or, if that
was already released, its committed job in PostgreSQL. Over a limit is a 429 (`RateLimited`) naming
the limit, with `Retry-After`; a refused submission writes nothing. An unreachable Table service is
a 503: the quota is enforced, never skipped.
"""
from __future__ import annotations

import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.db import ConnectionPool, read
from shared.adapters.executors import Executors, Work
from shared.domain.errors import RateLimited, Unavailable
from shared.domain.models import JobStatus, Owner
from shared.settings import Settings

log = logging.getLogger(f"trawl.{__name__}")

ROW_KEY = "quota"
# Longer than any submission can take (Azure's front end drops an HTTP request after 230 s).
RESERVATION_SECONDS = 300
# When to ask again after the running-jobs limit: jobs end at no predictable time.
RUNNING_RETRY_AFTER_SECONDS = 15
RUNNING_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
_MAX_ATTEMPTS = 50
_jitter = secrets.SystemRandom()

CountRunningJobs = Callable[[Owner, int], int]
"""How many of the owner's jobs are pending or running, counting no further than the cap."""


@dataclass(frozen=True)
class QuotaLimits:
    """How much one caller may do."""

    submissions_per_minute: int
    urls_per_day: int
    running_jobs: int

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaLimits:
        return cls(settings.rate_submissions_per_minute, settings.rate_urls_per_day, settings.rate_running_jobs)


@dataclass(frozen=True)
class Window:
    """A fixed window of `seconds`, aligned to the Unix epoch; `limit` names it (and its entity properties)."""

    limit: str
    seconds: int

    def start(self, now: float) -> str:
        """The window's start, as stored: epoch seconds as text (Tables integers are 32-bit)."""
        return str(int(now // self.seconds) * self.seconds)

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(int(self.start(now)) + self.seconds - now))


SUBMISSIONS_PER_MINUTE = Window("submissions_per_minute", 60)
URLS_PER_DAY = Window("urls_per_day", 86_400)
RUNNING_JOBS = "running_jobs"


@dataclass(frozen=True)
class Admission:
    """An admitted submission: its reservation, and the day window its URLs were charged to."""

    owner: Owner
    reservation: str
    urls: int
    day: str


@dataclass(frozen=True)
class QuotaState:
    """A caller's quota entity as read, with its ETag (None: no entity yet)."""

    properties: dict[str, Any]
    etag: str | None

    def used(self, window: Window, start: str) -> int:
        """How much of the window starting at `start` is used (0 once another window began)."""
        if self.properties.get(f"{window.limit}_start") != start:
            return 0
        return int(self.properties.get(f"{window.limit}_used", 0))

    def reservations(self, now: float) -> dict[str, float]:
        """Reservations still alive at `now`, by id, with their expiry."""
        stored = json.loads(self.properties.get("reservations") or "{}")
        return {rid: float(expires) for rid, expires in stored.items() if float(expires) > now}

    def charged(self, window: Window, start: str, used: int) -> dict[str, Any]:
        return {f"{window.limit}_start": start, f"{window.limit}_used": used}


class Quotas:
    """The three limits of every caller in one table; `count_running_jobs` reads PostgreSQL."""

    def __init__(self, table: TableClient, limits: QuotaLimits, count_running_jobs: CountRunningJobs, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.limits = limits
        self._count_running_jobs = count_running_jobs
        self._clock = clock
        self._table_ensured = False

    def admit(self, owner: Owner, url_count: int) -> Admission:
        """Reserve a running-job slot and charge one submission and `url_count` URLs, all or nothing.

        RateLimited (429) names the first limit exceeded; Unavailable (503) when the Table service is down.
        """
        reservation = uuid.uuid4().hex
        try:
            self._ensure_table()
            for attempt in range(_MAX_ATTEMPTS):
                state, now = self._read(owner), self._clock()
                properties = self._admitted(owner, state, now, reservation, url_count)
                if self._write(owner, state, properties):
                    return Admission(owner, reservation, url_count, URLS_PER_DAY.start(now))
                _back_off(attempt)
        except AzureError as exc:
            raise Unavailable("the rate limit store cannot be reached; try again later") from exc
        raise _contended()

    def release(self, admission: Admission, *, created: bool) -> None:
        """End an admission: free its reservation (a created job now counts in PostgreSQL) and, when no
        job was created, give its URLs back. A failure is logged: the reservation then expires on its own."""
        try:
            for attempt in range(_MAX_ATTEMPTS):
                state = self._read(admission.owner)
                properties = _released(state, admission, created, self._clock())
                if properties is None or self._write(admission.owner, state, properties):
                    return
                _back_off(attempt)
            raise _contended()
        except (AzureError, RateLimited) as exc:
            log.warning("owner %s: releasing admission %s failed (it expires in %d s): %s",
                        admission.owner.actor, admission.reservation, RESERVATION_SECONDS, exc)

    def _admitted(self, owner: Owner, state: QuotaState, now: float, reservation: str, urls: int) -> dict[str, Any]:
        """The entity's properties with this admission added, or RateLimited naming the limit it exceeds."""
        live = state.reservations(now)
        if self._count_running_jobs(owner, self.limits.running_jobs) + len(live) >= self.limits.running_jobs:
            raise RateLimited(f"at most {self.limits.running_jobs} jobs may be pending or running at once",
                              RUNNING_RETRY_AFTER_SECONDS, limit=RUNNING_JOBS, allowed=self.limits.running_jobs)
        minute = _charge(state, SUBMISSIONS_PER_MINUTE, self.limits.submissions_per_minute, now, 1)
        day = _charge(state, URLS_PER_DAY, self.limits.urls_per_day, now, urls)
        return {**minute, **day, "reservations": json.dumps({**live, reservation: now + RESERVATION_SECONDS})}

    def _read(self, owner: Owner) -> QuotaState:
        try:
            entity = self.table.get_entity(owner_key(owner), ROW_KEY)
        except ResourceNotFoundError:
            return QuotaState({}, None)
        return QuotaState(dict(entity), entity.metadata["etag"])

    def _write(self, owner: Owner, read: QuotaState, properties: dict[str, Any]) -> bool:
        """Write if the entity is still as read; False when another writer got there first."""
        entity = {**read.properties, **properties, "PartitionKey": owner_key(owner), "RowKey": ROW_KEY}
        try:
            if read.etag is None:
                self.table.create_entity(entity)
            else:
                self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=read.etag,
                                         match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):  # created or changed meanwhile
                return False
            raise
        return True

    def _ensure_table(self) -> None:
        if self._table_ensured:
            return
        # Created by another instance or an earlier run: exactly what we want.
        with suppress(ResourceExistsError):
            self.table.create_table()
        self._table_ensured = True


def owner_key(owner: Owner) -> str:
    """The PartitionKey of an owner's entity: tenant and object id (GUIDs for Entra ID callers)."""
    return f"{owner.tenant_id}_{owner.object_id}"


def _charge(state: QuotaState, window: Window, limit: int, now: float, amount: int) -> dict[str, Any]:
    start = window.start(now)
    used = state.used(window, start)
    if used + amount > limit:
        raise RateLimited(f"{window.limit.replace('_', ' ')}: {used} of {limit} used, this needs {amount}",
                          window.retry_after(now), limit=window.limit, allowed=limit)
    return state.charged(window, start, used + amount)


def _released(state: QuotaState, admission: Admission, created: bool, now: float) -> dict[str, Any] | None:
    """The entity's properties without this admission (None: nothing left to undo)."""
    live = state.reservations(now)
    found = live.pop(admission.reservation, None) is not None
    properties: dict[str, Any] = {"reservations": json.dumps(live)}
    used = state.used(URLS_PER_DAY, admission.day)
    refund = not created and used > 0
    if refund:
        properties |= state.charged(URLS_PER_DAY, admission.day, max(0, used - admission.urls))
    return properties if found or refund else None


def _back_off(attempt: int) -> None:
    time.sleep(_jitter.uniform(0, 0.002 * (attempt + 1)))


def _contended() -> RateLimited:
    return RateLimited("too many simultaneous submissions by this caller", 1, limit="contention")


def running_job_counter(pool: ConnectionPool) -> CountRunningJobs:
    """Counts an owner's pending and running jobs in PostgreSQL, up to a cap."""

    def count(owner: Owner, cap: int) -> int:
        return len(read(pool, lambda tx: tx.queries.list_jobs(owner, statuses=RUNNING_STATUSES, limit=cap)))

    return count


@asynccontextmanager
async def submission_quota(quotas: Quotas, executors: Executors, owner: Owner, url_count: int) -> AsyncIterator[None]:
    """Admit one submission of `url_count` URLs for the duration of the block, which creates the job.

    Raises RateLimited (429) over a limit. On exit the reservation is freed; when the block fails
    (no job created), the URLs are given back.
    """
    admission = await executors.run(Work.API, quotas.admit, owner, url_count)
    created = False
    try:
        yield
        created = True
    finally:
        await executors.run(Work.API, quotas.release, admission, created=created)
