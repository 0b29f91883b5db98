"""The composition root: the process-wide clients (database pool, item queue, quotas, thread pools)
and configuration the triggers hand to the services, built on first use from the settings. Only the
trigger modules (api/, activities/) import it; the layers below receive what they need as arguments.

The schema is migrated when the pool is first built, under an advisory lock, so every instance
that starts can do it safely and the first request after a deployment finds the schema current.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from shared.adapters.content_store import ContentStore
from shared.adapters.db import ConnectionPool, DatabaseConfig, EntraDatabase, UrlDatabase, connect, migrate
from shared.adapters.db.listen import JobChangeListener
from shared.adapters.executors import Executors, executor_sizes
from shared.adapters.identity import azure_credential
from shared.adapters.item_queue import ItemQueue
from shared.adapters.storage import container_client, queue_client, table_client
from shared.domain.retry_policy import RetryPolicy
from shared.scraping.fetch import FetchLimits
from shared.services.item_worker import WorkerConfig
from shared.services.job_stream import StreamSlots
from shared.services.quotas import QuotaLimits, Quotas, running_job_counter
from shared.settings import Settings, get_settings

# Deployed next to this package: the queue trigger's concurrency sizes the scrape workers' pool.
HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"

log = logging.getLogger(f"trawl.{__name__}")


def database_config(settings: Settings) -> DatabaseConfig:
    if settings.database_auth == "entra":
        return EntraDatabase(host=settings.database_host, database=settings.database_name,
                             user=settings.database_user, credential=azure_credential(settings))
    return UrlDatabase(settings.database_url)


@lru_cache(maxsize=1)
def get_pool() -> ConnectionPool:
    """The connection pool, after migrating the schema once per process."""
    settings = get_settings()
    config = database_config(settings)
    conn = connect(config)
    try:
        applied = migrate(conn)
    finally:
        conn.close()
    if applied:
        log.info("applied database migrations %s", ", ".join(applied))
    return ConnectionPool(config, maxconn=settings.database_pool_size)


@lru_cache(maxsize=1)
def get_item_queue() -> ItemQueue:
    settings = get_settings()
    return ItemQueue(queue_client(settings, settings.queue_name))


@lru_cache(maxsize=1)
def get_content_store() -> ContentStore:
    """The blob container of page bodies."""
    settings = get_settings()
    return ContentStore(container_client(settings, settings.content_container))


@lru_cache(maxsize=1)
def get_quotas() -> Quotas:
    """The per-caller quotas: their table, the limits, and a count of running jobs in PostgreSQL."""
    settings = get_settings()
    return Quotas(table_client(settings, settings.rate_table), QuotaLimits.from_settings(settings),
                  running_job_counter(get_pool()))


@lru_cache(maxsize=1)
def get_executors() -> Executors:
    """The process's thread pools for blocking work (see shared.adapters.executors)."""
    return Executors(executor_sizes(HOST_JSON, get_settings().api_threads))


@lru_cache(maxsize=1)
def get_job_listener() -> JobChangeListener:
    """The process's one LISTEN connection, waking event-stream readers when their job changes."""
    return JobChangeListener(database_config(get_settings()))


@lru_cache(maxsize=1)
def get_stream_slots() -> StreamSlots:
    return StreamSlots(get_settings().streams_per_caller)


@lru_cache(maxsize=1)
def worker_config() -> WorkerConfig:
    """How scrape workers fetch and retry, from the settings."""
    settings = get_settings()
    policy = RetryPolicy(max_attempts=settings.fetch_max_attempts, base_delay_s=settings.retry_base_delay_seconds,
                         max_delay_s=settings.retry_max_delay_seconds)
    return WorkerConfig(limits=fetch_limits(settings), policy=policy)


def fetch_limits(settings: Settings) -> FetchLimits:
    return FetchLimits(
        connect_timeout=settings.fetch_connect_timeout,
        read_timeout=settings.fetch_read_timeout,
        total_timeout=settings.fetch_total_timeout,
        max_bytes=settings.fetch_max_bytes,
        max_url_length=settings.max_url_length,
        allowed_ports=settings.allowed_ports,
        allowed_networks=settings.allowed_networks,
    )
