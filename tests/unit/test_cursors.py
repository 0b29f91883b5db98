"""Opaque page cursors: round trips, binding to filters, and refusal of anything not made by us."""
import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from shared.domain.cursors import (
    decode_cursor,
    decode_job_cursor,
    decode_seq_cursor,
    encode_cursor,
    encode_job_cursor,
    encode_seq_cursor,
    filter_digest,
)
from shared.domain.errors import BadRequest
from shared.domain.models import JobPageKey

JOBS = filter_digest("jobs", {"status": ["failed", "running"], "created_after": None})


def test_a_job_cursor_round_trips_to_the_microsecond() -> None:
    key = JobPageKey(created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), id=uuid4())
    cursor = encode_job_cursor(key, JOBS)
    assert decode_job_cursor(cursor, JOBS) == key
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_seq_cursor_round_trips() -> None:
    digest = filter_digest("items", {"job_id": str(uuid4()), "status": None})
    assert decode_seq_cursor(encode_seq_cursor(2499, digest), digest) == 2499


def test_the_digest_ignores_the_order_of_filters_and_of_values() -> None:
    assert filter_digest("jobs", {"created_after": None, "status": ["running", "failed"]}) == JOBS


@pytest.mark.parametrize("other", [
    filter_digest("jobs", {"status": ["failed"], "created_after": None}),
    filter_digest("jobs", {"status": ["failed", "running"], "created_after": "2026-01-01T00:00:00+00:00"}),
    filter_digest("items", {"status": ["failed", "running"], "created_after": None}),
])
def test_a_cursor_is_refused_with_other_filters_or_on_another_listing(other: str) -> None:
    cursor = encode_seq_cursor(5, JOBS)
    with pytest.raises(BadRequest, match="other filters"):
        decode_seq_cursor(cursor, other)


def _raw(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "", "%%%", "not base64 at all!", "é", _raw([1, 2]), _raw({"k": 1}), _raw({"k": 1, "f": JOBS, "x": 0}),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_malformed_cursors_are_bad_requests(cursor: str) -> None:
    with pytest.raises(BadRequest, match="not valid"):
        decode_cursor(cursor, JOBS)


@pytest.mark.parametrize("key", [
    5, "2026-01-01", ["2026-01-01T00:00:00+00:00"], ["2026-01-01T00:00:00+00:00", "not-a-uuid"],
    ["yesterday", str(uuid4())], ["2026-01-01T00:00:00", str(uuid4())], [None, None],
])
def test_a_job_cursor_needs_an_aware_instant_and_an_id(key: object) -> None:
    with pytest.raises(BadRequest, match="not valid"):
        decode_job_cursor(encode_cursor(key, JOBS), JOBS)


@pytest.mark.parametrize("key", [-1, 2**31, True, 1.5, "7", [7], None])
def test_a_seq_cursor_needs_a_seq(key: object) -> None:
    with pytest.raises(BadRequest, match="not valid"):
        decode_seq_cursor(encode_cursor(key, JOBS), JOBS)


def test_offsets_of_the_same_instant_make_the_same_position() -> None:
    job_id = uuid4()
    utc = JobPageKey(created_at=datetime(2026, 1, 1, 12, tzinfo=UTC), id=job_id)
    paris = JobPageKey(created_at=datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1))), id=job_id)
    assert decode_job_cursor(encode_job_cursor(paris, JOBS), JOBS) == utc


@pytest.mark.parametrize("offset", ["+23:59", "-16:00", "+01:00"])
def test_a_job_cursor_edited_to_another_offset_is_a_bad_request(offset: str) -> None:
    # The same instant re-encoded by hand: PostgreSQL refuses offsets past ±15:59, and no cursor we make has one.
    moment = datetime(2026, 1, 1, 12, tzinfo=UTC).astimezone(timezone(timedelta(hours=int(offset[:3]),
                                                                                 minutes=int(offset[4:]))))
    with pytest.raises(BadRequest, match="not valid"):
        decode_job_cursor(encode_cursor([moment.isoformat(), str(uuid4())], JOBS), JOBS)
