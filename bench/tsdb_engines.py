"""Which engine for the metrics store: dkos' chunks in SQLite against DuckDB, on the same points.

    .venv/bin/python bench/tsdb_engines.py [--series 1000] [--hours 6]

The figures that decided the store's engine (docs/metrics-store.md). The points and the query are
bench/tsdb.py's: N series `bench.cpu{app, instance}` at 10 s, loaded hour after hour in batches of
one point per series (what the collector writes), then the median of 5 runs of a `15m-max` over
the whole span, grouped by app.

- dkos: `MetricsStore.put` (head + write-ahead row per put, hourly sealing into compressed chunks
  and 1m/5m/1h rollups), the query through `routes.run_query` (answered from the 5m rollups).
- DuckDB (the `duckdb` wheel, installed into the venv if missing; its core only): the same batches
  mapped to series ids and appended as numpy columns (DuckDB scans them without a Python loop;
  `executemany` manages about 500 rows/s here), then
  `SELECT app, ts - ts % 900000, max(value) … GROUP BY ALL` over a points table joined to series.

Both run in this process on the same machine moments apart; the ratios are what matter.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dkos.metrics import query as q
from dkos.metrics import routes
from dkos.metrics.store import DataPoint, MetricsStore

sys.path.insert(0, str(Path(__file__).parent))
import tsdb  # the sibling benchmark: same points, same query

RUNS = 5


def batches(series: int, hours: int, start_ms: int) -> list[list[DataPoint]]:
    tags = [{"app": f"app{n % 10}", "instance": f"i{n:04d}"} for n in range(series)]
    return [
        [DataPoint("bench.cpu", tags[n], start_ms + step * tsdb.STEP_MS, tsdb._value(n, step)) for n in range(series)]
        for step in range(hours * tsdb.POINTS_PER_HOUR)
    ]


async def dkos(work: list[list[DataPoint]], path: Path, *, hours: int, now_ms: int) -> tuple[float, float, float]:
    store = MetricsStore(path, raw_retention=None)
    began = time.perf_counter()
    for batch in work:
        await store.put(batch)
    rate = sum(map(len, work)) / (time.perf_counter() - began)
    parsed = q.parse_query_string({"start": [f"{hours}h-ago"], "m": [tsdb.DKOS_QUERY]}, now_ms=now_ms)
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        await routes.run_query(store, parsed, now_ms=now_ms, limit=routes.MAX_POINTS)
        timings.append((time.perf_counter() - began) * 1000)
    size = store.disk_bytes()
    await store.close()
    return rate, size / sum(map(len, work)), statistics.median(timings)


def duckdb_module() -> Any:
    try:
        return importlib.import_module("duckdb")
    except ImportError:
        print("  installing duckdb into the venv ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "duckdb"], check=True, timeout=600)
        return importlib.import_module("duckdb")


def duckdb(work: list[list[DataPoint]], path: Path, *, start_ms: int, now_ms: int) -> tuple[float, float, float]:
    con = duckdb_module().connect(str(path))
    con.execute("CREATE TABLE series (id INTEGER, app VARCHAR, instance VARCHAR)")
    con.execute("CREATE TABLE points (series INTEGER, ts BIGINT, value DOUBLE)")
    ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    began = time.perf_counter()
    for batch in work:
        found = []
        for point in batch:
            key = (point.metric, tuple(point.tags.items()))
            series_id = ids.get(key)
            if series_id is None:
                series_id = ids[key] = len(ids)
                con.execute(
                    "INSERT INTO series VALUES (?, ?, ?)", (series_id, point.tags["app"], point.tags["instance"])
                )
            found.append(series_id)
        columns = {  # noqa: F841  (DuckDB finds the local by name: a replacement scan)
            "series": np.array(found, np.int32),
            "ts": np.fromiter((p.timestamp_ms for p in batch), np.int64, len(batch)),
            "value": np.fromiter((p.value for p in batch), np.float64, len(batch)),
        }
        con.execute("INSERT INTO points SELECT * FROM columns")
    con.execute("CHECKPOINT")
    rate = sum(map(len, work)) / (time.perf_counter() - began)
    sql = (
        "SELECT s.app, p.ts - p.ts % 900000 AS bucket, max(p.value) FROM points p JOIN series s ON s.id = p.series "
        "WHERE p.ts >= ? AND p.ts < ? GROUP BY ALL ORDER BY ALL"
    )
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        con.execute(sql, (start_ms, now_ms)).fetchall()
        timings.append((time.perf_counter() - began) * 1000)
    con.close()
    return rate, path.stat().st_size / sum(map(len, work)), statistics.median(timings)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=6)
    args = parser.parse_args()
    start_ms = (int(time.time() * 1000) // tsdb.HOUR_MS - args.hours) * tsdb.HOUR_MS
    now_ms = start_ms + args.hours * tsdb.HOUR_MS
    work = batches(args.series, args.hours, start_ms)
    with tempfile.TemporaryDirectory(prefix="dkos-bench-engines-") as name:
        ours = await dkos(work, Path(name) / "metrics.db", hours=args.hours, now_ms=now_ms)
        theirs = duckdb(work, Path(name) / "duck.db", start_ms=start_ms, now_ms=now_ms)
    points = sum(map(len, work))
    print(f"tsdb engines: {args.series} series × {args.hours} h at 10 s = {points:,} points, batches of {args.series}")
    print(f"  {'':34} {'dkos chunks':>12} {'DuckDB':>12} {'dkos/DuckDB':>12}")
    for label, index, fmt in (
        ("ingest, points/s", 0, ",.0f"),
        ("disk, bytes per point", 1, ".2f"),
        (f"query 15m-max by app, median of {RUNS}, ms", 2, ",.1f"),
    ):
        print(f"  {label:34} {ours[index]:>12{fmt}} {theirs[index]:>12{fmt}} {ours[index] / theirs[index]:>12.2f}")


if __name__ == "__main__":
    asyncio.run(main())
