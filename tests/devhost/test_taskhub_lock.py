"""One devhost per Durable task hub (devhost/taskhub_lock.py): a second is refused, a killed one's restart is not.

Each test runs the Durable sample app (apps/durable_app) on a task hub of its own, named through the
AzureFunctionsJobHost__ override of host.json, against real Azurite.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from devhost.taskhub_lock import LEASE_SECONDS, PARTITION, TABLE
from tests.devhost.conftest import DevhostProcess

pytestmark = pytest.mark.devhost

HUB_SETTING = "AzureFunctionsJobHost__extensions__durableTask__hubName"


def durable_settings(azurite: str, hub: str) -> dict[str, str]:
    return {"AzureWebJobsStorage": azurite, "START_QUEUE": f"lock-{uuid.uuid4().hex[:10]}", HUB_SETTING: hub}


def new_hub() -> str:
    return f"LockTest{uuid.uuid4().hex[:8]}"


def serving(host: DevhostProcess) -> bool:
    return requests.get(f"{host.base_url}/admin/host/status", timeout=5).status_code == 200


def test_a_second_devhost_on_the_same_task_hub_is_refused(
        devhost: Callable[..., DevhostProcess], azurite: str) -> None:
    hub = new_hub()
    first = devhost("durable_app", env=durable_settings(azurite, hub))

    second = devhost("durable_app", env=durable_settings(azurite, hub.upper()), wait=False)

    assert second.process.wait(timeout=60) == 1
    assert (f"devhost cannot start: task hub '{hub.upper()}' on storage account 'devstoreaccount1' is in use by "
            f"devhost pid {first.process.pid} on host") in second.logs()
    assert serving(first)


def test_a_devhost_restarted_after_being_killed_takes_its_task_hub_over_at_once(
        devhost: Callable[..., DevhostProcess], azurite: str) -> None:
    hub = new_hub()
    settings = durable_settings(azurite, hub)
    killed = devhost("durable_app", env=settings)
    killed.process.kill()
    killed.process.wait()

    began = time.monotonic()
    restarted = devhost("durable_app", env=settings)

    assert time.monotonic() - began < LEASE_SECONDS  # it did not wait for the dead one's lease to lapse
    assert f"devhost took over task hub '{hub}' from devhost pid {killed.process.pid}" in restarted.logs()
    assert serving(restarted)


def test_a_devhost_that_stops_frees_its_task_hub(devhost: Callable[..., DevhostProcess], azurite: str) -> None:
    hub = new_hub()
    first = devhost("durable_app", env=durable_settings(azurite, hub))
    leases = TableClient.from_connection_string(azurite, TABLE)
    assert leases.get_entity(PARTITION, hub.lower())["Pid"] == first.process.pid

    assert first.stop() == 0

    with pytest.raises(ResourceNotFoundError):
        leases.get_entity(PARTITION, hub.lower())
    second = devhost("durable_app", env=durable_settings(azurite, hub))
    assert "took over" not in second.logs()
