"""Quotas on real Azurite Tables (and real PostgreSQL for running jobs): limits hold exactly, across processes."""
from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient

from shared.adapters.db import ConnectionPool, in_transaction
from shared.domain.errors import RateLimited, Unavailable
from shared.domain.models import Job, JobOutcome, Owner
from shared.services.quotas import RESERVATION_SECONDS, ROW_KEY, QuotaLimits, Quotas, owner_key, running_job_counter

pytestmark = pytest.mark.integration

# 10 s into a minute, 10 s into a UTC day.
NOW = 1_767_225_610.0
GENEROUS = QuotaLimits(submissions_per_minute=10_000, urls_per_day=10_000_000, running_jobs=10_000)
ALICE = Owner(tenant_id="3f2b8c1e-6a4d-4e0b-9c1f-2d7e8a9b0c11", object_id="b5c6d7e8-f9a0-4b1c-8d2e-3f4a5b6c7d8e")
BOB = Owner(tenant_id="3f2b8c1e-6a4d-4e0b-9c1f-2d7e8a9b0c11", object_id="0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5")


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def no_jobs(owner: Owner, cap: int) -> int:
    return 0


@pytest.fixture
def table(azurite: str) -> Iterator[TableClient]:
    client = TableClient.from_connection_string(azurite, f"quotas{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_table()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def quotas_with(table: TableClient, clock: Clock | Callable[[], float], count: Any = no_jobs, **limits: int) -> Quotas:
    merged = QuotaLimits(**{**GENEROUS.__dict__, **limits})
    return Quotas(table, merged, count, clock=clock)


def refused(quotas: Quotas, owner: Owner, urls: int = 1) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        quotas.admit(owner, urls)
    return caught.value


def used(table: TableClient, owner: Owner, limit: str) -> int:
    return int(table.get_entity(owner_key(owner), ROW_KEY)[f"{limit}_used"])


def test_submissions_per_minute(table: TableClient, clock: Clock) -> None:
    quotas = quotas_with(table, clock, submissions_per_minute=3)
    for _ in range(3):
        quotas.release(quotas.admit(ALICE, 1), created=True)

    error = refused(quotas, ALICE)
    assert (error.status, error.retry_after) == (429, 50)
    problem = error.problem()
    assert (problem["limit"], problem["allowed"], problem["retry_after"]) == ("submissions_per_minute", 3, 50)
    quotas.admit(BOB, 1)  # per caller

    clock.now += 50  # the next minute
    quotas.admit(ALICE, 1)
    assert used(table, ALICE, "submissions_per_minute") == 1


def test_urls_per_day(table: TableClient, clock: Clock) -> None:
    quotas = quotas_with(table, clock, urls_per_day=10)
    quotas.admit(ALICE, 6)

    error = refused(quotas, ALICE, 5)
    assert (error.extensions["limit"], error.retry_after) == ("urls_per_day", 86_400 - 10)
    quotas.admit(ALICE, 4)
    assert used(table, ALICE, "urls_per_day") == 10
    assert refused(quotas, ALICE, 11).extensions["limit"] == "urls_per_day"  # one job larger than a whole day


def test_a_submission_that_creates_no_job_gives_its_urls_back(table: TableClient, clock: Clock) -> None:
    quotas = quotas_with(table, clock, urls_per_day=10)
    quotas.release(quotas.admit(ALICE, 6), created=False)
    quotas.admit(ALICE, 10)
    assert used(table, ALICE, "urls_per_day") == 10


def test_a_refused_submission_charges_nothing(table: TableClient, clock: Clock) -> None:
    quotas = quotas_with(table, clock, submissions_per_minute=1, urls_per_day=5, running_jobs=1)
    refused(quotas, ALICE, 6)
    quotas.admit(ALICE, 5)  # no submission, URL or reservation was taken by the refused one


def test_running_jobs_are_counted_in_postgres(table: TableClient, clock: Clock, pool: ConnectionPool,
                                              submit_job: Callable[..., Job]) -> None:
    quotas = quotas_with(table, clock, count=running_job_counter(pool), running_jobs=2)
    first = submit_job(count=1, owner=ALICE)
    admission = quotas.admit(ALICE, 1)
    submit_job(count=1, owner=ALICE)  # the admitted submission commits its job...
    quotas.release(admission, created=True)  # ...and frees its reservation: the job now counts in PostgreSQL

    error = refused(quotas, ALICE)
    assert (error.extensions["limit"], error.retry_after) == ("running_jobs", 15)
    quotas.admit(BOB, 1)  # per caller

    in_transaction(pool, lambda tx: tx.jobs.finalise_job(first.id, JobOutcome.CANCELLED, "test"))
    quotas.admit(ALICE, 1)


def test_an_admitted_submission_holds_its_slot_until_released(table: TableClient, clock: Clock) -> None:
    quotas = quotas_with(table, clock, running_jobs=1)
    admission = quotas.admit(ALICE, 1)
    assert refused(quotas, ALICE).extensions["limit"] == "running_jobs"
    quotas.release(admission, created=False)
    quotas.admit(ALICE, 1)


def test_an_abandoned_reservation_expires(table: TableClient, clock: Clock) -> None:
    quotas = quotas_with(table, clock, running_jobs=1)
    quotas.admit(ALICE, 1)  # its instance died before releasing it
    refused(quotas, ALICE)
    clock.now += RESERVATION_SECONDS + 1
    quotas.admit(ALICE, 1)


def test_an_unreachable_table_service_is_503(clock: Clock) -> None:
    connection = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                  "TableEndpoint=http://127.0.0.1:9/devstoreaccount1")
    table = TableClient.from_connection_string(connection, "quotas", retry_total=0)
    with pytest.raises(Unavailable) as caught:
        quotas_with(table, clock).admit(ALICE, 1)
    assert caught.value.status == 503


# --- two processes at once ----------------------------------------------------------------------

SCENARIOS = {
    # owner object id: (limits, URLs per attempt, attempts per process)
    "11111111-1111-4111-8111-111111111111": (dict(submissions_per_minute=25), 1, 40),
    "22222222-2222-4222-8222-222222222222": (dict(running_jobs=7), 1, 20),
    "33333333-3333-4333-8333-333333333333": (dict(urls_per_day=50), 3, 30),
}


def _hammer(connection: str, table_name: str, barrier: Any, results: Any) -> None:
    """One process: every scenario's attempts, as fast as it can, starting together with the other process."""
    table = TableClient.from_connection_string(connection, table_name)
    admitted = {}
    barrier.wait(timeout=60)
    for object_id, (limits, urls, attempts) in SCENARIOS.items():
        quotas = quotas_with(table, Clock(), **limits)
        owner = Owner(tenant_id=ALICE.tenant_id, object_id=object_id)
        admitted[object_id] = sum(_admitted(quotas, owner, urls) for _ in range(attempts))
    results.put(admitted)


def _admitted(quotas: Quotas, owner: Owner, urls: int) -> bool:
    try:
        quotas.admit(owner, urls)  # never released: running slots stay taken
    except RateLimited as exc:
        assert exc.extensions["limit"] != "contention", "gave up under contention"
        return False
    return True


def test_two_processes_cannot_exceed_any_limit(table: TableClient, azurite: str) -> None:
    table.create_table()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_hammer, args=(azurite, table.table_name, barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    per_process = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    totals = {oid: sum(r[oid] for r in per_process) for oid in SCENARIOS}
    assert totals == {"11111111-1111-4111-8111-111111111111": 25, "22222222-2222-4222-8222-222222222222": 7,
                      "33333333-3333-4333-8333-333333333333": 16}

    def owner(oid: str) -> Owner:
        return Owner(tenant_id=ALICE.tenant_id, object_id=oid)

    assert used(table, owner("11111111-1111-4111-8111-111111111111"), "submissions_per_minute") == 25
    assert used(table, owner("33333333-3333-4333-8333-333333333333"), "urls_per_day") == 48
