"""The event bus: app, instance, deployment and engine events, stored and fanned out.

Every event is stored (so a reconnecting `/v1/events` client resumes from `Last-Event-ID`)
and handed to each live subscriber's bounded queue. A subscriber that falls too far behind
is dropped rather than slowing the loops that emit; its client reconnects and replays.
As Marathon's event bus advises, events are hints to re-read state, not the state itself.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dkos.core import db


class EventType(enum.StrEnum):
    APP_CREATED = "app.created"
    APP_UPDATED = "app.updated"
    APP_DELETED = "app.deleted"
    DEPLOYMENT_STARTED = "deployment.started"
    DEPLOYMENT_SUCCEEDED = "deployment.succeeded"
    DEPLOYMENT_FAILED = "deployment.failed"
    DEPLOYMENT_SUPERSEDED = "deployment.superseded"
    INSTANCE_PENDING = "instance.pending"
    INSTANCE_STARTING = "instance.starting"
    INSTANCE_HEALTHY = "instance.healthy"
    INSTANCE_UNHEALTHY = "instance.unhealthy"
    INSTANCE_STOPPING = "instance.stopping"
    INSTANCE_STOPPED = "instance.stopped"
    INSTANCE_FAILED = "instance.failed"
    ENGINE_UNREACHABLE = "engine.unreachable"
    ENGINE_REACHABLE = "engine.reachable"
    LB_ERROR = "lb.error"


@dataclass(frozen=True)
class Event:
    id: int
    time: float
    type: str
    project: str | None
    app: str | None
    instance: str | None
    deployment: int | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, *, project: str | None, app: str | None) -> bool:
        return (project is None or self.project == project) and (app is None or self.app == app)


class EventBus:
    def __init__(self, engine: AsyncEngine, *, queue_size: int = 1000) -> None:
        self._engine = engine
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event | None]] = set()

    async def emit(
        self,
        type: EventType,
        message: str,
        *,
        project: str | None = None,
        app: str | None = None,
        instance: str | None = None,
        deployment: int | None = None,
    ) -> Event:
        now = time.time()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                db.events.insert().values(
                    time=now,
                    type=type.value,
                    project=project,
                    app=app,
                    instance=instance,
                    deployment=deployment,
                    message=message,
                )
            )
        event = Event(db.inserted_id(result), now, type.value, project, app, instance, deployment, message)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(queue)
        return event

    def _drop(self, queue: asyncio.Queue[Event | None]) -> None:
        """Unsubscribe and leave the `None` end marker, making room for it if need be."""
        self._subscribers.discard(queue)
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(None)

    async def history(
        self,
        *,
        project: str | None,
        app: str | None,
        after_id: int | None = None,
        last: int | None = None,
    ) -> list[Event]:
        """Stored events, oldest first: those after `after_id`, or the `last` N."""
        query = sa.select(db.events)
        if project is not None:
            query = query.where(db.events.c.project == project)
        if app is not None:
            query = query.where(db.events.c.app == app)
        if after_id is not None:
            query = query.where(db.events.c.id > after_id).order_by(db.events.c.id).limit(10_000)
        else:
            query = query.order_by(db.events.c.id.desc()).limit(last or 0)
        async with self._engine.connect() as conn:
            rows = [Event(**r._mapping) for r in await conn.execute(query)]
        return sorted(rows, key=lambda e: e.id)

    async def for_deployment(self, deployment_id: int) -> list[Event]:
        """A deployment's steps: every event tied to it, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(db.events).where(db.events.c.deployment == deployment_id).order_by(db.events.c.id)
            )
            return [Event(**r._mapping) for r in rows]

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """A queue of new events; `None` in it means the subscriber fell behind and was dropped."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every live stream (the server is stopping)."""
        for queue in list(self._subscribers):
            self._drop(queue)

    async def prune(self, *, keep: int) -> None:
        async with self._engine.begin() as conn:
            newest = await conn.scalar(sa.select(sa.func.max(db.events.c.id)))
            if newest is not None:
                await conn.execute(db.events.delete().where(db.events.c.id <= newest - keep))
