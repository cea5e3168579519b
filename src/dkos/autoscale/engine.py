"""The autoscaler: policies stored and run, each pass deciding (pure) and scaling (I/O).

A pass runs after every alarm evaluation (new metric data) and every
`autoscale_interval` seconds. For each app with policies it:

1. settles executions in flight: when the scale deployment has ended (its new instances
   healthy, or failed), the execution is finished and the policy's cooldown starts then;
2. asks each policy what it wants (`decide.compute_step_decision` with the linked alarms
   in ALARM, or `decide.compute_target_decision` with the metric's newest value);
3. carries out one execution per app — the largest capacity asked for, as AWS picks
   between policies — through the same path as `POST /v1/apps/{app}/scale`: a new
   version and a scale deployment stored, its events emitted, the reconciler nudged, so
   a scale-in drains instances like every stop; a scale-out cancels the app's scale-in
   cooldowns.

While another deployment of the app runs (a deploy, a restart), nothing is scaled; a
scale-out may replace a scale deployment under way (as a larger step would in AWS).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from types import TracebackType
from typing import Protocol, Self

from dkos.alerts import metric_source
from dkos.alerts.engine import Alarms
from dkos.alerts.model import AlarmState
from dkos.alerts.spec import check_period
from dkos.alerts.store import AlarmRecord, Origin
from dkos.apps import announce
from dkos.apps.store import AppRecord, AppStore, DeploymentStatus
from dkos.apps.versions import ChangeKind
from dkos.autoscale import decide
from dkos.autoscale.model import Decision, Direction, ExecutionStatus, PolicyType, Trigger
from dkos.autoscale.spec import PolicyIn
from dkos.autoscale.store import PolicyRecord, PolicyStore
from dkos.core import passes
from dkos.core.errors import FieldProblem, InvalidInput, NotFound
from dkos.core.events import EventBus
from dkos.core.settings import Settings
from dkos.orchestration.instances import InstanceState, InstanceStore

log = logging.getLogger(__name__)

_FINISHED = {
    DeploymentStatus.SUCCEEDED: ExecutionStatus.SUCCEEDED,
    DeploymentStatus.FAILED: ExecutionStatus.FAILED,
    DeploymentStatus.SUPERSEDED: ExecutionStatus.SUPERSEDED,
}


class Nudger(Protocol):
    def nudge(self, app_id: int) -> None: ...


class Autoscaler:
    def __init__(
        self,
        *,
        store: PolicyStore,
        alarms: Alarms,
        apps: AppStore,
        instances: InstanceStore,
        bus: EventBus,
        reconciler: Nudger,
        metrics: metric_source.SeriesReader,
        settings: Settings,
    ) -> None:
        self.store = store
        self._alarms = alarms
        self._apps = apps
        self._instances = instances
        self._bus = bus
        self._reconciler = reconciler
        self._metrics = metrics
        self._settings = settings
        self._passes = passes.RepeatedPass(
            "autoscaler pass", lambda: self.run_pass(now=time.time()), interval=settings.autoscale_interval
        )
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        self._alarms.on_evaluated(lambda _scopes: self._passes.wake())
        await self._passes.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._passes.__aexit__(exc_type, exc, tb)

    # passes -------------------------------------------------------------------------------

    async def run_pass(self, *, now: float) -> None:
        async with self._lock:
            by_app: dict[tuple[str, str], list[PolicyRecord]] = defaultdict(list)
            for record in await self.store.list_policies():
                by_app[(record.project, record.app)].append(record)
            alarms: dict[str, list[AlarmRecord]] = {}
            for (project, app_name), records in by_app.items():
                try:
                    app = await self._apps.get_app(project, app_name)
                except NotFound:
                    continue
                if project not in alarms:
                    alarms[project] = await self._alarms.store.list_alarms(project)
                await self._app_pass(app, records, alarms[project], now=now)

    async def _app_pass(
        self, app: AppRecord, records: list[PolicyRecord], alarms: list[AlarmRecord], *, now: float
    ) -> None:
        wanted: list[tuple[PolicyRecord, Decision]] = []
        for record in records:
            if not await self._settled(record, now=now):
                continue
            record = await self.store.get_policy(record.project, record.app, record.name)
            decision = await self._decide(app, record, alarms, now=now)
            if decision is None:
                continue
            if not decision.changes:
                await self.store.save_progress(record.id, last_limited=decision.limited or "")
                continue
            wanted.append((record, decision))
        if not wanted:
            return
        outs = [w for w in wanted if w[1].direction is Direction.OUT]
        record, decision = max(outs or wanted, key=lambda w: w[1].to_instances)
        await self._execute(app, record, decision, others=records, now=now)

    async def _settled(self, record: PolicyRecord, *, now: float) -> bool:
        """True when the policy has no execution in flight (finishing one whose deployment ended)."""
        running = await self.store.running_execution(record.id)
        if running is None:
            return True
        deployment_id = running["deployment_id"]
        try:
            deployment = await self._apps.get_deployment(deployment_id) if deployment_id is not None else None
        except NotFound:
            deployment = None
        if deployment is not None and deployment.status is DeploymentStatus.RUNNING:
            return False
        status = _FINISHED.get(deployment.status, ExecutionStatus.FAILED) if deployment else ExecutionStatus.FAILED
        finished = (deployment.finished_at if deployment else None) or now
        await self.store.finish_execution(running["id"], status, finished_at=finished)
        direction = Direction.OUT if running["to_instances"] > running["from_instances"] else Direction.IN
        cooldown = record.policy().cooldown
        await self.store.save_progress(record.id, cooldown_until=finished + cooldown, cooldown_direction=direction)
        return True

    async def _decide(
        self, app: AppRecord, record: PolicyRecord, alarms: list[AlarmRecord], *, now: float
    ) -> Decision | None:
        policy = record.policy()
        if policy.type is PolicyType.STEP:
            triggers = [
                Trigger(a.name, a.status.value)
                for a in alarms
                if a.name in policy.alarms
                and a.status.state is AlarmState.ALARM
                and (a.app is None or a.app == app.name)
            ]
            return decide.compute_step_decision(
                policy,
                current=app.desired_instances,
                triggers=triggers,
                in_flight=False,
                cooldown_until=record.cooldown_until,
                now=now,
            )
        assert policy.query is not None
        healthy = frozenset(i.id for i in await self._instances.for_app(app.id, states={InstanceState.HEALTHY}))
        values = await metric_source.fetch(
            self._metrics,
            policy.query,
            project=app.project,
            app=app.name,
            healthy={app.name: healthy},
            period=policy.period,
            count=1,
            now=now,
        )
        outcome = decide.compute_target_decision(
            policy,
            value=values[-1],
            current=app.desired_instances,
            measured=len(healthy),
            recommendations=record.recommendations,
            now=now,
        )
        await self.store.save_progress(record.id, recommendations=outcome.recommendations)
        return outcome.decision

    async def _execute(
        self, app: AppRecord, record: PolicyRecord, decision: Decision, *, others: list[PolicyRecord], now: float
    ) -> None:
        running = await self._apps.running_deployment(app.id)
        if running is not None and (running.kind is not ChangeKind.SCALE or decision.direction is Direction.IN):
            return  # a deploy or restart runs, or a scale-in would disturb a scale under way: next pass
        change = await self._apps.scale(
            app.project, app.name, decision.to_instances, by=f"policy {record.name}", force=running is not None
        )
        deployment = change.deployment
        if deployment is None:
            return
        limited = f" ({decision.limited})" if decision.limited else ""
        summary = (
            f"scaled {decision.from_instances} → {decision.to_instances} by policy {record.name}: "
            f"{decision.reason}{limited}"
        )
        await announce.announce(change, summary, bus=self._bus, nudge=self._reconciler.nudge)
        await self.store.add_execution(record, decision, deployment_id=deployment.id, now=now)
        await self.store.save_progress(record.id, last_limited=decision.limited or "", clear_cooldown=True)
        cancelled = decide.compute_cancelled(
            decision, [(o.policy(), o.cooldown_direction) for o in others if o.id != record.id]
        )
        for other in others:
            if other.name in cancelled:
                await self.store.save_progress(other.id, clear_cooldown=True)
        log.info(
            "%s/%s: scaled %d → %d by policy %s",
            app.project,
            app.name,
            *(decision.from_instances, decision.to_instances),
            record.name,
        )

    # policies -----------------------------------------------------------------------------

    async def create(self, body: PolicyIn, *, origin: Origin = Origin.API) -> PolicyRecord:
        limit = self._settings.autoscale_max_instances
        if body.max > limit:
            raise InvalidInput([FieldProblem("max", f"must be ≤ {limit} (the project's instance limit)")])
        if body.type is PolicyType.TARGET_TRACKING:
            check_period(body.period, minimum=self._settings.alarm_min_period)
        await self._apps.get_app(body.project, body.app)
        for name in body.alarms:
            alarm = await self._alarms.store.get_alarm(body.project, name)  # another project's: 404
            if alarm.app is not None and alarm.app != body.app:
                raise NotFound(f"alarm '{name}' watches app '{alarm.app}', not '{body.app}'")
        definition = body.model_dump(mode="json", exclude={"name", "project", "app"})
        record = await self.store.put_policy(
            project=body.project,
            app=body.app,
            name=body.name,
            definition=definition,
            origin=origin,
            replace=origin is Origin.SPEC,
        )
        self._passes.wake()
        return record
