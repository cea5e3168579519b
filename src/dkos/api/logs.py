"""`/v1/apps/{app}/logs`: an app's stored lines, searched and paged, and followed live (SSE).

Both read the log store (`logs.store`), never the engine: lines of instances long gone,
of earlier versions and of every instance at once come from one place, and a follower
sees each new instance's lines without knowing it exists. An unknown app is 404 (an app
deleted since keeps its lines until the caps take them); a malformed `since`/`until` is
422 naming the accepted forms; a search the FTS5 parser rejects is 400 with its reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query
from fastapi.responses import StreamingResponse

from dkos.alerts.spec import parse_body
from dkos.api.apps import ProjectQuery, Svc
from dkos.api.services import Services
from dkos.core.errors import FieldProblem, InvalidInput, NotFound
from dkos.core.events import Event
from dkos.logs import keyword_spec, keywords, times
from dkos.logs import store as logstore

router = APIRouter(prefix="/v1")

MAX_PAGE = 5000
FOLLOW_PAGE = 1000


class StreamName(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


SinceQuery = Annotated[
    str | None,
    Query(description=f"Lines from this time on: {times.ACCEPTED}.", examples=["10m", "2026-11-25T19:00:00Z"]),
]
UntilQuery = Annotated[str | None, Query(description="Lines up to this time, written as `since`.")]
InstanceQuery = Annotated[str | None, Query(description="Only this instance's lines, e.g. `web-3`.")]
StreamQuery = Annotated[StreamName | None, Query(description="Only stdout or only stderr.")]
GrepQuery = Annotated[
    str | None,
    Query(description='Full-text search (SQLite FTS5): `error`, `"out of memory"`, `panic OR fatal`, `time*`.'),
]


def _time(name: str, value: str | None, now: float) -> int | None:
    if value is None:
        return None
    try:
        return times.to_ns(times.parse(value, now=now))
    except times.BadTime as exc:
        raise InvalidInput([FieldProblem(name, str(exc))]) from exc


async def _store(svc: Services, project: str, app: str) -> logstore.LogStore:
    store = svc.logs
    if store is None:
        raise NotFound("log capture is not running on this server")
    if not store.knows(project, app):
        await svc.apps.get_app(project, app)  # NotFound (404) for an app that never existed
    return store


@router.get("/apps/{app}/logs", summary="Read an app's log lines: filtered, searched, paged")
async def read_logs(
    svc: Svc,
    app: str,
    project: ProjectQuery = "default",
    since: SinceQuery = None,
    until: UntilQuery = None,
    tail: Annotated[
        int | None,
        Query(ge=0, le=MAX_PAGE, description="The newest N lines (default 100 unless `since` or `after` is given)."),
    ] = None,
    instance: InstanceQuery = None,
    stream: StreamQuery = None,
    q: GrepQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Lines per page when reading forward.")] = 1000,
    after: Annotated[int | None, Query(ge=0, description="Read forward from after this line id (paging).")] = None,
    before: Annotated[int | None, Query(ge=1, description="Read back from before this line id (paging).")] = None,
) -> dict[str, Any]:
    """Lines come oldest first. Without `since` or `after` the answer is the newest `tail`
    lines (100 by default) and `next_before` pages further back; with them it reads forward
    `limit` lines and `next_after` continues. `dropped` says what the store's caps removed."""
    store = await _store(svc, project, app)
    now = time.time()
    forward = after is not None or (since is not None and tail is None)
    query = logstore.Query(
        project=project,
        app=app,
        since_ns=_time("since", since, now),
        until_ns=_time("until", until, now),
        instance=instance,
        stream=stream.value if stream is not None else None,
        text=q or None,
        after_id=after,
        before_id=before,
        limit=limit if forward else (100 if tail is None else tail),
        newest=not forward,
    )
    lines = await store.read(query) if query.limit else []
    full = len(lines) == query.limit and query.limit > 0
    return {
        "lines": [line.to_json() for line in lines],
        "next_after": lines[-1].id if forward and full else None,
        "next_before": lines[0].id if not forward and full else None,
        "newest_id": store.newest_id,
        "dropped": (await store.dropped(project, app)).to_json(),
    }


async def _until_closed(events: asyncio.Queue[Event | None]) -> None:
    """Return when the bus closes this subscription (`None`): the server is stopping."""
    while await events.get() is not None:
        pass


def _frame(line: logstore.StoredLine) -> str:
    return f"id: {line.id}\nevent: line\ndata: {json.dumps(line.to_json())}\n\n"


@router.get(
    "/apps/{app}/logs/stream",
    summary="Follow an app's log lines live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def follow_logs(
    svc: Svc,
    app: str,
    project: ProjectQuery = "default",
    since: SinceQuery = None,
    tail: Annotated[int, Query(ge=0, le=MAX_PAGE, description="Stored lines to send first.")] = 0,
    instance: InstanceQuery = None,
    stream: StreamQuery = None,
    q: GrepQuery = None,
    last_event_id: Annotated[int | None, Header()] = None,
) -> StreamingResponse:
    """Each line is an SSE message `event: line`, `id:` its line id, `data:` its JSON. The
    stream follows the app, not a container: new instances, restarts and deploys all show.
    A reconnecting client sends `Last-Event-ID` and misses nothing still stored."""
    store = await _store(svc, project, app)
    now = time.time()
    base = logstore.Query(
        project=project,
        app=app,
        since_ns=_time("since", since, now),
        instance=instance,
        stream=stream.value if stream is not None else None,
        text=q or None,
    )
    # Parse the search now, so a bad one is a 400 answer rather than a broken stream.
    await store.read(logstore.Query(project=project, app=app, text=base.text, limit=1))
    keepalive = svc.settings.sse_keepalive

    async def frames() -> AsyncIterator[str]:
        # The event bus ends its subscribers when the server stops: so does this stream, at
        # once, instead of holding the shutdown for uvicorn's grace period.
        async with svc.bus.subscribe() as events:
            stopping: asyncio.Future[Any] = asyncio.ensure_future(_until_closed(events))
            try:
                async for frame in _follow(last_event_id, stopping):
                    yield frame
            finally:
                stopping.cancel()

    async def _follow(last_event_id: int | None, stopping: asyncio.Future[Any]) -> AsyncIterator[str]:
        last = store.newest_id
        if last_event_id is not None:
            last = last_event_id
        elif tail or since is not None:
            backlog = await store.read(dataclasses.replace(base, limit=tail or MAX_PAGE, newest=True))
            for line in backlog:
                yield _frame(line)
            last = max(last, backlog[-1].id) if backlog else last
        while True:
            waiting: asyncio.Future[Any] = asyncio.ensure_future(store.wait_newer(last, timeout=keepalive))
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                waiting.cancel()
                return
            if not waiting.result():
                yield ": keep-alive\n\n"
                continue
            upto = store.newest_id
            new = await store.read(
                dataclasses.replace(
                    base, since_ns=None, after_id=last, before_id=upto + 1, limit=FOLLOW_PAGE, newest=False
                )
            )
            for line in new:
                yield _frame(line)
            last = new[-1].id if len(new) == FOLLOW_PAGE else upto

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/log-alarms", status_code=201, summary="Create a keyword alarm: ≥ N matching lines within W seconds")
async def create_log_alarm(body: Annotated[dict[str, Any], Body()], svc: Svc) -> dict[str, Any]:
    """The alarm then lives with the others: `GET /v1/alarms`, `/v1/alarms/{name}` (history,
    notifications), `DELETE /v1/alarms/{name}`; the same states, channels and realert."""
    if svc.alarms is None or svc.logs is None:
        raise NotFound("this server runs no alarm service or no log store")
    alarm = await keywords.create(
        svc.alarms,
        svc.logs,
        svc.apps,
        parse_body(keyword_spec.LogAlarmIn, body),
        min_period=svc.settings.alarm_min_period,
    )
    return alarm.to_json()
