"""Scaling policies and their executions in the state database.

A policy row carries its definition (JSON) and its progress: the cooldown's end and
direction, and the target-tracking recommendations of its stabilisation window, so a
restarted server keeps every cooldown. An execution row is written when the scale
deployment starts and finished when that deployment ends (its new instances healthy
or failed) — which is when the policy's cooldown starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dkos.alerts.store import Origin
from dkos.autoscale.model import Decision, Direction, ExecutionStatus, Policy
from dkos.autoscale.spec import PolicySpec
from dkos.core import db
from dkos.core.errors import Conflict, NotFound


@dataclass(frozen=True)
class PolicyRecord:
    id: int
    project: str
    app: str
    name: str
    definition: dict[str, Any]
    origin: Origin
    cooldown_until: float | None
    cooldown_direction: Direction | None
    recommendations: tuple[tuple[float, int], ...]
    last_limited: str
    created_at: float

    def spec(self) -> PolicySpec:
        return PolicySpec.model_validate({**self.definition, "name": self.name})

    def policy(self) -> Policy:
        return self.spec().policy()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "project": self.project,
            "app": self.app,
            "origin": self.origin.value,
            **self.definition,
            "cooldown_until": self.cooldown_until,
            "cooldown_direction": self.cooldown_direction.value if self.cooldown_direction else None,
            "last_limited": self.last_limited or None,
            "created_at": self.created_at,
        }


def _policy(row: Any) -> PolicyRecord:
    return PolicyRecord(
        id=row.id,
        project=row.project,
        app=row.app,
        name=row.name,
        definition=dict(row.definition),
        origin=Origin(row.origin),
        cooldown_until=row.cooldown_until,
        cooldown_direction=Direction(row.cooldown_direction) if row.cooldown_direction else None,
        recommendations=tuple((float(t), int(d)) for t, d in row.recommendations),
        last_limited=row.last_limited,
        created_at=row.created_at,
    )


def _execution(row: Any) -> dict[str, Any]:
    found = dict(row._mapping)
    found.pop("policy_id", None)
    found["limited"] = found["limited"] or None
    return found


class PolicyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put_policy(
        self, *, project: str, app: str, name: str, definition: dict[str, Any], origin: Origin, replace: bool
    ) -> PolicyRecord:
        where = (
            db.scaling_policies.c.project == project,
            db.scaling_policies.c.app == app,
            db.scaling_policies.c.name == name,
        )
        async with self._engine.begin() as conn:
            found = await conn.scalar(sa.select(db.scaling_policies.c.id).where(*where))
            if found is not None and not replace:
                raise Conflict(f"policy '{name}' exists already for app '{app}'")
            if found is None:
                await conn.execute(
                    db.scaling_policies.insert().values(
                        project=project,
                        app=app,
                        name=name,
                        definition=definition,
                        origin=origin.value,
                        recommendations=[],
                        created_at=time.time(),
                    )
                )
            else:
                await conn.execute(
                    db.scaling_policies.update()
                    .where(db.scaling_policies.c.id == found)
                    .values(definition=definition, origin=origin.value)
                )
        return await self.get_policy(project, app, name)

    async def get_policy(self, project: str, app: str, name: str) -> PolicyRecord:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(db.scaling_policies).where(
                        db.scaling_policies.c.project == project,
                        db.scaling_policies.c.app == app,
                        db.scaling_policies.c.name == name,
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"policy '{name}' not found for app '{app}' in project '{project}'")
        return _policy(row)

    async def list_policies(self, project: str | None = None, app: str | None = None) -> list[PolicyRecord]:
        query = sa.select(db.scaling_policies).order_by(
            db.scaling_policies.c.project, db.scaling_policies.c.app, db.scaling_policies.c.name
        )
        if project is not None:
            query = query.where(db.scaling_policies.c.project == project)
        if app is not None:
            query = query.where(db.scaling_policies.c.app == app)
        async with self._engine.connect() as conn:
            return [_policy(r) for r in await conn.execute(query)]

    async def delete_policy(self, project: str, app: str, name: str) -> None:
        policy = await self.get_policy(project, app, name)
        async with self._engine.begin() as conn:
            await conn.execute(db.scaling_executions.delete().where(db.scaling_executions.c.policy_id == policy.id))
            await conn.execute(db.scaling_policies.delete().where(db.scaling_policies.c.id == policy.id))

    async def save_progress(
        self,
        policy_id: int,
        *,
        cooldown_until: float | None = None,
        cooldown_direction: Direction | None = None,
        recommendations: tuple[tuple[float, int], ...] | None = None,
        last_limited: str | None = None,
        clear_cooldown: bool = False,
    ) -> None:
        values: dict[str, Any] = {}
        if cooldown_until is not None or clear_cooldown:
            values.update(cooldown_until=cooldown_until, cooldown_direction=cooldown_direction)
        if recommendations is not None:
            values["recommendations"] = [list(r) for r in recommendations]
        if last_limited is not None:
            values["last_limited"] = last_limited
        if values:
            async with self._engine.begin() as conn:
                await conn.execute(
                    db.scaling_policies.update().where(db.scaling_policies.c.id == policy_id).values(**values)
                )

    # executions ---------------------------------------------------------------------------

    async def add_execution(
        self, policy: PolicyRecord, decision: Decision, *, deployment_id: int | None, now: float
    ) -> int:
        value = next((t.value for t in decision.triggers if t.value is not None), None)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                db.scaling_executions.insert().values(
                    policy_id=policy.id,
                    project=policy.project,
                    app=policy.app,
                    policy=policy.name,
                    alarms=[t.alarm for t in decision.triggers],
                    value=value,
                    from_instances=decision.from_instances,
                    to_instances=decision.to_instances,
                    reason=decision.reason,
                    limited=decision.limited or "",
                    deployment_id=deployment_id,
                    status=ExecutionStatus.RUNNING.value,
                    started_at=now,
                )
            )
            return db.inserted_id(result)

    async def running_execution(self, policy_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(db.scaling_executions).where(
                        db.scaling_executions.c.policy_id == policy_id,
                        db.scaling_executions.c.status == ExecutionStatus.RUNNING.value,
                    )
                )
            ).first()
        return None if row is None else dict(row._mapping)

    async def finish_execution(self, execution_id: int, status: ExecutionStatus, *, finished_at: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                db.scaling_executions.update()
                .where(db.scaling_executions.c.id == execution_id)
                .values(status=status.value, finished_at=finished_at)
            )

    async def executions(
        self, *, project: str | None, app: str | None = None, policy: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Newest first."""
        query = sa.select(db.scaling_executions).order_by(db.scaling_executions.c.id.desc()).limit(limit)
        if project is not None:
            query = query.where(db.scaling_executions.c.project == project)
        if app is not None:
            query = query.where(db.scaling_executions.c.app == app)
        if policy is not None:
            query = query.where(db.scaling_executions.c.policy == policy)
        async with self._engine.connect() as conn:
            return [_execution(r) for r in await conn.execute(query)]
