"""Opaque page cursors: a listing's keyset position, bound to the filters it was made for.

A cursor is urlsafe base64 (unpadded) of compact JSON `{"k": <key>, "f": <filter digest>}`. It is
not secret (the owner scope of every query still applies, so an edited cursor only moves within
the caller's own rows), but it is opaque: callers hand back `next_cursor` as they got it. The
filter digest makes a cursor reused with other filters, or on another listing, a 400 rather
than a silently wrong page.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from shared.domain.errors import BadRequest
from shared.domain.models import JobPageKey

DIGEST_CHARS = 16
_INVALID = "the cursor is not valid: pass back next_cursor exactly as it was returned"


def filter_digest(listing: str, filters: Mapping[str, Any]) -> str:
    """A short, stable fingerprint of a listing and its filters (order of keys and of list values ignored)."""
    canonical = json.dumps({"listing": listing, **{k: _canonical(v) for k, v in filters.items()}},
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_CHARS]


def encode_cursor(key: Any, digest: str) -> str:
    """The opaque cursor for keyset position `key` (JSON-serialisable) under filters `digest`."""
    payload = json.dumps({"k": key, "f": digest}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, digest: str) -> Any:
    """The keyset position in `cursor`; BadRequest if it is malformed or was made for other filters."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(_INVALID) from exc
    if not isinstance(payload, dict) or set(payload) != {"k", "f"}:
        raise BadRequest(_INVALID)
    if payload["f"] != digest:
        raise BadRequest("the cursor belongs to a listing with other filters: repeat the filters it was made with")
    return payload["k"]


def encode_job_cursor(key: JobPageKey, digest: str) -> str:
    """The cursor continuing a newest-first job listing after `key` (its instant in UTC)."""
    return encode_cursor([key.created_at.astimezone(UTC).isoformat(), str(key.id)], digest)


def decode_job_cursor(cursor: str, digest: str) -> JobPageKey:
    """The job listing position in `cursor`; BadRequest if it is not one."""
    key = decode_cursor(cursor, digest)
    try:
        created_at, job_id = key
        position = JobPageKey(created_at=datetime.fromisoformat(created_at), id=UUID(job_id))
    except (TypeError, ValueError) as exc:
        raise BadRequest(_INVALID) from exc
    # Cursors are made in UTC: another offset was edited in, and PostgreSQL refuses those past ±15:59
    # that Python accepts (±23:59).
    if position.created_at.utcoffset() != timedelta(0):
        raise BadRequest(_INVALID)
    return position


def encode_seq_cursor(seq: int, digest: str) -> str:
    """The cursor continuing an item listing after item `seq`."""
    return encode_cursor(seq, digest)


def decode_seq_cursor(cursor: str, digest: str) -> int:
    """The item listing position in `cursor`; BadRequest if it is not one."""
    seq = decode_cursor(cursor, digest)
    if type(seq) is not int or not 0 <= seq < 2**31:
        raise BadRequest(_INVALID)
    return seq


def _canonical(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(str(v) for v in value)
    return value
