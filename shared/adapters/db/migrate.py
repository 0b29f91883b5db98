"""Numbered SQL migrations (`migrations/NNNN_name.sql`), applied in order under an advisory lock.

Every Function App instance may run `migrate` at start-up at the same moment: the session-level
advisory lock lets one apply what is pending while the others wait, then find nothing to do.
Each migration runs in its own transaction together with its `schema_migrations` row, so a
failed one leaves no trace and is retried whole by the next start.
"""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.db.connection import Connection, is_broken

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Key of the session advisory lock serialising migrations ("trawl" in ASCII).
MIGRATION_LOCK_ID = 0x74726177_6C

_log = logging.getLogger(f"trawl.{__name__}")


class MigrationError(Exception):
    """The database's migration history does not match the migration files."""


@dataclass(frozen=True)
class Migration:
    """One migration file: `version` is its number prefix."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL, recorded so an edited, already-applied file is detected."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of `directory` in version order."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        version, _, name = path.stem.partition("_")
        migrations.append(Migration(version=version, name=name, sql=path.read_text()))
    return migrations


def migrate(conn: Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations of `directory` on `conn` (an idle connection, left idle);
    returns the versions this call applied, empty when the schema was already current."""
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.commit()
        try:
            return _apply_pending(conn, load_migrations(directory))
        except BaseException:
            conn.rollback()
            raise
        finally:
            _unlock(conn)


def _apply_pending(conn: Connection, migrations: list[Migration]) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    text PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur.execute("SELECT version, checksum FROM schema_migrations")
        applied = dict(cur.fetchall())
        conn.commit()
        _check_history(migrations, applied)
        pending = [m for m in migrations if m.version not in applied]
        for migration in pending:
            _apply(conn, migration)
    return [m.version for m in pending]


def _check_history(migrations: list[Migration], applied: dict[str, str]) -> None:
    # Versions without a file are ignored: newer code may already have migrated, and each
    # migration stays compatible with the release before it.
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(f"migration {migration.version} changed after it was applied")


def _apply(conn: Connection, migration: Migration) -> None:
    with conn.cursor() as cur:
        cur.execute(migration.sql)
        cur.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
    conn.commit()
    _log.info("applied migration %s_%s", migration.version, migration.name)


def _unlock(conn: Connection) -> None:
    # A lost connection has already dropped its session lock.
    if is_broken(conn):
        return
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    conn.commit()
