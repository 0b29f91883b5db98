"""Concurrent, repeated deliveries on a real PostgreSQL: counters stay exact and every
transition happens once, whoever races for it."""

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.unit_of_work import UnitOfWork, in_transaction
from shared.domain.models import (
    CancelOutcome,
    CancelResult,
    FinaliseOutcome,
    ItemOutcome,
    Job,
    JobOutcome,
    JobStatus,
    JobSubmission,
)
from tests.owners import ANONYMOUS_OWNER

pytestmark = pytest.mark.integration

T = TypeVar("T")
SubmitJob = Callable[..., Job]
FetchRows = Callable[..., list[dict[str, Any]]]


def race(pool: ConnectionPool, operations: Iterable[Callable[[UnitOfWork], T]], threads: int) -> list[T]:
    """Runs each operation in its own transaction on `threads` threads released together."""
    operations = list(operations)
    start = threading.Barrier(min(threads, len(operations)))

    def run(index: int, operation: Callable[[UnitOfWork], T]) -> T:
        # The first wave starts together; the rest follow as threads free up.
        if index < start.parties:
            start.wait()
        return in_transaction(pool, operation)

    with ThreadPoolExecutor(max_workers=threads) as executor:
        return list(executor.map(run, range(len(operations)), operations))


def complete(job: Job, seq: int) -> Callable[[UnitOfWork], ItemOutcome]:
    return lambda tx: tx.jobs.complete_item(job.id, seq, {"seq": seq}, 200, None, 3)


def counters(fetch_rows: FetchRows, job: Job) -> dict[str, Any]:
    [row] = fetch_rows(
        """SELECT j.status, j.succeeded, j.failed, j.skipped,
                  count(*) FILTER (WHERE i.status = 'succeeded') AS items_succeeded,
                  count(*) FILTER (WHERE i.status = 'failed') AS items_failed,
                  count(*) FILTER (WHERE i.status = 'skipped') AS items_skipped,
                  count(*) FILTER (WHERE i.status = 'pending') AS items_pending
             FROM jobs j JOIN job_items i ON i.job_id = j.id WHERE j.id = %s GROUP BY j.id""",
        (job.id,),
    )
    return row


@pytest.fixture
def running(submit_job: SubmitJob, pool: ConnectionPool) -> Callable[[int], Job]:
    def create(count: int) -> Job:
        job = submit_job(count=count)
        assert in_transaction(pool, lambda tx: tx.jobs.mark_job_running(job.id))
        return job

    return create


def test_two_deliveries_of_one_item_count_once(
    running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    job = running(2)

    outcomes = race(pool, [complete(job, 0), complete(job, 0)], threads=2)

    assert sorted(outcome.changed for outcome in outcomes) == [False, True]
    assert all(outcome.remaining == 1 for outcome in outcomes)
    row = counters(fetch_rows, job)
    assert (row["succeeded"], row["items_succeeded"]) == (1, 1)


def test_exactly_one_of_many_workers_sees_the_last_item(
    running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    job = running(200)

    outcomes = race(pool, [complete(job, seq) for seq in range(200)], threads=20)

    # Serialised on the job row, the 200 completions see every remaining count exactly once.
    assert sorted(outcome.remaining for outcome in outcomes) == list(range(200))
    assert [outcome.remaining for outcome in outcomes].count(0) == 1
    row = counters(fetch_rows, job)
    assert (row["succeeded"], row["items_succeeded"], row["items_pending"]) == (200, 200, 0)


def test_mixed_duplicated_deliveries_keep_counters_exact(
    running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    job = running(120)
    kinds: list[Callable[[int], Callable[[UnitOfWork], ItemOutcome]]] = [
        lambda seq: complete(job, seq),
        lambda seq: lambda tx: tx.jobs.fail_item(job.id, seq, "http_500", "boom", "worker", 500),
        lambda seq: lambda tx: tx.jobs.skip_item(job.id, seq, "robots_txt", "robots.txt"),
    ]
    # Every item is delivered twice, once as each of two different results.
    operations = [kinds[(seq + twice) % 3](seq) for seq in range(120) for twice in (0, 1)]

    outcomes = race(pool, operations, threads=20)

    changed = [outcome for outcome in outcomes if outcome.changed]
    assert len(changed) == 120
    assert [outcome.remaining for outcome in changed].count(0) == 1
    row = counters(fetch_rows, job)
    assert row["items_pending"] == 0
    assert (row["succeeded"], row["failed"], row["skipped"]) == (
        row["items_succeeded"], row["items_failed"], row["items_skipped"]
    )
    assert row["succeeded"] + row["failed"] + row["skipped"] == 120
    failed_events = fetch_rows("SELECT count(*) AS n FROM job_events WHERE job_id = %s AND event = 'item_failed'",
                               (job.id,))
    assert failed_events == [{"n": row["failed"]}]


def test_cancelling_while_workers_complete_items_stays_consistent(
    running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    job = running(150)
    def finalise(tx: UnitOfWork) -> FinaliseOutcome:
        return tx.jobs.finalise_job(job.id, JobOutcome.CANCELLED, "alice")

    operations: list[Callable[[UnitOfWork], Any]] = [complete(job, seq) for seq in range(150)]
    operations[75:75] = [finalise, finalise]

    outcomes = race(pool, operations, threads=16)

    finalisations = outcomes[75:77]
    assert sorted(outcome.changed for outcome in finalisations) == [False, True]
    row = counters(fetch_rows, job)
    assert (row["status"], row["items_pending"]) == ("cancelled", 0)
    assert (row["succeeded"], row["skipped"]) == (row["items_succeeded"], row["items_skipped"])
    assert row["succeeded"] + row["skipped"] == 150
    late = [outcome for outcome in outcomes if isinstance(outcome, ItemOutcome) and not outcome.changed]
    assert len(late) == row["skipped"]
    cancelled = fetch_rows("SELECT actor FROM job_events WHERE job_id = %s AND event = 'cancelled'", (job.id,))
    assert cancelled == [{"actor": "alice"}]


def test_racing_final_outcomes_apply_exactly_one(
    running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    job = running(50)
    outcomes = [JobOutcome.CANCELLED, JobOutcome.TIMED_OUT, JobOutcome.FAILED] * 2

    def finalise(outcome: JobOutcome) -> Callable[[UnitOfWork], FinaliseOutcome]:
        return lambda tx: tx.jobs.finalise_job(job.id, outcome, "racer")

    results = race(pool, [finalise(outcome) for outcome in outcomes], threads=6)

    winners = [result for result in results if result.changed]
    assert len(winners) == 1
    assert {result.job.status for result in results} == {winners[0].job.status}
    row = counters(fetch_rows, job)
    assert (row["skipped"], row["items_skipped"]) == (50, 50)
    final_events = fetch_rows(
        "SELECT event FROM job_events WHERE job_id = %s AND event IN ('cancelled', 'timed_out', 'failed')", (job.id,)
    )
    assert final_events == [{"event": winners[0].job.status.value}]


def test_concurrent_cancel_requests_record_one(
    running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    job = running(1)
    actors = [f"user-{n}" for n in range(8)]

    def cancel(actor: str) -> Callable[[UnitOfWork], CancelOutcome]:
        return lambda tx: tx.jobs.request_cancel(job.id, ANONYMOUS_OWNER, actor, "stop")

    results = race(pool, [cancel(actor) for actor in actors], threads=8)

    [winner] = [r.job for r in results if r.result is CancelResult.REQUESTED]
    assert [r.result for r in results].count(CancelResult.ALREADY_REQUESTED) == len(actors) - 1
    events = fetch_rows("SELECT actor FROM job_events WHERE job_id = %s AND event = 'cancel_requested'", (job.id,))
    assert winner is not None and winner.status is JobStatus.RUNNING
    assert events == [{"actor": winner.cancel_requested_by}]


def test_concurrent_submissions_with_one_idempotency_key_create_one_job(
    pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    def submit(tx: UnitOfWork) -> JobSubmission:
        return tx.jobs.create_job(
            ANONYMOUS_OWNER, ["https://a.test/"], {}, datetime(2030, 1, 1, tzinfo=UTC),
            idempotency_key="once", request_hash="h",
        )

    results = race(pool, [submit] * 6, threads=6)

    assert sorted(result.replayed for result in results) == [False] + [True] * 5
    assert len({result.job.id for result in results}) == 1
    assert len(fetch_rows("SELECT id FROM jobs")) == 1


def test_a_cancel_racing_completion_never_lets_the_job_succeed(
    running: Callable[[int], Job], pool: ConnectionPool, fetch_rows: FetchRows
) -> None:
    accepted_cancels = 0
    for attempt in range(30):
        job = running(1)
        in_transaction(pool, complete(job, 0))

        # Which thread the barrier lets run first is not random: alternating the order makes
        # both interleavings happen.
        operations = [
            lambda tx, job=job: tx.jobs.request_cancel(job.id, ANONYMOUS_OWNER, "alice", None),
            lambda tx, job=job: tx.jobs.finalise_job(job.id, JobOutcome.COMPLETED, "orchestrator"),
        ]
        order = operations if attempt % 2 else operations[::-1]
        results = race(pool, order, threads=2)
        cancel, completion = results if attempt % 2 else results[::-1]

        status = counters(fetch_rows, job)["status"]
        if cancel.result is CancelResult.REQUESTED:  # the caller got 202
            accepted_cancels += 1
            assert not completion.changed and status == JobStatus.RUNNING, "a cancelled job must not succeed"
        else:  # the caller got 409: the job was already final
            assert completion.changed and status == JobStatus.SUCCEEDED
    assert accepted_cancels > 0
