"""Instances: one running container of an app, its state, and its row in the state database.

The row is written *before* the container is created and carries the derived container
name, so whatever moment the server is killed at, a restarted server either finds the
container (and adopts it) or finds a pending row (and starts it) — never an orphan and
never a duplicate. Writes are conditional on the state the writer saw, so the health
checker and the reconciler can never overwrite each other's newer decision.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dkos.core import db


class InstanceState(enum.StrEnum):
    PENDING = "pending"
    """Stored, container not started yet (possibly waiting out its restart backoff)."""
    STARTING = "starting"
    """Container running, health check not passed yet."""
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    """Failing its health check, not yet past the limit; out of load-balancer rotation."""
    STOPPING = "stopping"
    STOPPED = "stopped"
    """Stopped on purpose by dkos (scale-in, replacement, delete)."""
    FAILED = "failed"
    """Exited, killed, could not start, or replaced for failing its health check."""


LIVE = frozenset({InstanceState.PENDING, InstanceState.STARTING, InstanceState.HEALTHY, InstanceState.UNHEALTHY})
RUNNING = frozenset({InstanceState.STARTING, InstanceState.HEALTHY, InstanceState.UNHEALTHY})
ACTIVE = LIVE | {InstanceState.STOPPING}
TERMINAL = frozenset({InstanceState.STOPPED, InstanceState.FAILED})


@dataclass(frozen=True)
class Instance:
    app_id: int
    id: str
    slot: int
    version: int
    template_hash: str
    state: InstanceState
    container_id: str | None = None
    ip: str | None = None
    reason: str = ""
    exit_code: int | None = None
    permanent_failure: bool = False
    not_before: float = 0.0
    created_at: float = 0.0
    started_at: float | None = None
    healthy_at: float | None = None
    ended_at: float | None = None

    def to_json(self, *, project: str, app: str, port: int | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "app": app,
            "project": project,
            "version": self.version,
            "slot": self.slot,
            "state": self.state.value,
            "container_id": self.container_id,
            "address": f"{self.ip}:{port}" if self.ip and port and self.state in RUNNING else None,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "healthy_at": self.healthy_at,
            "ended_at": self.ended_at,
            "not_before": self.not_before if self.state is InstanceState.PENDING else None,
        }


def _instance(row: Any) -> Instance:
    data = dict(row._mapping)
    data["state"] = InstanceState(data["state"])
    return Instance(**data)


class InstanceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def for_app(self, app_id: int, *, states: Iterable[InstanceState] | None = None) -> list[Instance]:
        query = sa.select(db.instances).where(db.instances.c.app_id == app_id)
        if states is not None:
            query = query.where(db.instances.c.state.in_([s.value for s in states]))
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(db.instances.c.created_at, db.instances.c.id))
            return [_instance(r) for r in rows]

    async def get(self, app_id: int, instance_id: str) -> Instance | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(db.instances).where(db.instances.c.app_id == app_id, db.instances.c.id == instance_id)
                )
            ).first()
            return None if row is None else _instance(row)

    async def create(
        self,
        *,
        app_id: int,
        app_name: str,
        slot: int,
        version: int,
        template_hash: str,
        not_before: float,
    ) -> Instance:
        """A pending instance with the next id of the app (`<app>-<n>`, never reused)."""
        async with self._engine.begin() as conn:
            seq = await conn.scalar(
                db.apps.update()
                .where(db.apps.c.id == app_id)
                .values(instance_seq=db.apps.c.instance_seq + 1)
                .returning(db.apps.c.instance_seq)
            )
            instance = Instance(
                app_id=app_id,
                id=f"{app_name}-{seq}",
                slot=slot,
                version=version,
                template_hash=template_hash,
                state=InstanceState.PENDING,
                not_before=not_before,
                created_at=time.time(),
            )
            await conn.execute(
                db.instances.insert().values(
                    app_id=app_id,
                    id=instance.id,
                    slot=slot,
                    version=version,
                    template_hash=template_hash,
                    state=instance.state.value,
                    not_before=not_before,
                    created_at=instance.created_at,
                )
            )
            return instance

    async def transition(
        self,
        instance: Instance,
        to: InstanceState,
        *,
        allowed_from: Iterable[InstanceState],
        **fields: Any,
    ) -> Instance | None:
        """Move to `to` only if the stored state is still one of `allowed_from`; None if it was not."""
        values = {"state": to.value, **fields}
        async with self._engine.begin() as conn:
            result = await conn.execute(
                db.instances.update()
                .where(
                    db.instances.c.app_id == instance.app_id,
                    db.instances.c.id == instance.id,
                    db.instances.c.state.in_([s.value for s in allowed_from]),
                )
                .values(**values)
            )
            if not result.rowcount:
                return None
            row = (
                await conn.execute(
                    sa.select(db.instances).where(
                        db.instances.c.app_id == instance.app_id, db.instances.c.id == instance.id
                    )
                )
            ).one()
            return _instance(row)

    async def prune(self, app_id: int, *, keep: int) -> None:
        """Forget all but the newest `keep` stopped or failed instances of an app."""
        async with self._engine.begin() as conn:
            newest = (
                sa.select(db.instances.c.id)
                .where(
                    db.instances.c.app_id == app_id,
                    db.instances.c.state.in_([s.value for s in TERMINAL]),
                )
                .order_by(db.instances.c.ended_at.desc())
                .limit(keep)
            )
            await conn.execute(
                db.instances.delete().where(
                    db.instances.c.app_id == app_id,
                    db.instances.c.state.in_([s.value for s in TERMINAL]),
                    db.instances.c.id.not_in(newest),
                )
            )
