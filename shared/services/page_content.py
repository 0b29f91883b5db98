"""Reading the bodies items kept: one body whole, or a page of results with bodies inline within a budget."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol
from uuid import UUID

from shared.adapters.db import ConnectionPool, read
from shared.domain.content import ContentFormat, StoredBody
from shared.domain.errors import NotFound
from shared.domain.models import JobItem, Owner


class BodyReader(Protocol):
    """Where bodies are read from (shared.adapters.content_store)."""

    def chunks(self, sha256: str) -> Iterator[bytes]:
        """The body's bytes, a chunk at a time."""

    def read(self, sha256: str, max_bytes: int) -> tuple[bytes, bool]:
        """The body's first `max_bytes` bytes, and whether it was longer."""


def item_body(pool: ConnectionPool, job_id: UUID, seq: int, owner: Owner | None, kind: ContentFormat) -> StoredBody:
    """Where item `seq`'s `kind` body is; NotFound for another owner's job, a missing item, or a body the item
    did not keep (the job did not ask for that format, or the item did not succeed)."""
    item = read(pool, lambda tx: tx.queries.item(job_id, seq, owner))
    if item is None:
        raise NotFound(f"job {job_id} has no item {seq}")
    body = item.body(kind)
    if body is None:
        raise NotFound(f"item {seq} of job {job_id} kept no {kind} (the job's `formats` did not ask for it, or the "
                       f"item has not succeeded)")
    return body


def inline_bodies(store: BodyReader, items: Sequence[JobItem], kinds: Sequence[ContentFormat], body_bytes: int,
                  page_bytes: int) -> dict[int, dict[ContentFormat, tuple[str, bool]]]:
    """The `kinds` bodies of `items` by seq, each cut at `body_bytes` (on a character boundary), until they add up
    to `page_bytes`: the remaining items get none, and their bodies are read one by one."""
    inline: dict[int, dict[ContentFormat, tuple[str, bool]]] = {}
    budget = page_bytes
    for item in items:
        for kind in kinds:
            body = item.body(kind)
            if body is None or budget <= 0:
                continue
            head, cut = store.read(body.sha256, min(body_bytes, budget))
            budget -= len(head)
            inline.setdefault(item.seq, {})[kind] = (head.decode("utf-8", errors="ignore"), cut)
    return inline
