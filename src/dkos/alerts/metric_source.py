"""How a metric alarm's datapoints are computed from the metrics store.

This is the "value" half of a metric alarm; the judging half (`evaluate`) and the state,
history and notification half (`engine`) do not know where values come from.

One datapoint covers one period, the newest ending now (a sliding window, re-computed on
every collection). Within a period:

- per-instance metrics (CPU %, memory %): each instance's value is the mean of its
  points; only the instances passed as `healthy` count (those still starting or failing
  their health check are left out, so start-up spikes do not drive scaling); the
  alarm's statistic combines the instances' values;
- load-balancer metrics (request rate, 5xx rate, response time) are per app: request
  rate is the app's requests per second divided by its healthy instances; 5xx rate the
  app's 5xx responses per second; response time the mean of HAProxy's figure; an alarm
  over a whole project combines its apps' values with the statistic;
- `custom`: every stored series of the metric matching the filters, each the mean of
  its points, combined with the statistic.

`compute_datapoints` is pure (series in, numbers out); `fetch` reads the store.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

from dkos.alerts.evaluate import compute_statistic
from dkos.alerts.model import MetricKind, MetricQuery
from dkos.metrics.query import Series

STORED_METRIC = {
    MetricKind.CPU_PERCENT: "dkos.container.cpu.percent",
    MetricKind.MEMORY_PERCENT: "dkos.container.memory.limit_percent",
    MetricKind.REQUEST_RATE: "dkos.app.requests",
    MetricKind.ERROR_RATE: "dkos.app.responses",
    MetricKind.RESPONSE_TIME: "dkos.app.response_ms",
}
_PER_INSTANCE = {MetricKind.CPU_PERCENT, MetricKind.MEMORY_PERCENT}
_COUNTERS = {MetricKind.REQUEST_RATE, MetricKind.ERROR_RATE}


class SeriesReader(Protocol):
    """The one call of the metrics store this module needs."""

    async def series(self, metric: str, start_ms: int, end_ms: int) -> list[Series]: ...


def stored_metric(query: MetricQuery) -> str:
    if query.kind is MetricKind.CUSTOM:
        assert query.metric is not None, "a custom query names its metric"
        return query.metric
    return STORED_METRIC[query.kind]


def _mean(points: Sequence[tuple[int, float]]) -> float | None:
    return sum(float(v) for _, v in points) / len(points) if points else None


def _rate(points: Sequence[tuple[int, float]]) -> float | None:
    """Per second over the points, a counter that restarts at 0 counted from there (OpenTSDB's counter rate)."""
    if len(points) < 2:
        return None
    increase = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        increase += float(after) - float(before) if after >= before else float(after)
    span = (points[-1][0] - points[0][0]) / 1000
    return increase / span if span > 0 else None


def _window(points: Sequence[tuple[int, float]], start: int, end: int, *, counter: bool) -> list[tuple[int, float]]:
    inside = [(t, float(v)) for t, v in points if start <= t < end]
    if counter:
        # The last point before the window makes the first increase inside it countable.
        before = [(t, float(v)) for t, v in points if t < start]
        if before:
            inside.insert(0, before[-1])
    return inside


def _matches(tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all((v == "*" and k in tags) or tags.get(k) == v for k, v in wanted.items())


def select(
    query: MetricQuery, series: Sequence[Series], *, project: str, app: str | None, instances: frozenset[str] | None
) -> list[Series]:
    """The series an alarm reads: its project's (and app's), of healthy instances only for per-instance metrics."""
    if query.kind is MetricKind.CUSTOM:
        return [s for s in series if _matches(s.tags, query.filters)]
    scope = {"project": project, **({"app": app} if app is not None else {})}
    if query.kind is MetricKind.ERROR_RATE:
        scope["class"] = "5xx"
    kept = [s for s in series if _matches(s.tags, scope)]
    if query.kind in _PER_INSTANCE and instances is not None:
        kept = [s for s in kept if s.tags.get("instance") in instances]
    return kept


def compute_values(
    query: MetricQuery,
    series: Sequence[Series],
    *,
    healthy_per_app: Mapping[str, int],
    start_ms: int,
    end_ms: int,
) -> float | None:
    """The value of one period [start_ms, end_ms) from already `select`ed series."""
    counter = query.kind in _COUNTERS
    if query.kind in _PER_INSTANCE or query.kind is MetricKind.CUSTOM:
        means = [_mean(_window(s.points, start_ms, end_ms, counter=False)) for s in series]
        return compute_statistic(query.statistic, [v for v in means if v is not None])
    by_app: dict[str, list[float]] = defaultdict(list)
    for s in series:
        window = _window(s.points, start_ms, end_ms, counter=counter)
        value = _rate(window) if counter else _mean(window)
        if value is not None:
            by_app[s.tags.get("app", "")].append(value)
    per_app: list[float] = []
    for name, values in by_app.items():
        if query.kind is MetricKind.RESPONSE_TIME:
            per_app.append(sum(values) / len(values))
        elif query.kind is MetricKind.ERROR_RATE:
            per_app.append(sum(values))
        else:
            healthy = healthy_per_app.get(name, 0)
            if healthy > 0:
                per_app.append(sum(values) / healthy)
    return compute_statistic(query.statistic, per_app)


def compute_series_datapoints(
    query: MetricQuery,
    series: Sequence[Series],
    *,
    healthy_per_app: Mapping[str, int],
    period_ms: int,
    count: int,
    now_ms: int,
) -> list[float | None]:
    """The last `count` datapoints, oldest first; the newest period ends at `now_ms` (inclusive)."""
    end = now_ms + 1
    points: list[float | None] = []
    for k in reversed(range(count)):
        points.append(
            compute_values(
                query,
                series,
                healthy_per_app=healthy_per_app,
                start_ms=end - (k + 1) * period_ms,
                end_ms=end - k * period_ms,
            )
        )
    return points


async def fetch(
    store: SeriesReader,
    query: MetricQuery,
    *,
    project: str,
    app: str | None,
    healthy: Mapping[str, frozenset[str]],
    period: float,
    count: int,
    now: float,
) -> list[float | None]:
    """Read the store and compute the datapoints. `healthy` maps each app in scope to its healthy instance ids."""
    period_ms = int(period * 1000)
    now_ms = int(now * 1000)
    # One period more than needed: a counter's rate needs the point before its window.
    found = await store.series(stored_metric(query), now_ms + 1 - (count + 1) * period_ms, now_ms + 1)
    instances = frozenset().union(*healthy.values()) if healthy else frozenset()
    chosen = select(query, found, project=project, app=app, instances=instances)
    return compute_series_datapoints(
        query,
        chosen,
        healthy_per_app={name: len(ids) for name, ids in healthy.items()},
        period_ms=period_ms,
        count=count,
        now_ms=now_ms,
    )
