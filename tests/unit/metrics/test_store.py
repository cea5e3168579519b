"""The metrics store on a real SQLite file."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dkos.metrics import downsample
from dkos.metrics.downsample import Downsample
from dkos.metrics.store import DataPoint, MetricsStore

HOUR = 3_600_000
UTC_ZONE = ZoneInfo("UTC")


async def test_points_come_back_per_series_sorted_with_ints_kept_as_ints(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    await store.put(
        [
            DataPoint("cpu", {"host": "a"}, 2000, 5),
            DataPoint("cpu", {"host": "a"}, 1000, 1.5),
            DataPoint("cpu", {"host": "b"}, 1000, 7),
            DataPoint("mem", {"host": "a"}, 1000, 9),
        ]
    )
    found = {s.tags["host"]: list(s.points) for s in await store.series("cpu", 0, 10_000)}
    assert found == {"a": [(1000, 1.5), (2000, 5)], "b": [(1000, 7)]}
    assert isinstance(found["a"][1][1], int)
    assert [list(s.points) for s in await store.series("cpu", 1500, 10_000)] == [[(2000, 5)]]
    await store.close()


async def test_a_point_at_the_same_time_replaces_the_old_one(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    await store.put([DataPoint("cpu", {"h": "a"}, 1000, 1)])
    await store.put([DataPoint("cpu", {"h": "a"}, 1000, 2)])
    [series] = await store.series("cpu", 0, 2000)
    assert list(series.points) == [(1000, 2)]


async def test_names_and_lookup_for_suggest_and_search(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    await store.put(
        [
            DataPoint("sys.cpu.user", {"host": "web01", "dc": "lga"}, 1000, 1),
            DataPoint("sys.mem", {"host": "web02"}, 1000, 1),
        ]
    )
    assert await store.names("metric", "sys.c") == ["sys.cpu.user"]
    assert await store.names("tagk") == ["dc", "host"]
    assert await store.names("tagv", "web", limit=1) == ["web01"]
    assert await store.known("metric", ["sys.mem", "nope"]) == {"sys.mem"}
    assert await store.lookup(None, {"host": "*"}) == [
        ("sys.cpu.user", {"dc": "lga", "host": "web01"}),
        ("sys.mem", {"host": "web02"}),
    ]


def ds(spec: str) -> Downsample:
    return downsample.parse(spec)


async def test_rollups_answer_like_raw_points_in_the_head_and_once_sealed(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    await store.put([DataPoint("cpu", {}, 60_000 + 1000 * n, n) for n in range(1, 4)])
    expected = {"1m-min": 1.0, "1m-max": 3.0, "1m-sum": 6.0, "1m-count": 3.0, "1m-avg": 2.0, "1h-max": 3.0}
    for spec, value in expected.items():
        [series] = await store.downsampled("cpu", 0, HOUR, ds=ds(spec))
        assert (series.downsampled, list(series.points)) == (True, [(60_000 if spec[1] == "m" else 0, value)])
    await store.put([DataPoint("cpu", {}, 2 * HOUR, 100)])  # a new hour: the first one is sealed
    for spec, value in expected.items():
        [series] = await store.downsampled("cpu", 0, HOUR, ds=ds(spec))
        assert series.points[0][1] == value
    assert await store.count_points("cpu", 0, 3 * HOUR, ds=ds("1m-max")) == 2  # two 1-minute buckets
    assert await store.count_points("cpu", 0, 3 * HOUR) == 4


async def test_rollup_reads_match_raw_downsampling_over_many_series_and_hours(tmp_path: Path) -> None:
    """Random points over 5 hours, put in order with some late and some replacing: every rollup-answered
    downsample equals what the raw points give."""
    rng = random.Random(7)
    store = MetricsStore(tmp_path / "metrics.db")
    for step in range(5 * 360):
        batch = [
            DataPoint("cpu", {"app": f"a{n % 2}", "i": str(n)}, step * 10_000, rng.randint(0, 100)) for n in range(4)
        ]
        if step % 97 == 0 and step:
            batch.append(DataPoint("cpu", {"app": "a0", "i": "0"}, rng.randrange(step) * 10_000, rng.random() * 100))
        await store.put(batch)
    for spec in ("1m-max", "5m-min", "15m-sum", "1m-avg", "2h-count", "1h-max-zero"):
        parsed = ds(spec)
        raw = {tuple(s.tags.items()): s.points for s in await store.series("cpu", 0, 5 * HOUR)}
        for series in await store.downsampled("cpu", 0, 5 * HOUR, ds=parsed):
            from_raw = downsample.apply(
                parsed, raw[tuple(series.tags.items())], start_ms=0, end_ms=5 * HOUR, tz=UTC_ZONE
            )
            got = downsample.fill(parsed, series.points, start_ms=0, end_ms=5 * HOUR, tz=UTC_ZONE)
            assert [t for t, _ in got] == [t for t, _ in from_raw], spec
            assert [v for _, v in got] == pytest.approx([v for _, v in from_raw]), spec


async def test_a_late_point_replaces_a_sealed_one_and_its_rollups_follow(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    await store.put([DataPoint("cpu", {}, 1000, 50), DataPoint("cpu", {}, 2000, 10)])
    await store.put([DataPoint("cpu", {}, 3 * HOUR, 1)])
    await store.put([DataPoint("cpu", {}, 1000, 5)])
    [series] = await store.series("cpu", 0, HOUR)
    assert list(series.points) == [(1000, 5), (2000, 10)]
    [hourly] = await store.downsampled("cpu", 0, HOUR, ds=ds("1h-max"))
    assert list(hourly.points) == [(0, 10.0)]


async def test_a_restart_keeps_the_head_and_the_sealed_chunks(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    await store.put([DataPoint("cpu", {"h": "a"}, 1000, 1), DataPoint("cpu", {"h": "a"}, 2 * HOUR, 2.5)])
    await store.close()
    again = MetricsStore(tmp_path / "metrics.db")
    [series] = await again.series("cpu", 0, 3 * HOUR)
    assert list(series.points) == [(1000, 1), (2 * HOUR, 2.5)]
    [hourly] = await again.downsampled("cpu", 0, 3 * HOUR, ds=ds("1h-sum"))
    assert list(hourly.points) == [(0, 1.0), (2 * HOUR, 2.5)]
    await again.put([DataPoint("cpu", {"h": "a"}, 2 * HOUR + 1000, 3)])
    assert again.series_count == 1


async def test_a_store_of_one_row_per_point_is_moved_into_chunks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE series (id INTEGER PRIMARY KEY, metric TEXT NOT NULL, tags TEXT NOT NULL, UNIQUE (metric, tags));
        CREATE TABLE names (kind TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID;
        CREATE TABLE points (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value NOT NULL,
                             PRIMARY KEY (series_id, ts)) WITHOUT ROWID;
        CREATE TABLE rollup_1m (series_id INTEGER, ts INTEGER, min REAL, max REAL, sum REAL, count INTEGER);
        INSERT INTO series VALUES (1, 'cpu', '{"h":"a"}');
        INSERT INTO names VALUES ('metric', 'cpu'), ('tagk', 'h'), ('tagv', 'a');
        INSERT INTO points VALUES (1, 1000, 1), (1, 2000, 2.5), (1, 7200000, 3);
        """
    )
    old.close()
    store = MetricsStore(path)
    [series] = await store.series("cpu", 0, 3 * HOUR)
    assert list(series.points) == [(1000, 1), (2000, 2.5), (7_200_000, 3)]
    assert await store.known("tagv", ["a"]) == {"a"}
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "points" not in tables and "rollup_1m" not in tables


async def test_raw_points_past_retention_go_and_keep_forever_keeps_them(tmp_path: Path) -> None:
    old = DataPoint("cpu", {}, 1_000, 1)
    new = DataPoint("cpu", {}, 9 * 86_400_000, 2)
    pruned = MetricsStore(tmp_path / "a.db", raw_retention=86_400)
    await pruned.put([old, new])
    assert await pruned.prune(now_ms=9 * 86_400_000) == 1
    assert [list(s.points) for s in await pruned.series("cpu", 0, 10**13)] == [[(9 * 86_400_000, 2)]]
    kept = MetricsStore(tmp_path / "b.db", raw_retention=None)
    await kept.put([old, new])
    assert await kept.prune(now_ms=9 * 86_400_000) == 0
    assert len((await kept.series("cpu", 0, 10**13))[0].points) == 2
    assert kept.disk_bytes() > 0


async def test_each_rollup_level_has_its_own_retention(tmp_path: Path) -> None:
    day = 86_400_000
    store = MetricsStore(tmp_path / "m.db", raw_retention=86_400, rollup_retention={"1m": 10 * 86_400, "1h": None})
    await store.put([DataPoint("cpu", {}, 0, 1), DataPoint("cpu", {}, 30 * day, 2)])
    await store.prune(now_ms=30 * day)

    async def stamps(spec: str | None) -> list[int]:
        found = await (store.downsampled("cpu", 0, 31 * day, ds=ds(spec)) if spec else store.series("cpu", 0, 31 * day))
        return [t for s in found for t, _ in s.points]

    assert await stamps(None) == [30 * day]
    assert await stamps("1m-sum") == [30 * day]
    assert await stamps("1h-sum") == [0, 30 * day]


async def test_listeners_hear_every_stored_put_and_nothing_else(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    heard: list[list[DataPoint]] = []
    store.listen(lambda points: heard.append(list(points)))
    point = DataPoint("cpu", {"h": "a"}, 1000, 1)
    await store.put([point])
    await store.put([])
    assert heard == [[point]]
    await store.close()
