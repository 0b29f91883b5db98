"""The `text/event-stream` wire format (WHATWG HTML, "Server-sent events") of a job's event stream."""
from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel

from shared.contract.openapi import REF
from shared.contract.schemas import StreamItem, StreamProgress, StreamStatus
from shared.domain.stream import StreamEvent

MEDIA_TYPE = "text/event-stream"

# The event data models, by event type.
EVENT_MODELS: dict[str, type[BaseModel]] = {"status": StreamStatus, "progress": StreamProgress, "item": StreamItem}

# One event of the stream, as OpenAPI describes each item of a `text/event-stream` response.
EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "description": "Send it back as `Last-Event-ID` to resume after this event."},
        "event": {"enum": list(EVENT_MODELS)},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"oneOf": [{"$ref": REF.format(model=model.__name__)}
                                             for model in EVENT_MODELS.values()]},
                 "description": "One JSON object: StreamStatus, StreamProgress or StreamItem, by `event`."},
    },
}

# Sent when a response ends with no events: a comment line, which every reader ignores.
HEARTBEAT = ": heartbeat\n\n"


def render(events: Iterable[StreamEvent], retry_ms: int) -> str:
    """A complete response body: the reconnect delay, then each event with its id. Event data is one JSON
    line (json.dumps escapes newlines), so no event can break the framing."""
    parts = [f"retry: {retry_ms}\n\n"]
    for event in events:
        data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
        parts.append(f"id: {event.cursor}\nevent: {event.kind}\ndata: {data}\n\n")
    if len(parts) == 1:
        parts.append(HEARTBEAT)
    return "".join(parts)
