"""Waiting for a job to change, without polling per reader: one LISTEN connection per process.

The `jobs_notify_change` trigger (migration 0005) notifies `trawl_job_changed` with the job's id when a
change a stream shows commits, on whichever instance made it. One thread here holds a dedicated
connection in LISTEN and wakes the readers of that job. A notification can be missed (the connection
drops and comes back, the server restarts), so every `recheck_s` the thread also reads the state of
every watched job in one query and wakes the readers whose job moved on: a missed notification costs
at most one interval, and the database sees one query per interval per instance, not one per reader.
"""
from __future__ import annotations

import asyncio
import logging
import select
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from uuid import UUID

import psycopg2
from psycopg2 import sql

from shared.adapters.db.connection import Connection, DatabaseConfig, connect

log = logging.getLogger(f"trawl.{__name__}")

CHANNEL = "trawl_job_changed"

# What the recheck compares: the same token `shared.domain.stream.state_token` makes from a Job.
_STATES = """SELECT id, succeeded + failed + skipped AS done, status, cancel_requested_at IS NOT NULL AS cancel
               FROM jobs WHERE id = ANY(%s::uuid[])"""

# After a lost connection, wait this long before connecting again (doubling up to the cap).
_RECONNECT_BASE_S = 0.5
_RECONNECT_MAX_S = 10.0


@dataclass(eq=False)
class Watch:
    """One reader's wait for one job. `seen` is the state the reader last read; the recheck wakes it
    when the job's state differs."""

    job_id: UUID
    loop: asyncio.AbstractEventLoop
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    seen: Hashable | None = None

    def wake(self) -> None:
        # The reader may have gone, and its loop with it: nothing is waiting then.
        with suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.changed.set)


class JobChangeListener:
    """Wakes the watches of a job when it changes. The thread and its connection start with the first
    watch and stay for the process's life: one extra PostgreSQL session per instance that streams."""

    def __init__(self, config: DatabaseConfig, recheck_s: float = 2.0, channel: str = CHANNEL) -> None:
        self._config = config
        self._recheck_s = recheck_s
        self._channel = channel
        self._lock = threading.Lock()
        self._watches: dict[UUID, set[Watch]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.connected = threading.Event()

    @contextmanager
    def watch(self, job_id: UUID) -> Iterator[Watch]:
        """Register a wait for `job_id` (on the running event loop) for the duration of the block. Register
        before reading the job, so a change that commits between the read and the wait still wakes it."""
        watch = Watch(job_id, asyncio.get_running_loop())
        with self._lock:
            self._watches.setdefault(job_id, set()).add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="trawl-job-listener", daemon=True)
                self._thread.start()
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(job_id)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._watches[job_id]

    def close(self) -> None:
        """Stop the thread (tests; a process simply exits)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        delay = _RECONNECT_BASE_S
        while not self._stopping.is_set():
            try:
                conn = connect(self._config)
            except psycopg2.Error as exc:
                log.warning("job listener: cannot connect (%s); again in %.1f s", exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            delay = _RECONNECT_BASE_S
            try:
                self._listen(conn)
            except (psycopg2.Error, OSError) as exc:
                log.warning("job listener: connection lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                conn.close()
                # Whatever happened while no one listened, readers re-read.
                self._wake_all()

    def _listen(self, conn: Connection) -> None:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self.connected.set()
        self._recheck(conn)
        while not self._stopping.is_set():
            ready, _, _ = select.select([conn], [], [], self._recheck_s)
            if not ready:
                self._recheck(conn)
                continue
            conn.poll()
            changed = {notify.payload for notify in conn.notifies}
            conn.notifies.clear()
            for job_id in changed:
                self._wake(job_id)

    def _recheck(self, conn: Connection) -> None:
        with self._lock:
            watched = {job_id: list(watches) for job_id, watches in self._watches.items()}
        if not watched:
            return
        with conn.cursor() as cur:
            cur.execute(_STATES, ([str(job_id) for job_id in watched],))
            states = {UUID(str(row[0])): (row[1], row[2], row[3]) for row in cur.fetchall()}
        for job_id, watches in watched.items():
            for watch in watches:
                if watch.seen is not None and watch.seen != states.get(job_id):
                    watch.wake()

    def _wake(self, payload: str) -> None:
        try:
            job_id = UUID(payload)
        except ValueError:
            return
        with self._lock:
            watches = list(self._watches.get(job_id, ()))
        for watch in watches:
            watch.wake()

    def _wake_all(self) -> None:
        with self._lock:
            watches = [watch for group in self._watches.values() for watch in group]
        for watch in watches:
            watch.wake()
