"""Deleting data on the real PostgreSQL and Azurite: a job's results and bodies go, versions other jobs use stay,
the audit log says who did it, and the retention timer deletes expired data and unreferenced blobs in batches."""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from shared.adapters.content_store import ContentStore, blob_name
from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.unit_of_work import in_transaction
from shared.domain.content import ContentFormat
from shared.domain.errors import Conflict, NotFound
from shared.domain.models import Job, JobOutcome, Owner
from shared.services import retention
from tests.owners import ANONYMOUS_OWNER

FetchRows = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def container(azurite: str) -> Iterator[ContainerClient]:
    client = ContainerClient.from_connection_string(azurite, f"test-{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_container()


@pytest.fixture
def store(container: ContainerClient) -> ContentStore:
    return ContentStore(container)


def exists(container: ContainerClient, body: bytes) -> bool:
    return bool(container.get_blob_client(blob_name(hashlib.sha256(body).hexdigest())).exists())


def finished_job(pool: ConnectionPool, submit_job: Callable[..., Job], store: ContentStore, bodies: list[bytes],
                 url: str = "https://example.test/page") -> Job:
    """A succeeded job of one item per body, each body stored and recorded as a version of one page."""
    job = submit_job(count=len(bodies))
    assert in_transaction(pool, lambda tx: tx.jobs.mark_job_running(job.id))
    for seq, body in enumerate(bodies):
        stored = {ContentFormat.MARKDOWN: store.put(body, "text/markdown")}
        kept = in_transaction(pool, lambda tx, seq=seq, stored=stored, body=body: tx.jobs.record_page_version(
            ANONYMOUS_OWNER, url, "example.test", body.decode(), stored, job.id, seq))
        in_transaction(pool, lambda tx, seq=seq, kept=kept: tx.jobs.complete_item(
            job.id, seq, {"seq": seq}, 200, None, 5, kept))
    in_transaction(pool, lambda tx: tx.jobs.finalise_job(job.id, JobOutcome.COMPLETED, "orchestrator"))
    return job


def test_deleting_a_jobs_data_keeps_the_job_its_log_and_the_versions_others_use(
        pool: ConnectionPool, submit_job: Callable[..., Job], store: ContentStore, fetch_rows: FetchRows) -> None:
    old = finished_job(pool, submit_job, store, [b"first", b"second"])
    newer = finished_job(pool, submit_job, store, [b"second"])  # sees the old job's latest version again

    deleted = retention.delete_job_data(pool, old.id, ANONYMOUS_OWNER, "alice")

    assert (deleted.items, deleted.versions, deleted.bodies) == (2, 1, 2)
    items = fetch_rows("SELECT result, markdown_sha256, page_version_id FROM job_items WHERE job_id = %s", (old.id,))
    assert all(row == {"result": None, "markdown_sha256": None, "page_version_id": None} for row in items)
    versions = fetch_rows("SELECT v.main_text_digest FROM page_versions v JOIN pages p ON p.id = v.page_id "
                          "WHERE p.url = 'https://example.test/page'")
    assert versions == [{"main_text_digest": "second"}], "the version the newer job used stays"
    [event] = fetch_rows("SELECT actor, data FROM job_events WHERE job_id = %s AND event = 'data_deleted'", (old.id,))
    assert event == {"actor": "alice", "data": {"items": 2, "versions": 1, "bodies": 2}}
    again = retention.delete_job_data(pool, old.id, ANONYMOUS_OWNER, "alice")
    assert (again.items, again.versions, again.bodies) == (0, 0, 0)
    assert fetch_rows("SELECT count(*) AS n FROM job_items WHERE job_id = %s AND result IS NOT NULL",
                      (newer.id,)) == [{"n": 1}]


def test_only_the_owner_may_delete_and_only_a_final_job(pool: ConnectionPool, submit_job: Callable[..., Job],
                                                       other_owner: Owner) -> None:
    running = submit_job(count=1)
    with pytest.raises(NotFound):
        retention.delete_job_data(pool, running.id, other_owner, "mallory")
    with pytest.raises(Conflict):
        retention.delete_job_data(pool, running.id, ANONYMOUS_OWNER, "alice")


def test_the_sweep_deletes_expired_data_then_blobs_nothing_names_after_the_grace(
        pool: ConnectionPool, submit_job: Callable[..., Job], store: ContentStore, container: ContainerClient,
        fetch_rows: FetchRows, execute_sql: Callable[..., None]) -> None:
    expired = finished_job(pool, submit_job, store, [b"old body"], url="https://example.test/expired")
    recent = finished_job(pool, submit_job, store, [b"recent body"], url="https://example.test/recent")
    execute_sql("UPDATE jobs SET finished_at = now() - interval '40 days' WHERE id = %s", (expired.id,))
    now = datetime.now(UTC)

    first = retention.sweep(pool, store, 30, now)
    later = retention.sweep(pool, store, 30, now + retention.BLOB_GRACE + timedelta(minutes=1))

    assert (first.jobs, first.blobs) == (1, 0), "blobs wait out the grace period"
    assert (later.jobs, later.blobs) == (0, 1)
    assert not exists(container, b"old body") and exists(container, b"recent body")
    assert fetch_rows("SELECT actor FROM job_events WHERE job_id = %s AND event = 'data_deleted'",
                      (expired.id,)) == [{"actor": "retention"}]
    assert fetch_rows("SELECT count(*) AS n FROM job_items WHERE job_id = %s AND result IS NOT NULL",
                      (recent.id,)) == [{"n": 1}]


def test_a_body_named_again_before_the_sweep_is_kept(pool: ConnectionPool, submit_job: Callable[..., Job],
                                                     store: ContentStore, container: ContainerClient) -> None:
    gone = finished_job(pool, submit_job, store, [b"shared body"], url="https://example.test/again")
    retention.delete_job_data(pool, gone.id, ANONYMOUS_OWNER, "alice")
    finished_job(pool, submit_job, store, [b"shared body"], url="https://example.test/again")

    swept = retention.sweep(pool, store, 0, datetime.now(UTC) + retention.BLOB_GRACE + timedelta(minutes=1))

    assert swept.blobs == 0 and exists(container, b"shared body")


def test_a_worker_about_to_store_a_noted_body_takes_it_off_the_list(
        pool: ConnectionPool, submit_job: Callable[..., Job], store: ContentStore, container: ContainerClient,
        fetch_rows: FetchRows) -> None:
    gone = finished_job(pool, submit_job, store, [b"again soon"], url="https://example.test/soon")
    retention.delete_job_data(pool, gone.id, ANONYMOUS_OWNER, "alice")
    digest = hashlib.sha256(b"again soon").hexdigest()
    assert fetch_rows("SELECT sha256 FROM blob_garbage WHERE sha256 = %s", (digest,))

    in_transaction(pool, lambda tx: tx.jobs.forget_garbage([digest]))

    assert fetch_rows("SELECT sha256 FROM blob_garbage WHERE sha256 = %s", (digest,)) == []
    assert retention.sweep(pool, store, 0, datetime.now(UTC) + retention.BLOB_GRACE * 2).blobs == 0
    assert exists(container, b"again soon")
