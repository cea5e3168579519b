"""`/v1/events`: the Server-Sent Events stream of app, instance, deployment and engine events.

The subscription starts before the stored history is read, so no event can fall between
the replay and the live part; ids already sent are skipped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from dkos.api.apps import Svc
from dkos.apps.spec import DNS_LABEL
from dkos.core.events import Event

router = APIRouter(prefix="/v1")


def _frame(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(event.to_json())}\n\n"


@router.get(
    "/events",
    summary="Stream events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    svc: Svc,
    project: Annotated[str | None, Query(pattern=DNS_LABEL)] = None,
    app: Annotated[str | None, Query(pattern=DNS_LABEL)] = None,
    tail: Annotated[int, Query(ge=0, le=10_000, description="Stored events to send first.")] = 0,
    follow: Annotated[bool, Query(description="Keep the stream open for new events.")] = True,
    last_event_id: Annotated[int | None, Header()] = None,
) -> StreamingResponse:
    async def frames() -> AsyncIterator[str]:
        async with svc.bus.subscribe() as queue:
            replay = await svc.bus.history(project=project, app=app, after_id=last_event_id, last=tail)
            sent = last_event_id or 0
            for event in replay:
                sent = event.id
                yield _frame(event)
            if not follow:
                return
            while True:
                try:
                    new = await asyncio.wait_for(queue.get(), svc.settings.sse_keepalive)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if new is None:
                    return
                if new.id > sent and new.matches(project=project, app=app):
                    sent = new.id
                    yield _frame(new)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
