"""Collection at scale: does one dkos collector keep up with N running instances?

    .venv/bin/python bench/collect.py [--instances 1000] [--interval 10] [--ticks 4]

Starts N idle containers of the demo image (`sleep`, labelled for this run, 16 starts at a time),
then runs dkos' `Collector` — the real Docker driver, one engine stats stream per instance, a
`MetricsStore` in a temporary data dir — for `--ticks` collections at `--interval` seconds, after
one interval of warm-up. Per tick it reports how many instances got fresh figures written (the
goal: all N, every tick), the tick's wall time, and the CPU seconds dkos and dockerd spent over
the interval. The reference, in the same run on the same containers: `docker stats --no-stream`,
the polling way (one sweep of every container) — its wall time and its dockerd CPU per sweep.
Containers are removed at the end, also on Ctrl-C. Needs `make setup` (images, engine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from dkos.engines.base import ContainerSpec
from dkos.engines.docker import DockerEngine
from dkos.metrics import collect, names
from dkos.metrics.store import MetricsStore

IMAGE = "dkos-demo:1"
STARTS_AT_ONCE = 16


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks → s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _dockerd_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "dockerd":
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError("no dockerd process found: run `make setup` first")


async def start_all(engine: DockerEngine, count: int, label: str) -> list[collect.Target]:
    gate = asyncio.Semaphore(STARTS_AT_ONCE)
    began = time.monotonic()
    targets: list[collect.Target] = []

    async def start(n: int) -> None:
        spec = ContainerSpec(
            name=f"dkos-bench-collect-{label}-{n}",
            image=IMAGE,
            labels={"dkos.bench": label},
            command=("sleep", "3600"),
        )
        async with gate:
            status = await engine.start(spec)
        targets.append(collect.Target(f"i{n:04d}", status.id, "bench", f"app{n % 10}", 1))
        if len(targets) % 100 == 0:
            rate = len(targets) / (time.monotonic() - began)
            print(f"  started {len(targets)}/{count} ({rate:.1f}/s)", file=sys.stderr, flush=True)

    await asyncio.gather(*(start(n) for n in range(count)))
    return targets


def remove_all(label: str) -> None:
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dkos.bench={label}"], capture_output=True, text=True, check=True
    ).stdout.split()
    for chunk in range(0, len(ids), 100):
        subprocess.run(["docker", "rm", "-f", *ids[chunk : chunk + 100]], capture_output=True, check=False)
    print(f"  removed {len(ids)} containers", file=sys.stderr, flush=True)


async def measure_collector(
    engine: DockerEngine, targets: list[collect.Target], *, interval: float, ticks: int, data_dir: Path
) -> list[dict[str, float]]:
    store = MetricsStore(data_dir / "metrics.db")
    collector = collect.Collector(
        store, engine, lambda: asyncio.sleep(0, targets), data_dir=data_dir, node="bench", interval=interval
    )
    dockerd = _dockerd_pid()
    rows = []
    await collector.sync_streams(targets)
    await asyncio.sleep(interval)  # warm-up: every stream delivers its first samples
    await collector.collect_once()
    for tick in range(ticks):
        ours, theirs, wall = time.process_time(), _cpu_seconds(dockerd), time.monotonic()
        await asyncio.sleep(interval)
        began = time.monotonic()
        points = await collector.collect_once()
        took = time.monotonic() - began
        fresh = {p.tags[names.Tag.INSTANCE] for p in points if p.metric == names.CONTAINER_CPU_PERCENT.name}
        elapsed = time.monotonic() - wall
        rows.append(
            {
                "fresh": len(fresh),
                "tick_s": took,
                "dkos_cpu": (time.process_time() - ours) / elapsed,
                "dockerd_cpu": (_cpu_seconds(dockerd) - theirs) / elapsed,
                "points": len(points),
            }
        )
        print(f"  tick {tick + 1}: {rows[-1]}", file=sys.stderr, flush=True)
    await collector.__aexit__(None, None, None)
    await store.close()
    return rows


def measure_polling(label: str) -> tuple[float, float]:
    """`docker stats --no-stream` over this run's containers: (wall s, dockerd CPU s) per sweep."""
    dockerd = _dockerd_pid()
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=dkos.bench={label}"], capture_output=True, text=True, check=True
    ).stdout.split()
    before, began = _cpu_seconds(dockerd), time.monotonic()
    subprocess.run(["docker", "stats", "--no-stream", *ids], capture_output=True, check=True, timeout=900)
    return time.monotonic() - began, _cpu_seconds(dockerd) - before


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--ticks", type=int, default=4)
    args = parser.parse_args()
    label = uuid.uuid4().hex[:8]
    engine = DockerEngine()
    try:
        began = time.monotonic()
        targets = await start_all(engine, args.instances, label)
        start_s = time.monotonic() - began
        with tempfile.TemporaryDirectory(prefix="dkos-bench-collect-") as tmp:
            rows = await measure_collector(
                engine, targets, interval=args.interval, ticks=args.ticks, data_dir=Path(tmp)
            )
        poll_s, poll_cpu = measure_polling(label)
    finally:
        await engine.close()
        remove_all(label)

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    n = args.instances
    print(f"collect: {n} instances (started in {start_s:.0f} s), interval {args.interval:g} s, {args.ticks} ticks")
    print(f"  instances with fresh figures per tick: {', '.join(str(int(r['fresh'])) for r in rows)} (goal {n})")
    print(f"  points per tick (median): {med('points'):,.0f}")
    print(f"  collect_once wall time (median): {med('tick_s') * 1000:,.0f} ms")
    print(f"  CPU while collecting, cores: dkos {med('dkos_cpu'):.2f}, dockerd {med('dockerd_cpu'):.2f}")
    print(f"  reference, one `docker stats --no-stream` sweep: {poll_s:.1f} s wall, dockerd {poll_cpu:.1f} CPU s")
    print(f"  ratio, sweep wall time ÷ interval: {poll_s / args.interval:.2f} (≥ 1: polling cannot keep the interval)")
    dkos_cpu_per_tick = (med("dkos_cpu") + med("dockerd_cpu")) * args.interval
    print(
        f"  ratio, CPU s per collection, dkos streams (dkos + dockerd) ÷ polling sweep (dockerd only): "
        f"{dkos_cpu_per_tick / poll_cpu:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
