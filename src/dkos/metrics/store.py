"""The metrics store: every series' points, embedded in the data dir (`metrics.db`).

SQLite, in a file of its own so the metrics write path never contends with the state database,
but not one row per point: points live in chunks (`chunks.py`), one compressed blob per series
and time block, as Prometheus and OpenTSDB keep them. How a put flows:

- Points at or after the *horizon* (the start of the newest hour written, never ahead of the
  clock) go to the *head*: an in-memory map per series, made durable by one write-ahead row per
  put and hour in the `wal` table, in the put's transaction. A put costs one small insert.
- When the horizon moves on (the first point of a new hour), the head's older points are *sealed*:
  per series and hour, merged into the stored raw chunk, and that hour's 1-minute and 1-hour
  rollups (min, max, sum, count; `rollups.py`) recomputed from the merged chunk and spliced into
  their chunks; their `wal` rows go in the same transaction. Points put behind the horizon (late
  samples, imports of old history) are sealed at once.
- So stored chunks only ever hold hours before the horizon and the head only hours from it: a
  read is the union of the two, with no overlap to reconcile. A restart replays `wal` into the head.

Raw points are kept `raw_retention` seconds (7 days by default; None keeps them, as imports of
old history need), each rollup level as long as its own retention says. The head also keeps its
rollups up to date point by point, so a downsampled read of the current hour needs no pass over
raw points. All SQLite work runs in one worker thread, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dkos.metrics import chunks, rollups
from dkos.metrics.downsample import Downsample
from dkos.metrics.query import PointArray, Series

HOUR_MS = 3_600_000
DEFAULT_ROLLUP_RETENTION: dict[str, float | None] = {"1m": 90 * 86_400, "5m": 400 * 86_400, "1h": None}
"""1-minute rollups are kept 90 days, 5-minute ones 400 days, hourly ones forever."""

_FINEST = rollups.LEVELS[0]
_TABLES = {level: f"chunks_{level.name}" for level in (rollups.RAW, *rollups.LEVELS)}

_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
PRAGMA cache_size=-65536;
PRAGMA journal_size_limit=67108864;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    metric TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (metric, tags)
);
CREATE TABLE IF NOT EXISTS names (kind TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wal (id INTEGER PRIMARY KEY, hour INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS wal_hour ON wal (hour);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
""" + "".join(
    f"""
CREATE TABLE IF NOT EXISTS {table} (
    series_id INTEGER NOT NULL,
    start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (series_id, start)
);"""
    for table in _TABLES.values()
)

Value = chunks.Value


@dataclass(frozen=True)
class DataPoint:
    """One point to store, as `/api/put` and the collectors give it."""

    metric: str
    tags: Mapping[str, str]
    timestamp_ms: int
    value: Value


@dataclass(frozen=True)
class _Known:
    series_id: int
    tags: dict[str, str]


def _canonical(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":"))


def _hour(ts: int) -> int:
    return ts - ts % HOUR_MS


class _SeriesHead:
    """One series' points from the horizon on, and their finest rollup records kept up to date as
    points arrive (a downsample a coarser level answers is a whole number of the finest buckets
    too), laid out as a stored rollup chunk is, so a read appends their bytes to the stored ones."""

    __slots__ = ("ordered", "points", "records", "slots")
    points: dict[int, Value]
    records: array[float]
    slots: dict[int, int]
    """Bucket start → offset of its record in `records`."""
    ordered: bool
    """Buckets were added in time order (else a read sorts them)."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.points = {}
        self.records = array("d")
        self.slots = {}
        self.ordered = True

    def add(self, ts: int, value: Value) -> None:
        points = self.points
        if ts in points:  # the old value is inside the rollup's sums: count again
            points[ts] = value
            self.recount()
            return
        points[ts] = value
        number = float(value)
        bucket = ts - ts % _FINEST.width_ms
        slot = self.slots.get(bucket)
        records = self.records
        if slot is None:
            if records and bucket < records[-chunks.RECORD]:
                self.ordered = False
            self.slots[bucket] = len(records)
            records.extend((bucket, number, number, number, 1.0))
            return
        if number < records[slot + 1]:
            records[slot + 1] = number
        if number > records[slot + 2]:
            records[slot + 2] = number
        records[slot + 3] += number
        records[slot + 4] += 1.0

    def recount(self) -> None:
        kept = list(self.points.items())
        self._clear()
        for ts, value in kept:
            self.add(ts, value)

    def pop_before(self, horizon: int) -> tuple[list[int], list[Value]]:
        """Take the points before `horizon` out (they are being sealed), as stamps and values."""
        points = self.points
        if max(points) < horizon:  # the usual case: the whole head is from the hour that ended
            leaving = (list(points), list(points.values()))
            self._clear()
            return leaving
        stamps = [t for t in points if t < horizon]
        leaving = (stamps, [points.pop(t) for t in stamps])
        if stamps:
            self.recount()
        return leaving

    def blob(self) -> bytes:
        if self.ordered:
            return self.records.tobytes()
        found = chunks.records(self.records.tobytes())
        return found[np.argsort(found[:, 0], kind="stable")].tobytes()


class MetricsStore:
    def __init__(
        self,
        path: Path,
        *,
        raw_retention: float | None = 7 * 86_400,
        rollup_retention: Mapping[str, float | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.raw_retention = raw_retention
        self.rollup_retention = {**DEFAULT_ROLLUP_RETENTION, **(rollup_retention or {})}
        """Rollup level → seconds kept, None for forever."""
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        """Series ids by (metric, tag pairs sorted or in the order a put gave them): the hot path of
        every put, so no JSON there."""
        self._by_metric: dict[str, list[_Known]] = defaultdict(list)
        self.series_count = 0
        """Series stored so far (kept in memory: a scrape of dkos' own metrics reads it)."""
        self._horizon = 0
        self._head: dict[int, _SeriesHead] = {}
        self._listeners: list[Callable[[Sequence[DataPoint]], None]] = []
        self._load()
        self._adopt_row_layout()

    def _load(self) -> None:
        """Memory from what is committed: the series, the horizon, and the head replayed from `wal`.
        Also how a failed put forgets what it had changed in memory."""
        self._ids.clear()
        self._by_metric.clear()
        for series_id, metric, tags in self._db.execute("SELECT id, metric, tags FROM series ORDER BY id"):
            decoded: dict[str, str] = json.loads(tags)
            self._ids[(metric, tuple(sorted(decoded.items())))] = series_id
            self._by_metric[metric].append(_Known(series_id, decoded))
        self.series_count = sum(len(known) for known in self._by_metric.values())
        row = self._db.execute("SELECT value FROM store_meta WHERE key = 'horizon'").fetchone()
        self._horizon = row[0] if row else 0
        self._head.clear()
        for (body,) in self._db.execute("SELECT body FROM wal ORDER BY id").fetchall():
            ids, stamps, values = json.loads(body)
            self._to_head(zip(ids, stamps, values, strict=True))

    def _adopt_row_layout(self) -> None:
        """Moves the points of a store written by dkos before chunks (one row per point) into chunks.
        Repeating it after a crash half-way is harmless: a point put again replaces itself."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'points'").fetchone():
            return
        self._transaction(lambda: self._store(self._db.execute("SELECT series_id, ts, value FROM points").fetchall()))
        self._db.executescript("DROP TABLE points; DROP TABLE IF EXISTS rollup_1m; DROP TABLE IF EXISTS rollup_1h;")

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
            self._transaction(lambda: self._store([(self._series_id(p), p.timestamp_ms, p.value) for p in points]))

    def _transaction(self, work: Callable[[], None]) -> None:
        self._db.execute("BEGIN")
        try:
            work()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._load()
            raise

    def _store(self, rows: Sequence[tuple[int, int, Value]]) -> None:
        """Rows (series id, ts, value) → head and `wal`, or sealed chunks behind the horizon;
        moves the horizon on to the newest hour written, sealing what the head holds before it."""
        if not rows:
            return
        stamps = [ts for _, ts, _ in rows]
        oldest, newest = min(stamps), max(stamps)
        horizon = max(self._horizon, _hour(min(newest, int(self._clock() * 1000))))
        late: dict[int, tuple[list[int], list[Value]]] = defaultdict(lambda: ([], []))
        if horizon > self._horizon:
            for series_id, head in list(self._head.items()):
                late[series_id] = head.pop_before(horizon)
                if not head.points:
                    del self._head[series_id]
            self._db.execute("DELETE FROM wal WHERE hour < ?", (horizon,))
            self._db.execute("INSERT OR REPLACE INTO store_meta VALUES ('horizon', ?)", (horizon,))
            self._horizon = horizon
        fresh: dict[int, list[tuple[int, int, Value]]] = defaultdict(list)
        if oldest >= horizon and _hour(oldest) == _hour(newest):
            fresh[_hour(oldest)] = list(rows)  # a collector's put: one hour, all in the head
        else:
            for row in rows:
                if row[1] < horizon:
                    late_stamps, late_values = late[row[0]]  # after the head's points: a later put wins
                    late_stamps.append(row[1])
                    late_values.append(row[2])
                else:
                    fresh[_hour(row[1])].append(row)
        self._seal(late)
        for hour, hour_rows in fresh.items():
            body = json.dumps([list(column) for column in zip(*hour_rows, strict=True)])
            self._db.execute("INSERT INTO wal (hour, body) VALUES (?, ?)", (hour, body))
            self._to_head(hour_rows)

    def _series_id(self, point: DataPoint) -> int:
        metric, tags = point.metric, point.tags
        # Tags as given first: a collector sends them in the same order every time, and sorting
        # them for every point of every put costs more than the rest of the lookup.
        as_given = (metric, tuple(tags.items()))
        found = self._ids.get(as_given)
        if found is not None:
            return found
        key = (metric, tuple(sorted(tags.items())))
        found = self._ids.get(key)
        if found is not None:
            self._ids[as_given] = found
            return found
        cursor = self._db.execute("INSERT INTO series (metric, tags) VALUES (?, ?)", (metric, _canonical(tags)))
        names = [("metric", metric), *(("tagk", k) for k in tags), *(("tagv", v) for v in tags.values())]
        self._db.executemany("INSERT OR IGNORE INTO names VALUES (?, ?)", names)
        series_id = int(cursor.lastrowid or 0)
        self._ids[key] = self._ids[as_given] = series_id
        self._by_metric[metric].append(_Known(series_id, dict(sorted(tags.items()))))
        self.series_count += 1
        return series_id

    def _to_head(self, rows: Iterable[tuple[int, int, Value]]) -> None:
        heads = self._head
        for series_id, ts, value in rows:
            head = heads.get(series_id)
            if head is None:
                head = heads[series_id] = _SeriesHead()
            head.add(ts, value)

    def _seal(self, points: Mapping[int, tuple[list[int], list[Value]]]) -> None:
        """Merge points (stamps and values per series) into the stored raw chunks, per series and
        hour, and recompute the rollups of every hour touched from its merged chunk."""
        raw_table = _TABLES[rollups.RAW]
        sealed: list[tuple[int, int, chunks.Chunk]] = []
        """(series id, hour, merged raw chunk) of every hour written."""
        for series_id, (stamps, values) in points.items():
            if not stamps:
                continue
            sealing = chunks.raw_chunk(stamps, values)
            hours = sealing[0] - sealing[0] % HOUR_MS
            for lo, hi in itertools.pairwise([*chunks.run_starts(hours).tolist(), len(hours)]):
                hour = int(hours[lo])
                new = tuple(column[lo:hi] for column in sealing)
                body = self._stored_body(rollups.RAW, series_id, hour)
                merged = chunks.merge(chunks.unpack(body, chunks.RAW_DTYPES), new) if body else new
                self._db.execute(
                    f"INSERT OR REPLACE INTO {raw_table} VALUES (?, ?, ?, ?)",
                    (series_id, hour, len(merged[0]), chunks.pack(merged)),
                )
                sealed.append((series_id, hour, merged))
        if not sealed:
            return
        # The rollups of every sealed hour in one pass per level; each hour lies in one block.
        ts = np.concatenate([merged[0] for _, _, merged in sealed])
        as_floats = np.concatenate([chunks.floats(merged) for _, _, merged in sealed])
        owner = np.repeat(np.arange(len(sealed)), [len(merged[0]) for _, _, merged in sealed])
        for level in rollups.LEVELS:
            owner_of, records = chunks.rollup(ts, as_floats, level.width_ms, owner)
            blocks: dict[tuple[int, int], list[npt.NDArray[np.float64]]] = defaultdict(list)
            for lo, hi in itertools.pairwise([*chunks.run_starts(owner_of).tolist(), len(owner_of)]):
                series_id, hour, _ = sealed[int(owner_of[lo])]
                blocks[(series_id, hour - hour % level.block_ms)].append(records[lo:hi])
            for (series_id, block), parts in blocks.items():
                body = self._stored_body(level, series_id, block)
                block_records = np.concatenate(parts) if len(parts) > 1 else parts[0]
                if body:
                    block_records = chunks.merge_records(chunks.records(body), block_records)
                self._db.execute(
                    f"INSERT OR REPLACE INTO {_TABLES[level]} VALUES (?, ?, ?, ?)",
                    (series_id, block, len(block_records), block_records.tobytes()),
                )

    def _stored_body(self, level: rollups.Level, series_id: int, start: int) -> bytes | None:
        row = self._db.execute(
            f"SELECT body FROM {_TABLES[level]} WHERE series_id = ? AND start = ?", (series_id, start)
        ).fetchone()
        return row[0] if row else None

    async def prune(self, *, now_ms: int) -> int:
        """Drop raw chunks and rollups past their retention; the number of raw points dropped.

        A chunk goes when all of it is past the cutoff: retention is kept to the block (an hour
        of raw points, six hours of 1-minute rollups, a week of hourly ones)."""
        keep = {rollups.RAW: self.raw_retention, **{lv: self.rollup_retention[lv.name] for lv in rollups.LEVELS}}

        def prune() -> int:
            dropped = 0
            with self._lock:
                self._db.execute("BEGIN")
                for level, seconds in keep.items():
                    if seconds is None:
                        continue
                    cutoff = now_ms - int(seconds * 1000)
                    where = f"FROM {_TABLES[level]} WHERE start + ? <= ?"
                    if level is rollups.RAW:
                        dropped = int(
                            self._db.execute(
                                f"SELECT COALESCE(SUM(count), 0) {where}", (level.block_ms, cutoff)
                            ).fetchone()[0]
                        )
                    self._db.execute(f"DELETE {where}", (level.block_ms, cutoff))
                self._db.execute("COMMIT")
            return dropped

        return await asyncio.to_thread(prune)

    # reading ------------------------------------------------------------------------------

    def _rows(self, level: rollups.Level, metric: str, start_ms: int, end_ms: int) -> list[tuple[int, int, bytes]]:
        """(series id, rows, blob) of every stored chunk of `metric` overlapping [start_ms, end_ms)."""
        return self._db.execute(
            f"SELECT series_id, count, body FROM {_TABLES[level]} "
            "WHERE series_id IN (SELECT id FROM series WHERE metric = ?) AND start > ? AND start < ? "
            "ORDER BY series_id, start",
            (metric, start_ms - level.block_ms, end_ms),
        ).fetchall()

    async def series(self, metric: str, start_ms: int, end_ms: int) -> list[Series]:
        """Every series of `metric` with its raw points in [start_ms, end_ms), sorted by time."""
        return await asyncio.to_thread(self._series, metric, start_ms, end_ms)

    def _series(self, metric: str, start_ms: int, end_ms: int) -> list[Series]:
        with self._lock:
            stored: dict[int, list[tuple[int, Value]]] = defaultdict(list)
            for series_id, _, body in self._rows(rollups.RAW, metric, start_ms, end_ms):
                chunk = chunks.unpack(body, chunks.RAW_DTYPES)
                inside = (chunk[0] >= start_ms) & (chunk[0] < end_ms)
                stored[series_id].extend(chunks.points(tuple(column[inside] for column in chunk)))
            result = []
            for known in self._by_metric.get(metric, []):
                found = stored.get(known.series_id, [])
                head = self._head.get(known.series_id)
                if head is not None:
                    found.extend(sorted((t, v) for t, v in head.points.items() if start_ms <= t < end_ms))
                if found:
                    result.append(Series(metric=metric, tags=known.tags, points=found))
            return result

    async def downsampled(self, metric: str, start_ms: int, end_ms: int, *, ds: Downsample) -> list[Series]:
        """Every series of `metric` downsampled by `ds` over [start_ms, end_ms) from the rollup level
        `rollups.choose(ds)` picks (the caller checks there is one): the buckets, not yet filled."""
        level = rollups.choose(ds)
        assert level is not None
        return await asyncio.to_thread(self._downsampled, metric, start_ms, end_ms, level, ds)

    def _downsampled(
        self, metric: str, start_ms: int, end_ms: int, level: rollups.Level, ds: Downsample
    ) -> list[Series]:
        known = self._by_metric.get(metric, [])
        blobs: list[bytes] = []
        counts: list[int] = []
        owners: list[int] = []
        with self._lock:
            stored: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
            for series_id, count, body in self._rows(level, metric, start_ms, end_ms):
                stored[series_id].append((count, body))
            # Per series, stored chunks then the head: time order, since the head starts where the
            # stored chunks end (see the module docstring).
            for position, k in enumerate(known):
                found = stored.get(k.series_id, [])
                head = self._head.get(k.series_id)
                if head is not None:
                    found.append((len(head.slots), head.blob()))
                for count, body in found:
                    blobs.append(body)
                    counts.append(count)
                    owners.append(position)
        if not blobs:
            return []
        records = chunks.records(b"".join(blobs))
        owner = np.repeat(np.array(owners, np.int64), counts)
        # Records outside the window get no owner (-1) rather than being copied out: they then
        # form buckets of their own, dropped below, and the records are never copied.
        stamps_in = records[:, 0]
        owner[(stamps_in < start_ms) | (stamps_in >= end_ms)] = -1
        owner_of, stamps, values = rollups.downsample(records, owner, ds)
        owned = owner_of >= 0
        if not owned.all():
            owner_of, stamps, values = owner_of[owned], stamps[owned], values[owned]
        if len(owner_of) == 0:
            return []
        bounds = [*chunks.run_starts(owner_of).tolist(), len(owner_of)]
        owner_list = owner_of.tolist()
        return [
            Series(
                metric=metric,
                tags=known[owner_list[lo]].tags,
                points=PointArray(stamps[lo:hi], values[lo:hi]),
                downsampled=True,
            )
            for lo, hi in itertools.pairwise(bounds)
        ]

    async def count_points(self, metric: str, start_ms: int, end_ms: int, *, ds: Downsample | None = None) -> int:
        """How many rows a read of `metric` over [start_ms, end_ms) would load — raw points, or the
        rollup buckets `downsampled(…, ds=ds)` reads when a level answers `ds` — counted without
        loading them (the query cap refuses a query before it can exhaust memory). Stored chunks
        count whole: that is what a read decodes."""
        level = rollups.choose(ds) or rollups.RAW

        def count() -> int:
            with self._lock:
                row = self._db.execute(
                    f"SELECT COALESCE(SUM(count), 0) FROM {_TABLES[level]} "
                    "WHERE series_id IN (SELECT id FROM series WHERE metric = ?) AND start > ? AND start < ?",
                    (metric, start_ms - level.block_ms, end_ms),
                ).fetchone()
                total = int(row[0])
                for k in self._by_metric.get(metric, []):
                    head = self._head.get(k.series_id)
                    if head is None:
                        continue
                    if level is rollups.RAW:
                        stamps = head.points
                        inside = start_ms <= min(stamps) and max(stamps) < end_ms
                        total += len(stamps) if inside else sum(start_ms <= t < end_ms for t in stamps)
                    else:
                        total += len(head.slots)
                return total

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
            # In the worker thread: the lock may be held by a seal, which the event loop must not wait on.
            with self._lock:
                every = sorted(
                    ((k.series_id, name, k.tags) for name, known in self._by_metric.items() for k in known),
                    key=lambda found: found[0],
                )
            return [
                (name, series_tags)
                for _, name, series_tags in every
                if (metric is None or name == metric)
                and all(k in series_tags and v in ("*", series_tags[k]) for k, v in tags.items())
            ]

        return await asyncio.to_thread(lookup)

    def disk_bytes(self) -> int:
        """The store's size on disk, with its write-ahead log."""
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
