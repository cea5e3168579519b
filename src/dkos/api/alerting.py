"""Routes for alarms, channels, notifications, scaling policies and executions (`/v1`).

Also the two hooks the app routes call so that a deploy carries its alarms and policies:
`check_declared` before the spec is stored (a bad alarm refuses the deploy, nothing
stored) and `sync_declared` after (the app's declared alarms — `alarms:` on metrics,
`log_alarms:` on log lines — and policies are created, changed or removed to match the
spec; alarms made through the API are never touched).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request

from dkos.alerts.engine import Alarms
from dkos.alerts.spec import AlarmIn, ChannelIn, parse_body
from dkos.alerts.store import AlarmRecord, DeliveryStatus, Origin
from dkos.api.services import Services
from dkos.apps import spec as specs
from dkos.apps.store import AppRecord
from dkos.autoscale.engine import Autoscaler
from dkos.autoscale.spec import PolicyIn
from dkos.core.errors import BadQuery, FieldProblem, InvalidInput, NotFound
from dkos.logs import keyword_spec, keywords

router = APIRouter(prefix="/v1")

ProjectQuery = Annotated[str, Query(pattern=specs.DNS_LABEL, description="The project.")]
AppQuery = Annotated[str, Query(pattern=specs.DNS_LABEL, description="The app.")]
JsonBody = Annotated[dict[str, Any], Body()]


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


Svc = Annotated[Services, Depends(_services)]


def _alarms(svc: Services) -> Alarms:
    assert svc.alarms is not None, "the server runs the alarm service"
    return svc.alarms


def _autoscaler(svc: Services) -> Autoscaler:
    assert svc.autoscaler is not None, "the server runs the autoscaler"
    return svc.autoscaler


# alarms -------------------------------------------------------------------------------------


@router.post("/alarms", status_code=201, summary="Create an alarm on an app, or on every app of a project")
async def create_alarm(body: JsonBody, svc: Svc) -> dict[str, Any]:
    alarm = await _alarms(svc).create(parse_body(AlarmIn, body))
    return alarm.to_json()


@router.get("/alarms", summary="List alarms with their states")
async def list_alarms(
    svc: Svc, project: ProjectQuery = "default", app: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    return {"alarms": [a.to_json() for a in await _alarms(svc).store.list_alarms(project, app)]}


@router.get("/alarms/{name}", summary="Show an alarm, its last transitions and notifications")
async def show_alarm(name: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    store = _alarms(svc).store
    alarm = await store.get_alarm(project, name)
    return {
        **alarm.to_json(),
        "history": await store.history(alarm.id, limit=20),
        "notifications": await store.list_notifications(project=project, alarm=name, limit=20),
    }


@router.delete("/alarms/{name}", summary="Delete an alarm")
async def delete_alarm(name: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    await _alarms(svc).store.delete_alarm(project, name)
    return {"deleted": name, "project": project}


@router.get("/alarms/{name}/history", summary="An alarm's state transitions, newest first (kept 14 days)")
async def alarm_history(
    name: str, svc: Svc, project: ProjectQuery = "default", limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> dict[str, Any]:
    store = _alarms(svc).store
    alarm = await store.get_alarm(project, name)
    return {"history": await store.history(alarm.id, limit=limit)}


# channels -----------------------------------------------------------------------------------


def _channel_json(channel: dict[str, Any], undelivered: dict[tuple[str, str], int]) -> dict[str, Any]:
    return {
        "name": channel["name"],
        "project": channel["project"],
        "type": channel["type"],
        "url": channel["url"],
        "send_resolved": bool(channel["send_resolved"]),
        "undelivered": undelivered.get((channel["project"], channel["name"]), 0),
        "created_at": channel["created_at"],
    }


@router.post("/channels", status_code=201, summary="Create a notification channel (webhook or chat)")
async def create_channel(body: JsonBody, svc: Svc) -> dict[str, Any]:
    channel = await _alarms(svc).create_channel(parse_body(ChannelIn, body))
    return _channel_json(channel, {})


@router.get("/channels", summary="List channels, with how many notifications never got through")
async def list_channels(svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    store = _alarms(svc).store
    undelivered = await store.undelivered_counts()
    return {"channels": [_channel_json(c, undelivered) for c in await store.list_channels(project)]}


@router.delete("/channels/{name}", summary="Delete a channel")
async def delete_channel(name: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    await _alarms(svc).store.delete_channel(project, name)
    return {"deleted": name, "project": project}


@router.post("/channels/{name}/test", status_code=202, summary="Send a test notification to a channel")
async def test_channel(name: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    return {"notification": await _alarms(svc).test_channel(project, name)}


@router.get("/notifications", summary="Notifications with every delivery attempt, newest first")
async def list_notifications(
    svc: Svc,
    project: ProjectQuery = "default",
    channel: Annotated[str | None, Query()] = None,
    alarm: Annotated[str | None, Query()] = None,
    status: Annotated[list[DeliveryStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    found = await _alarms(svc).store.list_notifications(
        project=project, channel=channel, alarm=alarm, statuses=[s.value for s in status or []], limit=limit
    )
    return {"notifications": found}


# policies -----------------------------------------------------------------------------------


@router.post("/policies", status_code=201, summary="Create a scaling policy for an app")
async def create_policy(body: JsonBody, svc: Svc) -> dict[str, Any]:
    policy = await _autoscaler(svc).create(parse_body(PolicyIn, body))
    return policy.to_json()


@router.get("/policies", summary="List scaling policies")
async def list_policies(
    svc: Svc, project: ProjectQuery = "default", app: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    return {"policies": [p.to_json() for p in await _autoscaler(svc).store.list_policies(project, app)]}


@router.get("/policies/{name}", summary="Show a scaling policy and its last executions")
async def show_policy(name: str, svc: Svc, app: AppQuery, project: ProjectQuery = "default") -> dict[str, Any]:
    store = _autoscaler(svc).store
    policy = await store.get_policy(project, app, name)
    return {**policy.to_json(), "executions": await store.executions(project=project, app=app, policy=name, limit=20)}


@router.delete("/policies/{name}", summary="Delete a scaling policy")
async def delete_policy(name: str, svc: Svc, app: AppQuery, project: ProjectQuery = "default") -> dict[str, Any]:
    await _autoscaler(svc).store.delete_policy(project, app, name)
    return {"deleted": name, "project": project, "app": app}


@router.get("/policies/{name}/executions", summary="A policy's executions, newest first")
async def policy_executions(name: str, svc: Svc, app: AppQuery, project: ProjectQuery = "default") -> dict[str, Any]:
    store = _autoscaler(svc).store
    await store.get_policy(project, app, name)
    return {"executions": await store.executions(project=project, app=app, policy=name, limit=200)}


@router.get("/executions", summary="Scaling executions, newest first")
async def list_executions(
    svc: Svc, project: ProjectQuery = "default", app: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    return {"executions": await _autoscaler(svc).store.executions(project=project, app=app, limit=200)}


# the app spec's alarms and policies ---------------------------------------------------------


async def check_declared(svc: Services, spec: specs.AppSpec) -> None:
    """Refuse (422/404) a spec whose alarms or policies cannot be stored, before the spec is."""
    if svc.alarms is None or svc.autoscaler is None:
        return
    settings = svc.settings
    problems = []
    for i, alarm in enumerate(spec.alarms):
        if alarm.period < settings.alarm_min_period:
            problems.append(FieldProblem(f"alarms.{i}.period", f"must be ≥ {settings.alarm_min_period:g}"))
    if spec.log_alarms and svc.logs is None:
        problems.append(FieldProblem("log_alarms", "this server captures no logs"))
    for i, log_alarm in enumerate(spec.log_alarms):
        if log_alarm.window < settings.alarm_min_period:
            problems.append(FieldProblem(f"log_alarms.{i}.window", f"must be ≥ {settings.alarm_min_period:g}"))
        if svc.logs is not None:
            try:
                await svc.logs.check_search(log_alarm.query)
            except BadQuery as exc:
                problems.append(FieldProblem(f"log_alarms.{i}.query", exc.message))
    for i, policy in enumerate(spec.scaling_policies):
        if policy.max > settings.autoscale_max_instances:
            problems.append(FieldProblem(f"scaling_policies.{i}.max", f"must be ≤ {settings.autoscale_max_instances}"))
    problems += await _names_taken(svc.alarms, spec)
    if problems:
        raise InvalidInput(problems)
    declared = spec.alarm_names()
    for policy in spec.scaling_policies:
        for name in policy.alarms:
            if name not in declared:
                await svc.alarms.store.get_alarm(spec.project, name)
    for _, declared_alarm in spec.declared_alarms():
        for channel in declared_alarm.channels:
            await svc.alarms.store.get_channel(spec.project, channel)


async def _names_taken(alarms: Alarms, spec: specs.AppSpec) -> list[FieldProblem]:
    """A declared alarm may only replace one this app's spec declared: an alarm made through the
    API, or declared by another app, keeps its name (else a later deploy would delete it)."""
    problems = []
    for where, alarm in spec.declared_alarms():
        try:
            stored = await alarms.store.get_alarm(spec.project, alarm.name)
        except NotFound:
            continue
        if stored.origin is Origin.SPEC and stored.app == spec.name:
            continue
        owner = f"declared by app '{stored.app}'" if stored.origin is Origin.SPEC else "made through the API"
        rule = f"alarm '{alarm.name}' exists already in project '{spec.project}' ({owner})"
        problems.append(FieldProblem(f"{where}.name", rule))
    return problems


async def sync_declared(svc: Services, app: AppRecord) -> None:
    """Make the app's declared (origin `spec`) alarms and policies match its spec: each declared
    alarm is stored through its source's own create (which replaces a declared one, keeping its
    state), then the app's declared alarms of any source that the spec no longer names go."""
    if svc.alarms is None or svc.autoscaler is None:
        return
    spec = app.spec
    scope = {"project": app.project, "app": app.name}
    for alarm in spec.alarms:
        await svc.alarms.create(AlarmIn.model_validate({**alarm.model_dump(), **scope}), origin=Origin.SPEC)
    if svc.logs is not None:  # else check_declared refused any log_alarms
        for log_alarm in spec.log_alarms:
            await keywords.create(
                svc.alarms,
                svc.logs,
                svc.apps,
                keyword_spec.LogAlarmIn.model_validate({**log_alarm.model_dump(), **scope}),
                min_period=svc.settings.alarm_min_period,
                origin=Origin.SPEC,
            )
    wanted = spec.alarm_names()
    for stored in await svc.alarms.store.list_alarms(app.project):
        if stored.origin is Origin.SPEC and stored.app == app.name and stored.name not in wanted:
            await svc.alarms.store.delete_alarm(app.project, stored.name)
    for policy in spec.scaling_policies:
        body_p = PolicyIn.model_validate({**policy.model_dump(), **scope})
        await svc.autoscaler.create(body_p, origin=Origin.SPEC)
    names = {p.name for p in spec.scaling_policies}
    for record in await svc.autoscaler.store.list_policies(app.project, app.name):
        if record.origin is Origin.SPEC and record.name not in names:
            await svc.autoscaler.store.delete_policy(app.project, app.name, record.name)


async def forget_app(svc: Services, app: AppRecord) -> None:
    """A deleted app's alarms and policies go with it (a new app of the same name starts clean)."""
    if svc.alarms is None or svc.autoscaler is None:
        return
    for alarm in await svc.alarms.store.list_alarms(app.project):
        if alarm.app == app.name:
            await svc.alarms.store.delete_alarm(app.project, alarm.name)
    for record in await svc.autoscaler.store.list_policies(app.project, app.name):
        await svc.autoscaler.store.delete_policy(app.project, app.name, record.name)


async def app_alerting_json(svc: Services, app: AppRecord) -> dict[str, Any]:
    """What `GET /v1/apps/{app}` adds: the app's alarms' states and its last scaling executions."""
    if svc.alarms is None or svc.autoscaler is None:
        return {}
    alarms: list[AlarmRecord] = await svc.alarms.store.list_alarms(app.project, app.name)
    return {
        "alarms": [
            {"name": a.name, "state": a.status.state.value, "value": a.status.value, "since": a.status.since}
            for a in alarms
        ],
        "scaling_executions": await svc.autoscaler.store.executions(project=app.project, app=app.name, limit=5),
    }
