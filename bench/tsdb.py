"""Metrics store: dkos' embedded SQLite store against Prometheus' TSDB on the same data.

    .venv/bin/python bench/tsdb.py [--series 1000] [--hours 24] [--load-budget 120]

N series (`bench.cpu`, tags app=app0..app9, instance=i0000..) at 10 s resolution over H hours.
dkos: sustained ingest through `MetricsStore.put` in batches like the collector writes (every
series, one point each), disk bytes per point (raw chunks, 1m/5m/1h rollups, the head's
write-ahead rows and SQLite's WAL file), then the median of 5 runs of
`max:15m-max:bench.cpu{app=*}` over the whole span through `routes.run_query` (goals: ≥ 100,000
points/s, ≤ 100 ms). If loading H hours would take longer than the load budget at the rate
measured, fewer hours are loaded and the output says so.
Prometheus (Debian package `prometheus`, installed here if missing): the same points written as
OpenMetrics and backfilled with `promtool tsdb create-blocks-from openmetrics` (the ingest figure
is that backfill rate, not a live remote-write rate), bytes per point of the blocks, then the
median of 5 runs of `max by (app) (max_over_time(bench_cpu[15m]))` through
`/api/v1/query_range`, step 15m, on a Prometheus started on a free loopback port.
Both run in this one process run; the ratios (dkos ÷ Prometheus) are the figures that matter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from dkos.metrics import query as q
from dkos.metrics import routes
from dkos.metrics.store import DataPoint, MetricsStore

STEP_MS = 10_000
HOUR_MS = 3_600_000
POINTS_PER_HOUR = HOUR_MS // STEP_MS
RUNS = 5
DKOS_QUERY = "max:15m-max:bench.cpu{app=*}"
PROM_QUERY = "max by (app) (max_over_time(bench_cpu[15m]))"


def _value(series: int, step: int) -> float:
    """A CPU-like percentage with one decimal, the same for both systems."""
    return ((series * 37 + step * 13) % 1000) / 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# dkos


async def dkos_ingest(
    store: MetricsStore, *, series: int, hours: int, start_ms: int, budget: float
) -> tuple[int, float, int]:
    """Load hour after hour, oldest first; stop before an hour that would overrun `budget` seconds
    of put time at the rate so far. → (hours loaded, seconds spent in put, points)."""
    tags = [{"app": f"app{n % 10}", "instance": f"i{n:04d}"} for n in range(series)]
    spent = 0.0
    points = 0
    loaded = 0
    for hour in range(hours):
        if loaded and spent / loaded * (loaded + 1) > budget:
            break
        for step in range(hour * POINTS_PER_HOUR, (hour + 1) * POINTS_PER_HOUR):
            ts = start_ms + step * STEP_MS
            batch = [DataPoint("bench.cpu", tags[n], ts, _value(n, step)) for n in range(series)]
            began = time.perf_counter()
            await store.put(batch)
            spent += time.perf_counter() - began
            points += series
        loaded += 1
        print(f"  dkos: {loaded} h loaded, {points / spent:,.0f} points/s so far", file=sys.stderr, flush=True)
    return loaded, spent, points


async def dkos_query(store: MetricsStore, *, hours: int, now_ms: int) -> tuple[float, int]:
    """Median ms of RUNS runs of DKOS_QUERY over the loaded span; the number of groups answered."""
    parsed = q.parse_query_string({"start": [f"{hours}h-ago"], "m": [DKOS_QUERY]}, now_ms=now_ms)
    timings = []
    groups = 0
    for _ in range(RUNS):
        began = time.perf_counter()
        body = await routes.run_query(store, parsed, now_ms=now_ms, limit=routes.MAX_POINTS)
        timings.append((time.perf_counter() - began) * 1000)
        groups = len(body)
        print(f"  dkos query: {timings[-1]:,.0f} ms, {groups} groups", file=sys.stderr, flush=True)
    return statistics.median(timings), groups


# ---------------------------------------------------------------------------------------------
# Prometheus


def ensure_prometheus() -> None:
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    print("  installing the Debian package prometheus ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )


def write_openmetrics(path: Path, *, series: int, hours: int, start_ms: int) -> None:
    """The same points as dkos got, time-major like a scrape, as OpenMetrics (timestamps in s)."""
    labels = [f'bench_cpu{{app="app{n % 10}",instance="i{n:04d}"}} ' for n in range(series)]
    with path.open("w") as out:
        out.write("# TYPE bench_cpu gauge\n")
        for step in range(hours * POINTS_PER_HOUR):
            ts = f" {(start_ms + step * STEP_MS) // 1000}\n"
            out.write("".join(f"{labels[n]}{_value(n, step)}{ts}" for n in range(series)))
        out.write("# EOF\n")


class Prometheus:
    """A Prometheus on a free loopback port over `data_dir`, scraping nothing."""

    def __init__(self, tmp: Path, data_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                "--storage.tsdb.retention.time=30d",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "prometheus.log").open("w"),
        )

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}")
            try:
                if client.get(f"{self.url}/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready in 120 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def prometheus_query(prom: Prometheus, *, start_ms: int, end_ms: int) -> tuple[float, int]:
    params: dict[str, str | float] = {
        "query": PROM_QUERY,
        "start": start_ms / 1000,
        "end": end_ms / 1000,
        "step": "900",
    }
    timings = []
    groups = 0
    with httpx.Client(timeout=120) as client:
        prom.wait_ready(client)
        client.get(f"{prom.url}/api/v1/query_range", params=params).raise_for_status()  # first touch of the blocks
        for _ in range(RUNS):
            began = time.perf_counter()
            answer = client.get(f"{prom.url}/api/v1/query_range", params=params)
            timings.append((time.perf_counter() - began) * 1000)
            answer.raise_for_status()
            groups = len(answer.json()["data"]["result"])
            print(f"  prometheus query: {timings[-1]:,.0f} ms, {groups} groups", file=sys.stderr, flush=True)
    return statistics.median(timings), groups


# ---------------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--load-budget", type=float, default=120, help="seconds of dkos ingest at most")
    args = parser.parse_args()

    ensure_prometheus()
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    start_ms = (int(time.time() * 1000) // HOUR_MS - args.hours) * HOUR_MS

    with tempfile.TemporaryDirectory(prefix="dkos-bench-tsdb-") as name:
        tmp = Path(name)
        store = MetricsStore(tmp / "metrics.db", raw_retention=None)
        hours, put_s, points = await dkos_ingest(
            store, series=args.series, hours=args.hours, start_ms=start_ms, budget=args.load_budget
        )
        now_ms = start_ms + hours * HOUR_MS
        dkos_rate = points / put_s
        dkos_bpp = store.disk_bytes() / points
        dkos_ms, dkos_groups = await dkos_query(store, hours=hours, now_ms=now_ms)
        await store.close()
        (tmp / "metrics.db").unlink()

        openmetrics = tmp / "bench.om"
        write_openmetrics(openmetrics, series=args.series, hours=hours, start_ms=start_ms)
        prom_dir = tmp / "prometheus"
        began = time.perf_counter()
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(prom_dir)],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=900,
        )
        prom_rate = points / (time.perf_counter() - began)
        prom_bpp = _dir_bytes(prom_dir) / points
        openmetrics.unlink()

        prom = Prometheus(tmp, prom_dir)
        try:
            prom_ms, prom_groups = prometheus_query(prom, start_ms=start_ms, end_ms=now_ms)
        finally:
            prom.stop()

    print(f"tsdb: {args.series} series × {hours} h at 10 s = {points:,} points; {version}")
    if hours < args.hours:
        print(
            f"  SCALED DOWN: {args.hours} h would take {args.hours * POINTS_PER_HOUR * args.series / dkos_rate:,.0f} s "
            f"to load at dkos' rate (budget {args.load_budget:.0f} s); {hours} h loaded and queried"
        )
    print(f"  {'':38} {'dkos':>12} {'Prometheus':>12} {'dkos/Prom':>10}")
    rows = [
        ("ingest, points/s (goal ≥ 100,000) ¹", dkos_rate, prom_rate, ",.0f"),
        ("disk, bytes per point ²", dkos_bpp, prom_bpp, ".2f"),
        (f"query {hours} h, median of {RUNS}, ms (≤ 100)", dkos_ms, prom_ms, ",.1f"),
    ]
    for label, ours, theirs, fmt in rows:
        print(f"  {label:38} {ours:>12{fmt}} {theirs:>12{fmt}} {ours / theirs:>10.2f}")
    print(f"  groups answered: dkos {dkos_groups}, Prometheus {prom_groups}")
    print("  ¹ dkos: live MetricsStore.put of 1 point × every series per batch (head, then hourly sealing")
    print("    into raw chunks and 1m/5m/1h rollups);")
    print("    Prometheus: promtool backfill of the same points from OpenMetrics (not a live remote-write rate)")
    print("  ² dkos: metrics.db + WAL incl. rollups; Prometheus: blocks written by promtool")


if __name__ == "__main__":
    asyncio.run(main())
