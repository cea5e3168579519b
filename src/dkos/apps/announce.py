"""Telling the rest of dkos about a stored app change: what changed, the deployment it started,
and a nudge so the reconciler acts on it now rather than at its next resync. The API and the
autoscaler both change apps, and both announce a change this one way."""

from __future__ import annotations

from collections.abc import Callable

from dkos.apps.store import Change
from dkos.apps.versions import ChangeKind
from dkos.core.events import EventBus, EventType


async def announce(change: Change, summary: str, *, bus: EventBus, nudge: Callable[[int], None]) -> None:
    """`summary` says who changed what (the app event's text); nothing is said of a change that
    started no deployment."""
    app, deployment = change.app, change.deployment
    if deployment is None:
        return
    if deployment.kind is not ChangeKind.DELETE:
        await bus.emit(
            EventType.APP_CREATED if change.created else EventType.APP_UPDATED,
            summary,
            project=app.project,
            app=app.name,
        )
    await bus.emit(
        EventType.DEPLOYMENT_STARTED,
        f"{deployment.kind.value} to version {deployment.to_version}, {deployment.target_instances} instances",
        project=app.project,
        app=app.name,
        deployment=deployment.id,
    )
    nudge(app.id)
