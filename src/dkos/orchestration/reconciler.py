"""The reconciler: a level-triggered loop that converges what runs to what is desired.

An app is *nudged* when anything about it may have changed (an API write, an engine
event, a health transition, a backoff timer, the periodic resync); the nudge only says
"look again". One runner per app re-reads the app, its instances and its containers,
asks `plan.compute` what to do, and does it; bursts of nudges collapse into one pass and
at most `reconcile_workers` apps are reconciled at once (kopf's queueing).

Stops run in the background (they last up to the stop grace period) and are keyed so a
repeated plan never stops the same instance twice. If the engine stops answering, the
loops wait for it and every app is reconciled again when it is back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Self

from dkos.apps.store import AppRecord, AppStore, Deployment, DeploymentStatus, Lifecycle
from dkos.apps.versions import ChangeKind
from dkos.core.errors import DkosError, EngineError, EngineUnavailable, ImageNotFound, NotFound
from dkos.core.events import EventBus, EventType
from dkos.core.settings import Settings
from dkos.engines import base
from dkos.engines.base import ContainerSpec, ContainerState, ContainerStatus, Engine, EngineInfo
from dkos.metrics.prometheus import DkosMetrics
from dkos.orchestration import health, plan, progress
from dkos.orchestration.instances import LIVE, RUNNING, Instance, InstanceState, InstanceStore
from dkos.orchestration.router import Router

log = logging.getLogger(__name__)

_INSTANCE_EVENTS = {
    InstanceState.PENDING: EventType.INSTANCE_PENDING,
    InstanceState.STARTING: EventType.INSTANCE_STARTING,
    InstanceState.HEALTHY: EventType.INSTANCE_HEALTHY,
    InstanceState.UNHEALTHY: EventType.INSTANCE_UNHEALTHY,
    InstanceState.STOPPING: EventType.INSTANCE_STOPPING,
    InstanceState.STOPPED: EventType.INSTANCE_STOPPED,
    InstanceState.FAILED: EventType.INSTANCE_FAILED,
}
_ROLLED_BACK_ON_FAILURE = frozenset({ChangeKind.UPDATE, ChangeKind.RESTART})
_DEPLOYMENT_EVENTS = {
    DeploymentStatus.SUCCEEDED: EventType.DEPLOYMENT_SUCCEEDED,
    DeploymentStatus.FAILED: EventType.DEPLOYMENT_FAILED,
}


@dataclass(frozen=True)
class EngineStatus:
    reachable: bool
    error: str | None = None
    info: EngineInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "name": self.info.name if self.info else None,
            "version": self.info.version if self.info else None,
            "error": self.error,
        }


def build_container_spec(app: AppRecord, instance: Instance, *, owner: str, settings: Settings) -> ContainerSpec:
    """What the engine runs for one instance: the spec plus dkos' labels and environment."""
    spec = app.spec
    labels = {
        **spec.labels,
        base.LABEL_OWNER: owner,
        base.LABEL_PROJECT: app.project,
        base.LABEL_APP: app.name,
        base.LABEL_VERSION: str(instance.version),
        base.LABEL_INSTANCE: instance.id,
        base.LABEL_SLOT: str(instance.slot),
    }
    env = {
        **spec.env,
        "DKOS_PROJECT": app.project,
        "DKOS_APP": app.name,
        "DKOS_VERSION": str(instance.version),
        "DKOS_INSTANCE": instance.id,
    }
    return ContainerSpec(
        name=base.container_name(app.project, instance.id, owner),
        image=spec.image,
        labels=labels,
        command=tuple(spec.command) if spec.command is not None else None,
        args=tuple(spec.args) if spec.args is not None else None,
        env=env,
        cpus=spec.resources.cpus,
        memory_mib=spec.resources.memory,
        ports=tuple(base.PortSpec(p.name, p.container_port, p.protocol.value) for p in spec.ports),
        log_rotation=base.LogRotation(settings.log_max_size, settings.log_max_files),
    )


class Reconciler:
    def __init__(
        self,
        *,
        settings: Settings,
        apps: AppStore,
        instances: InstanceStore,
        engine: Engine,
        bus: EventBus,
        owner: str,
        router: Router,
        prom: DkosMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._prom = prom
        self.router = router
        self._apps = apps
        self._instances = instances
        self._engine = engine
        self._bus = bus
        self._owner = owner
        self._clock = clock
        self.health = health.HealthMonitor(engine, self._on_health, clock, min_running=settings.min_running)
        self.engine_status = EngineStatus(reachable=False, error="not checked yet")
        self._engine_up = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.reconcile_workers)
        self._start_slots = asyncio.Semaphore(settings.start_concurrency)
        self._dirty: set[int] = set()
        self._runners: dict[int, asyncio.Task[None]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._background: dict[str, asyncio.Task[None]] = {}
        self._app_ids: dict[tuple[str, str], int] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._lb_error: str | None = None

    # lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._loops = [
            asyncio.create_task(self._supervised(loop), name=loop.__name__)
            for loop in (self._watch_engine, self._follow_engine_events, self._resync_loop)
        ]
        return self

    @staticmethod
    async def _supervised(loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Keep a root loop alive: a bug in one pass is logged, and the loop starts over."""
        while True:
            try:
                await loop()
            except Exception:
                log.exception("%s failed; restarting it in 1s", loop.__name__)
            await asyncio.sleep(1.0)

    async def __aexit__(self, *exc: object) -> None:
        """Stop the loops. Containers keep running: the control plane is not the data plane;
        stops cut short here are finished by the next server from their stored state."""
        for timer in self._timers.values():
            timer.cancel()
        tasks = [*self._loops, *self._runners.values(), *self._background.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.health.close()

    # nudges ------------------------------------------------------------------------------

    def nudge(self, app_id: int) -> None:
        """Ask for one more pass over the app; passes of one app never overlap."""
        self._dirty.add(app_id)
        if app_id not in self._runners:
            self._runners[app_id] = asyncio.create_task(self._run(app_id), name=f"reconcile:{app_id}")

    def _nudge_at(self, app_id: int, when: float) -> None:
        delay = max(0.0, when - self._clock())
        loop = asyncio.get_running_loop()
        existing = self._timers.get(app_id)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()
        self._timers[app_id] = loop.call_later(delay, self._fire_timer, app_id)

    def _fire_timer(self, app_id: int) -> None:
        self._timers.pop(app_id, None)
        self.nudge(app_id)

    async def _run(self, app_id: int) -> None:
        try:
            async with self._slots:
                while app_id in self._dirty:
                    self._dirty.discard(app_id)
                    with self._prom.reconcile_seconds.time():
                        await self._guarded(self.reconcile(app_id), f"reconciling app {app_id}")
        finally:
            self._runners.pop(app_id, None)

    async def _guarded(self, work: Awaitable[None], what: str) -> None:
        try:
            await work
        except EngineUnavailable as exc:
            self._engine_lost(exc.message)
        except NotFound:
            pass
        except Exception:
            log.exception("%s failed; the next pass retries", what)

    def _background_task(self, key: str, work: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        if key in self._background:
            return
        task = asyncio.create_task(self._guarded(work(), what), name=key)
        self._background[key] = task
        task.add_done_callback(lambda _: self._background.pop(key, None))

    # one pass ----------------------------------------------------------------------------

    async def reconcile(self, app_id: int) -> None:
        app = await self._apps.app_by_id(app_id)
        self._app_ids[(app.project, app.name)] = app.id
        if app.lifecycle is Lifecycle.DELETED:
            self.health.forget(app_id)
            return
        if not self._engine_up.is_set():
            return
        instances = await self._instances.for_app(app_id)
        containers = await self._engine.recover(self._labels(app))
        now = self._clock()
        surge, unavailable = app.spec.strategy.bounds(app.desired_instances)
        decided = plan.compute(
            plan.DesiredApp(
                app_id=app.id,
                version=app.version,
                template_hash=app.template_hash,
                instances=app.desired_instances,
                deleting=app.lifecycle is Lifecycle.DELETING,
                restart=app.spec.restart,
                max_surge=surge,
                max_unavailable=unavailable,
                min_ready_seconds=app.spec.strategy.min_ready_seconds,
            ),
            instances,
            containers,
            limits=plan.Limits(
                backoff_reset_after=self._settings.backoff_reset_after,
                orphan_grace=self._settings.orphan_grace,
            ),
            now=now,
        )
        changed = await self._execute(app, decided.actions)
        if decided.wake_at is not None:
            self._nudge_at(app_id, decided.wake_at)
        current = await self._instances.for_app(app_id)
        # Probes first: a new instance's health must not wait for the LB (it joins it once healthy).
        self.health.sync(app_id, self._health_targets(app, current))
        if changed:
            await self.route()
        await self._judge_deployment(app, current)
        if changed:
            self.nudge(app_id)

    def _labels(self, app: AppRecord) -> dict[str, str]:
        return {
            base.LABEL_OWNER: self._owner,
            base.LABEL_PROJECT: app.project,
            base.LABEL_APP: app.name,
        }

    async def _execute(self, app: AppRecord, actions: tuple[plan.Action, ...]) -> bool:
        """Carry out a plan; True when something changed that the next pass should see."""
        changed = False
        starts: list[Instance] = []
        for action in actions:
            match action:
                case plan.CreateInstance(slot=slot, not_before=not_before):
                    instance = await self._instances.create(
                        app_id=app.id,
                        app_name=app.name,
                        slot=slot,
                        version=app.version,
                        template_hash=app.template_hash,
                        not_before=not_before,
                    )
                    wait = not_before - self._clock()
                    await self._instance_event(
                        app,
                        instance,
                        f"restart backoff: starts in {wait:.1f}s" if wait > 0 else "created",
                    )
                    if wait <= 0:
                        starts.append(instance)
                    changed = True
                case plan.StartInstance(instance=instance):
                    starts.append(instance)
                case plan.AdoptContainer(instance=instance, container=container):
                    await self._mark_running(app, instance, container, "adopted a running container")
                    changed = True
                case plan.FailInstance(instance=instance, reason=reason, exit_code=exit_code):
                    failed = await self._instances.transition(
                        instance,
                        InstanceState.FAILED,
                        allowed_from=LIVE,
                        reason=reason,
                        exit_code=exit_code,
                        ended_at=self._clock(),
                    )
                    if failed is not None:
                        self.health.forget(app.id, instance.id)
                        await self._instance_event(app, failed, reason)
                        changed = True
                case plan.StopInstance(instance=instance, reason=reason):
                    self._background_task(
                        f"stop:{app.id}:{instance.id}",
                        functools.partial(self._stop, app, instance, reason),
                        f"stopping {instance.id}",
                    )
                case plan.RemoveContainer(container=container):
                    self._background_task(
                        f"remove:{container.id}",
                        functools.partial(self._remove, app, container),
                        f"removing container {container.name}",
                    )
                case plan.FinishDelete():
                    await self._finish_delete(app)
        if starts:
            await asyncio.gather(*(self._start(app, i) for i in starts))
            changed = True
        return changed

    async def _start(self, app: AppRecord, instance: Instance) -> None:
        async with self._start_slots:
            try:
                container = await self._engine.start(
                    build_container_spec(app, instance, owner=self._owner, settings=self._settings)
                )
            except ImageNotFound as exc:
                await self._fail_start(app, instance, exc.message, permanent=True)
                return
            except EngineUnavailable:
                raise
            except EngineError as exc:
                await self._fail_start(app, instance, f"could not start: {exc.message}", permanent=False)
                return
        await self._mark_running(app, instance, container, "container started")

    async def _fail_start(self, app: AppRecord, instance: Instance, reason: str, *, permanent: bool) -> None:
        failed = await self._instances.transition(
            instance,
            InstanceState.FAILED,
            allowed_from={InstanceState.PENDING},
            reason=reason,
            permanent_failure=permanent,
            ended_at=self._clock(),
        )
        if failed is not None:
            await self._instance_event(app, failed, reason)

    async def _mark_running(self, app: AppRecord, instance: Instance, container: ContainerStatus, why: str) -> None:
        started = await self._instances.transition(
            instance,
            InstanceState.STARTING,
            allowed_from={InstanceState.PENDING},
            container_id=container.id,
            ip=container.ip,
            started_at=container.started_at or self._clock(),
        )
        if started is not None:
            self.health.watch(self._health_target(app, started))
            await self._instance_event(app, started, why)

    async def _stop(self, app: AppRecord, instance: Instance, reason: str) -> None:
        """Every stop dkos makes: drain in the LB (acknowledged), wait until no request is in
        flight (bounded by the drain timeout), SIGTERM, SIGKILL after the grace period,
        remove the container, and take the instance out of the LB."""
        stopping = await self._instances.transition(
            instance, InstanceState.STOPPING, allowed_from=LIVE | {InstanceState.STOPPING}, reason=reason
        )
        if stopping is None:
            return
        self.health.forget(app.id, instance.id)
        if instance.state is not InstanceState.STOPPING:
            await self._instance_event(app, stopping, reason)
        if instance.state in (InstanceState.HEALTHY, InstanceState.STOPPING) and await self.route():
            waited = await self.router.drain(app, stopping)
            await self._instance_event(app, stopping, f"drained in {waited:.2f}s")
        name = base.container_name(app.project, instance.id, self._owner)
        await self._engine.stop(name, grace=app.spec.stop_grace_period)
        await self._engine.destroy(name)
        stopped = await self._instances.transition(
            stopping, InstanceState.STOPPED, allowed_from={InstanceState.STOPPING}, ended_at=self._clock()
        )
        if stopped is not None:
            await self._instance_event(app, stopped, reason)
        await self.route()
        self.nudge(app.id)

    async def route(self) -> bool:
        """Bring the LB in line with the stored state; False (and logged) if it could not be."""
        if not self.router.enabled:
            return False
        try:
            await self.router.sync()
        except Exception as exc:
            log.warning("load balancer update failed, the previous configuration keeps serving: %s", exc)
            if str(exc) != self._lb_error:  # one event per distinct error, not one per retry
                self._lb_error = str(exc)
                await self._bus.emit(
                    EventType.LB_ERROR, f"load balancer update failed; the previous configuration keeps serving: {exc}"
                )
            return False
        self._lb_error = None
        return True

    async def _remove(self, app: AppRecord, container: ContainerStatus) -> None:
        if container.state is ContainerState.RUNNING:
            await self._engine.stop(container.id, grace=app.spec.stop_grace_period)
        await self._engine.destroy(container.id)
        self.nudge(app.id)

    async def _finish_delete(self, app: AppRecord) -> None:
        await self._apps.finish_delete(app.id)
        self.health.forget(app.id)
        deployment = await self._apps.running_deployment(app.id)
        if deployment is not None and deployment.kind is ChangeKind.DELETE:
            await self._record_outcome(app, deployment, progress.Outcome(DeploymentStatus.SUCCEEDED))
        await self._bus.emit(EventType.APP_DELETED, "every instance stopped", project=app.project, app=app.name)

    async def _judge_deployment(self, app: AppRecord, instances: list[Instance]) -> None:
        deployment = await self._apps.running_deployment(app.id)
        if deployment is None:
            return
        now = self._clock()
        outcome = progress.compute_outcome(
            deployment,
            instances,
            template_hash=app.template_hash,
            desired=app.desired_instances,
            failure_threshold=self._settings.deploy_failure_threshold,
            progress_deadline=app.spec.strategy.progress_deadline,
            now=now,
        )
        if outcome is None:
            self._nudge_at(app.id, now + app.spec.strategy.progress_deadline)
            return
        await self._record_outcome(app, deployment, outcome)
        if outcome.status is DeploymentStatus.FAILED and deployment.kind in _ROLLED_BACK_ON_FAILURE:
            await self._roll_back(app, deployment.from_version, outcome.reason)

    async def _roll_back(self, app: AppRecord, to_version: int | None, reason: str) -> None:
        """Automatic rollback of a failed update: the old instances still serve (a rollout
        keeps them until new ones are healthy), and the rollback's template is theirs."""
        if to_version is None:
            return
        change = await self._apps.rollback(
            app.project, app.name, to_version=to_version, by="dkos", reason=reason, force=True
        )
        if change.deployment is not None:
            await self._bus.emit(
                EventType.DEPLOYMENT_STARTED,
                f"automatic rollback to version {to_version}: {reason}",
                project=app.project,
                app=app.name,
                deployment=change.deployment.id,
            )
        self.nudge(app.id)

    async def _record_outcome(self, app: AppRecord, deployment: Deployment, outcome: progress.Outcome) -> None:
        if await self._apps.finish_deployment(deployment.id, outcome.status, outcome.reason):
            self._prom.deploys.labels(deployment.kind.value, outcome.status.value).inc()
            await self._bus.emit(
                _DEPLOYMENT_EVENTS[outcome.status],
                outcome.reason or f"deployment {deployment.id} {outcome.status.value}",
                project=app.project,
                app=app.name,
                deployment=deployment.id,
            )

    async def _instance_event(self, app: AppRecord, instance: Instance, message: str) -> None:
        """An instance transition, tied to the app's running deployment: its steps."""
        deployment = await self._apps.running_deployment(app.id)
        await self._bus.emit(
            _INSTANCE_EVENTS[instance.state],
            message,
            project=app.project,
            app=app.name,
            instance=instance.id,
            deployment=deployment.id if deployment else None,
        )

    # health ------------------------------------------------------------------------------

    def _health_targets(self, app: AppRecord, instances: list[Instance]) -> list[health.Target]:
        return [self._health_target(app, i) for i in instances if i.state in RUNNING and i.container_id is not None]

    def _health_target(self, app: AppRecord, instance: Instance) -> health.Target:
        port = app.spec.checked_port()
        assert instance.container_id is not None
        return health.Target(
            app_id=app.id,
            project=app.project,
            app=app.name,
            instance_id=instance.id,
            container_id=instance.container_id,
            ip=instance.ip,
            port=port.container_port if port else None,
            check=app.spec.health_check,
            started_at=instance.started_at or self._clock(),
            state=instance.state,
        )

    async def _on_health(
        self,
        target: health.Target,
        status: health.HealthStatus,
        verdict: health.Verdict,
        result: health.ProbeResult,
    ) -> None:
        instance = await self._instances.get(target.app_id, target.instance_id)
        if instance is None:
            return
        now = self._clock()
        if verdict is health.Verdict.HEALTHY:
            moved = await self._instances.transition(
                instance,
                InstanceState.HEALTHY,
                allowed_from={InstanceState.STARTING, InstanceState.UNHEALTHY},
                healthy_at=now,
                reason="",
            )
            message = f"health check passed: {result.detail}"
        elif verdict is health.Verdict.UNHEALTHY:
            moved = await self._instances.transition(
                instance,
                InstanceState.UNHEALTHY,
                allowed_from={InstanceState.HEALTHY},
                reason=result.detail,
            )
            message = f"health check failed: {result.detail}"
        else:
            message = f"health check failed {status.failures} times: {result.detail}"
            moved = await self._instances.transition(
                instance, InstanceState.FAILED, allowed_from=RUNNING, reason=message, ended_at=now
            )
        if moved is not None:
            await self.route()  # in rotation once healthy, out the moment a check fails
            await self._instance_event(await self._apps.app_by_id(target.app_id), moved, message)
            self.nudge(target.app_id)

    # engine ------------------------------------------------------------------------------

    def _engine_lost(self, error: str) -> None:
        if self._engine_up.is_set():
            log.warning("container engine unreachable: %s", error)
            self._engine_up.clear()
            self.engine_status = EngineStatus(reachable=False, error=error)
            asyncio.get_running_loop().create_task(
                self._bus.emit(EventType.ENGINE_UNREACHABLE, f"container engine unreachable: {error}")
            )

    async def _watch_engine(self) -> None:
        """Ping the engine; when it comes back, reconcile everything."""
        while True:
            try:
                info = await self._engine.ping()
            except EngineError as exc:
                if self._engine_up.is_set():
                    self._engine_lost(exc.message)
                else:
                    self.engine_status = EngineStatus(reachable=False, error=exc.message)
            else:
                if not self._engine_up.is_set():
                    log.info("container engine reachable: %s %s", info.name, info.version)
                    self.engine_status = EngineStatus(reachable=True, info=info)
                    self._engine_up.set()
                    await self._bus.emit(EventType.ENGINE_REACHABLE, f"{info.name} {info.version} answers")
                    await self.resync()
            await asyncio.sleep(self._settings.engine_ping_interval)

    async def _follow_engine_events(self) -> None:
        """Engine events only nudge: a dying container is noticed within a second, not a resync."""
        while True:
            await self._engine_up.wait()
            try:
                async for event in self._engine.events({base.LABEL_OWNER: self._owner}):
                    key = (
                        event.labels.get(base.LABEL_PROJECT, ""),
                        event.labels.get(base.LABEL_APP, ""),
                    )
                    app_id = self._app_ids.get(key)
                    if app_id is not None:
                        self.nudge(app_id)
            except EngineUnavailable as exc:
                self._engine_lost(exc.message)
            except DkosError as exc:
                log.warning("engine event stream ended: %s", exc.message)
            await asyncio.sleep(1.0)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.resync_interval)
            await self._guarded(self.resync(), "resync")

    async def resync(self) -> None:
        """Nudge every app and sweep containers of apps nothing tracks; prune old history."""
        apps = await self._apps.list_apps()
        self._app_ids = {(a.project, a.name): a.id for a in apps}
        for app in apps:
            self.nudge(app.id)
            await self._instances.prune(app.id, keep=self._settings.instances_kept_per_app)
        await self._bus.prune(keep=self._settings.events_kept)
        await self.route()
        if self._engine_up.is_set():
            await self._sweep(set(self._app_ids))

    async def _sweep(self, known: set[tuple[str, str]]) -> None:
        now = self._clock()
        for container in await self._engine.recover({base.LABEL_OWNER: self._owner}):
            key = (
                container.labels.get(base.LABEL_PROJECT, ""),
                container.labels.get(base.LABEL_APP, ""),
            )
            if key in known or now - (container.created_at or 0.0) < self._settings.orphan_grace:
                continue
            log.info("removing container %s: it belongs to no app", container.name)
            self._background_task(
                f"remove:{container.id}",
                functools.partial(self._engine.destroy, container.id),
                f"sweeping {container.name}",
            )
