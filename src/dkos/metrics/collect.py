"""Collection: container, load-balancer and node figures → points in the metrics store.

Deciding is pure: `container_points`, `lb_points` and `node_points` turn samples into
`DataPoint`s under the names of `names`, taking the time as an argument. Doing is the
`Collector`: it keeps one task per running instance reading the engine's stats stream
(the engine pushes a sample about every second; polling each container would cost a
request per container per tick), keeps the latest samples, and every `interval` seconds
writes the latest figures of every instance, of the balancer and of the node with one
`MetricsStore.put` — one transaction per tick, however many containers run.

It learns what runs from a `targets()` callable the server supplies, so it never reads
the orchestration or app storage itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from dkos.engines.base import ContainerStats, Engine
from dkos.lb.runtime import StatKind, StatRow
from dkos.metrics import names
from dkos.metrics.store import DataPoint, MetricsStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0
MIN_INTERVAL = 1.0
"""The engine's stats stream gives about one sample a second: a shorter tick would only repeat it."""

Tags = Mapping[str, str]


@dataclass(frozen=True)
class Target:
    """One running instance to collect, as the server describes it."""

    instance_id: str
    container_id: str
    project: str
    app: str
    version: int
    cpu_limit_cores: float | None = None
    """The container's CPU limit; None when it may use every core of the node."""
    restarts: int | None = None
    """Times dkos has restarted this instance's slot, when the server knows it."""


class DiskUsage(NamedTuple):
    """Like `shutil.disk_usage`'s answer (which is one)."""

    total: int
    used: int
    free: int


# pure ------------------------------------------------------------------------------------


def cpu_percent(prev: ContainerStats, cur: ContainerStats) -> float | None:
    """CPU used between two samples in percent of one core, as `docker stats` computes it:
    the container's CPU time delta over the host's CPU time delta, × the online cores.
    None when the deltas do not allow it (same sample, counters reset by a restart)."""
    cpu_delta = cur.cpu_total_ns - prev.cpu_total_ns
    system_delta = cur.system_cpu_ns - prev.system_cpu_ns
    if system_delta <= 0 or cpu_delta < 0:
        return None
    return cpu_delta / system_delta * max(cur.online_cpus, 1) * 100.0


def container_points(
    prev: ContainerStats | None,
    cur: ContainerStats,
    *,
    tags: Tags,
    cpu_limit_cores: float | None,
    now_ms: int,
) -> list[DataPoint]:
    """The points of one container sample; CPU figures only when a previous sample gives a delta."""

    def point(metric: names.Metric, value: float) -> DataPoint:
        return DataPoint(metric.name, tags, now_ms, value)

    points: list[DataPoint] = []
    percent = cpu_percent(prev, cur) if prev is not None else None
    if percent is not None:
        points.append(point(names.CONTAINER_CPU_PERCENT, percent))
        cores = cpu_limit_cores if cpu_limit_cores else cur.online_cpus
        if cores > 0:
            points.append(point(names.CONTAINER_CPU_LIMIT_PERCENT, percent / cores))
    points.append(point(names.CONTAINER_MEMORY_BYTES, cur.memory_bytes))
    if cur.memory_limit_bytes > 0:
        points.append(point(names.CONTAINER_MEMORY_LIMIT_PERCENT, cur.memory_bytes / cur.memory_limit_bytes * 100.0))
    points += [
        point(names.CONTAINER_NET_RX_BYTES, cur.rx_bytes),
        point(names.CONTAINER_NET_TX_BYTES, cur.tx_bytes),
        point(names.CONTAINER_BLKIO_READ_BYTES, cur.blkio_read_bytes),
        point(names.CONTAINER_BLKIO_WRITE_BYTES, cur.blkio_write_bytes),
    ]
    return points


def lb_points(rows: Sequence[StatRow], backends: Mapping[str, Tags], now_ms: int) -> list[DataPoint]:
    """The app points of HAProxy's backend rows; rows of backends not in `backends` (frontends,
    HAProxy's own, apps gone since) are left out. Server rows are left out too: summing an app's
    series must not count a request twice."""
    points: list[DataPoint] = []
    for row in rows:
        tags = backends.get(row.proxy)
        if row.kind is not StatKind.BACKEND or tags is None:
            continue
        points += [
            DataPoint(names.APP_REQUESTS.name, tags, now_ms, row.req_tot),
            DataPoint(names.APP_SESSIONS.name, tags, now_ms, row.scur),
            DataPoint(names.APP_RESPONSE_MS.name, tags, now_ms, row.rtime),
        ]
        for status_class, value in (
            ("2xx", row.hrsp_2xx),
            ("3xx", row.hrsp_3xx),
            ("4xx", row.hrsp_4xx),
            ("5xx", row.hrsp_5xx),
        ):
            points.append(DataPoint(names.APP_RESPONSES.name, {**tags, names.Tag.CLASS: status_class}, now_ms, value))
    return points


def node_points(
    loadavg: tuple[float, float, float] | None,
    meminfo: Mapping[str, int] | None,
    disk_usage: DiskUsage | None,
    tags: Tags,
    now_ms: int,
) -> list[DataPoint]:
    """The node's points; each figure the node could not give (None) is left out.

    `meminfo` is `/proc/meminfo` in bytes (see `parse_meminfo`); used memory is MemTotal less
    MemAvailable, which counts reclaimable cache as free, as `free` does."""
    points: list[DataPoint] = []
    if loadavg is not None:
        for metric, value in zip((names.NODE_LOAD1, names.NODE_LOAD5, names.NODE_LOAD15), loadavg, strict=True):
            points.append(DataPoint(metric.name, tags, now_ms, value))
    if meminfo is not None and "MemTotal" in meminfo and "MemAvailable" in meminfo:
        total = meminfo["MemTotal"]
        points += [
            DataPoint(names.NODE_MEMORY_USED_BYTES.name, tags, now_ms, total - meminfo["MemAvailable"]),
            DataPoint(names.NODE_MEMORY_TOTAL_BYTES.name, tags, now_ms, total),
        ]
    if disk_usage is not None:
        points += [
            DataPoint(names.NODE_DISK_USED_BYTES.name, tags, now_ms, disk_usage.used),
            DataPoint(names.NODE_DISK_TOTAL_BYTES.name, tags, now_ms, disk_usage.total),
        ]
    return points


def parse_meminfo(text: str) -> dict[str, int]:
    """`/proc/meminfo` → field → bytes (the file counts in kB, meaning KiB)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if not words or not words[0].isdigit():
            continue
        fields[key.strip()] = int(words[0]) * (1024 if words[1:] == ["kB"] else 1)
    return fields


def parse_backend_name(backend: str) -> dict[str, str] | None:
    """`<project>.<app>.<port>` (see `orchestration.routing.backend_name`) → its tags; None for
    a name of another shape. Project, app and port names are DNS labels, without dots."""
    parts = backend.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    project, app, port = parts
    return {names.Tag.PROJECT: project, names.Tag.APP: app, names.Tag.PORT: port}


# doing -----------------------------------------------------------------------------------


@dataclass
class _Stream:
    """One instance's stats stream and the samples it has given."""

    target: Target
    task: asyncio.Task[None]
    latest: ContainerStats | None = None
    before: ContainerStats | None = None
    """The sample before `latest`, for the CPU delta before the first tick."""
    written: ContainerStats | None = None
    """The sample the last tick wrote: the next tick's CPU figure covers the whole interval."""


PRUNE_EVERY_MS = 3_600_000
"""Raw points past their retention are dropped once an hour, by the collector that writes them."""


class Collector:
    """Writes every instance's, the balancer's and the node's figures each `interval` seconds.

    An async context manager: entering starts the tick loop; leaving cancels it and every
    stats stream. A tick that fails in part (the engine, HAProxy or the store does not answer)
    writes what it could and is logged; the loop goes on."""

    def __init__(
        self,
        store: MetricsStore,
        engine: Engine,
        targets: Callable[[], Awaitable[list[Target]]],
        *,
        balancer: Any | None = None,
        backend_tags: Callable[[str], Tags | None] = parse_backend_name,
        data_dir: Path,
        node: str,
        zone: str = names.DEFAULT_ZONE,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if interval < MIN_INTERVAL:
            raise ValueError(f"the metrics interval is at least {MIN_INTERVAL:g} s, not {interval:g}")
        self.store = store
        self.engine = engine
        self.targets = targets
        self.balancer = balancer
        """Anything with `async stats() -> list[StatRow]` (a `LoadBalancer`), or None."""
        self.backend_tags = backend_tags
        self.data_dir = data_dir
        self.node = node
        self.zone = zone
        self.interval = interval
        self._streams: dict[str, _Stream] = {}
        self._loop: asyncio.Task[None] | None = None
        self._pruned_at = 0

    async def __aenter__(self) -> Self:
        self._loop = asyncio.create_task(self._run(), name="metrics-collector")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks = [s.task for s in self._streams.values()]
        if self._loop is not None:
            tasks.append(self._loop)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._streams.clear()
        self._loop = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            try:
                await self.collect_once()
            except Exception:
                log.exception("metrics collection failed; retrying at the next tick")
            next_tick += self.interval
            # A tick longer than the interval is not made up for: the next one starts now.
            next_tick = max(next_tick, loop.time())
            await asyncio.sleep(next_tick - loop.time())

    async def collect_once(self, now_ms: int | None = None) -> list[DataPoint]:
        """One tick: follow the running instances, then write every figure with one `put`."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        points: list[DataPoint] = []
        try:
            await self.sync_streams(await self.targets())
        except Exception:
            log.exception("could not list the instances to collect; writing what the streams gave")
        points += self._container_points(now_ms)
        points += await self._lb_points(now_ms)
        points += await self._node_points(now_ms)
        await self.store.put(points)
        if now_ms - self._pruned_at >= PRUNE_EVERY_MS:
            self._pruned_at = now_ms
            await self.store.prune(now_ms=now_ms)
        return points

    async def sync_streams(self, targets: Sequence[Target]) -> None:
        """Start a stream for each new running instance, stop those of instances gone, and
        restart a stream that ended while its instance still runs (at most once a tick)."""
        wanted = {t.instance_id: t for t in targets}
        for instance_id, stream in list(self._streams.items()):
            target = wanted.get(instance_id)
            if target is None or target.container_id != stream.target.container_id:
                stream.task.cancel()
                del self._streams[instance_id]
                continue
            stream.target = target
            if stream.task.done():
                stream.task = self._follow(target)
        for instance_id, target in wanted.items():
            if instance_id not in self._streams:
                self._streams[instance_id] = _Stream(target=target, task=self._follow(target))

    def _follow(self, target: Target) -> asyncio.Task[None]:
        return asyncio.create_task(self._read(target), name=f"metrics-stats-{target.instance_id}")

    async def _read(self, target: Target) -> None:
        try:
            async for sample in self.engine.stats(target.container_id):
                stream = self._streams.get(target.instance_id)
                if stream is None or stream.target.container_id != target.container_id:
                    return
                stream.before, stream.latest = stream.latest, sample
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("stats stream of %s ended: %s", target.instance_id, exc)

    def _container_points(self, now_ms: int) -> list[DataPoint]:
        points: list[DataPoint] = []
        for stream in self._streams.values():
            cur, target = stream.latest, stream.target
            if cur is None or cur is stream.written:
                continue  # no new sample since the last tick: a gap, not a repeated stale value
            prev = stream.written if stream.written is not None else stream.before
            tags: dict[str, str] = {
                names.Tag.PROJECT: target.project,
                names.Tag.APP: target.app,
                names.Tag.INSTANCE: target.instance_id,
                names.Tag.VERSION: str(target.version),
                names.Tag.NODE: self.node,
                names.Tag.ZONE: self.zone,
            }
            points += container_points(prev, cur, tags=tags, cpu_limit_cores=target.cpu_limit_cores, now_ms=now_ms)
            if target.restarts is not None:
                points.append(DataPoint(names.CONTAINER_RESTARTS.name, tags, now_ms, target.restarts))
            stream.written = cur
        return points

    async def _lb_points(self, now_ms: int) -> list[DataPoint]:
        if self.balancer is None:
            return []
        try:
            rows: list[StatRow] = await self.balancer.stats()
        except Exception as exc:
            log.warning("no load-balancer figures this tick: %s", exc)
            return []
        backends: dict[str, Tags] = {}
        for row in rows:
            if row.kind is StatKind.BACKEND and row.proxy not in backends:
                tags = self.backend_tags(row.proxy)
                if tags is not None:
                    backends[row.proxy] = {**tags, names.Tag.NODE: self.node, names.Tag.ZONE: self.zone}
        return lb_points(rows, backends, now_ms)

    async def _node_points(self, now_ms: int) -> list[DataPoint]:
        loadavg, meminfo, disk = await asyncio.to_thread(self._read_node)
        return node_points(loadavg, meminfo, disk, {names.Tag.NODE: self.node, names.Tag.ZONE: self.zone}, now_ms)

    def _read_node(self) -> tuple[tuple[float, float, float] | None, dict[str, int] | None, DiskUsage | None]:
        loadavg = meminfo = disk = None
        with contextlib.suppress(OSError):
            loadavg = os.getloadavg()
        with contextlib.suppress(OSError):
            meminfo = parse_meminfo(Path("/proc/meminfo").read_text())
        with contextlib.suppress(OSError):
            disk = DiskUsage(*shutil.disk_usage(self.data_dir))
        return loadavg, meminfo, disk
