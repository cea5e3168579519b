"""The alarm service: stores alarms, evaluates metric alarms as data arrives, records and notifies.

Flow: the metrics store calls `_heard` after every put (quick: it only marks the metrics
that changed and wakes the loop); the loop evaluates the alarms reading those metrics
(`metric_source.fetch` → `evaluate.compute_evaluation`), then hands each evaluation to
`observe`, which runs the state machine (`transitions.compute_step`), stores the status
and history in one transaction, and queues notifications. Every `alarm_resync_interval`
seconds a pass evaluates every alarm, so missing data is noticed even while other metrics
keep arriving. Whoever listens with `on_evaluated` (the autoscaler) is told which
apps' alarms were just evaluated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from dkos.alerts import metric_source, payloads
from dkos.alerts.evaluate import Evaluation, compute_evaluation
from dkos.alerts.model import AlarmSource, AlarmState
from dkos.alerts.notify import Notifier
from dkos.alerts.spec import AlarmIn, ChannelIn, check_period
from dkos.alerts.store import AlarmRecord, AlarmStore, Origin
from dkos.alerts.transitions import NotificationReason, Step, compute_step
from dkos.apps.store import AppStore
from dkos.core import passes
from dkos.core.errors import NotFound
from dkos.core.settings import Settings
from dkos.metrics.store import DataPoint
from dkos.orchestration.instances import InstanceState, InstanceStore

log = logging.getLogger(__name__)


class MetricsFeed(metric_source.SeriesReader, Protocol):
    def listen(self, listener: Callable[[Sequence[DataPoint]], None]) -> None: ...


class Alarms:
    def __init__(
        self,
        *,
        store: AlarmStore,
        notifier: Notifier,
        metrics: MetricsFeed,
        apps: AppStore,
        instances: InstanceStore,
        settings: Settings,
    ) -> None:
        self.store = store
        self._notifier = notifier
        self._metrics = metrics
        self._apps = apps
        self._instances = instances
        self._settings = settings
        host, port = settings.host_port
        self.external_url = f"http://{host}:{port}"
        self._dirty: set[str] = set()
        self._full_due = 0.0
        """Monotonic time the next evaluation of every alarm is due (0: at the next pass)."""
        self._last_prune = 0.0
        self._passes = passes.RepeatedPass("alarm evaluation", self._pass, interval=settings.alarm_resync_interval)
        self._evaluated: list[Callable[[set[tuple[str, str | None]]], None]] = []
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        self._metrics.listen(self._heard)
        await self._passes.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._passes.__aexit__(exc_type, exc, tb)

    def on_evaluated(self, callback: Callable[[set[tuple[str, str | None]]], None]) -> None:
        """Call `callback` with the (project, app) pairs whose alarms were just evaluated."""
        self._evaluated.append(callback)

    # evaluation ---------------------------------------------------------------------------

    def _heard(self, points: Sequence[DataPoint]) -> None:
        self._dirty.update({p.metric for p in points})
        self._passes.wake()

    async def _pass(self) -> None:
        """The alarms reading the metrics that changed; every alarm once per resync interval,
        due by the clock rather than by a quiet spell, so an alarm whose metric stopped
        arriving is judged while other metrics keep coming."""
        now = time.monotonic()
        everything = now >= self._full_due
        if everything:
            self._full_due = now + self._settings.alarm_resync_interval
        metrics, self._dirty = self._dirty, set()
        await self.evaluate(metrics=None if everything else metrics, now=time.time())
        if time.time() - self._last_prune > 3600:
            self._last_prune = time.time()
            await self.store.prune_history(before=self._last_prune - self._settings.alarm_history_retention)

    async def evaluate(self, *, metrics: set[str] | None, now: float) -> None:
        """Evaluate the metric alarms reading any of `metrics` (every metric alarm when None)."""
        async with self._lock:
            touched: set[tuple[str, str | None]] = set()
            healthy_cache: dict[tuple[str, str | None], dict[str, frozenset[str]]] = {}
            for alarm in await self.store.list_alarms(source=AlarmSource.METRIC):
                spec = alarm.spec()
                query = spec.query()
                if metrics is not None and metric_source.stored_metric(query) not in metrics:
                    continue
                scope = (alarm.project, alarm.app)
                if scope not in healthy_cache:
                    healthy_cache[scope] = await self._healthy(alarm.project, alarm.app)
                condition = spec.condition()
                datapoints = await metric_source.fetch(
                    self._metrics,
                    query,
                    project=alarm.project,
                    app=alarm.app,
                    healthy=healthy_cache[scope],
                    period=condition.period,
                    count=condition.evaluation_periods,
                    now=now,
                )
                await self.observe(alarm, compute_evaluation(condition, datapoints, alarm.status.state), now=now)
                touched.add(scope)
        if touched:
            for callback in self._evaluated:
                callback(touched)

    async def _healthy(self, project: str, app: str | None) -> dict[str, frozenset[str]]:
        """The healthy instance ids of each app in scope (instances starting or failing checks are left out)."""
        found: dict[str, frozenset[str]] = {}
        for record in await self._apps.list_apps(project):
            if app is None or record.name == app:
                live = await self._instances.for_app(record.id, states={InstanceState.HEALTHY})
                found[record.name] = frozenset(i.id for i in live)
        return found

    async def observe(self, alarm: AlarmRecord, evaluation: Evaluation, *, now: float) -> Step:
        """The entry point for every alarm source: judge an evaluation against the alarm's status,
        store the new status (and history on a transition) and notify its channels."""
        step = compute_step(alarm.status, evaluation, now=now, repeat_interval=alarm.repeat_interval)
        await self.store.save_status(alarm.id, step.status, entry=step.history, evaluated_at=now)
        if step.notify is not None:
            old = step.history.old_state if step.history is not None else alarm.status.state
            await self._notify(alarm, step, old_state=old, now=now)
        return step

    async def _notify(self, alarm: AlarmRecord, step: Step, *, old_state: AlarmState, now: float) -> None:
        assert step.notify is not None
        summary = alarm.definition.get("summary") or self._summary(alarm)
        for name in alarm.channels:
            try:
                channel = await self.store.get_channel(alarm.project, name)
            except NotFound:
                log.warning("alarm %s/%s: channel %s is gone", alarm.project, alarm.name, name)
                continue
            notice = payloads.Notice(
                alarm=alarm.name,
                project=alarm.project,
                app=alarm.app,
                state=step.status.state,
                old_state=old_state,
                value=step.status.value,
                reason=step.status.reason,
                summary=summary,
                why=step.notify,
                time=now,
                fired_at=step.status.fired_at,
                receiver=name,
                external_url=self.external_url,
            )
            await self._notifier.send(project=alarm.project, channel=channel, notice=notice)

    @staticmethod
    def _summary(alarm: AlarmRecord) -> str:
        where = alarm.app or f"every app of {alarm.project}"
        if alarm.source is AlarmSource.METRIC:
            return f"{where}: {alarm.spec().describe()}"
        return f"{where}: {alarm.source.value} alarm"

    # alarms -------------------------------------------------------------------------------

    async def create(self, body: AlarmIn, *, origin: Origin = Origin.API) -> AlarmRecord:
        check_period(body.period, minimum=self._settings.alarm_min_period)
        await self._check_scope(body.project, body.app)
        for name in body.channels:
            await self.store.get_channel(body.project, name)
        definition = body.model_dump(mode="json", exclude={"name", "project", "app"})
        alarm = await self.store.put_alarm(
            project=body.project,
            app=body.app,
            name=body.name,
            source=AlarmSource.METRIC,
            definition=definition,
            origin=origin,
            replace=origin is Origin.SPEC,
        )
        self._full_due = 0.0
        self._passes.wake()
        return alarm

    async def _check_scope(self, project: str, app: str | None) -> None:
        if project not in {p["name"] for p in await self._apps.list_projects()}:
            raise NotFound(f"project '{project}' not found")
        if app is not None:
            await self._apps.get_app(project, app)

    async def test_channel(self, project: str, name: str) -> int | None:
        """Send a test notification (firing, alertname `dkos-test`) to one channel."""
        channel = await self.store.get_channel(project, name)
        now = time.time()
        notice = payloads.Notice(
            alarm="dkos-test",
            project=project,
            app=None,
            state=AlarmState.ALARM,
            old_state=AlarmState.OK,
            value=None,
            reason="a test sent by `dkos channels test`",
            summary="test notification",
            why=NotificationReason.TEST,
            time=now,
            fired_at=now,
            receiver=name,
            external_url=self.external_url,
        )
        return await self._notifier.send(project=project, channel=channel, notice=notice)

    async def create_channel(self, body: ChannelIn) -> dict[str, Any]:
        await self._check_scope(body.project, None)
        return await self.store.put_channel(
            project=body.project, name=body.name, type=body.type, url=body.url, send_resolved=body.send_resolved
        )
