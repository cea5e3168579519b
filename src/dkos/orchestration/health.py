"""Health checks run by dkos itself: HTTP GET, TCP connect, or a command in the container.

`judge` is the pure decision (what one probe result means for an instance); `HealthMonitor`
runs one probe loop per running instance and reports transitions. Until the first pass an
instance is probed every 50 ms at first, the gap growing to `start_interval` (so a healthy
app is seen healthy within milliseconds of listening), then every `interval`. Failures
inside `grace_period` after start do not count; one failure takes a healthy instance out
of rotation (unhealthy); `max_consecutive_failures` in a row get it replaced.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dkos.apps.spec import HealthCheck, HealthCheckType
from dkos.core.errors import DkosError
from dkos.engines.base import ContainerState, Engine
from dkos.orchestration.instances import InstanceState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    passed: bool
    detail: str
    """Why it failed (`HTTP 500`, `connection refused`, `timed out after 1s`), or what passed."""


@dataclass(frozen=True)
class HealthStatus:
    state: InstanceState
    failures: int = 0


class Verdict(enum.StrEnum):
    NONE = "none"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    REPLACE = "replace"


def judge(
    status: HealthStatus, result: ProbeResult, check: HealthCheck, *, started_at: float, now: float
) -> tuple[HealthStatus, Verdict]:
    """The instance's health after one probe, and what changed."""
    if result.passed:
        if status.state is InstanceState.HEALTHY:
            return HealthStatus(InstanceState.HEALTHY), Verdict.NONE
        return HealthStatus(InstanceState.HEALTHY), Verdict.HEALTHY
    if status.state is InstanceState.STARTING and now - started_at < check.grace_period:
        return status, Verdict.NONE
    failures = status.failures + 1
    if failures >= check.max_consecutive_failures:
        return HealthStatus(InstanceState.UNHEALTHY, failures), Verdict.REPLACE
    if status.state is InstanceState.HEALTHY:
        return HealthStatus(InstanceState.UNHEALTHY, failures), Verdict.UNHEALTHY
    return HealthStatus(status.state, failures), Verdict.NONE


FIRST_PROBE_GAP = 0.05
"""Seconds between the first probes of a new instance: most apps listen within milliseconds."""


def next_delay(status: HealthStatus, check: HealthCheck, *, since_start: float) -> float:
    """Once healthy, every `interval`. Before, the gap grows with the time since start, from
    50 ms to `start_interval`, so a fast app is seen healthy at once and a slow one is not
    probed in a tight loop."""
    if status.state is not InstanceState.STARTING:
        return check.interval
    return min(check.start_interval, max(FIRST_PROBE_GAP, since_start / 4))


async def probe_http(ip: str, port: int, path: str, timeout: float) -> ProbeResult:
    return await _bounded(_http(ip, port, path), timeout)


async def probe_tcp(ip: str, port: int, timeout: float) -> ProbeResult:
    async def connect() -> ProbeResult:
        _, writer = await asyncio.open_connection(ip, port)
        writer.close()
        return ProbeResult(True, "connected")

    return await _bounded(connect(), timeout)


async def probe_command(engine: Engine, container_id: str, command: list[str], timeout: float) -> ProbeResult:
    try:
        result = await engine.exec(container_id, command, timeout=timeout)
    except DkosError as exc:
        return ProbeResult(False, exc.message)
    if result.exit_code == 0:
        return ProbeResult(True, "exit 0")
    return ProbeResult(False, f"command exited with code {result.exit_code}")


async def _http(ip: str, port: int, path: str) -> ProbeResult:
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: dkos-health\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").split()
    finally:
        writer.close()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return ProbeResult(False, "not an HTTP answer")
    code = int(status_line[1])
    return ProbeResult(200 <= code < 400, f"HTTP {code}")


async def _bounded(probe: Awaitable[ProbeResult], timeout: float) -> ProbeResult:
    try:
        return await asyncio.wait_for(probe, timeout)
    except TimeoutError:
        return ProbeResult(False, f"timed out after {timeout:g}s")
    except ConnectionRefusedError:
        return ProbeResult(False, "connection refused")
    except OSError as exc:
        return ProbeResult(False, exc.strerror or str(exc))


@dataclass(frozen=True)
class Target:
    """One running instance to probe."""

    app_id: int
    project: str
    app: str
    instance_id: str
    container_id: str
    ip: str | None
    port: int | None
    check: HealthCheck | None
    """None: the app has no health check; running for `min_running` seconds counts as healthy."""
    started_at: float
    state: InstanceState


Report = Callable[[Target, HealthStatus, Verdict, ProbeResult], Awaitable[None]]


class HealthMonitor:
    """One probe loop per target; `sync` starts and cancels loops to match the running instances."""

    def __init__(self, engine: Engine, report: Report, clock: Callable[[], float], *, min_running: float) -> None:
        self._engine = engine
        self._min_running = min_running
        self._report = report
        self._clock = clock
        self._loops: dict[tuple[int, str], asyncio.Task[None]] = {}

    def sync(self, app_id: int, targets: list[Target]) -> None:
        wanted = {(t.app_id, t.instance_id): t for t in targets}
        for key in [k for k in self._loops if k[0] == app_id and k not in wanted]:
            self.forget(*key)
        for target in wanted.values():
            self.watch(target)

    def watch(self, target: Target) -> None:
        """Start probing one instance now (if it is not probed already), without waiting for
        the rest of its app's reconcile pass."""
        key = (target.app_id, target.instance_id)
        loop = self._loops.get(key)
        if loop is None or loop.done():
            self._loops[key] = asyncio.create_task(self._run(target), name=f"health:{target.instance_id}")

    def forget(self, app_id: int, instance_id: str | None = None) -> None:
        """Stop probing one instance, or every instance of the app."""
        for key in [k for k in self._loops if k[0] == app_id and instance_id in (None, k[1])]:
            self._loops.pop(key).cancel()

    async def close(self) -> None:
        loops = list(self._loops.values())
        self._loops.clear()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def probe(self, target: Target, check: HealthCheck) -> ProbeResult:
        if check.type is HealthCheckType.COMMAND:
            return await probe_command(self._engine, target.container_id, list(check.command or []), check.timeout)
        if target.ip is None or target.port is None:
            return ProbeResult(False, "instance has no address")
        if check.type is HealthCheckType.TCP:
            return await probe_tcp(target.ip, target.port, check.timeout)
        return await probe_http(target.ip, target.port, check.path, check.timeout)

    async def _run(self, target: Target) -> None:
        if target.check is None:
            await self._run_unchecked(target)
        else:
            await self._run_checked(target, target.check)

    async def _run_unchecked(self, target: Target) -> None:
        """Without a health check, an instance still running after `min_running` is healthy
        (so an app that exits at once fails its deployment instead of passing it)."""
        if target.state is not InstanceState.STARTING:
            return
        await asyncio.sleep(max(0.0, target.started_at + self._min_running - self._clock()))
        status = await self._engine.inspect(target.container_id)
        if status is not None and status.state is ContainerState.RUNNING:
            await self._report(
                target,
                HealthStatus(InstanceState.HEALTHY),
                Verdict.HEALTHY,
                ProbeResult(True, f"running for {self._min_running:g}s"),
            )

    async def _run_checked(self, target: Target, check: HealthCheck) -> None:
        status = HealthStatus(target.state)
        while True:
            started = self._clock()
            result = await self.probe(target, check)
            status, verdict = judge(status, result, check, started_at=target.started_at, now=self._clock())
            if verdict is not Verdict.NONE:
                try:
                    await self._report(target, status, verdict, result)
                except Exception:
                    log.exception("recording a health transition of %s failed", target.instance_id)
                if verdict is Verdict.REPLACE:
                    return
            delay = next_delay(status, check, since_start=self._clock() - target.started_at)
            await asyncio.sleep(max(0.0, delay - (self._clock() - started)))
