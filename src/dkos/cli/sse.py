"""Server-Sent Events parsing: lines of a `text/event-stream` in, messages out.

`GET /v1/events` is an SSE stream (docs/api.md). This is the pure half of reading it:
no I/O, so it is tested with plain lists of lines and reused for live and replayed
streams alike. It follows the WHATWG rules the CLI meets in practice: `field: value`
lines, one optional space after the colon, `data` lines joined with newlines, comment
lines (`: keep-alive`) ignored, a blank line ends a message, and `id` persists across
messages (it is what a reconnecting client sends as `Last-Event-ID`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """One dispatched event: its type (`message` when the stream names none), data and last id."""

    event: str
    data: str
    id: str | None


def parse(lines: Iterable[str]) -> Iterator[Message]:
    """Messages from stream lines (without their line endings), in order."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    for line in lines:
        if not line:
            if data:
                yield Message(event=event or "message", data="\n".join(data), id=last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        # `retry` and unknown fields are ignored, as the standard says.
    # A stream that ends without its final blank line (a server closing a non-follow
    # stream abruptly) still delivered the event; keeping it loses nothing.
    if data:
        yield Message(event=event or "message", data="\n".join(data), id=last_id)
