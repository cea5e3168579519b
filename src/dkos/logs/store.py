"""The log store: every captured line, embedded in the data dir (`logs.db`), searchable.

SQLite in a file of its own, so log traffic never contends with the state database.

    lines       id (the order lines were stored in), app, time (ns), instance, version,
                stream, part/more (pieces of an over-long line), escaped, text
    lines_fts   FTS5 index of `text` (external content: the text is stored once)
    blocks      per 16,384 ids the lowest and highest time: a time range becomes an id range,
                which FTS5 and the (app, id) index both narrow to at once
    apps        bytes and lines stored per app (what the caps are checked against)
    positions   per container, the engine time of the last stored line and how many lines
                carried that exact time: capture resumes there after a restart
    drops       what the caps dropped: when, why, which app, how many lines and bytes, the
                time span they covered
    checkpoints the last id each shipper delivered

Lines and the positions they advance are written in one transaction, so a server killed at
any moment resumes with no gap and no duplicate. Writes go through one connection and
reads through another (WAL lets them run side by side), each in a worker thread behind its
own lock, so the event loop never waits on the disk and a search never waits on a batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dkos.core.errors import BadQuery
from dkos.logs import caps

BLOCK_SHIFT = 14
"""Ids per block = 2**14: 610 blocks for 10 million lines, scanned in well under a millisecond."""
TRIM_CHUNK = 5_000
"""Lines deleted per transaction by a trim, so a big trim never holds the writer for long."""
STREAMS = ("stdout", "stderr")
_ESCAPED, _MORE = 1, 2

_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS apps (
    key INTEGER PRIMARY KEY,
    project TEXT NOT NULL,
    app TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    lines INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project, app)
);
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY,
    app_key INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    instance TEXT NOT NULL,
    version INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    part INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_by_app ON lines (app_key, id);
CREATE VIRTUAL TABLE IF NOT EXISTS lines_fts USING fts5(text, content='lines', content_rowid='id', columnsize=0);
CREATE TABLE IF NOT EXISTS blocks (block INTEGER PRIMARY KEY, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    container_id TEXT PRIMARY KEY,
    ts INTEGER NOT NULL,
    count INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS drops (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    reason TEXT NOT NULL,
    app_key INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Position:
    """Where capture of one container stands: the engine time of the last stored line and
    how many stored lines carry exactly that time (the engine's `since` is inclusive)."""

    ts_ns: int = 0
    count: int = 0
    done: bool = False
    """The container stopped and every line it wrote is stored."""

    def advance(self, ts_ns: int) -> Position:
        return Position(ts_ns, self.count + 1 if ts_ns == self.ts_ns else 1)

    def already_stored(self, ts_ns: int, seen_at_ts: int) -> bool:
        """Whether a line re-read from the engine at `ts_ns`, the `seen_at_ts`-th (1-based)
        line read at that time, was stored before (lines come back in the same order)."""
        return ts_ns < self.ts_ns or (ts_ns == self.ts_ns and seen_at_ts <= self.count)


Row = tuple[str, str, str, int, int, int, int, int, str]
"""A line to store: project, app, instance, version, time ns, stream (0 stdout, 1 stderr),
part, flags (1 escaped, 2 more), text. A plain tuple: capture makes 50,000 a second."""


def row_flags(*, escaped: bool, more: bool) -> int:
    return (_ESCAPED if escaped else 0) | (_MORE if more else 0)


@dataclass(frozen=True)
class StoredLine:
    id: int
    ts_ns: int
    project: str
    app: str
    instance: str
    version: int
    stream: str
    part: int
    more: bool
    escaped: bool
    text: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": rfc3339(self.ts_ns),
            "ts": self.ts_ns,
            "project": self.project,
            "app": self.app,
            "instance": self.instance,
            "version": self.version,
            "stream": self.stream,
            "text": self.text,
            "part": self.part,
            "more": self.more,
            "escaped": self.escaped,
        }


def rfc3339(ts_ns: int) -> str:
    """`2026-11-25T19:44:20.123456789Z`, as the engine writes it."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclass(frozen=True)
class Query:
    """Which lines of one app to read. `newest`: the last `limit` matching lines (a tail),
    else the first `limit` from the start; either way the answer is oldest first."""

    project: str
    app: str
    since_ns: int | None = None
    until_ns: int | None = None
    instance: str | None = None
    stream: str | None = None
    text: str | None = None
    """An FTS5 query: words, `"a phrase"`, `OutOfMemory OR panic`, `time*`, `NOT debug`."""
    after_id: int | None = None
    before_id: int | None = None
    limit: int = 100
    newest: bool = True


@dataclass(frozen=True)
class Dropped:
    lines: int = 0
    bytes: int = 0
    last_at: float | None = None
    by_reason: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "bytes": self.bytes, "last_at": self.last_at, "by_reason": self.by_reason}


class LogStore:
    def __init__(self, path: Path, *, limits: caps.Caps | None = None) -> None:
        self.path = path
        self.caps = limits or caps.Caps()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        # Merge FTS segments less eagerly than the default (4): ingest is the hot path, and a
        # query probes a few more segments for it (measured in bench/logs.py).
        self._db.execute("INSERT INTO lines_fts (lines_fts, rank) VALUES ('automerge', 16)")
        self._db.execute("PRAGMA cache_size = -65536")
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA query_only=1")
        self._keys: dict[tuple[str, str], int] = {}
        self._names: dict[int, tuple[str, str]] = {}
        self._usage: dict[int, int] = {}
        for key, project, app, used in self._db.execute("SELECT key, project, app, bytes FROM apps"):
            self._keys[(project, app)] = key
            self._names[key] = (project, app)
            self._usage[key] = used
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        newest = self._db.execute("SELECT MAX(id) FROM lines").fetchone()[0] or 0
        self._next_id = max(int(row[0]) if row else 1, newest + 1)
        self.newest_id = self._next_id - 1
        """The id of the newest stored line (followers wait for it to grow)."""
        self._grew = asyncio.Condition()
        self._listeners: list[Callable[[Sequence[Row]], None]] = []
        self._age_checked = 0.0

    def listen(self, listener: Callable[[Sequence[Row]], None]) -> None:
        """Call `listener` with the rows of every write once stored, on the event loop (for
        shippers and keyword counts); it must be quick and must not raise."""
        self._listeners.append(listener)

    async def close(self) -> None:
        def close() -> None:
            with self._write_lock, self._read_lock:
                self._reader.close()
                self._db.close()

        await asyncio.to_thread(close)

    # writing -------------------------------------------------------------------------------

    async def write(self, rows: Sequence[Row], positions: dict[str, Position]) -> None:
        """Store lines and the positions they bring their containers to, in one transaction."""
        if not rows and not positions:
            return
        await asyncio.to_thread(self._write, rows, positions)
        if rows:
            async with self._grew:
                self.newest_id = self._next_id - 1
                self._grew.notify_all()
            for listener in self._listeners:
                listener(rows)
        if self._over_cap() or time.time() - self._age_checked > 60:
            await self.enforce_caps(now=time.time())

    def _write(self, rows: Sequence[Row], positions: dict[str, Position]) -> None:
        # Python touches each row once (to give it its id and app); the index, the usage
        # tallies and the time blocks are computed by SQLite from the rows just inserted.
        with self._write_lock:
            db = self._db
            db.execute("BEGIN")
            try:
                first = next_id = self._next_id
                keys = self._keys
                line_rows = []
                for project, app, instance, version, ts, stream, part, flags, text in rows:
                    key = keys.get((project, app))
                    if key is None:
                        key = self._new_app(project, app)
                    line_rows.append((next_id, key, ts, instance, version, stream, part, flags, text))
                    next_id += 1
                added: list[tuple[int, int, int]] = []
                if line_rows:
                    span = (first, next_id - 1)
                    db.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", line_rows)
                    db.execute(
                        "INSERT INTO lines_fts (rowid, text) SELECT id, text FROM lines WHERE id BETWEEN ? AND ?", span
                    )
                    added = db.execute(
                        f"SELECT app_key, SUM(length(text) + length(instance) + {caps.LINE_OVERHEAD}), COUNT(*) "
                        "FROM lines WHERE id BETWEEN ? AND ? GROUP BY app_key",
                        span,
                    ).fetchall()
                    db.executemany(
                        "UPDATE apps SET bytes = bytes + ?, lines = lines + ? WHERE key = ?",
                        [(b, n, key) for key, b, n in added],
                    )
                    db.execute(
                        f"INSERT INTO blocks SELECT id >> {BLOCK_SHIFT}, MIN(ts), MAX(ts) FROM lines "
                        "WHERE id BETWEEN ? AND ? GROUP BY 1 ON CONFLICT (block) DO UPDATE SET "
                        "min_ts = MIN(min_ts, excluded.min_ts), max_ts = MAX(max_ts, excluded.max_ts)",
                        span,
                    )
                now = time.time()
                db.executemany(
                    "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?)",
                    [(cid, p.ts_ns, p.count, int(p.done), now) for cid, p in positions.items()],
                )
                db.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', ?)", (next_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._reload_apps()
                raise
            self._next_id = next_id
            for key, b, _ in added:
                self._usage[key] = self._usage.get(key, 0) + b

    def _new_app(self, project: str, app: str) -> int:
        cursor = self._db.execute("INSERT INTO apps (project, app) VALUES (?, ?)", (project, app))
        key = int(cursor.lastrowid or 0)
        self._keys[(project, app)] = key
        self._names[key] = (project, app)
        self._usage.setdefault(key, 0)
        return key

    def _reload_apps(self) -> None:
        """After a rolled-back write: forget apps the transaction made."""
        self._keys.clear()
        self._names.clear()
        for key, project, app, used in self._db.execute("SELECT key, project, app, bytes FROM apps"):
            self._keys[(project, app)] = key
            self._names[key] = (project, app)
            self._usage[key] = used

    # caps ----------------------------------------------------------------------------------

    def _over_cap(self) -> bool:
        limits = self.caps
        return sum(self._usage.values()) > limits.total_bytes or any(
            used > limits.app_bytes for used in self._usage.values()
        )

    async def enforce_caps(self, *, now: float) -> int:
        """Run trims until the store is within its caps; the number of lines dropped."""
        self._age_checked = now
        return await asyncio.to_thread(self._enforce, now)

    def _enforce(self, now: float) -> int:
        dropped = 0
        for _ in range(100):  # each trim makes progress; the bound only guards against a bug
            usage = [caps.Usage(key, used) for key, used in self._usage.items()]
            with self._write_lock:
                head = self._db.execute("SELECT ts FROM lines ORDER BY id LIMIT 1").fetchone()
            trims = caps.compute(usage, self.caps, oldest_ns=head[0] if head else None, now=now)
            if not trims:
                break
            gone = self._trim(trims[0], now)
            dropped += gone
            if gone == 0:
                break
        return dropped

    def _trim(self, trim: caps.Trim, now: float) -> int:
        """Delete one chunk of the oldest lines the trim names; how many went."""
        where, params = ("WHERE app_key = ?", (trim.app_key,)) if trim.app_key is not None else ("", ())
        with self._write_lock:
            db = self._db
            candidates = db.execute(
                f"SELECT id, app_key, ts, instance, text FROM lines {where} ORDER BY id LIMIT ?",
                (*params, TRIM_CHUNK),
            ).fetchall()
            victims = []
            freed = 0
            for row in candidates:
                if trim.before_ns is not None:
                    if row[2] >= trim.before_ns:
                        break
                elif freed >= trim.bytes:
                    break
                victims.append(row)
                freed += len(row[4]) + len(row[3]) + caps.LINE_OVERHEAD
            if not victims:
                return 0
            per_app: dict[int, list[int]] = {}
            for _, key, ts, instance, text in victims:
                tally = per_app.setdefault(key, [0, 0, ts, ts])
                tally[0] += 1
                tally[1] += len(text) + len(instance) + caps.LINE_OVERHEAD
                tally[2], tally[3] = min(tally[2], ts), max(tally[3], ts)
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT INTO lines_fts (lines_fts, rowid, text) VALUES ('delete', ?, ?)",
                    [(v[0], v[4]) for v in victims],
                )
                db.executemany("DELETE FROM lines WHERE id = ?", [(v[0],) for v in victims])
                for key, (n, b, first, last) in per_app.items():
                    db.execute("UPDATE apps SET bytes = bytes - ?, lines = lines - ? WHERE key = ?", (b, n, key))
                    db.execute(
                        "INSERT INTO drops (time, reason, app_key, lines, bytes, first_ts, last_ts) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (now, trim.reason.value, key, n, b, first, last),
                    )
                head = db.execute("SELECT MIN(id) FROM lines").fetchone()[0]
                db.execute("DELETE FROM blocks WHERE block < ?", ((head or self._next_id) >> BLOCK_SHIFT,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            for key, (_, b, _, _) in per_app.items():
                self._usage[key] = self._usage.get(key, 0) - b
            return len(victims)

    # positions and checkpoints -------------------------------------------------------------

    async def positions(self) -> dict[str, Position]:
        def read() -> dict[str, Position]:
            with self._read_lock:
                rows = self._reader.execute("SELECT container_id, ts, count, done FROM positions").fetchall()
            return {cid: Position(ts, count, bool(done)) for cid, ts, count, done in rows}

        return await asyncio.to_thread(read)

    async def forget_positions(self, container_ids: Iterable[str]) -> None:
        """Drop the positions of containers the engine no longer has."""
        gone = [(cid,) for cid in container_ids]

        def forget() -> None:
            with self._write_lock:
                self._db.executemany("DELETE FROM positions WHERE container_id = ?", gone)

        if gone:
            await asyncio.to_thread(forget)

    async def checkpoint(self, name: str) -> int:
        def read() -> int:
            with self._read_lock:
                row = self._reader.execute("SELECT last_id FROM checkpoints WHERE name = ?", (name,)).fetchone()
            return int(row[0]) if row else 0

        return await asyncio.to_thread(read)

    async def set_checkpoint(self, name: str, last_id: int) -> None:
        def write() -> None:
            with self._write_lock:
                self._db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (name, last_id))

        await asyncio.to_thread(write)

    # reading -------------------------------------------------------------------------------

    def knows(self, project: str, app: str) -> bool:
        return (project, app) in self._keys

    async def wait_newer(self, after_id: int, *, timeout: float) -> bool:
        """Wait until a line newer than `after_id` is stored (any app); False on timeout."""
        if self.newest_id > after_id:
            return True
        async with self._grew:
            try:
                await asyncio.wait_for(self._grew.wait_for(lambda: self.newest_id > after_id), timeout)
            except TimeoutError:
                return False
        return True

    async def read(self, query: Query) -> list[StoredLine]:
        """The lines `query` names, oldest first. Raises `BadQuery` for FTS5 syntax it rejects."""
        return await asyncio.to_thread(self._read, query)

    def _read(self, query: Query) -> list[StoredLine]:
        key = self._keys.get((query.project, query.app))
        if key is None:
            if query.text:
                self._check_search(query.text)
            return []
        low, high = 1, self._next_id
        if query.after_id is not None:
            low = max(low, query.after_id + 1)
        if query.before_id is not None:
            high = min(high, query.before_id - 1)
        with self._read_lock:
            if query.since_ns is not None or query.until_ns is not None:
                span = self._reader.execute(
                    "SELECT MIN(block), MAX(block) FROM blocks WHERE max_ts >= ? AND min_ts <= ?",
                    (query.since_ns or 0, query.until_ns if query.until_ns is not None else 1 << 62),
                ).fetchone()
                if span[0] is None:
                    return []
                low = max(low, span[0] << BLOCK_SHIFT)
                high = min(high, ((span[1] + 1) << BLOCK_SHIFT) - 1)
            if low > high:
                return []
            conditions = ["l.app_key = ?"]
            params: list[Any] = [key]
            if query.text:
                source = "lines_fts f JOIN lines l ON l.id = f.rowid"
                conditions.insert(0, "lines_fts MATCH ?")
                params.insert(0, query.text)
                id_column = "f.rowid"
            else:
                source = "lines l"
                id_column = "l.id"
            conditions.append(f"{id_column} BETWEEN ? AND ?")
            params += [low, high]
            if query.since_ns is not None:
                conditions.append("l.ts >= ?")
                params.append(query.since_ns)
            if query.until_ns is not None:
                conditions.append("l.ts <= ?")
                params.append(query.until_ns)
            if query.instance is not None:
                conditions.append("l.instance = ?")
                params.append(query.instance)
            if query.stream is not None:
                conditions.append("l.stream = ?")
                params.append(STREAMS.index(query.stream))
            order = "DESC" if query.newest else "ASC"
            sql = (
                "SELECT l.id, l.ts, l.instance, l.version, l.stream, l.part, l.flags, l.text "
                f"FROM {source} WHERE {' AND '.join(conditions)} ORDER BY {id_column} {order} LIMIT ?"
            )
            params.append(query.limit)
            try:
                rows = self._reader.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if query.text and _is_query_error(exc):
                    raise _bad_query(query.text, exc) from exc
                raise
        if query.newest:
            rows.reverse()
        return [
            StoredLine(
                id=r[0],
                ts_ns=r[1],
                project=query.project,
                app=query.app,
                instance=r[2],
                version=r[3],
                stream=STREAMS[r[4]],
                part=r[5],
                more=bool(r[6] & _MORE),
                escaped=bool(r[6] & _ESCAPED),
                text=r[7],
            )
            for r in rows
        ]

    async def count(self, project: str, app: str | None, text: str, *, since_ns: int) -> int:
        """How many lines of `app` (or of every app of `project` when None) match the FTS5
        query `text` and were written at or after `since_ns` (keyword alarms). Raises `BadQuery`."""
        # list(): a copy made in one step, while the writer thread may add an app.
        keys = [k for (p, a), k in list(self._keys.items()) if p == project and (app is None or a == app)]

        def count() -> int:
            with self._read_lock:
                span = self._reader.execute("SELECT MIN(block) FROM blocks WHERE max_ts >= ?", (since_ns,)).fetchone()
            if not keys or span[0] is None:
                self._check_search(text)  # nothing to count, but a bad query is still refused
                return 0
            marks = ",".join("?" * len(keys))
            with self._read_lock:
                try:
                    row = self._reader.execute(
                        "SELECT COUNT(*) FROM lines_fts f JOIN lines l ON l.id = f.rowid "
                        f"WHERE lines_fts MATCH ? AND f.rowid >= ? AND l.app_key IN ({marks}) AND l.ts >= ?",
                        (text, span[0] << BLOCK_SHIFT, *keys, since_ns),
                    ).fetchone()
                except sqlite3.OperationalError as exc:
                    if _is_query_error(exc):
                        raise _bad_query(text, exc) from exc
                    raise
            return int(row[0])

        return await asyncio.to_thread(count)

    async def check_search(self, text: str) -> None:
        """Raise `BadQuery` if FTS5 cannot parse `text`: a keyword alarm's query is checked
        before the alarm is stored, not at its first evaluation."""
        await asyncio.to_thread(self._check_search, text)

    def _check_search(self, text: str) -> None:
        """Raise `BadQuery` if FTS5 cannot parse `text` (it parses only when a query runs)."""
        with self._read_lock:
            try:
                self._reader.execute("SELECT rowid FROM lines_fts WHERE lines_fts MATCH ? LIMIT 1", (text,)).fetchall()
            except sqlite3.OperationalError as exc:
                if _is_query_error(exc):
                    raise _bad_query(text, exc) from exc
                raise

    async def after(self, after_id: int, *, limit: int) -> list[StoredLine]:
        """Lines of every app stored after `after_id`, oldest first (for shippers)."""

        def read() -> list[StoredLine]:
            with self._read_lock:
                rows = self._reader.execute(
                    "SELECT id, app_key, ts, instance, version, stream, part, flags, text FROM lines "
                    "WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                ).fetchall()
            lines = []
            for r in rows:
                project, app = self._names.get(r[1], ("", ""))
                lines.append(
                    StoredLine(
                        r[0],
                        r[2],
                        project,
                        app,
                        r[3],
                        r[4],
                        STREAMS[r[5]],
                        r[6],
                        bool(r[7] & _MORE),
                        bool(r[7] & _ESCAPED),
                        r[8],
                    )
                )
            return lines

        return await asyncio.to_thread(read)

    async def dropped(self, project: str, app: str) -> Dropped:
        """What the caps dropped of one app so far."""
        key = self._keys.get((project, app))
        if key is None:
            return Dropped()

        def read() -> Dropped:
            with self._read_lock:
                rows = self._reader.execute(
                    "SELECT reason, SUM(lines), SUM(bytes), MAX(time) FROM drops WHERE app_key = ? GROUP BY reason",
                    (key,),
                ).fetchall()
            if not rows:
                return Dropped()
            return Dropped(
                lines=sum(r[1] for r in rows),
                bytes=sum(r[2] for r in rows),
                last_at=max(r[3] for r in rows),
                by_reason={r[0]: r[1] for r in rows},
            )

        return await asyncio.to_thread(read)

    def usage(self) -> dict[str, int]:
        """Bytes stored per app (`project/app`), as the caps count them."""
        return {f"{p}/{a}": self._usage.get(k, 0) for (p, a), k in list(self._keys.items())}

    def disk_bytes(self) -> int:
        """The store's size on disk, with its write-ahead log."""
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())


def _bad_query(text: str, exc: sqlite3.OperationalError) -> BadQuery:
    return BadQuery(
        f"bad search query {text!r}: {exc}; put words with punctuation in double quotes "
        '("connection-refused"); the syntax is SQLite FTS5\'s, see docs/logs.md'
    )


def _is_query_error(exc: sqlite3.OperationalError) -> bool:
    message = str(exc)
    return message.startswith(("fts5:", "no such column", "unknown special query", "unterminated string"))
