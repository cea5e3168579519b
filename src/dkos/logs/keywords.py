"""Keyword-frequency alarms: "≥ N lines matching QUERY within W seconds, in app A (or any app
of a project)" — a source for the shared alarm engine (`dkos.alerts`).

This module only counts. States, history, channels, notifications and their throttling
(`repeat_interval`: a storm of matching lines fires one notification, repeated at most
that often while the alarm stays in ALARM) are the alarm engine's, the same as for metric
alarms: an evaluation goes through `Alarms.observe`, and the alarm is listed, shown and
deleted with the other alarms (`/v1/alarms`, `dkos alarms …`).

Evaluation runs as lines arrive: the log store tells `KeywordAlarms` after every write,
and it counts, for each log alarm, the matching lines of the last W seconds (one FTS5
query). It also runs every `logs_alarm_tick` seconds, so an alarm resolves once its
lines have left the window even when nothing new is written. The forms (`LogAlarmIn`, and
`LogAlarmSpec` for an app spec's `log_alarms:`) are in `keyword_spec`; `condition` is pure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from dkos.alerts.engine import Alarms
from dkos.alerts.evaluate import Evaluation, compute_evaluation
from dkos.alerts.model import AlarmSource, Comparison, Condition, MissingData
from dkos.alerts.spec import check_period
from dkos.alerts.store import AlarmRecord, Origin
from dkos.apps.store import AppStore
from dkos.core import passes
from dkos.core.errors import BadQuery, NotFound
from dkos.core.settings import Settings
from dkos.logs.keyword_spec import LogAlarmIn
from dkos.logs.store import LogStore, Row

log = logging.getLogger(__name__)


def condition(definition: dict[str, Any]) -> Condition:
    """The alarm's condition: the count of matching lines in the window ≥ the threshold."""
    return Condition(
        comparison=Comparison.GE,
        threshold=float(definition["threshold"]),
        period=float(definition["window"]),
        missing=MissingData.NOT_BREACHING,
    )


def needs_observing(alarm: AlarmRecord, evaluation: Evaluation, *, now: float, resync: float) -> bool:
    """Whether an evaluation is worth storing: a change of state or value, or a while since the
    last (repeat notifications are decided there). Ticks every second would otherwise write
    the state database every second for every alarm."""
    status = alarm.status
    return (
        evaluation.state is not status.state
        or evaluation.value != status.value
        or alarm.evaluated_at is None
        or now - alarm.evaluated_at >= resync
    )


async def create(
    alarms: Alarms,
    store: LogStore,
    apps: AppStore,
    body: LogAlarmIn,
    *,
    min_period: float,
    origin: Origin = Origin.API,
) -> AlarmRecord:
    """Check and store a log alarm (422 for a bad field or a window under the server's shortest
    alarm period, 400 for a query FTS5 cannot parse, 404 for an unknown project, app or channel).

    Through the API (`Origin.API`) a name already taken is 409. An app spec's declared alarms
    (`Origin.SPEC`, from `api/alerting.sync_declared`) replace their earlier definition and keep
    their state, as declared metric alarms do in `Alarms.create`."""
    check_period(body.window, minimum=min_period, field="window")
    if body.project not in {p["name"] for p in await apps.list_projects()}:
        raise NotFound(f"project '{body.project}' not found")
    if body.app is not None:
        await apps.get_app(body.project, body.app)
    for name in body.channels:
        await alarms.store.get_channel(body.project, name)
    await store.check_search(body.query)
    return await alarms.store.put_alarm(
        project=body.project,
        app=body.app,
        name=body.name,
        source=AlarmSource.LOGS,
        definition=body.definition(),
        origin=origin,
        replace=origin is Origin.SPEC,
    )


class KeywordAlarms:
    """An async context manager: evaluates every log alarm when lines are stored and every tick."""

    def __init__(self, alarms: Alarms, store: LogStore, *, settings: Settings) -> None:
        self.alarms = alarms
        self.store = store
        self.resync = settings.alarm_resync_interval
        self._passes = passes.RepeatedPass(
            "log alarm evaluation", lambda: self.evaluate(now=time.time()), interval=settings.logs_alarm_tick
        )

    async def __aenter__(self) -> Self:
        self.store.listen(self._heard)
        await self._passes.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._passes.__aexit__(exc_type, exc, tb)

    def _heard(self, rows: Sequence[Row]) -> None:
        self._passes.wake()

    async def evaluate(self, *, now: float) -> None:
        for alarm in await self.alarms.store.list_alarms(source=AlarmSource.LOGS):
            definition = alarm.definition
            judged = condition(definition)
            query = str(definition["query"])
            try:
                count = await self.store.count(
                    alarm.project, alarm.app, query, since_ns=round((now - judged.period) * 1e9)
                )
            except BadQuery as exc:  # checked when stored; kept in case SQLite's FTS5 changes
                log.warning("log alarm %s/%s: %s", alarm.project, alarm.name, exc.message)
                continue
            state = compute_evaluation(judged, [float(count)], alarm.status.state).state
            reason = (
                f"{count} lines matching {query!r} in the last {judged.period:g} s (threshold {judged.threshold:g})"
            )
            evaluation = Evaluation(state, float(count), reason)
            if needs_observing(alarm, evaluation, now=now, resync=self.resync):
                await self.alarms.observe(alarm, evaluation, now=now)
