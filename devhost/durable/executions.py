"""Per-instance facts the Durable extension keeps and durabletask's in-memory engine does not."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class _Batch:
    instance_id: str
    generation: int
    outstanding: int


@dataclass
class ExecutionBook:
    """Parents of sub-orchestrations, last custom status, and which execution scheduled each activity.

    The engine delivers activity results to an instance without checking which execution asked for
    them; DTFx drops a result whose execution has ended (completed, failed, terminated or continued
    as new). Each ended execution bumps the instance's generation, and results of activities
    scheduled by an older generation are discarded.
    """

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _parents: dict[str, str] = field(default_factory=dict)
    _custom_status: dict[str, str] = field(default_factory=dict)
    _generation: dict[str, int] = field(default_factory=dict)
    _batches: dict[str, _Batch] = field(default_factory=dict)

    def parent_of(self, instance_id: str) -> str | None:
        return self._parents.get(instance_id)

    def add_child(self, parent_id: str, child_id: str) -> None:
        with self._lock:
            self._parents[child_id] = parent_id

    def custom_status(self, instance_id: str, reported: str | None) -> str | None:
        """The custom status to store: the one just reported, else the last one (the extension keeps it)."""
        with self._lock:
            if reported is not None:
                self._custom_status[instance_id] = reported
            return self._custom_status.get(instance_id)

    def activities_scheduled(self, instance_id: str, completion_token: str, count: int) -> None:
        """Remember that the episode answered with `completion_token` scheduled `count` activities."""
        if count:
            with self._lock:
                generation = self._generation.get(instance_id, 0)
                self._batches[completion_token] = _Batch(instance_id, generation, count)

    def activity_result_is_current(self, completion_token: str) -> bool:
        """Whether an activity's result still belongs to a running execution (the token it came with)."""
        with self._lock:
            batch = self._batches.get(completion_token)
            if batch is None:
                return True
            batch.outstanding -= 1
            if batch.outstanding == 0:
                del self._batches[completion_token]
            return batch.generation == self._generation.get(batch.instance_id, 0)

    def execution_ended(self, instance_id: str, *, instance_done: bool) -> None:
        """The current execution is over; when the instance is done, forget what only it needed."""
        with self._lock:
            self._generation[instance_id] = self._generation.get(instance_id, 0) + 1
            if instance_done:
                self._custom_status.pop(instance_id, None)
                self._parents.pop(instance_id, None)
