"""One devhost per Durable task hub: a lease on the hub, held in the storage account the hub would live in.

On Azure every instance of an app shares its task hub in storage, so each sees every orchestration.
devhost runs Durable Functions on an in-memory engine, so two devhosts on one storage account and hub
would each see only their own orchestrations while sharing the app's queues and database (one's
reconciler restarted the other's live orchestration). devhost refuses the second one instead.

The lease is an entity in table `DevhostTaskHubs` of the Durable storage account (host.json
extensions.durableTask.storageProvider.connectionName, else AzureWebJobsStorage), keyed by the hub name
lower-cased (the Azure Storage provider lower-cases it too), recording the holder's host name and pid and
expiring LEASE_SECONDS after its last renewal. Every write is conditional on the entity's ETag, the way
the provider's table partition manager (useTablePartitionManagement) claims partitions; a table rather
than a blob lease because devhost depends on azure-data-tables, not azure-storage-blob. A devhost starting
finds the lease:
- absent, or expired (its holder stopped renewing, e.g. killed on another machine): takes it;
- held by a process of this machine that no longer exists (a killed devhost restarted): takes it at once;
- held by a live devhost: refuses to start, naming the hub, the account and the holder.
The holder renews it every RENEW_SECONDS from one thread, stops devhost if another took it (its renewals
failed for longer than the lease), and deletes it when it stops.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, TableServiceClient, UpdateMode

from devhost.config import ConfigError
from devhost.storage import service_client

log = logging.getLogger("devhost")

TABLE = "DevhostTaskHubs"
PARTITION = "taskhub"
LEASE_SECONDS = 15.0
RENEW_SECONDS = 5.0
_ACQUIRE_ATTEMPTS = 3


@dataclass(frozen=True)
class _Holder:
    host: str
    pid: int
    expires: datetime

    @classmethod
    def of(cls, entity: TableEntity) -> _Holder:
        return cls(str(entity["Host"]), int(entity["Pid"]), entity["Expires"])

    def is_gone(self) -> bool:
        """The lease lapsed, or its holder is a process of this machine that no longer exists."""
        if self.expires < datetime.now(UTC):
            return True
        return self.host == socket.gethostname() and not _process_exists(self.pid)

    def __str__(self) -> str:
        return f"devhost pid {self.pid} on host '{self.host}'"


class TaskHubLock:
    """Holds the task hub's lease while devhost runs: start() takes it (or raises ConfigError), stop() frees it."""

    def __init__(self, hub_name: str, connection: str | None, on_lost: Callable[[], None]) -> None:
        self._hub = hub_name
        self._on_lost = on_lost
        self._service = service_client(TableServiceClient, "table", connection)
        self._table = self._service.get_table_client(TABLE)
        self._etag = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="taskhub-lease", daemon=True)

    def start(self) -> None:
        try:
            self._table.create_table()
        except ResourceExistsError:
            log.debug("table %s exists", TABLE)
        self._etag = self._acquire()
        log.info("devhost holds task hub '%s' on storage account '%s'", self._hub, self._service.account_name)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self._table.delete_entity(PARTITION, self._hub.lower(), etag=self._etag,
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            log.debug("the lease on task hub '%s' was no longer this devhost's to free", self._hub)
        self._service.close()

    def _acquire(self) -> str:
        for _ in range(_ACQUIRE_ATTEMPTS):  # another devhost may change the entity between a read and a write
            etag = self._create() or self._take_over()
            if etag:
                return etag
        raise ConfigError(f"could not take the lease on task hub '{self._hub}': other devhosts keep changing it")

    def _create(self) -> str | None:
        try:
            return str(self._table.create_entity(self._entity())["etag"])
        except ResourceExistsError:
            return None

    def _take_over(self) -> str | None:
        """Replace the lease of a holder that is gone; ConfigError if it is alive; None if it changed meanwhile."""
        try:
            current = self._table.get_entity(PARTITION, self._hub.lower())
        except ResourceNotFoundError:
            return None
        holder = _Holder.of(current)
        if not holder.is_gone():
            raise ConfigError(self._in_use(holder))
        etag = self._replace(str(current.metadata["etag"]))
        if etag:
            log.warning("devhost took over task hub '%s' from %s, which is gone", self._hub, holder)
        return etag

    def _renew_until_stopped(self) -> None:
        while not self._stopping.wait(RENEW_SECONDS):
            try:
                # A lease that vanished (Azurite's data deleted) is simply taken again.
                etag = self._replace(self._etag) or self._create()
            except AzureError as exc:
                log.warning("renewing the lease on task hub '%s' failed (%s); retrying", self._hub, exc)
                continue
            if etag is None:
                log.error("another devhost took over task hub '%s' (this one's lease lapsed): stopping", self._hub)
                self._on_lost()
                return
            self._etag = etag

    def _replace(self, etag: str) -> str | None:
        """Write this devhost's lease over the version `etag`; None if that is not the current version."""
        try:
            written = self._table.update_entity(self._entity(), mode=UpdateMode.REPLACE, etag=etag,
                                                match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(written["etag"])

    def _entity(self) -> dict[str, Any]:
        return {"PartitionKey": PARTITION, "RowKey": self._hub.lower(), "TaskHub": self._hub,
                "Host": socket.gethostname(), "Pid": os.getpid(),
                "Expires": datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS)}

    def _in_use(self, holder: _Holder) -> str:
        return (f"task hub '{self._hub}' on storage account '{self._service.account_name}' is in use by {holder} "
                f"(lease renewed until {holder.expires:%H:%M:%S}Z). devhost runs Durable Functions in memory, so a "
                "second devhost on the same task hub would not see the first one's orchestrations. Stop the other "
                "devhost, or give this one its own task hub (host.json extensions.durableTask.hubName, or the app "
                "setting AzureFunctionsJobHost__extensions__durableTask__hubName)")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        return True
    return True
