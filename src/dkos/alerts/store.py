"""Alarms, their history, channels and notifications in the state database.

An alarm row holds its definition (JSON, whatever its source) and its status (state,
since, value, reason); every transition adds a history row, kept 14 days. A notification
row is written before it is sent and carries every attempt, so a notification that
never gets through stays visible (`undelivered`) instead of vanishing.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dkos.alerts.model import AlarmSource, AlarmState
from dkos.alerts.spec import AlarmSpec
from dkos.alerts.transitions import AlarmStatus, HistoryEntry
from dkos.core import db
from dkos.core.errors import Conflict, NotFound


class Origin(enum.StrEnum):
    API = "api"
    SPEC = "spec"
    """Declared in the app spec: a deploy adds, changes and removes it."""


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """The receiver refused it (4xx): not retried."""
    UNDELIVERED = "undelivered"
    """Every retry failed (5xx or network): kept, visible, never dropped silently."""


@dataclass(frozen=True)
class AlarmRecord:
    id: int
    project: str
    app: str | None
    name: str
    source: AlarmSource
    definition: dict[str, Any]
    origin: Origin
    status: AlarmStatus
    evaluated_at: float | None
    created_at: float

    def spec(self) -> AlarmSpec:
        """The metric form of the definition (other sources keep theirs in the same JSON)."""
        return AlarmSpec.model_validate({**self.definition, "name": self.name})

    @property
    def channels(self) -> list[str]:
        return list(self.definition.get("channels", []))

    @property
    def repeat_interval(self) -> float:
        return float(self.definition.get("repeat_interval", 0))

    def to_json(self) -> dict[str, Any]:
        status = self.status
        return {
            "name": self.name,
            "project": self.project,
            "app": self.app,
            "source": self.source.value,
            "origin": self.origin.value,
            **self.definition,
            "state": status.state.value,
            "state_since": status.since,
            "value": status.value,
            "reason": status.reason,
            "evaluated_at": self.evaluated_at,
            "created_at": self.created_at,
        }


def _alarm(row: Any) -> AlarmRecord:
    return AlarmRecord(
        id=row.id,
        project=row.project,
        app=row.app,
        name=row.name,
        source=AlarmSource(row.source),
        definition=dict(row.definition),
        origin=Origin(row.origin),
        status=AlarmStatus(
            state=AlarmState(row.state),
            since=row.state_since,
            value=row.state_value,
            reason=row.state_reason,
            fired_at=row.fired_at,
            last_notified_at=row.last_notified_at,
        ),
        evaluated_at=row.evaluated_at,
        created_at=row.created_at,
    )


class AlarmStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # alarms -------------------------------------------------------------------------------

    async def put_alarm(
        self,
        *,
        project: str,
        app: str | None,
        name: str,
        source: AlarmSource,
        definition: dict[str, Any],
        origin: Origin,
        replace: bool,
    ) -> AlarmRecord:
        """Create the alarm, or with `replace` change its definition (its state is kept)."""
        now = time.time()
        async with self._engine.begin() as conn:
            found = (
                await conn.execute(sa.select(db.alarms).where(db.alarms.c.project == project, db.alarms.c.name == name))
            ).first()
            if found is not None and not replace:
                raise Conflict(f"alarm '{name}' exists already in project '{project}'")
            if found is None:
                await conn.execute(
                    db.alarms.insert().values(
                        project=project,
                        app=app,
                        name=name,
                        source=source.value,
                        definition=definition,
                        origin=origin.value,
                        state=AlarmState.INSUFFICIENT_DATA.value,
                        state_since=now,
                        state_reason="not evaluated yet",
                        created_at=now,
                    )
                )
            else:
                await conn.execute(
                    db.alarms.update()
                    .where(db.alarms.c.id == found.id)
                    .values(app=app, source=source.value, definition=definition, origin=origin.value)
                )
        return await self.get_alarm(project, name)

    async def get_alarm(self, project: str, name: str) -> AlarmRecord:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(db.alarms).where(db.alarms.c.project == project, db.alarms.c.name == name))
            ).first()
        if row is None:
            raise NotFound(f"alarm '{name}' not found in project '{project}'")
        return _alarm(row)

    async def list_alarms(
        self, project: str | None = None, app: str | None = None, *, source: AlarmSource | None = None
    ) -> list[AlarmRecord]:
        """Alarms of a project (all projects when None); with `app`, that app's and the project-wide ones."""
        query = sa.select(db.alarms)
        if project is not None:
            query = query.where(db.alarms.c.project == project)
        if app is not None:
            query = query.where(sa.or_(db.alarms.c.app == app, db.alarms.c.app.is_(None)))
        if source is not None:
            query = query.where(db.alarms.c.source == source.value)
        async with self._engine.connect() as conn:
            return [_alarm(r) for r in await conn.execute(query.order_by(db.alarms.c.project, db.alarms.c.name))]

    async def delete_alarm(self, project: str, name: str) -> None:
        alarm = await self.get_alarm(project, name)
        async with self._engine.begin() as conn:
            await conn.execute(db.alarm_history.delete().where(db.alarm_history.c.alarm_id == alarm.id))
            await conn.execute(db.alarms.delete().where(db.alarms.c.id == alarm.id))

    async def save_status(
        self, alarm_id: int, status: AlarmStatus, *, entry: HistoryEntry | None, evaluated_at: float
    ) -> None:
        """The new status and, on a transition, its history entry: one transaction."""
        async with self._engine.begin() as conn:
            await conn.execute(
                db.alarms.update()
                .where(db.alarms.c.id == alarm_id)
                .values(
                    state=status.state.value,
                    state_since=status.since,
                    state_value=status.value,
                    state_reason=status.reason,
                    fired_at=status.fired_at,
                    last_notified_at=status.last_notified_at,
                    evaluated_at=evaluated_at,
                )
            )
            if entry is not None:
                await conn.execute(
                    db.alarm_history.insert().values(
                        alarm_id=alarm_id,
                        time=entry.time,
                        old_state=entry.old_state.value,
                        new_state=entry.new_state.value,
                        value=entry.value,
                        reason=entry.reason,
                    )
                )

    async def history(self, alarm_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
        """Transitions, newest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(db.alarm_history)
                .where(db.alarm_history.c.alarm_id == alarm_id)
                .order_by(db.alarm_history.c.id.desc())
                .limit(limit)
            )
            return [
                {
                    "time": r.time,
                    "old_state": r.old_state,
                    "new_state": r.new_state,
                    "value": r.value,
                    "reason": r.reason,
                }
                for r in rows
            ]

    async def prune_history(self, *, before: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(db.alarm_history.delete().where(db.alarm_history.c.time < before))
            await conn.execute(
                db.notifications.delete().where(
                    db.notifications.c.created_at < before,
                    db.notifications.c.status != DeliveryStatus.PENDING.value,
                )
            )

    # channels -----------------------------------------------------------------------------

    async def put_channel(self, *, project: str, name: str, type: str, url: str, send_resolved: bool) -> dict[str, Any]:
        async with self._engine.begin() as conn:
            found = await conn.scalar(
                sa.select(db.channels.c.id).where(db.channels.c.project == project, db.channels.c.name == name)
            )
            if found is not None:
                raise Conflict(f"channel '{name}' exists already in project '{project}'")
            await conn.execute(
                db.channels.insert().values(
                    project=project, name=name, type=type, url=url, send_resolved=send_resolved, created_at=time.time()
                )
            )
        return await self.get_channel(project, name)

    async def get_channel(self, project: str, name: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(db.channels).where(db.channels.c.project == project, db.channels.c.name == name)
                )
            ).first()
        if row is None:
            raise NotFound(f"channel '{name}' not found in project '{project}'")
        return dict(row._mapping)

    async def list_channels(self, project: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(db.channels).order_by(db.channels.c.project, db.channels.c.name)
        if project is not None:
            query = query.where(db.channels.c.project == project)
        async with self._engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def delete_channel(self, project: str, name: str) -> None:
        await self.get_channel(project, name)
        async with self._engine.begin() as conn:
            await conn.execute(db.channels.delete().where(db.channels.c.project == project, db.channels.c.name == name))

    # notifications ------------------------------------------------------------------------

    async def add_notification(
        self, *, project: str, channel: str, alarm: str, reason: str, url: str, payload: dict[str, Any]
    ) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                db.notifications.insert().values(
                    project=project,
                    channel=channel,
                    alarm=alarm,
                    reason=reason,
                    status=DeliveryStatus.PENDING.value,
                    url=url,
                    payload=payload,
                    created_at=time.time(),
                )
            )
            return db.inserted_id(result)

    async def notification(self, notification_id: int) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(db.notifications).where(db.notifications.c.id == notification_id))
            ).first()
        if row is None:
            raise NotFound(f"notification {notification_id} not found")
        return dict(row._mapping)

    async def record_attempt(
        self,
        notification_id: int,
        *,
        status_code: int | None,
        outcome: str,
        error: str,
        final: DeliveryStatus | None,
    ) -> None:
        now = time.time()
        async with self._engine.begin() as conn:
            await conn.execute(
                db.notification_attempts.insert().values(
                    notification_id=notification_id, time=now, status_code=status_code, outcome=outcome, error=error
                )
            )
            values: dict[str, Any] = {"attempts": db.notifications.c.attempts + 1, "last_error": error}
            if final is not None:
                values.update(status=final.value, finished_at=now)
            await conn.execute(
                db.notifications.update().where(db.notifications.c.id == notification_id).values(**values)
            )

    async def pending_notifications(self) -> list[int]:
        async with self._engine.connect() as conn:
            rows = await conn.scalars(
                sa.select(db.notifications.c.id)
                .where(db.notifications.c.status == DeliveryStatus.PENDING.value)
                .order_by(db.notifications.c.id)
            )
            return list(rows)

    async def list_notifications(
        self,
        *,
        project: str | None,
        channel: str | None = None,
        alarm: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Notifications with their attempts, newest first."""
        query = sa.select(db.notifications).order_by(db.notifications.c.id.desc()).limit(limit)
        if project is not None:
            query = query.where(db.notifications.c.project == project)
        if channel is not None:
            query = query.where(db.notifications.c.channel == channel)
        if alarm is not None:
            query = query.where(db.notifications.c.alarm == alarm)
        if statuses:
            query = query.where(db.notifications.c.status.in_(list(statuses)))
        async with self._engine.connect() as conn:
            found = [dict(r._mapping) for r in await conn.execute(query)]
            ids = [n["id"] for n in found]
            attempts = await conn.execute(
                sa.select(db.notification_attempts)
                .where(db.notification_attempts.c.notification_id.in_(ids))
                .order_by(db.notification_attempts.c.id)
            )
            by_id: dict[int, list[dict[str, Any]]] = {}
            for a in attempts:
                by_id.setdefault(a.notification_id, []).append(
                    {"time": a.time, "status_code": a.status_code, "outcome": a.outcome, "error": a.error}
                )
        for n in found:
            n["attempt_log"] = by_id.get(n["id"], [])
        return found

    async def undelivered_counts(self) -> dict[tuple[str, str], int]:
        """(project, channel) → notifications that never got through."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(db.notifications.c.project, db.notifications.c.channel, sa.func.count())
                .where(db.notifications.c.status.in_([DeliveryStatus.UNDELIVERED.value, DeliveryStatus.FAILED.value]))
                .group_by(db.notifications.c.project, db.notifications.c.channel)
            )
            return {(r[0], r[1]): int(r[2]) for r in rows}
