"""When a transient failure is tried again: per-item exponential backoff that honours `Retry-After`.

Pure: the clock and the random jitter are arguments, so the schedule is testable and the worker
decides nothing from hidden state. The attempt count itself lives in PostgreSQL (job_items.attempts).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A Retry-After longer than this is a site asking us to go away for a long time; no item waits a day.
MAX_RETRY_AFTER_S = 24 * 3600


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` fetches per item at most; after attempt n fails the next waits
    `base_delay_s * 2**(n-1)` (±`jitter`), or the site's `Retry-After` if longer, never more than `max_delay_s`."""

    max_attempts: int = 5
    base_delay_s: int = 5
    max_delay_s: int = 300
    jitter: float = 0.2

    def has_attempts_after(self, attempts: int) -> bool:
        """True when an item that has used `attempts` fetches may be fetched again."""
        return attempts < self.max_attempts

    def delay_s(self, attempts: int, retry_after_s: float | None, unit_random: float) -> int:
        """Whole seconds to wait before the fetch that follows `attempts` failed ones (queue
        visibility delays are whole seconds); `unit_random` in [0, 1) spreads retries apart."""
        backoff: int = self.base_delay_s * 2 ** max(attempts - 1, 0)  # int: the exponent is never negative
        spread = backoff * (1 + self.jitter * (2 * unit_random - 1))
        wanted = max(spread, retry_after_s or 0.0)
        return max(1, round(min(wanted, self.max_delay_s)))

    def schedule(self) -> list[int]:
        """The nominal delays between attempts (no jitter, no Retry-After), for docs and logs."""
        return [min(self.base_delay_s * 2 ** (n - 1), self.max_delay_s) for n in range(1, self.max_attempts)]


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from an HTTP `Retry-After` header (delta-seconds or an HTTP-date); None when absent
    or unreadable, bounded to a day because a page controls it."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text[:9]), MAX_RETRY_AFTER_S))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), float(MAX_RETRY_AFTER_S))
