"""The metrics store: points of every series, embedded in the data dir (`metrics.db`).

SQLite, in a file of its own so the metrics write path never contends with the state
database. A series is a metric and its tags; its points are (timestamp ms, value) with
integers kept as integers (OpenTSDB answers in kind). Raw points are kept
`raw_retention` seconds (7 days by default, None keeps them forever, as imports of old
history need); 1-minute and 1-hour rollups (min, max, sum, count) are kept beside them.
All SQLite work runs in one worker thread, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dkos.metrics.query import Series

ROLLUPS = {"1m": 60_000, "1h": 3_600_000}
"""Rollup level → bucket width in ms."""
DEFAULT_ROLLUP_RETENTION: dict[str, float | None] = {"1m": 90 * 86_400, "1h": None}
"""1-minute rollups are kept 90 days, hourly ones forever."""

_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    metric TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (metric, tags)
);
CREATE TABLE IF NOT EXISTS names (kind TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
"""
_ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollup_{level} (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class DataPoint:
    """One point to store, as `/api/put` and the collectors give it."""

    metric: str
    tags: Mapping[str, str]
    timestamp_ms: int
    value: int | float


def _canonical(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":"))


class MetricsStore:
    def __init__(
        self,
        path: Path,
        *,
        raw_retention: float | None = 7 * 86_400,
        rollup_retention: Mapping[str, float | None] | None = None,
    ) -> None:
        self.path = path
        self.raw_retention = raw_retention
        self.rollup_retention = {**DEFAULT_ROLLUP_RETENTION, **(rollup_retention or {})}
        """Rollup level → seconds kept, None for forever."""
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA + "".join(_ROLLUP_SCHEMA.format(level=level) for level in ROLLUPS))
        self._ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        """Series ids by (metric, sorted tag pairs): the hot path of every put, so no JSON there."""
        self.series_count: int = self._db.execute("SELECT COUNT(*) FROM series").fetchone()[0]
        """Series stored so far (kept in memory: a scrape of dkos' own metrics reads it)."""
        self._listeners: list[Callable[[Sequence[DataPoint]], None]] = []

    def listen(self, listener: Callable[[Sequence[DataPoint]], None]) -> None:
        """Call `listener` with the points of every put once they are stored, on the event loop.

        This is how alarms evaluate "every time new data arrives" instead of on a tick of their own;
        a listener must be quick (queue work, do not await I/O) and must not raise."""
        self._listeners.append(listener)

    async def close(self) -> None:
        await asyncio.to_thread(self._db.close)

    # writing ------------------------------------------------------------------------------

    async def put(self, points: Sequence[DataPoint]) -> None:
        """Store points (a point at an existing timestamp replaces it), in one transaction."""
        if points:
            await asyncio.to_thread(self._put, points)
            for listener in self._listeners:
                listener(points)

    def _put(self, points: Sequence[DataPoint]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = [(self._series_id(p.metric, p.tags), p.timestamp_ms, p.value) for p in points]
                self._db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)", rows)
                for level, width in ROLLUPS.items():
                    self._db.executemany(
                        f"INSERT INTO rollup_{level} VALUES (?, ?, ?, ?, ?, 1) "
                        "ON CONFLICT (series_id, ts) DO UPDATE SET "
                        "min = MIN(min, excluded.min), max = MAX(max, excluded.max), "
                        "sum = sum + excluded.sum, count = count + 1",
                        [(sid, ts - ts % width, value, value, value) for sid, ts, value in rows],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._ids.clear()  # ids made inside the rolled-back transaction are gone
                raise

    def _series_id(self, metric: str, tags: Mapping[str, str]) -> int:
        key = (metric, tuple(sorted(tags.items())))
        found = self._ids.get(key)
        if found is not None:
            return found
        stored = (metric, _canonical(tags))
        row = self._db.execute("SELECT id FROM series WHERE metric = ? AND tags = ?", stored).fetchone()
        if row is None:
            cursor = self._db.execute("INSERT INTO series (metric, tags) VALUES (?, ?)", stored)
            self.series_count += 1
            names = [("metric", metric), *(("tagk", k) for k in tags), *(("tagv", v) for v in tags.values())]
            self._db.executemany("INSERT OR IGNORE INTO names VALUES (?, ?)", names)
            row = (cursor.lastrowid,)
        self._ids[key] = int(row[0])
        return self._ids[key]

    async def prune(self, *, now_ms: int) -> int:
        """Drop raw points and rollups past their retention; the number of raw points dropped."""
        tables = {"points": self.raw_retention, **{f"rollup_{k}": v for k, v in self.rollup_retention.items()}}

        def prune() -> int:
            dropped = {}
            with self._lock:
                for table, keep in tables.items():
                    if keep is not None:
                        cutoff = now_ms - int(keep * 1000)
                        dropped[table] = self._db.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,)).rowcount
            return dropped.get("points", 0)

        return await asyncio.to_thread(prune)

    # reading ------------------------------------------------------------------------------

    async def series(self, metric: str, start_ms: int, end_ms: int) -> list[Series]:
        """Every series of `metric` with its points in [start_ms, end_ms), sorted by time."""
        return await asyncio.to_thread(self._series, metric, start_ms, end_ms)

    def _series(self, metric: str, start_ms: int, end_ms: int) -> list[Series]:
        with self._lock:
            found = self._db.execute("SELECT id, tags FROM series WHERE metric = ?", (metric,)).fetchall()
            result = []
            for series_id, tags in found:
                points = self._db.execute(
                    "SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                    (series_id, start_ms, end_ms),
                ).fetchall()
                if points:
                    result.append(Series(metric=metric, tags=json.loads(tags), points=[(t, v) for t, v in points]))
            return result

    async def count_points(self, metric: str, start_ms: int, end_ms: int) -> int:
        """How many points `series(metric, start_ms, end_ms)` would load, counted without loading them
        (the query cap refuses a query before it can exhaust memory)."""

        def count() -> int:
            with self._lock:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM points WHERE series_id IN (SELECT id FROM series WHERE metric = ?) "
                    "AND ts >= ? AND ts < ?",
                    (metric, start_ms, end_ms),
                ).fetchone()
                return int(row[0])

        return await asyncio.to_thread(count)

    async def names(self, kind: str, prefix: str = "", *, limit: int = 25) -> list[str]:
        """Known metric names (`metric`), tag keys (`tagk`) or tag values (`tagv`) starting with `prefix`."""

        def names() -> list[str]:
            with self._lock:
                rows = self._db.execute(
                    "SELECT name FROM names WHERE kind = ? AND name >= ? AND name < ? ORDER BY name LIMIT ?",
                    (kind, prefix, prefix + "\U0010ffff", limit),
                ).fetchall()
                return [r[0] for r in rows]

        return await asyncio.to_thread(names)

    async def known(self, kind: str, candidates: Iterable[str]) -> set[str]:
        """Which of `candidates` have been written as `kind` (for OpenTSDB's 400 on unknown names)."""
        wanted = list(candidates)

        def known() -> set[str]:
            with self._lock:
                marks = ",".join("?" * len(wanted))
                rows = self._db.execute(
                    f"SELECT name FROM names WHERE kind = ? AND name IN ({marks})", (kind, *wanted)
                ).fetchall()
                return {r[0] for r in rows}

        return await asyncio.to_thread(known) if wanted else set()

    async def lookup(self, metric: str | None, tags: Mapping[str, str]) -> list[tuple[str, dict[str, str]]]:
        """Series whose metric (if given) and tags match; `*` as a tag value matches any value."""

        def lookup() -> list[tuple[str, dict[str, str]]]:
            with self._lock:
                rows = self._db.execute(
                    "SELECT metric, tags FROM series" + (" WHERE metric = ?" if metric else "") + " ORDER BY id",
                    (metric,) if metric else (),
                ).fetchall()
            found = []
            for name, encoded in rows:
                series_tags: dict[str, str] = json.loads(encoded)
                if all(k in series_tags and v in ("*", series_tags[k]) for k, v in tags.items()):
                    found.append((name, series_tags))
            return found

        return await asyncio.to_thread(lookup)

    def disk_bytes(self) -> int:
        """The store's size on disk, with its write-ahead log."""
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
