"""Timer triggers with the Functions timer extension's semantics (its TimerListener, TimerSchedule, TimerInfo).

- The schedule is NCRONTAB (devhost.ncrontab): six fields, or five without seconds, after %SETTING%
  resolution. It is evaluated in UTC, as on Azure without WEBSITE_TIME_ZONE (which Linux Consumption and
  Flex Consumption do not support). Core Tools would use the machine's local time zone; devhost does not,
  so a schedule fires locally when it fires on Azure.
- TimeSpan schedules ("hh:mm:ss") are rejected at start: the extension accepts them, but Azure Functions
  only on App Service (Dedicated) plans; on Consumption and Flex Consumption the function fails indexing.
- One invocation at a time per function. The next occurrence is computed after each run, from the time the
  run was due, so a run that overran its next occurrence is followed by one immediate run and then the
  schedule resumes. That run has IsPastDue false: the extension sets IsPastDue only for an occurrence missed
  while the host was down, which its schedule monitor detects at startup.
- runOnStartup: one run as the listener starts (IsPastDue false), then the schedule.
- useMonitor: devhost persists no schedule status (the extension keeps it in the AzureWebJobsStorage blob
  container azure-webjobs-hosts), so it behaves like a host whose storage account is new at every start:
  IsPastDue is never true, and ScheduleStatus {Last, Next, LastUpdated} starts from 0001-01-01. It is
  passed only when the monitor would be on (useMonitor not false and the schedule not firing more than
  once a minute) and is null otherwise, as on Azure.
- The function receives the extension's TimerInfo JSON, {"Schedule": {"AdjustForDST": true},
  "ScheduleStatus": ..., "IsPastDue": false}, decoded by the worker's TimerRequestConverter. Log reason:
  "Timer fired at <round-trip time>", like Core Tools.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.meta import Datum

from devhost.config import ConfigError, resolve_setting_references
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionFailedError, FunctionTimeoutError, Invoker
from devhost.ncrontab import DAY, DAY_OF_WEEK, HOUR, MINUTE, MONTH, CrontabError, CrontabSchedule
from devhost.queues import deliver_return_value

log = logging.getLogger("devhost")

_NEVER = datetime(1, 1, 1, tzinfo=UTC)
_TIMESPAN = re.compile(r"^-?(\d+|(\d+\.)?\d{1,2}:\d{1,2}(:\d{1,2}(\.\d{1,7})?)?)$")


class TimerTriggers:
    """Runs every timerTrigger function on its schedule, each on its own thread."""

    def __init__(self, functions: list[FunctionSpec], invoker: Invoker) -> None:
        self._stopping = threading.Event()
        self._timers = [_Timer(spec, load_schedule(spec), invoker, self._stopping)
                        for spec in functions if spec.trigger_type == "timerTrigger"]
        if self._timers and os.environ.get("WEBSITE_TIME_ZONE"):
            log.warning("WEBSITE_TIME_ZONE is set but devhost evaluates timer schedules in UTC, as Linux "
                        "Consumption and Flex Consumption plans do")

    def start(self) -> None:
        """Start every timer; a runOnStartup function runs right away."""
        for timer in self._timers:
            timer.start()

    def stop(self) -> None:
        """Stop firing. A running invocation carries on: the host drains running invocations."""
        self._stopping.set()


def load_schedule(spec: FunctionSpec) -> CrontabSchedule:
    """The function's schedule, or a ConfigError worded like the host's indexing error."""
    indexing = f"Error indexing method 'Functions.{spec.name}'"
    try:
        expression = resolve_setting_references(str(spec.trigger.get("schedule") or ""))
    except ConfigError as exc:
        raise ConfigError(f"{indexing}: {exc}") from None
    try:
        return CrontabSchedule.parse(expression)
    except CrontabError as exc:
        if _TIMESPAN.match(expression.strip()):
            raise ConfigError(
                f"{indexing}: the schedule '{expression}' is a TimeSpan, which Azure Functions accepts only on "
                "App Service (Dedicated) plans, not on Consumption or Flex Consumption; use an NCRONTAB expression "
                "such as '0 */5 * * * *'"
            ) from None
        raise ConfigError(
            f"{indexing}: The schedule expression '{expression}' was not recognized as a valid cron expression or "
            f"timespan string. ({exc})"
        ) from None


def dotnet_round_trip(moment: datetime) -> str:
    """A UTC time as .NET's "o" format prints it (seven fractional digits), as in the host's log lines."""
    return f"{_seconds_iso(moment)}.{moment.microsecond:06d}0+00:00"


@dataclass(frozen=True)
class _ScheduleStatus:
    last: datetime
    next: datetime | None
    last_updated: datetime

    def as_json(self) -> dict[str, str | None]:
        """The fields as Json.NET serialises the extension's ScheduleStatus (DateTimes in UTC)."""
        return {"Last": _json_net_time(self.last), "Next": _json_net_time(self.next),
                "LastUpdated": _json_net_time(self.last_updated)}


class _Timer:
    """One function's timer: waits for each occurrence and invokes the function, one run at a time."""

    def __init__(self, spec: FunctionSpec, schedule: CrontabSchedule, invoker: Invoker,
                 stopping: threading.Event) -> None:
        self._spec = spec
        self._schedule = schedule
        self._invoker = invoker
        self._stopping = stopping
        self._monitored = _monitor_enabled(spec.trigger, schedule, _utcnow())
        self._status = _ScheduleStatus(_NEVER, None, _NEVER)
        self._thread = threading.Thread(target=self._run, name=f"timer-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        now = _utcnow()
        self._status = _ScheduleStatus(_NEVER, self._schedule.next_after(now), _NEVER)
        self._log_next_occurrences(now)
        if self._spec.trigger.get("runOnStartup"):
            log.info("Function 'Functions.%s' is configured to run on startup. Executing now.", self._spec.name)
            self._fire(_utcnow(), run_on_startup=True)
        while not self._stopping.is_set():
            due = self._status.next
            if due is None:
                log.warning("function '%s': its schedule has no further occurrence", self._spec.name)
                return
            if self._stopping.wait(max((due - _utcnow()).total_seconds(), 0)):
                return
            self._fire(_utcnow())

    def _fire(self, invocation_time: datetime, run_on_startup: bool = False) -> None:
        if self._stopping.is_set():
            return
        timer_info = {"Schedule": {"AdjustForDST": True},
                      "ScheduleStatus": self._status.as_json() if self._monitored else None,
                      "IsPastDue": False}
        try:
            returned = self._invoker.invoke(self._spec, Datum(json.dumps(timer_info), "json"),
                                            reason=f"Timer fired at {dotnet_round_trip(invocation_time)}")
            deliver_return_value(self._invoker, self._spec, returned)
        except (FunctionFailedError, FunctionTimeoutError):
            log.debug("function '%s' failed; the timer keeps its schedule", self._spec.name)
        except Exception:
            log.exception("function '%s': binding the timer invocation failed", self._spec.name)
        self._advance(invocation_time, run_on_startup)

    def _advance(self, invocation_time: datetime, run_on_startup: bool) -> None:
        """Record the run; a run that started before its due time counts from the due time (clock skew)."""
        due = self._status.next
        ran_at = due if not run_on_startup and due is not None and due > invocation_time else invocation_time
        self._status = _ScheduleStatus(ran_at, self._schedule.next_after(ran_at), ran_at)

    def _log_next_occurrences(self, now: datetime) -> None:
        occurrences = "".join(f"\n{o:%m/%d/%Y %H:%M:%S}Z" for o in self._schedule.next_occurrences(now, 5))
        log.info("The next 5 occurrences of the 'Functions.%s' schedule (Cron: '%s') will be:%s",
                 self._spec.name, self._schedule.expanded(), occurrences)


def _monitor_enabled(trigger: dict[str, Any], schedule: CrontabSchedule, now: datetime) -> bool:
    """useMonitor, turned off (as TimerSchedule.Create does) for schedules firing more than once a minute."""
    if trigger.get("useMonitor") is False:
        return False
    every_minute_or_more = all(schedule.is_wildcard(kind) for kind in (MINUTE, HOUR, DAY, MONTH, DAY_OF_WEEK))
    if not (schedule.has_seconds and every_minute_or_more):
        return True
    upcoming = schedule.next_occurrences(now, 2)
    return not (len(upcoming) == 2 and upcoming[1] < now + timedelta(minutes=1))


def _json_net_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{_seconds_iso(moment)}{'.' + fraction if fraction else ''}+00:00"


def _seconds_iso(moment: datetime) -> str:
    """yyyy-MM-ddTHH:mm:ss (strftime would print year 1 as "1", not "0001")."""
    return moment.replace(microsecond=0, tzinfo=None).isoformat()


def _utcnow() -> datetime:
    return datetime.now(UTC)
