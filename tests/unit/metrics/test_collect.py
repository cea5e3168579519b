"""Collection: samples → points (pure), and the `Collector` writing to a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dkos.engines.base import ContainerStats
from dkos.lb.runtime import StatKind, StatRow
from dkos.metrics import collect, names
from dkos.metrics.store import MetricsStore

TAGS = {"project": "default", "app": "web", "instance": "web-1", "version": "3", "node": "n1", "zone": "default"}


def sample(*, cpu_ns: int, system_ns: int, cpus: int = 4, time: float = 0.0, rx: int = 10) -> ContainerStats:
    return ContainerStats(
        container_id="c1",
        time=time,
        cpu_total_ns=cpu_ns,
        system_cpu_ns=system_ns,
        online_cpus=cpus,
        memory_bytes=256 * 2**20,
        memory_limit_bytes=1024 * 2**20,
        rx_bytes=rx,
        tx_bytes=20,
        blkio_read_bytes=30,
        blkio_write_bytes=40,
    )


def by_name(points: list[collect.DataPoint]) -> dict[str, int | float]:
    return {p.metric: p.value for p in points}


def test_cpu_percent_is_of_one_core_as_docker_stats_computes_it() -> None:
    # 0.5 s of container CPU while the host's 4 cores spent 4 s in all: half of one core.
    prev = sample(cpu_ns=1_000_000_000, system_ns=10_000_000_000)
    cur = sample(cpu_ns=1_500_000_000, system_ns=14_000_000_000)
    values = by_name(collect.container_points(prev, cur, tags=TAGS, cpu_limit_cores=0.25, now_ms=5000))
    assert values[names.CONTAINER_CPU_PERCENT.name] == pytest.approx(50.0)
    assert values[names.CONTAINER_CPU_LIMIT_PERCENT.name] == pytest.approx(200.0)
    assert values[names.CONTAINER_MEMORY_LIMIT_PERCENT.name] == pytest.approx(25.0)


def test_cpu_limit_percent_is_of_every_core_without_a_limit() -> None:
    prev = sample(cpu_ns=0, system_ns=0)
    cur = sample(cpu_ns=2_000_000_000, system_ns=4_000_000_000)
    values = by_name(collect.container_points(prev, cur, tags=TAGS, cpu_limit_cores=None, now_ms=0))
    assert values[names.CONTAINER_CPU_PERCENT.name] == pytest.approx(200.0)
    assert values[names.CONTAINER_CPU_LIMIT_PERCENT.name] == pytest.approx(50.0)


def test_no_cpu_figures_without_a_usable_delta_but_counters_pass_through() -> None:
    cur = sample(cpu_ns=5, system_ns=7, rx=123)
    for prev in (None, cur, sample(cpu_ns=9, system_ns=3)):
        points = collect.container_points(prev, cur, tags=TAGS, cpu_limit_cores=1.0, now_ms=42)
        values = by_name(points)
        assert names.CONTAINER_CPU_PERCENT.name not in values
        assert values[names.CONTAINER_NET_RX_BYTES.name] == 123
        assert values[names.CONTAINER_NET_TX_BYTES.name] == 20
        assert values[names.CONTAINER_BLKIO_READ_BYTES.name] == 30
        assert values[names.CONTAINER_BLKIO_WRITE_BYTES.name] == 40
        assert values[names.CONTAINER_MEMORY_BYTES.name] == 256 * 2**20
        assert {(p.timestamp_ms, tuple(sorted(p.tags.items()))) for p in points} == {(42, tuple(sorted(TAGS.items())))}


def row(proxy: str, name: str, kind: StatKind, **figures: int) -> StatRow:
    base = dict(scur=0, rate=0, req_tot=0, hrsp_2xx=0, hrsp_3xx=0, hrsp_4xx=0, hrsp_5xx=0, rtime=0)
    return StatRow(proxy=proxy, name=name, kind=kind, status="UP", **(base | figures))


def test_lb_backend_rows_become_app_points_with_a_class_tag_per_status_class() -> None:
    rows = [
        row("http", "FRONTEND", StatKind.FRONTEND, req_tot=999),
        row("default.web.http", "web-1", StatKind.SERVER, req_tot=7),
        row("default.web.http", "BACKEND", StatKind.BACKEND, scur=3, req_tot=10, hrsp_2xx=8, hrsp_5xx=2, rtime=12),
        row("stats", "BACKEND", StatKind.BACKEND, req_tot=5),
    ]
    tags = {"project": "default", "app": "web", "port": "http", "node": "n1", "zone": "default"}
    points = collect.lb_points(rows, {"default.web.http": tags}, 1000)
    found = {(p.metric, p.tags.get("class")): p.value for p in points}
    assert found == {
        ("dkos.app.requests", None): 10,
        ("dkos.app.sessions", None): 3,
        ("dkos.app.response_ms", None): 12,
        ("dkos.app.responses", "2xx"): 8,
        ("dkos.app.responses", "3xx"): 0,
        ("dkos.app.responses", "4xx"): 0,
        ("dkos.app.responses", "5xx"): 2,
    }
    assert all(p.timestamp_ms == 1000 and p.tags["app"] == "web" for p in points)


def test_backend_names_give_project_app_and_port() -> None:
    assert collect.parse_backend_name("shop.api.http") == {"project": "shop", "app": "api", "port": "http"}
    assert collect.parse_backend_name("stats") is None
    assert collect.parse_backend_name("a..b") is None


def test_node_points_read_plain_values_and_skip_what_is_missing() -> None:
    meminfo = collect.parse_meminfo(
        "MemTotal:       16000 kB\nMemFree:  100 kB\nMemAvailable:   4000 kB\nHugePages_Total: 0\n"
    )
    assert meminfo["MemTotal"] == 16000 * 1024
    points = collect.node_points(
        (0.5, 1.0, 1.5), meminfo, collect.DiskUsage(total=100, used=60, free=40), {"node": "n1", "zone": "z"}, 7
    )
    assert by_name(points) == {
        "dkos.node.load1": 0.5,
        "dkos.node.load5": 1.0,
        "dkos.node.load15": 1.5,
        "dkos.node.memory.used_bytes": 12000 * 1024,
        "dkos.node.memory.total_bytes": 16000 * 1024,
        "dkos.node.disk.used_bytes": 60,
        "dkos.node.disk.total_bytes": 100,
    }
    assert collect.node_points(None, None, None, {"node": "n1"}, 7) == []


def test_every_metric_name_is_documented_once() -> None:
    assert len({m.name for m in names.ALL}) == len(names.ALL)
    assert all(m.name.startswith("dkos.") and m.description for m in names.ALL)
    docs = (Path(__file__).parents[3] / "docs" / "metrics.md").read_text()
    assert all(f"`{m.name}`" in docs for m in names.ALL)


class TwoSampleEngine:
    """A fake engine, used only in this unit test: its stats stream yields two samples of one
    container and then stays open, as Docker's does while the container runs."""

    def __init__(self) -> None:
        self.streams: list[str] = []
        self.closed = asyncio.Event()

    async def stats(self, container_id: str) -> AsyncIterator[ContainerStats]:
        self.streams.append(container_id)
        yield sample(cpu_ns=1_000_000_000, system_ns=10_000_000_000, rx=100)
        yield sample(cpu_ns=3_000_000_000, system_ns=18_000_000_000, rx=250)
        try:
            await asyncio.Event().wait()
        finally:
            self.closed.set()


class FakeBalancer:
    async def stats(self) -> list[StatRow]:
        return [row("default.web.http", "BACKEND", StatKind.BACKEND, req_tot=4, hrsp_2xx=4)]


async def test_collector_writes_the_latest_figures_of_each_running_instance_to_the_store(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    engine = TwoSampleEngine()
    running = [collect.Target("web-1", "c1", "default", "web", 3, cpu_limit_cores=2.0, restarts=1)]

    async def targets() -> list[collect.Target]:
        return list(running)

    collector = collect.Collector(
        store,
        engine,  # type: ignore[arg-type]
        targets,
        balancer=FakeBalancer(),
        data_dir=tmp_path,
        node="n1",
        interval=1.0,
    )
    await collector.sync_streams(running)
    await asyncio.sleep(0.01)  # let the stream task take both samples
    await collector.collect_once(now_ms=10_000)

    [cpu] = await store.series("dkos.container.cpu.percent", 0, 20_000)
    assert cpu.tags == {"project": "default", "app": "web", "instance": "web-1", "version": "3"} | {
        "node": "n1",
        "zone": "default",
    }
    assert list(cpu.points) == [(10_000, pytest.approx(100.0))]  # 2 s of CPU over 8 s of 4 cores
    [limit] = await store.series("dkos.container.cpu.limit_percent", 0, 20_000)
    assert list(limit.points) == [(10_000, pytest.approx(50.0))]
    [rx] = await store.series("dkos.container.net.rx_bytes", 0, 20_000)
    assert list(rx.points) == [(10_000, 250)]
    [restarts] = await store.series("dkos.container.restarts", 0, 20_000)
    assert list(restarts.points) == [(10_000, 1)]
    responses = await store.series("dkos.app.responses", 0, 20_000)
    assert {s.tags["class"]: list(s.points) for s in responses}["2xx"] == [(10_000, 4)]
    [load] = await store.series("dkos.node.load1", 0, 20_000)
    assert load.tags == {"node": "n1", "zone": "default"}
    [disk] = await store.series("dkos.node.disk.total_bytes", 0, 20_000)
    [(_, total)] = disk.points
    assert total > 0

    # No new sample since: the next tick leaves a gap rather than repeating stale figures.
    await collector.collect_once(now_ms=20_000)
    [rx] = await store.series("dkos.container.net.rx_bytes", 0, 30_000)
    assert list(rx.points) == [(10_000, 250)]

    # The instance stops: its stream is cancelled and it is no longer written.
    running.clear()
    await collector.collect_once(now_ms=30_000)
    await asyncio.wait_for(engine.closed.wait(), 1)
    assert engine.streams == ["c1"]
    await collector.__aexit__(None, None, None)
    await store.close()


async def test_collector_ticks_on_its_own_until_it_is_left(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    engine = TwoSampleEngine()

    async def targets() -> list[collect.Target]:
        return [collect.Target("web-1", "c1", "default", "web", 1)]

    async with collect.Collector(store, engine, targets, data_dir=tmp_path, node="n1", interval=1.0):  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
    assert await store.series("dkos.node.disk.used_bytes", 0, 2**62)
    assert engine.closed.is_set()
    await store.close()


def test_an_interval_under_one_second_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1 s"):
        collect.Collector(None, None, None, data_dir=tmp_path, node="n1", interval=0.5)  # type: ignore[arg-type]
