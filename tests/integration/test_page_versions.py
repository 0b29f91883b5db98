"""Page versions on the real PostgreSQL: new, unchanged and changed by main-text digest, per owner, and a
redelivered item answering as it did the first time."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from shared.adapters.db.connection import ConnectionPool
from shared.adapters.db.unit_of_work import in_transaction
from shared.domain.content import ContentFormat, KeptContent, PageChange, StoredBody
from shared.domain.models import Job, Owner
from tests.owners import ANONYMOUS_OWNER

URL = "https://example.test/page/0"
BODY = {ContentFormat.MARKDOWN: StoredBody("ab" * 32, 120)}


def record(pool: ConnectionPool, job: Job, seq: int, digest: str, owner: Owner = ANONYMOUS_OWNER) -> KeptContent:
    return in_transaction(pool, lambda tx: tx.jobs.record_page_version(
        owner, URL, "example.test", digest, BODY, job.id, seq))


def test_first_seen_is_new_the_same_digest_unchanged_another_changed(
        submit_job: Callable[..., Job], pool: ConnectionPool) -> None:
    job = submit_job(count=4)

    changes = [record(pool, job, seq, digest).change for seq, digest in enumerate(["d1", "d1", "d2", "d2"])]

    assert changes == [PageChange.NEW, PageChange.UNCHANGED, PageChange.CHANGED, PageChange.UNCHANGED]


def test_a_redelivered_item_gets_the_answer_it_got_before(submit_job: Callable[..., Job], pool: ConnectionPool,
                                                          fetch_rows: Callable[..., list[dict[str, object]]]) -> None:
    job = submit_job(count=2)
    first = record(pool, job, 0, "d1")
    second = record(pool, job, 1, "d2")

    assert record(pool, job, 1, "d2") == second and second.change is PageChange.CHANGED
    assert first.page_id == second.page_id
    assert len(fetch_rows("SELECT id FROM page_versions WHERE page_id = %s", (first.page_id,))) == 2


def test_owners_have_their_own_pages(submit_job: Callable[..., Job], pool: ConnectionPool, other_owner: Owner) -> None:
    job = submit_job(count=1)
    theirs = submit_job(count=1, owner=other_owner)

    mine, other = record(pool, job, 0, "d1"), record(pool, theirs, 0, "d1", other_owner)

    assert mine.change is other.change is PageChange.NEW and mine.page_id != other.page_id


def test_concurrent_items_of_one_page_make_one_new_version(submit_job: Callable[..., Job], pool: ConnectionPool) -> None:
    job = submit_job(count=8)
    with ThreadPoolExecutor(max_workers=8) as threads:
        changes = list(threads.map(lambda seq: record(pool, job, seq, "same").change, range(8)))

    assert sorted(changes) == sorted([PageChange.NEW] + [PageChange.UNCHANGED] * 7)
