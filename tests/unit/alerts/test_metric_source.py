"""Datapoints from stored series: per-instance means of healthy instances only, request and 5xx rates
from counters (with resets), sliding periods ending now, a missing period as None."""

from __future__ import annotations

from collections.abc import Sequence

from dkos.alerts import metric_source
from dkos.alerts.model import MetricKind, MetricQuery, Statistic
from dkos.metrics.query import Series

NOW = 1_000_000


def cpu(instance: str, points: Sequence[tuple[int, float]], *, app: str = "web") -> Series:
    tags = {"project": "default", "app": app, "instance": instance}
    return Series("dkos.container.cpu.percent", tags, list(points))


def datapoints(
    query: MetricQuery,
    series: Sequence[Series],
    *,
    healthy: dict[str, frozenset[str]],
    period_ms: int = 10_000,
    count: int = 1,
    app: str | None = "web",
) -> list[float | None]:
    instances = frozenset().union(*healthy.values())
    chosen = metric_source.select(query, series, project="default", app=app, instances=instances)
    return metric_source.compute_series_datapoints(
        query,
        chosen,
        healthy_per_app={k: len(v) for k, v in healthy.items()},
        period_ms=period_ms,
        count=count,
        now_ms=NOW,
    )


def test_cpu_is_the_mean_of_each_healthy_instances_mean() -> None:
    series = [
        cpu("web-1", [(NOW - 5000, 80), (NOW - 1000, 100)]),  # mean 90
        cpu("web-2", [(NOW - 5000, 10), (NOW, 30)]),  # mean 20
        cpu("web-3", [(NOW - 1000, 100)]),  # starting: left out
        cpu("api-1", [(NOW - 1000, 100)], app="api"),  # another app
    ]
    healthy = {"web": frozenset({"web-1", "web-2"})}
    assert datapoints(MetricQuery(MetricKind.CPU_PERCENT), series, healthy=healthy) == [55.0]
    assert datapoints(MetricQuery(MetricKind.CPU_PERCENT, Statistic.MAX), series, healthy=healthy) == [90.0]


def test_points_before_the_period_do_not_count_and_an_empty_period_is_missing() -> None:
    series = [cpu("web-1", [(NOW - 25_000, 100), (NOW - 5000, 10)])]
    healthy = {"web": frozenset({"web-1"})}
    assert datapoints(MetricQuery(MetricKind.CPU_PERCENT), series, healthy=healthy, count=3) == [100.0, None, 10.0]


def test_request_rate_is_per_healthy_instance_from_the_counter() -> None:
    tags = {"project": "default", "app": "web", "port": "http"}
    requests = Series("dkos.app.requests", tags, [(NOW - 12_000, 1000), (NOW - 8000, 1400), (NOW, 2200)])
    healthy = {"web": frozenset({"web-1", "web-2"})}
    # The point before the period makes its first increase count: 1200 requests in 12 s over 2 instances.
    assert datapoints(MetricQuery(MetricKind.REQUEST_RATE), [requests], healthy=healthy) == [50.0]


def test_a_counter_reset_counts_from_zero() -> None:
    tags = {"project": "default", "app": "web", "port": "http", "class": "5xx"}
    errors = Series("dkos.app.responses", tags, [(NOW - 9000, 500), (NOW - 5000, 20), (NOW - 1000, 60)])
    other = Series("dkos.app.responses", {**tags, "class": "2xx"}, [(NOW - 9000, 0), (NOW - 1000, 8000)])
    healthy = {"web": frozenset({"web-1"})}
    assert datapoints(MetricQuery(MetricKind.ERROR_RATE), [errors, other], healthy=healthy) == [7.5]  # 60 in 8 s


def test_no_healthy_instance_means_no_request_rate() -> None:
    tags = {"project": "default", "app": "web", "port": "http"}
    requests = Series("dkos.app.requests", tags, [(NOW - 8000, 0), (NOW, 800)])
    assert datapoints(MetricQuery(MetricKind.REQUEST_RATE), [requests], healthy={"web": frozenset()}) == [None]


def test_a_custom_metric_with_filters() -> None:
    series = [
        Series("shop.queue.depth", {"queue": "orders", "host": "a"}, [(NOW - 1000, 40)]),
        Series("shop.queue.depth", {"queue": "orders", "host": "b"}, [(NOW - 1000, 60)]),
        Series("shop.queue.depth", {"queue": "mail", "host": "a"}, [(NOW - 1000, 1000)]),
    ]
    query = MetricQuery(MetricKind.CUSTOM, Statistic.SUM, metric="shop.queue.depth", filters={"queue": "orders"})
    assert datapoints(query, series, healthy={}) == [100.0]
