"""The CLI's server-sent events parser against the HTML standard's rules for `text/event-stream`: fields,
comments, line ends, the byte-order mark, ids, `retry:`, chunk boundaries, and the bound on an event's size."""
from __future__ import annotations

import pytest

from trawl_cli.errors import UnexpectedResponse
from trawl_cli.sse import MAX_EVENT_BYTES, Event, EventStreamParser


def parse(*chunks: bytes, last_event_id: str = "") -> tuple[list[Event], EventStreamParser]:
    parser = EventStreamParser(last_event_id)
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events, parser


def test_fields_make_events_and_the_last_id_and_retry_are_kept() -> None:
    events, parser = parse(b"retry: 1500\n\n"
                           b"id: 1.0\nevent: status\ndata: {\"status\": \"pending\"}\n\n"
                           b"id: 1.1\nevent: progress\ndata: {}\n\n")

    assert events == [Event("status", '{"status": "pending"}', "1.0"), Event("progress", "{}", "1.1")]
    assert (parser.last_event_id, parser.retry_ms) == ("1.1", 1500)


def test_data_lines_join_with_lf_and_an_event_without_a_type_is_a_message() -> None:
    events, _ = parse(b"data: one\ndata:two\ndata\ndata:  three\n\n")
    assert events == [Event("message", "one\ntwo\n\n three", "")]


def test_comments_unknown_fields_and_blocks_without_data_dispatch_nothing() -> None:
    events, parser = parse(b": heartbeat\n\n", b"event: status\nid: 7\n\n", b"foo: bar\n:data: x\n\n")
    assert events == []
    assert parser.last_event_id == "7"  # a block without data still moves the id, as the standard says


def test_a_response_without_ids_keeps_the_id_it_resumed_from_and_an_empty_id_resets_it() -> None:
    kept, parser = parse(b"retry: 10\n\ndata: x\n\n", last_event_id="4.1")
    assert kept == [Event("message", "x", "4.1")] and parser.last_event_id == "4.1"

    reset, parser = parse(b"id\ndata: x\n\n", last_event_id="4.1")
    assert reset == [Event("message", "x", "")] and parser.last_event_id == ""


def test_an_id_containing_nul_is_ignored() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [event.id for event in events] == ["1", "1"] and parser.last_event_id == "1"


@pytest.mark.parametrize("value", [b"", b"soon", b"-1", b"1.5", b"  20", "\u0661\u0662".encode()])
def test_a_retry_that_is_not_ascii_digits_is_ignored(value: bytes) -> None:
    _, parser = parse(b"retry: 100\n\nretry:" + value + b"\n\n")
    assert parser.retry_ms == 100


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_lines_end_with_lf_crlf_or_cr(end: bytes) -> None:
    events, _ = parse(end.join([b"id: 9", b"event: item", b"data: a", b"data: b", b"", b""]))
    assert events == [Event("item", "a\nb", "9")]


def test_any_chunking_gives_the_same_events() -> None:
    body = ("\ufeffretry: 5\r\n\r\nid: 1.2\r\nevent: status\r\ndata: {\"café\": \"→\"}\r\n\r\n: hb\r"
            "data: x\r\rdata: y\n\n").encode()
    whole, _ = parse(body)
    one_byte_at_a_time, parser = parse(*(body[i:i + 1] for i in range(len(body))))

    assert whole == [Event("status", '{"café": "→"}', "1.2"), Event("message", "x", "1.2"),
                     Event("message", "y", "1.2")]
    assert one_byte_at_a_time == whole and parser.retry_ms == 5


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    events, _ = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [Event("message", "a\nb", "")]


def test_one_leading_byte_order_mark_is_ignored_and_a_second_is_not() -> None:
    events, _ = parse(b"\xef\xbb", b"\xbfdata: a\n\n")
    assert events == [Event("message", "a", "")]

    events, _ = parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: b\n\ndata: c\n\n")
    assert events == [Event("message", "c", "")]  # the second mark is part of a field name no one knows


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    events, _ = parse(b"data: caf\xe9\n\n")
    assert events == [Event("message", "caf\ufffd", "")]


def test_an_event_left_unfinished_at_the_end_is_not_dispatched() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert events == [Event("message", "a", "1")] and parser.last_event_id == "1"


def test_an_event_may_be_as_large_as_the_bound_and_no_larger() -> None:
    line = b"data: " + b"x" * 1000 + b"\n"
    fits = line * (MAX_EVENT_BYTES // len(line))
    events, _ = parse(fits, b"\n")
    assert len(events) == 1 and len(events[0].data) > MAX_EVENT_BYTES - 10_000

    with pytest.raises(UnexpectedResponse, match=r"^the API sent a server-sent event of more than 1 MiB"):
        parse(fits + line)


def test_a_line_that_never_ends_is_bounded_too() -> None:
    parser = EventStreamParser()
    chunk = b"data: " + b"x" * (64 * 1024)
    with pytest.raises(UnexpectedResponse, match="more than 1 MiB"):
        for _ in range(MAX_EVENT_BYTES // len(chunk) + 2):
            parser.feed(chunk)


def test_heartbeat_comments_between_events_do_not_count_against_the_bound() -> None:
    parser = EventStreamParser()
    for _ in range(3):
        assert parser.feed(b": " + b"h" * (MAX_EVENT_BYTES // 2) + b"\n") == []
    assert parser.feed(b"data: x\n\n") == [Event("message", "x", "")]
