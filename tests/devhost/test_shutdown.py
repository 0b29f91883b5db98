"""Bounded shutdown: devhost exits within 10 s of SIGTERM with invocations in flight, and gives their messages back.

The sample app (apps/worker_app) has a sync queue function that blocks its thread for good and an async one
that awaits for good, so nothing finishes during the grace period: the sync threads are abandoned, the
async invocations cancelled, and every message is visible on its queue again the moment devhost exits
(its 60 s lease would otherwise hide it for a minute).
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient, QueueServiceClient

from tests.devhost.conftest import STOP_SECONDS, DevhostProcess, wait_until
from tests.devhost.test_worker import worker_app_settings

pytestmark = pytest.mark.devhost


@pytest.fixture
def settings(azurite: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The sample app's settings; its queues exist, and are deleted after the test."""
    settings = worker_app_settings(azurite, tmp_path)
    service = QueueServiceClient.from_connection_string(azurite)
    for setting in ("HOLD_QUEUE", "AWAIT_QUEUE"):
        service.create_queue(settings[setting])
    yield settings
    for setting in ("HOLD_QUEUE", "AWAIT_QUEUE"):
        service.delete_queue(settings[setting])


def records(settings: dict[str, str], event: str) -> list[dict[str, Any]]:
    path = Path(settings["WORKER_APP_RECORD"])
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if line["event"] == event]


def visible_bodies(queue: QueueClient) -> list[str]:
    return sorted(base64.b64decode(m.content).decode() for m in queue.peek_messages(max_messages=32))


def test_sigterm_with_invocations_in_flight_exits_promptly_and_releases_their_messages(
        devhost: Callable[..., DevhostProcess], azurite: str, settings: dict[str, str]) -> None:
    hold = QueueClient.from_connection_string(azurite, settings["HOLD_QUEUE"])
    wait = QueueClient.from_connection_string(azurite, settings["AWAIT_QUEUE"])
    for n in range(3):
        hold.send_message(base64.b64encode(f"hold-{n}".encode()).decode())
    for n in range(2):
        wait.send_message(base64.b64encode(f"await-{n}".encode()).decode())
    host = devhost("worker_app", env=settings)
    wait_until(lambda: len(records(settings, "hold_message started")) == 3
               and len(records(settings, "await_message started")) == 2)
    assert visible_bodies(hold) == visible_bodies(wait) == []  # all leased

    began = time.monotonic()
    code = host.stop()
    took = time.monotonic() - began

    assert code == 0
    assert took < STOP_SECONDS
    assert visible_bodies(hold) == ["hold-0", "hold-1", "hold-2"]
    assert visible_bodies(wait) == ["await-0", "await-1"]
    assert len(records(settings, "await_message cancelled")) == 2
    logs = host.logs()
    assert f"3 message(s) of unfinished invocations are visible again on queue '{settings['HOLD_QUEUE']}'" in logs
    assert "a sync function is still running and cannot be interrupted" in logs
