"""Retried activities and sub-orchestrations on devhost, end to end through the real SDK.

On Azure the extension runs ...WithRetry calls through DTFx's RetryInterceptor: a failed attempt is
followed by a timer (first interval x backoff coefficient ^ (attempt - 1), capped by the maximum
interval) and then the next attempt; after the last attempt comes a timer that fires at once, then
the failure. The `flaky` activity of apps/durable_app fails a given number of times and logs when
each attempt started, so the tests see how often and when it ran; the history comes from the
status API with showHistory=true, as the extension's DurableClient lists it.
"""
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.devhost.conftest import APPS, DevhostProcess, start_devhost, wait_until

pytestmark = pytest.mark.devhost

ENDED = {"Completed", "Failed", "Terminated", "Canceled"}
RETRIED = ["TaskFailed", "TimerCreated", "TimerFired"]
# A task hub of this module's own, so this devhost never shares one with another test session's.
HUB_SETTING = "AzureFunctionsJobHost__extensions__durableTask__hubName"


@dataclass
class RetryHost:
    process: DevhostProcess
    attempt_dir: Path


@pytest.fixture(scope="module")
def host(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RetryHost]:
    root = tmp_path_factory.mktemp("durable-retry")
    attempt_dir = root / "attempts"
    attempt_dir.mkdir()
    run_id = uuid.uuid4().hex[:8]
    settings = {"AzureWebJobsStorage": azurite, "START_QUEUE": f"durable-retry-{run_id}",
                HUB_SETTING: f"DurableRetryTests{run_id}", "ATTEMPT_LOG_DIR": str(attempt_dir)}
    process = start_devhost(APPS / "durable_app", root / "devhost.log", settings)
    yield RetryHost(process, attempt_dir)
    process.stop()


def run(host: RetryHost, name: str, payload: Any = None) -> tuple[str, dict[str, Any]]:
    """Start `name` under a new instance id and wait until it ends; the id and the final status with history."""
    instance_id = uuid.uuid4().hex
    started = requests.post(f"{host.process.base_url}/api/start/{name}", json=payload, params={"id": instance_id},
                            timeout=10)
    assert started.status_code == 202, started.text
    url = started.json()["statusQueryGetUri"]
    params = {"showHistory": "true", "showHistoryOutput": "true"}

    def ended() -> dict[str, Any] | None:
        status: dict[str, Any] = requests.get(url, params=params, timeout=10).json()
        return status if status["runtimeStatus"] in ENDED else None

    return instance_id, wait_until(ended, timeout=30)


def attempt_starts(host: RetryHost, key: str) -> list[datetime]:
    return [datetime.fromtimestamp(float(line), UTC)
            for line in (host.attempt_dir / f"{key}.log").read_text().split()]


def event_types(status: dict[str, Any]) -> list[str]:
    return [e["EventType"] for e in status["historyEvents"]]


def fire_times(status: dict[str, Any], event_type: str) -> list[datetime]:
    return [datetime.fromisoformat(e["FireAt"].replace("Z", "+00:00"))
            for e in status["historyEvents"] if e["EventType"] == event_type]


def test_activity_failing_twice_is_retried_with_capped_backoff_and_returns_its_value(host: RetryHost) -> None:
    spec = {"failures": 2, "attempts": 4, "first_ms": 200, "backoff": 10, "max_ms": 300}

    instance_id, final = run(host, "retried_flaky", spec)
    attempts = attempt_starts(host, instance_id)
    timers = fire_times(final, "TimerCreated")

    assert final["runtimeStatus"] == "Completed"
    assert final["output"] == "recovered"
    assert len(attempts) == 3
    assert event_types(final) == ["ExecutionStarted", *RETRIED, *RETRIED, "TaskCompleted", "ExecutionCompleted"]
    assert [e["Reason"].split(" \n")[0] for e in final["historyEvents"] if e["EventType"] == "TaskFailed"] == [
        f"Activity function 'flaky' failed: ConnectionError: database unavailable (attempt {n})" for n in (1, 2)]
    # Each timer is set when a failure is handled (after its attempt started) and the next attempt waits for it.
    for started, delay, fire_at, next_started in zip(attempts, (0.2, 0.3), timers, attempts[1:], strict=False):
        assert started + timedelta(seconds=delay) <= fire_at <= next_started
    assert timers[1] < attempts[1] + timedelta(seconds=2)  # capped at 300 ms, not 200 ms x 10
    assert fire_times(final, "TimerFired") == timers


def test_activity_still_failing_after_max_attempts_fails_the_orchestration_with_its_error(host: RetryHost) -> None:
    spec = {"failures": 5, "attempts": 3, "first_ms": 100, "backoff": 10}

    instance_id, final = run(host, "retried_flaky", spec)
    attempts = attempt_starts(host, instance_id)
    timers = fire_times(final, "TimerCreated")

    assert final["runtimeStatus"] == "Failed"
    assert final["output"].startswith("Orchestrator function 'retried_flaky' failed: Activity function 'flaky' "
                                      "failed: ConnectionError: database unavailable (attempt 3)")
    assert len(attempts) == 3
    assert event_types(final) == ["ExecutionStarted", *RETRIED * 3, "ExecutionCompleted"]
    assert final["historyEvents"][-1]["OrchestrationStatus"] == "Failed"
    for started, delay, fire_at, next_started in zip(attempts, (0.1, 1.0), timers, attempts[1:], strict=False):
        assert started + timedelta(seconds=delay) <= fire_at <= next_started
    # After the last attempt DTFx sets a timer that fires at once, not after the next 10 s backoff.
    assert attempts[2] <= timers[2] < attempts[2] + timedelta(seconds=10)


def test_parallel_retries_and_the_call_after_them_replay_in_step_with_the_sdk(host: RetryHost) -> None:
    instance_id, final = run(host, "retried_pair")

    assert final["runtimeStatus"] == "Completed", final["output"]
    assert final["output"] == [1, 2, 42]
    assert [len(attempt_starts(host, f"{instance_id}-{n}")) for n in (1, 2)] == [2, 3]
    assert event_types(final).count("TimerCreated") == 3


@pytest.mark.parametrize("named_child", [False, True], ids=["generated-child-id", "explicit-child-id"])
def test_failed_sub_orchestration_is_retried_until_it_completes(host: RetryHost, named_child: bool) -> None:
    spec = {"failures": 1, **({"child_id": f"child-{uuid.uuid4().hex}"} if named_child else {})}

    instance_id, final = run(host, "retried_child", spec)

    assert final["runtimeStatus"] == "Completed", final["output"]
    assert final["output"] == "child recovered"
    assert len(attempt_starts(host, instance_id)) == 2
    assert event_types(final) == ["ExecutionStarted", "SubOrchestrationInstanceFailed", "TimerCreated", "TimerFired",
                                  "SubOrchestrationInstanceCompleted", "ExecutionCompleted"]
