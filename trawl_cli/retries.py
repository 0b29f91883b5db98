"""Which of a running job's items wait for a retry, and when the next attempt is due, for an honest ETA.

The API does not say when an item's next attempt is due, so this is derived from what it does say:
the job log's `item_retried` events (when an attempt failed, and which attempt it was) and the job's
pending items (those with failed attempts are the ones waiting; an item that later succeeded leaves no
event but is no longer pending). The wait after attempt n is taken to be the service's default schedule,
`5 s * 2**(n-1)` up to 300 s (TRAWL_RETRY_BASE_DELAY_SECONDS and TRAWL_RETRY_MAX_DELAY_SECONDS), which
the service spreads by ±20 % and a site's `Retry-After` may lengthen: hence "next attempt in ~8s".
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from trawl_cli.client import Job, TrawlClient
from trawl_cli.errors import UnexpectedResponse

ASSUMED_BASE_DELAY_SECONDS = 5.0
ASSUMED_MAX_DELAY_SECONDS = 300.0


@dataclass(frozen=True)
class RetryState:
    """How many pending items wait for another attempt, and when (epoch seconds) the first and last are due."""

    waiting: int = 0
    next_due: float = 0.0
    last_due: float = 0.0


NO_RETRIES = RetryState()
RetrySource = Callable[[Job], RetryState]


def assumed_delay(attempt: int) -> float:
    """Seconds the service waits after failed attempt `attempt` (1-based) by its default schedule."""
    return min(ASSUMED_BASE_DELAY_SECONDS * 2.0 ** max(attempt - 1, 0), ASSUMED_MAX_DELAY_SECONDS)


class RetryWatch:
    """Follows one job's log from where it last read; asks for the pending items only once a retry was logged."""

    def __init__(self, client: TrawlClient) -> None:
        self._client = client
        self._after = 0
        self._due: dict[int, float] = {}  # seq -> when its next attempt is due, from its latest `item_retried`

    def observe(self, job: Job) -> RetryState:
        if job.is_final:
            return NO_RETRIES
        try:
            self._read_new_events(job.id)
            self._forget_items_not_waiting(job.id)
        except (KeyError, TypeError, ValueError) as exc:
            raise UnexpectedResponse(f"the API sent a log entry or item this client cannot read ({exc!r})") from None
        if not self._due:
            return NO_RETRIES
        return RetryState(len(self._due), min(self._due.values()), max(self._due.values()))

    def _read_new_events(self, job_id: str) -> None:
        while True:
            page = self._client.logs_page(job_id, self._after)
            for event in page.items:
                if event["event"] == "item_retried":
                    failed_at = datetime.fromisoformat(event["at"]).timestamp()
                    self._due[event["data"]["seq"]] = failed_at + assumed_delay(event["data"]["attempt"])
            self._after = page.next_after
            if not page.has_more:
                return

    def _forget_items_not_waiting(self, job_id: str) -> None:
        """Keep the items still pending after a failed attempt: one that has since succeeded left no event."""
        if self._due:
            waiting = {item["seq"] for item in self._client.iter_results(job_id, ["pending"]) if item["attempts"]}
            self._due = {seq: due for seq, due in self._due.items() if seq in waiting}
