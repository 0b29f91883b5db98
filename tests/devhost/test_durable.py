"""Durable Functions on devhost, end to end.

One devhost runs the sample app (apps/durable_app) for the whole module. Its HTTP and queue
starters drive orchestrators through the real DurableOrchestrationClient; outcomes are read back
over HTTP, through the client and through the check-status links the extension would hand out.
"""
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from tests.devhost.conftest import APPS, DevhostProcess, start_devhost, wait_until

pytestmark = pytest.mark.devhost

ENDED = {"Completed", "Failed", "Terminated", "Canceled"}
START_QUEUE = f"durable-start-{uuid.uuid4().hex[:8]}"
# A task hub of this session's own: devhost refuses a second instance on a hub another test session holds.
HUB_SETTING = "AzureFunctionsJobHost__extensions__durableTask__hubName"
HUB = f"DurableTests{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def host(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    log = tmp_path_factory.mktemp("durable") / "devhost.log"
    process = start_devhost(APPS / "durable_app", log,
                            {"AzureWebJobsStorage": azurite, "START_QUEUE": START_QUEUE, HUB_SETTING: HUB})
    yield process
    process.stop()


def start(host: DevhostProcess, name: str, payload: Any = None, instance_id: str | None = None) -> dict[str, str]:
    """Start an orchestrator through the app's HTTP starter; return the check-status links."""
    params = {"id": instance_id} if instance_id else {}
    response = requests.post(f"{host.base_url}/api/start/{name}", json=payload, params=params, timeout=10)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == response.json()["statusQueryGetUri"]
    return response.json()


def status(links: dict[str, str], **params: str) -> requests.Response:
    return requests.get(links["statusQueryGetUri"], params=params, timeout=10)


def wait_until_ended(links: dict[str, str], timeout: float = 20) -> dict[str, Any]:
    """Poll the statusQueryGetUri until the instance ends; return its status JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = status(links)
        body = response.json()
        if body["runtimeStatus"] in ENDED:
            assert response.status_code == 200
            return body
        assert response.status_code == 202
        time.sleep(0.1)
    raise AssertionError(f"instance {links['id']} still {body['runtimeStatus']} after {timeout}s")


def client_status(host: DevhostProcess, instance_id: str, history: bool = False) -> dict[str, Any]:
    """The status as DurableOrchestrationClient.get_status sees it (through the app's endpoint)."""
    params = {"history": "true"} if history else {}
    return requests.get(f"{host.base_url}/api/instances/{instance_id}", params=params, timeout=10).json()


def test_fan_out_of_500_activities_sums_every_result(host: DevhostProcess) -> None:
    links = start(host, "fan_out", 500)

    final = wait_until_ended(links, timeout=30)

    assert final["runtimeStatus"] == "Completed"
    assert final["output"] == 2 * sum(range(500))
    logs = host.logs()
    assert f"Orchestration 'fan_out' ({links['id']}) started" in logs
    assert f"Orchestration 'fan_out' ({links['id']}) completed" in logs


def test_event_raised_in_time_beats_the_timer(host: DevhostProcess) -> None:
    links = start(host, "approval", {"timeout": 30})
    wait_until(lambda: status(links).json()["runtimeStatus"] == "Running")

    sent = requests.post(links["sendEventPostUri"].replace("{eventName}", "approval"), json={"by": "ann"}, timeout=10)
    final = wait_until_ended(links, timeout=10)

    assert sent.status_code == 202
    assert final["runtimeStatus"] == "Completed"
    assert final["output"] == {"winner": "event", "data": {"by": "ann"}}


def test_timer_wins_when_no_event_arrives(host: DevhostProcess) -> None:
    started = time.monotonic()
    links = start(host, "approval", {"timeout": 1})

    final = wait_until_ended(links, timeout=10)

    assert final["output"] == {"winner": "timer"}
    assert time.monotonic() - started >= 1


def test_event_raised_before_the_wait_is_delivered_as_the_client_sends_it(host: DevhostProcess) -> None:
    links = start(host, "early_event")

    raised = requests.post(f"{host.base_url}/api/instances/{links['id']}/events/go", json={"n": 1}, timeout=10)
    final = wait_until_ended(links, timeout=10)

    assert raised.status_code == 202
    # DurableOrchestrationClient.raise_event posts json.dumps(data) as a JSON string, so on Azure the
    # orchestrator receives the JSON text, not the object (azure-functions-durable-python#295).
    assert final["output"] == {"data": '{"n": 1}'}
    events = [e["EventType"] for e in status(links, showHistory="true").json()["historyEvents"]]
    assert events.index("EventRaised") < events.index("TimerFired")


def test_terminate_ends_the_instance_with_the_reason_as_output(host: DevhostProcess) -> None:
    links = start(host, "wait_forever")
    wait_until(lambda: status(links).json()["runtimeStatus"] == "Running")

    requests.post(f"{host.base_url}/api/instances/{links['id']}/terminate", params={"reason": "stop now"}, timeout=10)
    final = wait_until_ended(links)
    again = requests.post(links["terminatePostUri"].replace("{text}", "twice"), timeout=10)

    assert final["runtimeStatus"] == "Terminated"
    assert final["output"] == "stop now"
    assert again.status_code == 410


def test_custom_status_is_seen_by_the_client_and_on_the_status_url(host: DevhostProcess) -> None:
    links = start(host, "status_reporter")

    waiting = wait_until(lambda: (s := client_status(host, links["id"]))["customStatus"] and s)
    running = status(links)
    requests.post(f"{host.base_url}/api/instances/{links['id']}/events/go", json=None, timeout=10)
    final = wait_until_ended(links)

    assert waiting["runtimeStatus"] == "Running"
    assert waiting["customStatus"] == {"stage": "waiting"}
    assert running.status_code == 202
    assert running.headers["Location"] == links["statusQueryGetUri"]
    assert running.json()["customStatus"] == {"stage": "waiting"}
    assert final["customStatus"] == {"stage": "done"}
    assert final["output"] == "finished"


def test_sub_orchestration_result_and_parent_reach_the_caller(host: DevhostProcess) -> None:
    links = start(host, "parent", 21)

    final = wait_until_ended(links)

    assert final["output"] == {"child": {"doubled": 42, "parent_instance_id": links["id"]}, "parent": links["id"]}


def test_failed_sub_orchestration_raises_in_the_parent(host: DevhostProcess) -> None:
    final = wait_until_ended(start(host, "parent_of_failing"))

    assert final["runtimeStatus"] == "Completed"
    assert final["output"].startswith("Orchestrator function 'failing' failed: the input was rejected on purpose")


def test_continue_as_new_counts_to_five_keeping_only_the_last_execution(host: DevhostProcess) -> None:
    links = start(host, "counter", 0)

    final = wait_until_ended(links)
    history = status(links, showHistory="true", showHistoryOutput="true").json()["historyEvents"]

    assert final["output"] == 5
    assert [e["Result"] for e in history if e["EventType"] == "TaskCompleted"] == [5]


def test_orchestrator_exception_fails_the_instance_with_its_message(host: DevhostProcess) -> None:
    links = start(host, "failing")

    final = wait_until_ended(links)

    assert final["runtimeStatus"] == "Failed"
    assert final["output"] == "Orchestrator function 'failing' failed: the input was rejected on purpose"
    assert status(links, returnInternalServerErrorOnFailure="true").status_code == 500


def test_activity_failure_reaches_the_orchestrator_as_an_exception(host: DevhostProcess) -> None:
    final = wait_until_ended(start(host, "catches_activity_failure"))

    assert final["runtimeStatus"] == "Completed"
    assert final["output"].startswith("Activity function 'explode' failed: RuntimeError: kaboom")


@pytest.mark.parametrize(("orchestrator", "action"), [("calls_http", "CallHttp"), ("calls_entity", "CallEntity")])
def test_unsupported_action_fails_the_instance_naming_it(host: DevhostProcess, orchestrator: str, action: str) -> None:
    final = wait_until_ended(start(host, orchestrator))

    assert final["runtimeStatus"] == "Failed"
    assert f"devhost does not support {action}" in final["output"]


def test_wait_for_completion_returns_the_output_or_the_links(host: DevhostProcess) -> None:
    done = requests.post(f"{host.base_url}/api/run/fan_out", json=10, timeout=20)
    pending = requests.post(f"{host.base_url}/api/run/wait_forever", params={"timeout_ms": "300"}, timeout=20)

    assert done.status_code == 200
    assert done.json() == 90
    assert pending.status_code == 202
    assert status(pending.json()).json()["runtimeStatus"] == "Running"


def test_client_queries_history_and_purges(host: DevhostProcess) -> None:
    since = datetime.now(UTC).isoformat()
    prefix = f"q{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}-{n}" for n in range(3)]
    for instance_id in ids:
        wait_until_ended(start(host, "fan_out", 3, instance_id))
    instances = f"{host.base_url}/api/instances"

    listed = requests.get(instances, params={"prefix": prefix}, timeout=10).json()
    everything = requests.get(instances, timeout=10).json()
    completed = requests.get(instances, params={"status": "Completed"}, timeout=10).json()
    detailed = client_status(host, ids[0], history=True)
    purged_one = requests.delete(f"{instances}/{ids[0]}", timeout=10).json()
    purged_since = requests.delete(instances, params={"since": since}, timeout=10).json()

    assert sorted(s["instanceId"] for s in listed) == ids
    assert set(ids) <= {s["instanceId"] for s in everything} & {s["instanceId"] for s in completed}
    assert detailed["input"] == "3"  # the client sends its input JSON-encoded, as a string
    assert sorted(e["Result"] for e in detailed["historyEvents"] if e["EventType"] == "TaskCompleted") == [0, 2, 4]
    assert purged_one == {"deleted": 1}
    assert purged_since == {"deleted": 2}
    assert [client_status(host, i) for i in ids] == [{"found": False}] * 3


def test_check_status_links_work_over_http(host: DevhostProcess) -> None:
    links = start(host, "wait_forever")

    assert status(links).status_code == 202
    terminated = requests.post(links["terminatePostUri"].replace("{text}", "done"), timeout=10)
    assert terminated.status_code == 202
    assert wait_until_ended(links)["output"] == "done"
    purged = requests.delete(links["purgeHistoryDeleteUri"], timeout=10)
    assert purged.status_code == 200
    assert purged.json() == {"instancesDeleted": 1}
    assert status(links).status_code == 404


def test_unknown_orchestrator_is_rejected_like_the_extension(host: DevhostProcess) -> None:
    direct = requests.post(f"{host.base_url}/runtime/webhooks/durabletask/orchestrators/nope", timeout=10)
    through_client = requests.post(f"{host.base_url}/api/start/nope", timeout=10)

    assert direct.status_code == 400
    assert direct.json()["ExceptionMessage"].startswith("The function 'nope' doesn't exist")
    assert through_client.status_code == 500


def test_queue_triggered_client_starts_an_orchestration(host: DevhostProcess, azurite: str) -> None:
    queue = QueueClient.from_connection_string(azurite, START_QUEUE)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    instance_id = f"queued-{uuid.uuid4().hex[:8]}"
    message = json.dumps({"name": "fan_out", "id": instance_id, "input": 4})

    queue.send_message(base64.b64encode(message.encode()).decode())
    url = f"{host.base_url}/runtime/webhooks/durabletask/instances/{instance_id}"
    final = wait_until(lambda: (r := requests.get(url, timeout=10)).status_code == 200 and r.json(), timeout=20)

    assert final["runtimeStatus"] == "Completed"
    assert final["output"] == 12


def test_host_stops_promptly_with_orchestrations_in_flight(
        devhost: Callable[..., DevhostProcess], azurite: str) -> None:
    other = devhost("durable_app", env={"AzureWebJobsStorage": azurite, "START_QUEUE": f"{START_QUEUE}-other",
                                        HUB_SETTING: f"{HUB}other"})
    start(other, "wait_forever")
    start(other, "approval", {"timeout": 600})
    start(other, "fan_out", 300)

    began = time.monotonic()
    code = other.stop()

    assert code == 0
    assert time.monotonic() - began < 5
