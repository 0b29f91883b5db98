"""The retry policy of a ...WithRetry action, as the extension reads it and DTFx's RetryInterceptor applies it.

The SDK sends its RetryOptions as JSON. The extension's RetryOptionsConverter requires
firstRetryIntervalInMilliseconds and maxNumberOfAttempts and takes backoffCoefficient,
maxRetryIntervalInMilliseconds and retryTimeoutInMilliseconds when present (azure-functions-durable
1.7.0's RetryOptions sends only the first two). Absent fields keep the extension's defaults: a
coefficient of 1, a 6-day maximum interval and no timeout.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# AzureStorageDurabilityProvider.MaximumDelayTime; the extension's RetryOptions also defaults
# MaxRetryInterval to it.
MAX_DELAY = timedelta(days=6)
_FIRST_INTERVAL = "firstRetryIntervalInMilliseconds"
_MAX_ATTEMPTS = "maxNumberOfAttempts"
_ONE_MS = timedelta(milliseconds=1)


class RetryOptionsError(ValueError):
    """Options the extension refuses; the message is the extension's."""


@dataclass(frozen=True)
class RetryPolicy:
    """DurableTask.Core's RetryOptions, without Handle (out-of-process apps cannot set it: every failure retries)."""

    first_interval: timedelta
    max_attempts: int
    backoff_coefficient: float = 1.0
    max_interval: timedelta = MAX_DELAY
    timeout: timedelta | None = None

    @classmethod
    def from_json(cls, options: dict[str, Any]) -> RetryPolicy:
        """Read the action's retryOptions as RetryOptionsConverter does, with the checks the extension makes."""
        for field in (_FIRST_INTERVAL, _MAX_ATTEMPTS):
            if field not in options:
                raise RetryOptionsError(f"Invalid JSON. Must contain field {field}")
        max_interval = options.get("maxRetryIntervalInMilliseconds")
        timeout = options.get("retryTimeoutInMilliseconds")
        policy = cls(
            first_interval=_milliseconds(options[_FIRST_INTERVAL]),
            # The converter reads whole numbers (Json.NET's Value<int>() rounds half to even, as round() does).
            max_attempts=round(options[_MAX_ATTEMPTS]),
            backoff_coefficient=float(options.get("backoffCoefficient", 1.0)),
            max_interval=MAX_DELAY if max_interval is None else _milliseconds(max_interval),
            timeout=None if timeout is None else _milliseconds(timeout),
        )
        policy._check()
        return policy

    def _check(self) -> None:
        if self.first_interval <= timedelta(0):
            raise RetryOptionsError("Invalid interval.  Specify a TimeSpan value greater then TimeSpan.Zero. "
                                    "(Parameter 'firstRetryInterval')")
        for name, interval in (("MaxRetryInterval", self.max_interval), ("FirstRetryInterval", self.first_interval)):
            if interval > MAX_DELAY:
                raise RetryOptionsError("The Azure Storage provider supports a maximum of 6 days for time-based "
                                        f"delays (Parameter '{name}')")

    def next_delay(self, failed_attempt: int, first_attempt: datetime, now: datetime) -> timedelta:
        """RetryInterceptor.ComputeNextDelay: the wait after 0-based attempt `failed_attempt`; zero means give up."""
        if self.timeout is not None and now >= first_attempt + self.timeout:
            return timedelta(0)
        try:
            delay_ms = self.first_interval / _ONE_MS * self.backoff_coefficient ** failed_attempt
        except OverflowError:  # .NET's Math.Pow gives infinity instead, which the cap replaces
            return self.max_interval
        return timedelta(milliseconds=delay_ms) if delay_ms < self.max_interval / _ONE_MS else self.max_interval


def _milliseconds(value: Any) -> timedelta:
    return timedelta(milliseconds=round(value))
