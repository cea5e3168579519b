"""Apps, their versions and their deployments in the state database.

Every write is one transaction: a new version, the app's pointer to it, and the
deployment that will carry it out are stored together or not at all, so a bad request
or a crash never leaves half a change behind.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dkos.apps.spec import AppSpec, Protocol
from dkos.apps.versions import ChangeKind, compute_template_hash, describe_change
from dkos.core import db
from dkos.core.errors import Conflict, DeploymentRunning, NotFound


class Lifecycle(enum.StrEnum):
    ACTIVE = "active"
    DELETING = "deleting"
    DELETED = "deleted"
    """Kept so instance numbering and history continue if the name is used again."""


class DeploymentStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class AppRecord:
    id: int
    project: str
    name: str
    version: int
    desired_instances: int
    lifecycle: Lifecycle
    spec: AppSpec
    template_hash: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class VersionRecord:
    version: int
    spec: AppSpec
    template_hash: str
    created_at: float
    created_by: str
    change: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "change": self.change,
            "spec": self.spec.to_json(),
        }


@dataclass(frozen=True)
class Deployment:
    id: int
    app_id: int
    project: str
    app: str
    kind: ChangeKind
    from_version: int | None
    to_version: int
    target_instances: int
    status: DeploymentStatus
    reason: str
    created_at: float
    finished_at: float | None

    def to_json(self, *, healthy: int | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "app": self.app,
            "kind": self.kind.value,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "target_instances": self.target_instances,
            "status": self.status.value,
            "reason": self.reason,
            "healthy": healthy,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class Change:
    """What a write did: the app as it is now and the deployment that carries the change out."""

    app: AppRecord
    deployment: Deployment | None
    created: bool = False


_APP_COLUMNS = (
    db.apps.c.id,
    db.apps.c.project,
    db.apps.c.name,
    db.apps.c.current_version,
    db.apps.c.desired_instances,
    db.apps.c.lifecycle,
    db.apps.c.created_at,
    db.apps.c.updated_at,
    db.app_versions.c.spec,
    db.app_versions.c.template_hash,
)
_APP_JOIN = db.apps.join(
    db.app_versions,
    sa.and_(
        db.app_versions.c.app_id == db.apps.c.id,
        db.app_versions.c.version == db.apps.c.current_version,
    ),
)
_DEPLOYMENT_COLUMNS = (*db.deployments.c, db.apps.c.project, db.apps.c.name)
_DEPLOYMENT_JOIN = db.deployments.join(db.apps, db.apps.c.id == db.deployments.c.app_id)


def _app(row: Any) -> AppRecord:
    """An app from a row of `_APP_COLUMNS` over `_APP_JOIN`."""
    return AppRecord(
        id=row.id,
        project=row.project,
        name=row.name,
        version=row.current_version,
        desired_instances=row.desired_instances,
        lifecycle=Lifecycle(row.lifecycle),
        spec=AppSpec.model_validate(row.spec),
        template_hash=row.template_hash,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _deployment(row: Any) -> Deployment:
    """A deployment from a row of `_DEPLOYMENT_COLUMNS` over `_DEPLOYMENT_JOIN`."""
    return Deployment(
        id=row.id,
        app_id=row.app_id,
        project=row.project,
        app=row.name,
        kind=ChangeKind(row.kind),
        from_version=row.from_version,
        to_version=row.to_version,
        target_instances=row.target_instances,
        status=DeploymentStatus(row.status),
        reason=row.reason,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


class AppStore:
    """Reads and writes apps, versions, projects and deployments."""

    def __init__(self, engine: AsyncEngine, *, service_ports: range = range(10000, 11000)) -> None:
        self._engine = engine
        self._service_port_range = service_ports

    # projects ---------------------------------------------------------------------------

    async def ensure_project(self, name: str, description: str = "") -> None:
        async with self._engine.begin() as conn:
            if await self._project_exists(conn, name):
                return
            await conn.execute(db.projects.insert().values(name=name, description=description, created_at=time.time()))

    async def create_project(self, name: str, description: str) -> dict[str, Any]:
        async with self._engine.begin() as conn:
            if await self._project_exists(conn, name):
                raise Conflict(f"project '{name}' exists already")
            row = {"name": name, "description": description, "created_at": time.time()}
            await conn.execute(db.projects.insert().values(**row))
            return row

    async def list_projects(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(db.projects).order_by(db.projects.c.name))
            return [dict(r._mapping) for r in rows]

    @staticmethod
    async def _project_exists(conn: AsyncConnection, name: str) -> bool:
        found = await conn.scalar(sa.select(db.projects.c.name).where(db.projects.c.name == name))
        return found is not None

    # apps -------------------------------------------------------------------------------

    @staticmethod
    async def _active_apps(conn: AsyncConnection) -> list[AppRecord]:
        rows = await conn.execute(
            sa.select(*_APP_COLUMNS).select_from(_APP_JOIN).where(db.apps.c.lifecycle != Lifecycle.DELETED.value)
        )
        return [_app(r) for r in rows]

    async def list_apps(self, project: str | None = None) -> list[AppRecord]:
        query = sa.select(*_APP_COLUMNS).select_from(_APP_JOIN).where(db.apps.c.lifecycle != Lifecycle.DELETED.value)
        if project is not None:
            query = query.where(db.apps.c.project == project)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(db.apps.c.project, db.apps.c.name))
            return [_app(r) for r in rows]

    async def app_by_id(self, app_id: int) -> AppRecord:
        async with self._engine.connect() as conn:
            return await self._require(conn, app_id)

    async def get_app(self, project: str, name: str) -> AppRecord:
        """The app, unless it is deleted or never existed."""
        async with self._engine.connect() as conn:
            app = await self._find(conn, project, name)
        if app is None or app.lifecycle is Lifecycle.DELETED:
            raise NotFound(f"app '{name}' not found in project '{project}'")
        return app

    @staticmethod
    async def _select_app(conn: AsyncConnection, *where: sa.ColumnElement[bool]) -> AppRecord | None:
        row = (await conn.execute(sa.select(*_APP_COLUMNS).select_from(_APP_JOIN).where(*where))).first()
        return None if row is None else _app(row)

    async def _find(self, conn: AsyncConnection, project: str, name: str) -> AppRecord | None:
        return await self._select_app(conn, db.apps.c.project == project, db.apps.c.name == name)

    async def apply_spec(self, spec: AppSpec, *, by: str, force: bool = False) -> Change:
        """Create the app or store a new version of it. An identical spec stores nothing.
        While a deployment of the app runs, a change is refused (409) unless `force`."""
        async with self._engine.begin() as conn:
            if not await self._project_exists(conn, spec.project):
                raise NotFound(f"project '{spec.project}' not found")
            app = await self._find(conn, spec.project, spec.name)
            if app is None or app.lifecycle is Lifecycle.DELETED:
                kind = ChangeKind.CREATE
            elif app.lifecycle is Lifecycle.DELETING:
                raise Conflict(f"app '{spec.name}' is being deleted; deploy it again once it is gone")
            elif app.spec == spec:
                return Change(app=app, deployment=None)
            elif app.spec.model_copy(update={"instances": spec.instances}) == spec:
                kind = ChangeKind.SCALE
            else:
                kind = ChangeKind.UPDATE
            await self._check_domains(conn, spec)
            return await self._store_version(conn, app, spec, kind=kind, by=by, force=force)

    async def scale(self, project: str, name: str, instances: int, *, by: str, force: bool = False) -> Change:
        async with self._engine.begin() as conn:
            app = await self._active(conn, project, name)
            if app.desired_instances == instances:
                return Change(app=app, deployment=None)
            spec = app.spec.model_copy(update={"instances": instances})
            return await self._store_version(conn, app, spec, kind=ChangeKind.SCALE, by=by, force=force)

    async def restart(self, project: str, name: str, *, by: str, force: bool = False) -> Change:
        async with self._engine.begin() as conn:
            app = await self._active(conn, project, name)
            return await self._store_version(conn, app, app.spec, kind=ChangeKind.RESTART, by=by, force=force)

    async def rollback(
        self, project: str, name: str, *, to_version: int | None, by: str, reason: str = "", force: bool = False
    ) -> Change:
        """Bring back an earlier version's template (by default the newest one that differs from
        the current), keeping the current number of instances, as `kubectl rollout undo` does.
        Its instances match the old template, so the ones still serving are kept."""
        async with self._engine.begin() as conn:
            app = await self._active(conn, project, name)
            versions = await self._versions(conn, app.id)
            if to_version is None:
                target = next((v for v in versions if v.template_hash != app.template_hash), None)
                if target is None:
                    raise Conflict(f"app '{name}' has no earlier version to roll back to")
            else:
                target = next((v for v in versions if v.version == to_version), None)
                if target is None:
                    raise NotFound(f"app '{name}' has no version {to_version}")
            spec = target.spec.model_copy(update={"instances": app.desired_instances})
            return await self._store_version(
                conn,
                app,
                spec,
                kind=ChangeKind.ROLLBACK,
                by=by,
                force=force,
                template_hash=target.template_hash,
                change=f"rollback to version {target.version}" + (f": {reason}" if reason else ""),
            )

    async def _allocate_service_ports(self, conn: AsyncConnection, app_id: int, spec: AppSpec) -> None:
        """Each TCP port gets a service port on the load balancer, kept across versions
        (Marathon's `port: 0`); ports the spec no longer has are given back."""
        wanted = {p.name for p in spec.ports if p.protocol is Protocol.TCP}
        await conn.execute(
            db.service_ports.delete().where(
                db.service_ports.c.app_id == app_id, db.service_ports.c.port_name.not_in(wanted)
            )
        )
        have = await self._service_ports(conn, app_id)
        missing = sorted(wanted - have.keys())
        if not missing:
            return
        taken = set((await conn.scalars(sa.select(db.service_ports.c.port))).all())
        free = (p for p in self._service_port_range if p not in taken)
        for name in missing:
            port = next(free, None)
            if port is None:
                raise Conflict(
                    f"no free service port left in {self._service_port_range.start}-{self._service_port_range.stop - 1}"
                )
            await conn.execute(db.service_ports.insert().values(port=port, app_id=app_id, port_name=name))

    @staticmethod
    async def _service_ports(conn: AsyncConnection, app_id: int) -> dict[str, int]:
        rows = await conn.execute(
            sa.select(db.service_ports.c.port_name, db.service_ports.c.port).where(db.service_ports.c.app_id == app_id)
        )
        return {r.port_name: r.port for r in rows}

    async def service_ports(self, app_id: int) -> dict[str, int]:
        """TCP port name → its service port on the load balancer."""
        async with self._engine.connect() as conn:
            return await self._service_ports(conn, app_id)

    async def _check_domains(self, conn: AsyncConnection, spec: AppSpec) -> None:
        """A host name routes to one app only: refuse one another app already uses (409)."""
        if not spec.domains:
            return
        for other in await self._active_apps(conn):
            if (other.project, other.name) == (spec.project, spec.name):
                continue
            taken = sorted(set(spec.domains) & set(other.spec.domains))
            if taken:
                raise Conflict(f"domain {taken[0]} is used by app '{other.name}' in project '{other.project}'")

    async def delete(self, project: str, name: str, *, by: str) -> Change:
        """Mark the app for deletion; the reconciler stops its instances, then `finish_delete`."""
        async with self._engine.begin() as conn:
            app = await self._active(conn, project, name)
            await conn.execute(
                db.apps.update()
                .where(db.apps.c.id == app.id)
                .values(lifecycle=Lifecycle.DELETING.value, desired_instances=0, updated_at=time.time())
            )
            deployment = await self._start_deployment(
                conn, app, kind=ChangeKind.DELETE, to_version=app.version, target=0
            )
            return Change(app=await self._require(conn, app.id), deployment=deployment)

    async def finish_delete(self, app_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(db.service_ports.delete().where(db.service_ports.c.app_id == app_id))
            await conn.execute(
                db.apps.update()
                .where(db.apps.c.id == app_id, db.apps.c.lifecycle == Lifecycle.DELETING.value)
                .values(lifecycle=Lifecycle.DELETED.value, updated_at=time.time())
            )

    async def _active(self, conn: AsyncConnection, project: str, name: str) -> AppRecord:
        app = await self._find(conn, project, name)
        if app is None or app.lifecycle is Lifecycle.DELETED:
            raise NotFound(f"app '{name}' not found in project '{project}'")
        if app.lifecycle is Lifecycle.DELETING:
            raise Conflict(f"app '{name}' is being deleted")
        return app

    async def _require(self, conn: AsyncConnection, app_id: int) -> AppRecord:
        app = await self._select_app(conn, db.apps.c.id == app_id)
        if app is None:
            raise NotFound(f"app {app_id} not found")
        return app

    async def _store_version(
        self,
        conn: AsyncConnection,
        app: AppRecord | None,
        spec: AppSpec,
        *,
        kind: ChangeKind,
        by: str,
        force: bool = False,
        template_hash: str | None = None,
        change: str | None = None,
    ) -> Change:
        now = time.time()
        if app is not None and app.lifecycle is Lifecycle.ACTIVE and not force:
            running = await self._running_deployment(conn, app.id)
            if running is not None:
                raise DeploymentRunning(
                    f"deployment {running.id} ({running.kind.value} to version {running.to_version}) of app "
                    f"'{app.name}' is still running; wait for it, or force this change to replace it"
                )
        if app is None:
            result = await conn.execute(
                db.apps.insert().values(
                    project=spec.project,
                    name=spec.name,
                    current_version=1,
                    desired_instances=spec.instances,
                    lifecycle=Lifecycle.ACTIVE.value,
                    created_at=now,
                    updated_at=now,
                )
            )
            app_id = db.inserted_id(result)
            version = 1
        else:
            app_id = app.id
            version = (
                int(
                    await conn.scalar(
                        sa.select(sa.func.max(db.app_versions.c.version)).where(db.app_versions.c.app_id == app_id)
                    )
                    or 0
                )
                + 1
            )
        previous = app if app is not None and app.lifecycle is Lifecycle.ACTIVE else None
        template_hash = template_hash or compute_template_hash(
            spec,
            previous_spec=previous.spec if previous else None,
            previous_hash=previous.template_hash if previous else None,
            kind=kind,
            version=version,
        )
        await conn.execute(
            db.app_versions.insert().values(
                app_id=app_id,
                version=version,
                spec=spec.to_json(),
                template_hash=template_hash,
                created_at=now,
                created_by=by,
                change=change or describe_change(previous.spec if previous else None, spec, kind),
            )
        )
        await conn.execute(
            db.apps.update()
            .where(db.apps.c.id == app_id)
            .values(
                current_version=version,
                desired_instances=spec.instances,
                lifecycle=Lifecycle.ACTIVE.value,
                updated_at=now,
            )
        )
        await self._allocate_service_ports(conn, app_id, spec)
        stored = await self._require(conn, app_id)
        deployment = await self._start_deployment(
            conn,
            stored,
            kind=kind,
            to_version=version,
            target=spec.instances,
            from_version=previous.version if previous else None,
        )
        return Change(app=stored, deployment=deployment, created=kind is ChangeKind.CREATE)

    async def _start_deployment(
        self,
        conn: AsyncConnection,
        app: AppRecord,
        *,
        kind: ChangeKind,
        to_version: int,
        target: int,
        from_version: int | None = None,
    ) -> Deployment:
        """A new deployment supersedes whatever deployment of the app was still running."""
        now = time.time()
        await conn.execute(
            db.deployments.update()
            .where(
                db.deployments.c.app_id == app.id,
                db.deployments.c.status == DeploymentStatus.RUNNING.value,
            )
            .values(
                status=DeploymentStatus.SUPERSEDED.value,
                finished_at=now,
                reason="a newer deployment replaced it",
            )
        )
        result = await conn.execute(
            db.deployments.insert().values(
                app_id=app.id,
                kind=kind.value,
                from_version=from_version if kind is not ChangeKind.DELETE else app.version,
                to_version=to_version,
                target_instances=target,
                status=DeploymentStatus.RUNNING.value,
                created_at=now,
            )
        )
        return await self._deployment(conn, db.inserted_id(result))

    # versions and deployments -------------------------------------------------------------

    async def list_versions(self, app_id: int) -> list[VersionRecord]:
        async with self._engine.connect() as conn:
            return await self._versions(conn, app_id)

    @staticmethod
    async def _versions(conn: AsyncConnection, app_id: int) -> list[VersionRecord]:
        """Newest first."""
        rows = await conn.execute(
            sa.select(db.app_versions)
            .where(db.app_versions.c.app_id == app_id)
            .order_by(db.app_versions.c.version.desc())
        )
        return [
            VersionRecord(
                version=r.version,
                spec=AppSpec.model_validate(r.spec),
                template_hash=r.template_hash,
                created_at=r.created_at,
                created_by=r.created_by,
                change=r.change,
            )
            for r in rows
        ]

    async def list_deployments(self, app_id: int, *, limit: int = 50) -> list[Deployment]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(*_DEPLOYMENT_COLUMNS)
                .select_from(_DEPLOYMENT_JOIN)
                .where(db.deployments.c.app_id == app_id)
                .order_by(db.deployments.c.id.desc())
                .limit(limit)
            )
            return [_deployment(r) for r in rows]

    async def running_deployment(self, app_id: int) -> Deployment | None:
        async with self._engine.connect() as conn:
            return await self._running_deployment(conn, app_id)

    @staticmethod
    async def _running_deployment(conn: AsyncConnection, app_id: int) -> Deployment | None:
        row = (
            await conn.execute(
                sa.select(*_DEPLOYMENT_COLUMNS)
                .select_from(_DEPLOYMENT_JOIN)
                .where(
                    db.deployments.c.app_id == app_id,
                    db.deployments.c.status == DeploymentStatus.RUNNING.value,
                )
            )
        ).first()
        return None if row is None else _deployment(row)

    async def get_deployment(self, deployment_id: int) -> Deployment:
        async with self._engine.connect() as conn:
            return await self._deployment(conn, deployment_id)

    @staticmethod
    async def _deployment(conn: AsyncConnection, deployment_id: int) -> Deployment:
        row = (
            await conn.execute(
                sa.select(*_DEPLOYMENT_COLUMNS)
                .select_from(_DEPLOYMENT_JOIN)
                .where(db.deployments.c.id == deployment_id)
            )
        ).first()
        if row is None:
            raise NotFound(f"deployment {deployment_id} not found")
        return _deployment(row)

    async def finish_deployment(self, deployment_id: int, status: DeploymentStatus, reason: str = "") -> bool:
        """Record the outcome; False when it was no longer running (a newer one superseded it)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                db.deployments.update()
                .where(
                    db.deployments.c.id == deployment_id,
                    db.deployments.c.status == DeploymentStatus.RUNNING.value,
                )
                .values(status=status.value, reason=reason, finished_at=time.time())
            )
            return bool(result.rowcount)
