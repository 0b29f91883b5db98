"""Migrations on a real PostgreSQL: applied once, safely in parallel, atomically, and checked."""

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from shared.adapters.db.connection import Connection
from shared.adapters.db.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def connect_empty(empty_db_url: str) -> Iterator[Callable[[], Connection]]:
    """Opens connections to the empty database and closes them after the test."""
    opened: list[Connection] = []

    def open_connection() -> Connection:
        opened.append(psycopg2.connect(empty_db_url))
        return opened[-1]

    yield open_connection
    for conn in opened:
        conn.close()


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A writable copy of the real migrations directory."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    return directory


def applied_versions(conn: Connection) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        versions = [row[0] for row in cur.fetchall()]
    conn.rollback()
    return versions


def all_versions(directory: Path = MIGRATIONS_DIR) -> list[str]:
    return [m.version for m in load_migrations(directory)]


def test_migrate_applies_every_file_once(connect_empty: Callable[[], Connection]) -> None:
    conn = connect_empty()

    first = migrate(conn)
    second = migrate(conn)

    assert first == all_versions() and first[0] == "0001"
    assert second == []
    assert applied_versions(conn) == all_versions()
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('jobs'), to_regclass('job_items'), to_regclass('job_events')")
        assert cur.fetchone() == ("jobs", "job_items", "job_events")


def test_concurrent_migrations_apply_each_version_exactly_once(
    connect_empty: Callable[[], Connection], migrations_copy: Path
) -> None:
    # A slow extra migration keeps the first migrator busy while the others arrive.
    (migrations_copy / "0999_slow.sql").write_text("SELECT pg_sleep(0.3);\n")
    connections = [connect_empty() for _ in range(4)]
    barrier = threading.Barrier(len(connections))
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run(conn: Connection) -> None:
        barrier.wait()
        try:
            results.append(migrate(conn, migrations_copy))
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(results, key=len) == [[], [], [], all_versions(migrations_copy)]
    assert applied_versions(connections[0]) == all_versions(migrations_copy)


def test_failed_migration_leaves_no_trace_and_releases_the_lock(
    connect_empty: Callable[[], Connection], migrations_copy: Path
) -> None:
    broken = migrations_copy / "0999_broken.sql"
    broken.write_text("CREATE TABLE half_done (id int);\nSELECT no_such_function();\n")

    with pytest.raises(psycopg2.errors.UndefinedFunction):
        migrate(connect_empty(), migrations_copy)

    broken.write_text("CREATE TABLE half_done (id int);\n")
    # A second session would block forever if the advisory lock had leaked.
    assert migrate(connect_empty(), migrations_copy) == ["0999"]
    assert applied_versions(connect_empty()) == all_versions(migrations_copy)


def test_an_applied_migration_that_changed_is_rejected(
    connect_empty: Callable[[], Connection], migrations_copy: Path
) -> None:
    migrate(connect_empty(), migrations_copy)
    first = sorted(migrations_copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")

    with pytest.raises(MigrationError, match="0001"):
        migrate(connect_empty(), migrations_copy)


def test_each_test_database_is_fully_migrated_and_isolated(db_url: str) -> None:
    with closing(psycopg2.connect(db_url)) as conn:
        assert applied_versions(conn) == all_versions()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM jobs")
            assert cur.fetchone() == (0,)


def test_items_final_before_the_stream_existed_get_ranks_in_the_order_they_finished(
        connect_empty: Callable[[], Connection], tmp_path: Path) -> None:
    before_streams = tmp_path / "before"
    before_streams.mkdir()
    for migration in MIGRATIONS_DIR.glob("000[1-4]_*.sql"):
        shutil.copy(migration, before_streams)
    conn = connect_empty()
    migrate(conn, before_streams)
    with conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO jobs (id, owner_tenant_id, owner_object_id, status, total, succeeded, failed,
                                         deadline_at)
                       VALUES ('00000000-0000-0000-0000-000000000001', 't', 'o', 'running', 4, 2, 1, now())""")
        cur.execute("""INSERT INTO job_items (job_id, seq, url, status, finished_at)
                       SELECT '00000000-0000-0000-0000-000000000001', seq, 'https://a.test/', status,
                              now() - make_interval(secs => age)
                         FROM (VALUES (0, 'succeeded', 5), (1, 'pending', NULL), (2, 'failed', 30),
                                      (3, 'succeeded', 10)) AS v(seq, status, age)""")

    assert migrate(conn)[0] == "0005"
    with conn.cursor() as cur:
        cur.execute("SELECT seq, done_rank FROM job_items ORDER BY seq")
        assert cur.fetchall() == [(0, 3), (1, None), (2, 1), (3, 2)]
