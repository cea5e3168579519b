from __future__ import annotations

import asyncio

from dkos.apps.spec import HealthCheck
from dkos.orchestration.health import (
    HealthStatus,
    ProbeResult,
    Verdict,
    judge,
    next_delay,
    probe_http,
    probe_tcp,
)
from dkos.orchestration.instances import InstanceState

CHECK = HealthCheck(grace_period=10, interval=2, timeout=1, max_consecutive_failures=3)
PASS = ProbeResult(True, "HTTP 200")
FAIL = ProbeResult(False, "HTTP 500")


def test_the_first_pass_makes_a_starting_instance_healthy() -> None:
    assert judge(HealthStatus(InstanceState.STARTING), PASS, CHECK, started_at=0, now=1) == (
        HealthStatus(InstanceState.HEALTHY),
        Verdict.HEALTHY,
    )


def test_failures_inside_the_grace_period_do_not_count() -> None:
    status = HealthStatus(InstanceState.STARTING)
    for now in range(1, 10):
        status, verdict = judge(status, FAIL, CHECK, started_at=0, now=now)
        assert verdict is Verdict.NONE
    assert status.failures == 0


def test_one_failure_takes_a_healthy_instance_out_and_the_limit_replaces_it() -> None:
    status, verdict = judge(HealthStatus(InstanceState.HEALTHY), FAIL, CHECK, started_at=0, now=60)
    assert (status.state, verdict) == (InstanceState.UNHEALTHY, Verdict.UNHEALTHY)
    status, verdict = judge(status, FAIL, CHECK, started_at=0, now=62)
    assert verdict is Verdict.NONE
    status, verdict = judge(status, FAIL, CHECK, started_at=0, now=64)
    assert verdict is Verdict.REPLACE and status.failures == 3


def test_a_pass_clears_the_failure_count() -> None:
    status, _ = judge(HealthStatus(InstanceState.UNHEALTHY, failures=2), PASS, CHECK, started_at=0, now=60)
    assert status == HealthStatus(InstanceState.HEALTHY, 0)


def test_an_instance_that_never_passes_is_replaced_after_the_grace_period() -> None:
    status = HealthStatus(InstanceState.STARTING)
    verdicts = []
    for now in (11, 12, 13):
        status, verdict = judge(status, FAIL, CHECK, started_at=0, now=now)
        verdicts.append(verdict)
    assert verdicts == [Verdict.NONE, Verdict.NONE, Verdict.REPLACE]


async def _serve(status_line: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(status_line + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_http_probe_passes_on_2xx_and_3xx_and_fails_on_5xx() -> None:
    for line, passed in (
        (b"HTTP/1.1 200 OK", True),
        (b"HTTP/1.1 302 Found", True),
        (b"HTTP/1.1 500 Oops", False),
    ):
        server, port = await _serve(line)
        async with server:
            result = await probe_http("127.0.0.1", port, "/health", 1)
        assert result.passed is passed
    assert result.detail == "HTTP 500"


async def test_probes_report_refused_connections_and_timeouts() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        slow = await probe_http("127.0.0.1", port, "/", 0.2)
    assert (slow.passed, slow.detail) == (False, "timed out after 0.2s")
    refused = await probe_tcp("127.0.0.1", port, 1)
    assert (refused.passed, refused.detail) == (False, "connection refused")


def test_a_new_instance_is_probed_quickly_at_first_then_every_start_interval() -> None:
    starting = HealthStatus(InstanceState.STARTING)
    gaps = [next_delay(starting, CHECK, since_start=t) for t in (0.0, 0.4, 1.0, 10.0)]
    assert gaps == [0.05, 0.1, 0.25, CHECK.start_interval]
    assert next_delay(HealthStatus(InstanceState.HEALTHY), CHECK, since_start=10.0) == CHECK.interval
