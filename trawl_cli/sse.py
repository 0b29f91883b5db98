"""Server-sent events: the `text/event-stream` parser of the HTML standard ("Interpreting an event stream"),
fed one response body in chunks of any size, with a bound on the size of one event."""
from __future__ import annotations

import re
from dataclasses import dataclass

from trawl_cli.errors import UnexpectedResponse

MAX_EVENT_BYTES = 1024 * 1024
BOM = b"\xef\xbb\xbf"
# CR and LF are single bytes that never occur inside a UTF-8 sequence, so lines are split before decoding.
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    """One dispatched event: its type (`message` when the stream named none), its `data:` lines joined by
    LF, and the stream's last event id when it was dispatched (an event without `id:` inherits it)."""

    type: str
    data: str
    id: str


class EventStreamParser:
    """Turns one response body into events. `last_event_id` starts as the id the request resumed from, so a
    response that sets none keeps it (as browsers' EventSource does); `retry_ms` is the last valid `retry:`."""

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self._id = last_event_id
        self._type = ""
        self._data: list[str] = []
        self._data_bytes = 0
        self._unfinished = b""  # the start of a line whose end has not arrived yet
        self._at_start = True  # one byte-order mark may open the stream
        self._after_cr = False  # the last chunk ended with CR: an LF opening the next one belongs to it

    def feed(self, chunk: bytes) -> list[Event]:
        """The events that `chunk` completes; UnexpectedResponse once an event outgrows MAX_EVENT_BYTES."""
        if not chunk:
            return []
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        buffer = self._unfinished + chunk
        if self._at_start:
            if len(buffer) < len(BOM) and BOM.startswith(buffer):
                self._unfinished = buffer
                return []
            self._at_start = False
            buffer = buffer.removeprefix(BOM)
        events: list[Event] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            event = self._line(buffer[start:match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._after_cr = buffer.endswith(b"\r")
        self._unfinished = buffer[start:]
        self._check_size(len(self._unfinished))
        return events

    def _line(self, raw: bytes) -> Event | None:
        if not raw:
            return self._dispatch()
        self._check_size(len(raw))
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_bytes += len(raw) + 1
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id
        data, event_type = self._data, self._type
        self._data, self._type, self._data_bytes = [], "", 0
        if not data:
            return None
        return Event(event_type or "message", "\n".join(data), self.last_event_id)

    def _check_size(self, pending: int) -> None:
        if self._data_bytes + pending > MAX_EVENT_BYTES:
            raise UnexpectedResponse(f"the API sent a server-sent event of more than {MAX_EVENT_BYTES // 2**20} MiB; "
                                     "this client reads no events that large")
