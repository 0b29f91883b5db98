"""Timer trigger fidelity: when functions fire, what TimerRequest they get, and which schedules start at all.

The sample app (apps/timer_app) runs in-process on devhost's own TimerTriggers and Invoker.
"""
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devhost.config import ConfigError
from devhost.indexing import load_functions
from devhost.invoker import Invoker
from devhost.timers import TimerTriggers
from tests.devhost.conftest import APPS, wait_until, wait_until_serving

pytestmark = pytest.mark.devhost


@pytest.fixture
def timer_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], TimerTriggers]]:
    """Factory: build TimerTriggers for the sample app with TICK_SCHEDULE set (None: unset); stopped after."""
    built: list[tuple[TimerTriggers, Invoker]] = []
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("TIMER_APP_RECORD", str(tmp_path / "record.jsonl"))

    def build(tick_schedule: str | None) -> TimerTriggers:
        if tick_schedule is None:
            monkeypatch.delenv("TICK_SCHEDULE", raising=False)
        else:
            monkeypatch.setenv("TICK_SCHEDULE", tick_schedule)
        invoker = Invoker(function_timeout=None)
        try:
            triggers = TimerTriggers(load_functions(APPS / "timer_app"), invoker)
        except ConfigError:
            invoker.close()
            raise
        built.append((triggers, invoker))
        return triggers

    yield build
    for triggers, invoker in built:
        triggers.stop()
        invoker.close()
    sys.modules.pop("function_app", None)


def records(tmp_path: Path, function: str) -> list[dict[str, Any]]:
    path = tmp_path / "record.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if line["function"] == function]


def test_six_field_schedule_fires_every_second(timer_app, tmp_path: Path) -> None:
    timer_app("* * * * * *").start()

    ticks = wait_until(lambda: len(records(tmp_path, "tick")) >= 3 and records(tmp_path, "tick"), timeout=5)
    seconds = [int(t["started"]) for t in ticks]
    assert seconds == sorted(set(seconds)), "one run per second, each in its own second"
    assert all(t["past_due"] is False for t in ticks)
    assert all(t["schedule"] == {"AdjustForDST": True} for t in ticks)
    # The host does not monitor schedules that fire more than once a minute: ScheduleStatus is null.
    assert all(t["schedule_status"] == {} for t in ticks)


def test_run_on_startup_runs_once_at_start_with_a_fresh_schedule_status(timer_app, tmp_path: Path) -> None:
    timer_app("0 0 0 1 1 *").start()

    [run] = wait_until(lambda: records(tmp_path, "at_startup"), timeout=3)
    time.sleep(1.0)
    assert len(records(tmp_path, "at_startup")) == 1
    assert records(tmp_path, "tick") == []
    assert run["past_due"] is False
    next_new_year = datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)
    assert run["schedule_status"] == {
        "Last": "0001-01-01T00:00:00+00:00",
        "Next": next_new_year.isoformat(),
        "LastUpdated": "0001-01-01T00:00:00+00:00",
    }


def test_a_run_that_overruns_its_next_occurrence_is_followed_at_once_and_not_past_due(
        timer_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICK_SECONDS", "2.5")
    timer_app("*/2 * * * * *").start()

    first, second = wait_until(lambda: len(records(tmp_path, "tick")) >= 2 and records(tmp_path, "tick")[:2],
                               timeout=7)
    # Due every even second; the 2.5 s run missed one occurrence, so the next run starts as it ends.
    assert second["started"] - first["started"] == pytest.approx(2.5, abs=0.3)
    assert second["past_due"] is False


def test_stop_stops_the_schedule(timer_app, tmp_path: Path) -> None:
    triggers = timer_app("* * * * * *")
    triggers.start()
    wait_until(lambda: records(tmp_path, "tick"), timeout=3)
    triggers.stop()
    count = len(records(tmp_path, "tick"))

    time.sleep(1.5)
    assert len(records(tmp_path, "tick")) == count


@pytest.mark.parametrize(("schedule", "message"), [
    ("* * * * * 7", r"was not recognized as a valid cron expression.*7 is higher than the maximum"),
    ("0 0 * * *  * *", r"must contain 6 components"),
    ("00:00:05", r"is a TimeSpan, which Azure Functions accepts only on App Service"),
])
def test_schedules_azure_would_reject_fail_at_start(timer_app, schedule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        timer_app(schedule)


def test_unresolved_schedule_setting_fails_at_start(timer_app) -> None:
    with pytest.raises(ConfigError, match="'%TICK_SCHEDULE%' does not resolve to a value"):
        timer_app(None)


def test_timer_app_on_devhost_logs_like_core_tools(devhost, tmp_path: Path) -> None:
    settings = {"TICK_SCHEDULE": "* * * * * *", "TIMER_APP_RECORD": str(tmp_path / "record.jsonl")}
    host = devhost("timer_app", env=settings, wait=False)
    wait_until_serving(host)

    wait_until(lambda: len(records(tmp_path, "tick")) >= 2, timeout=5)
    assert len(records(tmp_path, "at_startup")) == 1
    logs = host.logs()
    assert "The next 5 occurrences of the 'Functions.tick' schedule (Cron: '* * * * * *') will be:" in logs
    assert "Executing 'Functions.tick' (Reason='Timer fired at " in logs
    assert host.stop() == 0
