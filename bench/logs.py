"""Logs: capture ingest, full-text search over 10 million lines, and follow latency — each
against a reference measured in the same run.

    .venv/bin/python bench/logs.py [--lines 10000000] [--load-budget 600] [--containers 4]
                                   [--per-container 250000] [--follow-seconds 15]

1. Ingest (goal ≥ 50,000 lines/s). Capture (`logs.capture.Capture` into a `LogStore`, as the
   server runs them, on the real engine) follows N containers that each print M numbered lines
   as fast as they can: lines stored per second, from the first container's start to the
   last line stored ("live"), and again for the same lines already written when capture
   starts ("backlog"). References: the same containers run with no capture, start to exit
   ("engine alone": what the engine itself can take in), and `docker logs` of them into
   /dev/null. Twice: with `sed` writing (stdout block-buffered, as most programs write to a
   pipe), then with busybox `awk`, which makes a write() per line, as loggers that flush
   every record do; the engine's cost per write, not per byte, then bounds everything.
2. Search (goal ≤ 200 ms median). L lines of 10 apps over 7 days are written straight into a
   `LogStore` (not through containers: 10 M lines through the engine would take longer than
   the whole budget, and its rotation would keep only 30 MB per container) and, line for
   line, into files in the engine's json-file format. Median of 9 searches for a rare word
   within one app and one day through `LogStore.read`; reference: `grep` for the word over
   that app's json files, piped to `grep` for the day. The load is bounded by
   `--load-budget` seconds; if fewer lines than asked get in, the output says so.
3. Follow (goal p99 ≤ 500 ms). A real `dkos server` runs an app printing a line every 20 ms;
   `dkos logs APP -f -o json` runs as a user would. Latency: when the line reaches the
   follower's stdout minus the engine's own timestamp of the line (when dockerd read it from
   the container). Reference: `docker logs -f -t` on the same container, measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from dkos_server import DkosServer, wait_until

from dkos.core.settings import Settings
from dkos.engines.docker import DockerEngine
from dkos.logs import caps
from dkos.logs.capture import Capture
from dkos.logs.store import LogStore, Query, rfc3339

IMAGE = "dkos-demo:1"
RARE = "zebracorn"
APPS = 10
INSTANCES = 2
DAYS = 7
BATCH = 20_000


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout.strip()


# --- 1. ingest -------------------------------------------------------------------------------


WRITERS = {
    "sed (block-buffered stdout)": "seq {lines} | sed 's,.*,ingest-{n} GET /api/items/& 200 12ms user=&,'",
    "awk (a write() per line)": 'seq {lines} | awk \'{{print "ingest-{n} GET /api/items/" $1 " 200 12ms user=" $1}}\'',
}


def start_printers(owner: str, containers: int, per_container: int, writer: str) -> list[str]:
    ids = []
    for n in range(containers):
        ids.append(
            docker(
                "run", "-d",
                "--label", f"dkos.owner={owner}", "--label", "dkos.project=bench", "--label", "dkos.app=ingest",
                "--label", f"dkos.instance=ingest-{n}", "--label", "dkos.version=1",
                "--log-opt", "max-size=200m", "--log-opt", "max-file=2",
                IMAGE, "sh", "-c", WRITERS[writer].format(lines=per_container, n=n),
            )
        )  # fmt: skip
    return ids


def engine_alone(containers: int, per_container: int, writer: str) -> float:
    """Seconds from the first start to the last exit with nothing capturing."""
    began = time.monotonic()
    ids = start_printers(uuid.uuid4().hex, containers, per_container, writer)
    try:
        for cid in ids:
            docker("wait", cid)
        return time.monotonic() - began
    finally:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


async def capture_until(owner: str, total: int, budget: float, data_dir: Path) -> tuple[int, float]:
    """Run capture until `total` lines are stored or `budget` seconds pass → (stored, seconds)."""
    store = LogStore(data_dir / "logs.db", limits=caps.Caps(total_bytes=1 << 40, app_bytes=1 << 40, max_age=None))
    engine = DockerEngine()
    began = time.monotonic()
    async with Capture(store, engine, owner=owner, settings=Settings(data_dir=data_dir)):
        while store.newest_id < total and time.monotonic() - began < budget:
            await asyncio.sleep(0.02)
        took = time.monotonic() - began
    await engine.close()
    await store.close()
    return store.newest_id, took


async def capture_live(
    owner: str, containers: int, per_container: int, writer: str, budget: float, data_dir: Path, ids: list[str]
) -> tuple[int, float]:
    """Capture running before the printers start → (stored, seconds from their start)."""
    task = asyncio.create_task(capture_until(owner, containers * per_container, budget, data_dir))
    await asyncio.sleep(0.5)  # capture is up before the first line is written
    began = time.monotonic()
    ids.extend(await asyncio.to_thread(start_printers, owner, containers, per_container, writer))
    stored, _ = await task
    return stored, time.monotonic() - began


def bench_ingest(containers: int, per_container: int, budget: float) -> None:
    total = containers * per_container
    print(f"ingest: {containers} containers × {per_container:,} lines")
    for writer in WRITERS:
        alone = total / engine_alone(containers, per_container, writer)
        owner = uuid.uuid4().hex
        ids: list[str] = []
        work = Path(tempfile.mkdtemp(prefix="dkos-bench-logs-"))
        try:
            (work / "live").mkdir()
            stored_live, took_live = asyncio.run(
                capture_live(owner, containers, per_container, writer, budget, work / "live", ids)
            )
            for cid in ids:
                docker("wait", cid)
            (work / "backlog").mkdir()
            stored_backlog, took_backlog = asyncio.run(capture_until(owner, total, budget, work / "backlog"))
            began = time.monotonic()
            for cid in ids:
                subprocess.run(
                    ["docker", "logs", cid],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                    timeout=300,
                )
            took_ref = time.monotonic() - began
        finally:
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
            shutil.rmtree(work, ignore_errors=True)
        live_rate = stored_live / took_live
        backlog_rate = stored_backlog / took_backlog
        ref_rate = total / took_ref
        print(f"  writer: {writer}")
        print(f"    engine alone  {alone:>9,.0f} lines/s (reference: the same containers, nothing capturing)")
        print(
            f"    dkos live     {live_rate:>9,.0f} lines/s ({stored_live:,} stored in {took_live:.2f} s; goal ≥ 50,000)"
        )
        print(f"    dkos backlog  {backlog_rate:>9,.0f} lines/s ({stored_backlog:,} stored in {took_backlog:.2f} s)")
        print(f"    docker logs   {ref_rate:>9,.0f} lines/s (reference: read back into /dev/null)")
        print(
            f"    ratios: live/engine alone {live_rate / alone:.2f}, backlog/docker logs {backlog_rate / ref_rate:.2f}"
        )


# --- 2. search -------------------------------------------------------------------------------


def line_text(i: int, instance: str) -> str:
    word = f" {RARE}" if i % 28_603 == 0 else ""
    return f"{instance} GET /api/items/{i % 1000} 200 {i % 97}ms user={i % 50_000} trace={i % 65_536:x}{word}"


async def load(store: LogStore, json_dir: Path, lines: int, budget: float, start_ns: int, span_ns: int) -> int:
    files = {
        (a, n): (json_dir / f"app{a}-{n}-json.log").open("w", encoding="utf-8")
        for a in range(APPS)
        for n in range(INSTANCES)
    }
    step = span_ns // lines
    began = time.monotonic()
    loaded = 0
    try:
        while loaded < lines and time.monotonic() - began < budget:
            rows = []
            for i in range(loaded, min(loaded + BATCH, lines)):
                app, n = i % APPS, (i // APPS) % INSTANCES
                instance = f"app{app}-{n}"
                ts = start_ns + i * step
                text = line_text(i, instance)
                rows.append(("bench", f"app{app}", instance, 1, ts, 0, 0, 0, text))
                files[(app, n)].write(
                    json.dumps({"log": text + "\n", "stream": "stdout", "time": rfc3339(ts)}, separators=(",", ":"))
                    + "\n"
                )
            await store.write(rows, {})
            loaded += len(rows)
    finally:
        for handle in files.values():
            handle.close()
    return loaded


def bench_search(lines: int, budget: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="dkos-bench-search-"))
    try:
        json_dir = work / "containers"
        json_dir.mkdir()
        now_ns = time.time_ns()
        span_ns = DAYS * 86_400 * 10**9
        start_ns = now_ns - span_ns

        async def run() -> None:
            store = LogStore(work / "logs.db", limits=caps.Caps(total_bytes=1 << 40, app_bytes=1 << 40, max_age=None))
            began = time.monotonic()
            loaded = await load(store, json_dir, lines, budget, start_ns, span_ns)
            took = time.monotonic() - began
            print(f"search: loaded {loaded:,} lines of {APPS} apps over {DAYS} days in {took:.0f} s", end="")
            print(" (all asked for)" if loaded == lines else f" — only {loaded:,} of {lines:,} within the load budget")
            print(f"  logs.db {store.disk_bytes() / 2**20:,.0f} MiB, json files "
                  f"{sum(p.stat().st_size for p in json_dir.iterdir()) / 2**20:,.0f} MiB")  # fmt: skip
            # The day in the middle of what was loaded, for app3.
            mid_ns = start_ns + (loaded // 2) * (span_ns // lines)
            day = datetime.fromtimestamp(mid_ns / 1e9, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            since_ns = int(day.timestamp()) * 10**9
            until_ns = since_ns + 86_400 * 10**9 - 1
            query = Query("bench", "app3", since_ns=since_ns, until_ns=until_ns, text=RARE, limit=1000)
            await store.read(query)  # warm, as grep's first run warms the page cache
            timings = []
            found = []
            for _ in range(9):
                t = time.perf_counter()
                found = await store.read(query)
                timings.append((time.perf_counter() - t) * 1000)
            dkos_ms = statistics.median(timings)
            app_files = " ".join(str(p) for p in sorted(json_dir.glob("app3-*-json.log")))
            command = f'grep -h {RARE} {app_files} | grep -F \'"time":"{day:%Y-%m-%d}T\''
            subprocess.run(command, shell=True, capture_output=True, check=False, timeout=300)  # warm the page cache
            grep_timings = []
            grep_found = 0
            for _ in range(3):
                t = time.perf_counter()
                out = subprocess.run(
                    command, shell=True, capture_output=True, text=True, check=False, timeout=300
                ).stdout
                grep_timings.append((time.perf_counter() - t) * 1000)
                grep_found = len(out.splitlines())
            grep_ms = statistics.median(grep_timings)
            common = Query("bench", "app3", since_ns=since_ns, until_ns=until_ns, text="items", limit=100)
            t = time.perf_counter()
            await store.read(common)
            common_ms = (time.perf_counter() - t) * 1000
            print(f"  rare word in app3 on {day:%Y-%m-%d}: dkos {len(found)} lines, median {dkos_ms:.1f} ms of 9 "
                  f"(goal ≤ 200); grep {grep_found} lines, median {grep_ms:.0f} ms of 3 (reference); "
                  f"ratio {dkos_ms / grep_ms:.3f}")  # fmt: skip
            print(f"  (a word on every line, newest 100 of the day: {common_ms:.1f} ms)")
            await store.close()

        asyncio.run(run())
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- 3. follow -------------------------------------------------------------------------------


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _read_latencies(
    process: subprocess.Popen[str], parse: object, since_ns: list[int], until: float, into: list[float]
) -> None:
    """Latencies of the lines written from `since_ns[0]` on. Reading starts at once: lines
    left in the pipe while both followers connect would count their wait as latency."""
    assert process.stdout is not None
    for raw in process.stdout:
        arrived = time.time_ns()
        ts = parse(raw)  # type: ignore[operator]
        if ts is not None and ts >= since_ns[0]:
            into.append((arrived - ts) / 1e6)
        if time.monotonic() > until:
            return


def _docker_ts(raw: str) -> int | None:
    stamp = raw.split(" ", 1)[0]
    try:
        seconds = datetime.fromisoformat(stamp[:19] + "+00:00").timestamp()
        return int(seconds) * 10**9 + int(stamp[20:29].ljust(9, "0"))
    except ValueError:
        return None


def _dkos_ts(raw: str) -> int | None:
    try:
        return int(json.loads(raw)["ts"])
    except (ValueError, KeyError):
        return None


def bench_follow(seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="dkos-bench-follow-"))
    server = DkosServer(work / "data").start()
    processes: list[subprocess.Popen[str]] = []
    try:
        server.deploy(
            {"name": "tick", "image": IMAGE, "instances": 1, "env": {"LOG_EVERY": "0.02"}, "resources": {"memory": 32}}
        )
        container = wait_until(lambda: server.containers(all=False), timeout=30, what="the app")[0]["ID"]
        env = {**os.environ, "DKOS_URL": server.url, "DKOS_TOKEN": server.token}
        dkos = subprocess.Popen(
            [sys.executable, "-m", "dkos", "logs", "tick", "-f", "-o", "json", "--tail", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        ref = subprocess.Popen(
            ["docker", "logs", "-f", "-t", "--tail", "0", container],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        processes += [dkos, ref]
        since_ns = [time.time_ns() + 10**12]  # set below, once both are connected
        until = time.monotonic() + 1.5 + seconds
        ours: list[float] = []
        theirs: list[float] = []
        readers = [
            threading.Thread(target=_read_latencies, args=(dkos, _dkos_ts, since_ns, until, ours), daemon=True),
            threading.Thread(target=_read_latencies, args=(ref, _docker_ts, since_ns, until, theirs), daemon=True),
        ]
        for reader in readers:
            reader.start()
        time.sleep(1.5)  # both connected
        since_ns[0] = time.time_ns()
        for reader in readers:
            reader.join(timeout=seconds + 10)
        print(f"follow: a line every 20 ms for {seconds:g} s")
        for name, values in (("dkos logs -f", ours), ("docker logs -f", theirs)):
            if values:
                print(f"  {name:<15} {len(values):5} lines  p50 {_percentile(values, 50):6.1f} ms  "
                      f"p99 {_percentile(values, 99):6.1f} ms  max {max(values):6.1f} ms")  # fmt: skip
        if ours and theirs:
            print(
                f"  p99 ratio {_percentile(ours, 99) / _percentile(theirs, 99):.1f} (goal: dkos p99 ≤ 500 ms; "
                "the reference reads the engine's file directly, dkos goes through capture, the store and SSE)"
            )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--load-budget", type=float, default=600.0, help="Seconds the search data may take to load.")
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--per-container", type=int, default=250_000)
    parser.add_argument("--ingest-budget", type=float, default=120.0)
    parser.add_argument("--follow-seconds", type=float, default=15.0)
    parser.add_argument("--only", choices=["ingest", "search", "follow"], default=None)
    args = parser.parse_args()
    if args.only in (None, "ingest"):
        bench_ingest(args.containers, args.per_container, args.ingest_budget)
    if args.only in (None, "follow"):
        bench_follow(args.follow_seconds)
    if args.only in (None, "search"):
        bench_search(args.lines, args.load_budget)


if __name__ == "__main__":
    main()
