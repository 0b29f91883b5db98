"""Queue trigger and queue output fidelity: what reaches the function, and where each message ends up.

The sample app (apps/queue_app) runs in-process on devhost's own QueueTriggers and Invoker against real
Azurite; every test gets its own queues, and its own copy of the app when it changes host.json.
"""
import base64
import contextlib
import json
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests.sessions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from devhost.config import ConfigError, HostConfig, resolve_setting_references
from devhost.host import queue_lease_seconds
from devhost.indexing import load_functions
from devhost.invoker import Invoker
from devhost.queues import LEASE_SECONDS, QueueTriggers
from devhost.storage import QueueAccounts, queue_name
from tests.devhost.conftest import APPS, wait_until, wait_until_serving

pytestmark = pytest.mark.devhost

QUEUE_SETTINGS = {"ITEMS_QUEUE": "items", "RELAY_QUEUE": "relay", "OUT_QUEUE": "out", "DOOMED_QUEUE": "doomed"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class QueueApp:
    """The running sample app: its queues by setting name, and what its functions recorded."""

    service: QueueServiceClient
    names: dict[str, str]
    record_file: Path
    triggers: QueueTriggers | None = None
    invoker: Invoker | None = None

    def queue(self, setting: str, suffix: str = "") -> QueueClient:
        return self.service.get_queue_client(self.names[setting] + suffix)

    def send(self, setting: str, content: str) -> None:
        queue = self.queue(setting)
        with contextlib.suppress(ResourceExistsError):  # created by an earlier send in the same test
            queue.create_queue()
        queue.send_message(content)

    def records(self, function: str, body: str | None = None) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        lines = [json.loads(line) for line in self.record_file.read_text().splitlines()]
        return [r for r in lines if r["function"] == function and (body is None or r["body"] == body)]

    def messages(self, setting: str, suffix: str = "") -> list[str]:
        try:
            return [m.content for m in self.queue(setting, suffix).peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []

    def message_count(self, setting: str, suffix: str = "") -> int:
        """Visible and invisible messages: zero only once a message is really deleted."""
        return self.queue(setting, suffix).get_queue_properties().approximate_message_count


@pytest.fixture
def queue_app(azurite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., QueueApp]]:
    """Factory: start the sample app with optional host.json `extensions.queues` overrides."""
    service = QueueServiceClient.from_connection_string(azurite)
    token = f"t{uuid.uuid4().hex[:10]}"
    running: list[tuple[QueueTriggers, Invoker]] = []
    monkeypatch.setattr(sys, "path", list(sys.path))

    def start(queues: dict[str, Any] | None = None, lease_seconds: float = LEASE_SECONDS) -> QueueApp:
        app_dir = tmp_path / "queue_app"
        shutil.copytree(APPS / "queue_app", app_dir)
        host_json = json.loads((app_dir / "host.json").read_text())
        host_json["extensions"]["queues"].update(queues or {})
        (app_dir / "host.json").write_text(json.dumps(host_json))
        names = {setting: f"{token}-{short}" for setting, short in QUEUE_SETTINGS.items()}
        for setting, name in {**names, "AzureWebJobsStorage": azurite,
                              "QUEUE_APP_RECORD": str(tmp_path / "record.jsonl")}.items():
            monkeypatch.setenv(setting, name)
        config = HostConfig.load(app_dir)
        invoker = Invoker(function_timeout=config.function_timeout)
        triggers = QueueTriggers(load_functions(app_dir), invoker, config.queues, lease_seconds=lease_seconds)
        invoker.outputs["queue"] = triggers.send_output
        triggers.start()
        running.append((triggers, invoker))
        return QueueApp(service, names, tmp_path / "record.jsonl", triggers, invoker)

    yield start
    for triggers, invoker in running:
        triggers.stop()
        triggers.release_unfinished()
        invoker.close()
    sys.modules.pop("function_app", None)
    for queue in service.list_queues(name_starts_with=token):
        service.delete_queue(queue.name)


def test_success_passes_body_and_metadata_and_deletes_the_message(queue_app) -> None:
    app = queue_app()
    app.send("ITEMS_QUEUE", b64("hello"))

    [seen] = wait_until(lambda: app.records("process_item", "hello"))
    assert seen["dequeue_count"] == 1
    assert seen["id"] and seen["pop_receipt"]
    inserted = datetime.fromisoformat(seen["insertion_time"])
    assert inserted.utcoffset() is not None
    assert datetime.fromisoformat(seen["expiration_time"]) > inserted
    assert datetime.fromisoformat(seen["next_visible_time"]) > inserted
    wait_until(lambda: app.message_count("ITEMS_QUEUE") == 0)


def test_failing_message_is_poisoned_after_five_attempts_with_its_body_intact(queue_app) -> None:
    app = queue_app()
    app.send("ITEMS_QUEUE", b64("fail-default"))

    assert wait_until(lambda: app.messages("ITEMS_QUEUE", "-poison")) == [b64("fail-default")]
    # The fifth attempt is recorded before its message moves; once the original is gone nothing can run it again.
    wait_until(lambda: app.message_count("ITEMS_QUEUE") == 0)
    attempts = app.records("process_item", "fail-default")
    assert [a["dequeue_count"] for a in attempts] == [1, 2, 3, 4, 5]


def test_max_dequeue_count_comes_from_host_json(queue_app) -> None:
    app = queue_app({"maxDequeueCount": 2})
    app.send("ITEMS_QUEUE", b64("fail-custom"))

    assert wait_until(lambda: app.messages("ITEMS_QUEUE", "-poison")) == [b64("fail-custom")]
    wait_until(lambda: app.message_count("ITEMS_QUEUE") == 0)
    assert [a["dequeue_count"] for a in app.records("process_item", "fail-custom")] == [1, 2]


def test_failed_message_waits_for_visibility_timeout_before_the_retry(queue_app) -> None:
    app = queue_app({"maxDequeueCount": 2, "visibilityTimeout": "00:00:02"})
    app.send("ITEMS_QUEUE", b64("fail-slowly"))

    first, second = wait_until(lambda: len(app.records("process_item", "fail-slowly")) == 2 and
                               app.records("process_item", "fail-slowly"))
    assert second["started"] - first["started"] >= 1.9


def test_raw_text_under_base64_goes_to_poison_at_once_without_running_the_function(queue_app) -> None:
    # Were it a failed attempt, the 10 s visibilityTimeout would hold the message back after the first one.
    app = queue_app({"visibilityTimeout": "00:00:10"})
    app.send("ITEMS_QUEUE", "not base64!")

    assert wait_until(lambda: app.messages("ITEMS_QUEUE", "-poison"), timeout=5) == ["not base64!"]
    assert app.records("process_item") == []
    assert app.message_count("ITEMS_QUEUE") == 0


def test_encoding_none_reads_and_writes_raw_text(queue_app) -> None:
    app = queue_app({"messageEncoding": "none"})
    app.send("ITEMS_QUEUE", "plain text!")
    app.send("RELAY_QUEUE", "raw")

    wait_until(lambda: app.records("process_item", "plain text!"))
    assert sorted(wait_until(lambda: len(app.messages("OUT_QUEUE")) == 3 and app.messages("OUT_QUEUE"))) == [
        "raw-a", "raw-b", "relayed:raw"]


def test_output_parameter_and_return_value_send_base64_messages(queue_app) -> None:
    app = queue_app()
    app.send("RELAY_QUEUE", b64("x"))

    sent = wait_until(lambda: len(app.messages("OUT_QUEUE")) == 3 and app.messages("OUT_QUEUE"))
    assert sorted(base64.b64decode(m).decode() for m in sent) == ["relayed:x", "x-a", "x-b"]


def test_a_function_on_the_poison_queue_receives_poisoned_messages(queue_app) -> None:
    app = queue_app()
    app.send("DOOMED_QUEUE", b64("doomed"))

    [poisoned] = wait_until(lambda: app.records("handle_poison", "doomed"))
    assert poisoned["dequeue_count"] == 1
    assert len(app.records("reject_all", "doomed")) == 5
    wait_until(lambda: app.message_count("DOOMED_QUEUE", "-poison") == 0)


def test_lease_is_renewed_while_the_function_runs(queue_app) -> None:
    app = queue_app(lease_seconds=2)
    app.send("ITEMS_QUEUE", b64("sleep:4.5"))

    wait_until(lambda: app.records("process_item", "sleep:4.5"))
    wait_until(lambda: app.message_count("ITEMS_QUEUE") == 0, timeout=10)
    assert len(app.records("process_item", "sleep:4.5")) == 1


def test_one_thread_renews_the_leases_of_all_of_a_listener_s_messages(queue_app) -> None:
    app = queue_app(lease_seconds=2)
    for _ in range(6):
        app.send("ITEMS_QUEUE", b64("sleep:3"))

    wait_until(lambda: len(app.records("process_item")) == 6)
    lease_threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("lease"))
    wait_until(lambda: app.message_count("ITEMS_QUEUE") == 0, timeout=15)

    assert lease_threads == ["leases-handle_poison", "leases-process_item", "leases-reject_all", "leases-relay"]
    assert len(app.records("process_item")) == 6  # each stayed invisible past its 2 s lease while it ran


def test_stopping_completes_what_finishes_in_the_grace_period_and_releases_the_rest(queue_app) -> None:
    app = queue_app()
    app.send("ITEMS_QUEUE", b64("sleep:0.2"))
    app.send("ITEMS_QUEUE", b64("sleep:4"))
    wait_until(lambda: len(app.records("process_item")) == 2)

    app.triggers.stop()
    drained = app.invoker.drain(time.monotonic() + 2)
    app.triggers.release_unfinished()

    assert not drained
    assert app.messages("ITEMS_QUEUE") == [b64("sleep:4")]  # visible again at once, not after its 60 s lease
    assert app.message_count("ITEMS_QUEUE") == 1  # the one that finished in time was deleted


def test_at_most_batch_size_plus_new_batch_threshold_run_at_once(queue_app) -> None:
    app = queue_app({"batchSize": 2, "newBatchThreshold": 1})
    for _ in range(6):
        app.send("ITEMS_QUEUE", b64("sleep:1"))

    runs = wait_until(lambda: len(app.records("process_item")) == 6 and app.records("process_item"))
    starts = sorted(r["started"] for r in runs)
    running_together = max(sum(1 for s in starts if start <= s < start + 1) for start in starts)
    assert 2 <= running_together <= 3


def test_trigger_queue_is_not_created_and_is_picked_up_once_it_exists(queue_app) -> None:
    app = queue_app()
    time.sleep(0.5)
    with pytest.raises(ResourceNotFoundError):
        app.queue("ITEMS_QUEUE").get_queue_properties()

    app.send("ITEMS_QUEUE", b64("late"))
    wait_until(lambda: app.records("process_item", "late"))


def test_queue_names_resolve_settings_and_are_lower_cased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORK_QUEUE", "Work-Items")
    assert queue_name({"queueName": "%WORK_QUEUE%-poison"}) == "work-items-poison"
    monkeypatch.delenv("WORK_QUEUE")
    with pytest.raises(ConfigError, match="'%WORK_QUEUE%' does not resolve to a value"):
        resolve_setting_references("%WORK_QUEUE%")
    with pytest.raises(ConfigError, match="Invalid queue name"):
        queue_name({"queueName": "bad--name"})


def test_the_lease_is_60_s_unless_devhost_queue_lease_seconds_shortens_it() -> None:
    assert queue_lease_seconds({}) == LEASE_SECONDS == 60.0
    assert queue_lease_seconds({"DEVHOST_QUEUE_LEASE_SECONDS": "10"}) == 10.0
    for bad in ("1", "soon"):
        with pytest.raises(ConfigError, match="DEVHOST_QUEUE_LEASE_SECONDS must be a number of seconds, at least 2"):
            queue_lease_seconds({"DEVHOST_QUEUE_LEASE_SECONDS": bad})


def test_host_json_names_resolve_settings_by_the_same_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0",
                                                   "extensions": {"durableTask": {"hubName": "%HUB_NAME%"}}}))
    monkeypatch.setenv("hub_name", "JobsHub")  # app setting names are case-insensitive
    assert HostConfig.load(tmp_path).durable_hub_name == "JobsHub"
    monkeypatch.delenv("hub_name")
    # devhost used to substitute an empty hub name here without a word.
    with pytest.raises(ConfigError, match="'%HUB_NAME%' does not resolve to a value"):
        HostConfig.load(tmp_path)


def test_unresolved_queue_name_fails_at_start(azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("AzureWebJobsStorage", azurite)
    for setting in QUEUE_SETTINGS:
        monkeypatch.setenv(setting, f"x{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("DOOMED_QUEUE")
    invoker = Invoker(function_timeout=None)
    try:
        with pytest.raises(ConfigError, match=r"Error indexing method 'Functions.reject_all': "
                                              r"'%DOOMED_QUEUE%' does not resolve to a value"):
            QueueTriggers(load_functions(APPS / "queue_app"), invoker, HostConfig.load(APPS / "queue_app").queues)
    finally:
        invoker.close()
        sys.modules.pop("function_app", None)


def test_connections_resolve_like_the_webjobs_sdk() -> None:
    accounts = QueueAccounts(environ={
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "Jobs__queueServiceUri": "https://jobsaccount.queue.core.windows.net",
        "Other__accountName": "otheraccount",
    })
    assert accounts.service(None).url.startswith("http://127.0.0.1:10001/devstoreaccount1")
    assert accounts.service("AzureWebJobsStorage").account_name == "devstoreaccount1"
    assert accounts.service("Jobs").url.startswith("https://jobsaccount.queue.core.windows.net")
    assert accounts.service("Other").account_name == "otheraccount"
    with pytest.raises(ConfigError, match="'AzureWebJobsMissing' does not exist"):
        accounts.service("Missing")


def test_storage_calls_do_not_look_up_proxy_or_netrc_settings_each_time(
        azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    netrc_auth, environ_proxies = requests.sessions.get_netrc_auth, requests.sessions.get_environ_proxies

    def recorded(name: str, lookup: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args, **kwargs: lookups.append(name) or lookup(*args, **kwargs)

    monkeypatch.setattr(requests.sessions, "get_netrc_auth", recorded("netrc", netrc_auth))
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", recorded("proxies", environ_proxies))
    name = f"env{uuid.uuid4().hex[:10]}"
    sdk_default = QueueServiceClient.from_connection_string(azurite)
    sdk_default.create_queue(name)
    assert lookups  # requests' trust_env: on every call of a client built the SDK's default way
    lookups.clear()

    accounts = QueueAccounts(environ={"AzureWebJobsStorage": azurite})
    queue = accounts.service(None).get_queue_client(name)
    try:
        for _ in range(3):
            queue.send_message("x")
        assert lookups == []
    finally:
        queue.delete_queue()
        accounts.close()


def test_queue_app_on_devhost_logs_like_core_tools(devhost, azurite: str, tmp_path: Path) -> None:
    service = QueueServiceClient.from_connection_string(azurite)
    token = f"h{uuid.uuid4().hex[:10]}"
    names = {setting: f"{token}-{short}" for setting, short in QUEUE_SETTINGS.items()}
    app = QueueApp(service, names, tmp_path / "record.jsonl")
    settings = {**names, "AzureWebJobsStorage": azurite, "QUEUE_APP_RECORD": str(app.record_file)}
    host = devhost("queue_app", env=settings, wait=False)
    try:
        wait_until_serving(host)
        app.send("ITEMS_QUEUE", b64("via devhost"))
        app.send("ITEMS_QUEUE", "raw text!")

        wait_until(lambda: app.records("process_item", "via devhost"))
        assert wait_until(lambda: app.messages("ITEMS_QUEUE", "-poison")) == ["raw text!"]
        logs = wait_until(lambda: "Executed 'Functions.process_item' (Succeeded" in host.logs() and host.logs())
        items, poison = names["ITEMS_QUEUE"], names["ITEMS_QUEUE"] + "-poison"
        assert f"(Reason='New queue message detected on '{items}'.'" in logs
        assert f"Message has reached MaxDequeueCount of 5. Moving message to queue '{poison}'." in logs
    finally:
        assert host.stop() == 0
        for queue in service.list_queues(name_starts_with=token):
            service.delete_queue(queue.name)
