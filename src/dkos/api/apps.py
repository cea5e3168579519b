"""Routes for projects, apps, versions, instances and deployments (`/v1`).

Every write stores its change first (one transaction), then emits events and nudges the
reconciler, which does the engine work; a request never waits for containers.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from dkos.api import alerting
from dkos.api.services import Services
from dkos.apps import announce
from dkos.apps import spec as specs
from dkos.apps.store import AppRecord, Change, Deployment, DeploymentStatus, Lifecycle
from dkos.iam.tokens import Principal
from dkos.orchestration import progress
from dkos.orchestration.instances import ACTIVE, LIVE, Instance, InstanceState

router = APIRouter(prefix="/v1")

ProjectQuery = Annotated[str, Query(pattern=specs.DNS_LABEL, description="The app's project.")]


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def principal(request: Request) -> Principal:
    return request.scope["state"]["principal"]  # type: ignore[no-any-return]


Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(principal)]


class ProjectIn(BaseModel):
    name: str = Field(pattern=specs.DNS_LABEL)
    description: str = Field("", max_length=1000)


class ScaleIn(BaseModel):
    instances: int = Field(ge=0, le=10_000)


class RollbackIn(BaseModel):
    to_version: int | None = Field(
        None, ge=1, description="The version to bring back; default the newest one with a different template."
    )


ForceQuery = Annotated[
    bool, Query(description="Replace a deployment of the app that is still running instead of answering 409.")
]


_COUNTED = (
    InstanceState.PENDING,
    InstanceState.STARTING,
    InstanceState.HEALTHY,
    InstanceState.UNHEALTHY,
    InstanceState.STOPPING,
)


def _first_port(app: AppRecord) -> int | None:
    return app.spec.ports[0].container_port if app.spec.ports else None


def instance_json(app: AppRecord, instance: Instance) -> dict[str, Any]:
    return instance.to_json(project=app.project, app=app.name, port=_first_port(app))


def deployment_json(deployment: Deployment | None, app: AppRecord, instances: list[Instance]) -> dict[str, Any] | None:
    if deployment is None:
        return None
    return deployment.to_json(healthy=progress.healthy_count(instances, app.template_hash))


def _state(app: AppRecord, live: list[Instance], deployment: Deployment | None) -> str:
    if app.lifecycle is Lifecycle.DELETING:
        return "deleting"
    if deployment is not None and deployment.status is DeploymentStatus.RUNNING:
        return "deploying"
    healthy = progress.healthy_count(live, app.template_hash)
    return "running" if healthy == app.desired_instances and len(live) == healthy else "degraded"


async def app_json(svc: Services, app: AppRecord, *, detail: bool) -> dict[str, Any]:
    instances = await svc.instances.for_app(app.id, states=ACTIVE)
    deployments = await svc.apps.list_deployments(app.id, limit=1)
    last = deployments[0] if deployments else None
    counts = Counter(i.state.value for i in instances)
    body: dict[str, Any] = {
        "name": app.name,
        "project": app.project,
        "version": app.version,
        "image": app.spec.image,
        "desired_instances": app.desired_instances,
        "counts": {state.value: counts.get(state.value, 0) for state in _COUNTED},
        "state": _state(app, [i for i in instances if i.state in LIVE], last),
        "last_deployment": deployment_json(last, app, instances),
        "urls": svc.router.urls(app, await svc.apps.service_ports(app.id)),
        "created_at": app.created_at,
        "updated_at": app.updated_at,
    }
    if detail:
        body["spec"] = app.spec.to_json()
        body["instances"] = [instance_json(app, i) for i in instances]
        body.update(await alerting.app_alerting_json(svc, app))
    return body


async def _change_json(svc: Services, change: Change, caller: Principal) -> dict[str, Any]:
    await announce.announce(
        change, f"version {change.app.version} by {caller.name}", bus=svc.bus, nudge=svc.reconciler.nudge
    )
    instances = await svc.instances.for_app(change.app.id, states=ACTIVE)
    return {
        "app": await app_json(svc, change.app, detail=True),
        "deployment": deployment_json(change.deployment, change.app, instances),
    }


# projects -------------------------------------------------------------------------------


@router.get("/projects", summary="List projects")
async def list_projects(svc: Svc) -> dict[str, Any]:
    return {"projects": await svc.apps.list_projects()}


@router.post("/projects", status_code=201, summary="Create a project")
async def create_project(body: ProjectIn, svc: Svc) -> dict[str, Any]:
    return await svc.apps.create_project(body.name, body.description)


# apps -----------------------------------------------------------------------------------


@router.post(
    "/apps",
    summary="Create or update an app",
    description="The body is an app spec as JSON, or YAML with `Content-Type: application/yaml`. "
    "201 when the app is new, 200 when updated; an identical spec stores nothing (`deployment` null).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": specs.AppSpec.model_json_schema()},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def apply_app(request: Request, svc: Svc, caller: Caller, force: ForceQuery = False) -> JSONResponse:
    spec = specs.parse(await request.body())
    await alerting.check_declared(svc, spec)
    change = await svc.apps.apply_spec(spec, by=caller.name, force=force)
    await alerting.sync_declared(svc, change.app)
    return JSONResponse(await _change_json(svc, change, caller), status_code=201 if change.created else 200)


@router.get("/apps", summary="List apps")
async def list_apps(svc: Svc, project: Annotated[str | None, Query(pattern=specs.DNS_LABEL)] = None) -> dict[str, Any]:
    return {"apps": [await app_json(svc, a, detail=False) for a in await svc.apps.list_apps(project)]}


@router.get("/apps/{app}", summary="Show an app with its instances")
async def show_app(app: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    return await app_json(svc, await svc.apps.get_app(project, app), detail=True)


@router.post("/apps/{app}/scale", summary="Change the number of instances")
async def scale_app(
    app: str, body: ScaleIn, svc: Svc, caller: Caller, project: ProjectQuery = "default", force: ForceQuery = False
) -> dict[str, Any]:
    change = await svc.apps.scale(project, app, body.instances, by=caller.name, force=force)
    return await _change_json(svc, change, caller)


@router.post("/apps/{app}/restart", summary="Replace every instance, one at a time")
async def restart_app(
    app: str, svc: Svc, caller: Caller, project: ProjectQuery = "default", force: ForceQuery = False
) -> dict[str, Any]:
    change = await svc.apps.restart(project, app, by=caller.name, force=force)
    return await _change_json(svc, change, caller)


@router.post("/apps/{app}/rollback", summary="Bring back an earlier version, rolling like any deploy")
async def rollback_app(
    app: str,
    svc: Svc,
    caller: Caller,
    body: RollbackIn | None = None,
    project: ProjectQuery = "default",
    force: ForceQuery = False,
) -> dict[str, Any]:
    to_version = body.to_version if body else None
    change = await svc.apps.rollback(project, app, to_version=to_version, by=caller.name, force=force)
    return await _change_json(svc, change, caller)


@router.delete("/apps/{app}", status_code=202, summary="Stop every instance gracefully, then forget the app")
async def delete_app(app: str, svc: Svc, caller: Caller, project: ProjectQuery = "default") -> dict[str, Any]:
    change = await svc.apps.delete(project, app, by=caller.name)
    await alerting.forget_app(svc, change.app)
    return await _change_json(svc, change, caller)


@router.get("/apps/{app}/versions", summary="List the app's versions, newest first")
async def list_versions(app: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    record = await svc.apps.get_app(project, app)
    return {"versions": [v.to_json() for v in await svc.apps.list_versions(record.id)]}


@router.get("/apps/{app}/instances", summary="List the app's instances")
async def list_instances(
    app: str,
    svc: Svc,
    project: ProjectQuery = "default",
    all: Annotated[bool, Query(description="Include stopped and failed instances.")] = False,
) -> dict[str, Any]:
    record = await svc.apps.get_app(project, app)
    instances = await svc.instances.for_app(record.id, states=None if all else ACTIVE)
    return {"instances": [instance_json(record, i) for i in instances]}


@router.get("/apps/{app}/deployments", summary="List the app's deployments, newest first")
async def list_deployments(app: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    record = await svc.apps.get_app(project, app)
    instances = await svc.instances.for_app(record.id, states=ACTIVE)
    return {"deployments": [deployment_json(d, record, instances) for d in await svc.apps.list_deployments(record.id)]}


@router.get("/deployments/{deployment_id}", summary="Show a deployment")
async def show_deployment(deployment_id: int, svc: Svc) -> dict[str, Any] | None:
    deployment = await svc.apps.get_deployment(deployment_id)
    record = await svc.apps.app_by_id(deployment.app_id)
    instances = await svc.instances.for_app(record.id, states=ACTIVE)
    steps = await svc.bus.for_deployment(deployment_id)
    return {
        **(deployment_json(deployment, record, instances) or {}),
        "steps": [{"time": e.time, "type": e.type, "instance": e.instance, "message": e.message} for e in steps],
    }
