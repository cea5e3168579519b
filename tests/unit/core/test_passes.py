"""The repeated pass: woken at once, run at least every interval, never killed by a failure."""

from __future__ import annotations

import asyncio

from dkos.core import passes


async def test_a_wake_runs_the_pass_at_once_and_the_interval_without_one() -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def run() -> None:
        runs.append(loop.time())

    began = loop.time()
    async with passes.RepeatedPass("test pass", run, interval=0.3) as repeated:
        await asyncio.sleep(0.05)
        repeated.wake()
        await asyncio.sleep(0.05)
        assert len(runs) == 1 and runs[0] - began < 0.2  # woken, not waiting out the interval
        await asyncio.sleep(0.4)
        assert len(runs) == 2  # nothing woke it: the interval did


async def test_a_failing_pass_is_tried_again_and_leaving_stops_it() -> None:
    attempts = 0

    async def run() -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("boom")

    async with passes.RepeatedPass("test pass", run, interval=0.02):
        await asyncio.sleep(0.15)
    seen = attempts
    assert seen >= 3
    await asyncio.sleep(0.1)
    assert attempts == seen
