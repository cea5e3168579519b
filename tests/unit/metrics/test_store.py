"""The metrics store on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dkos.metrics.store import DataPoint, MetricsStore


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


async def test_rollups_keep_min_max_sum_count_per_minute_and_hour(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    await store.put([DataPoint("cpu", {}, 60_000 + 1000 * n, n) for n in range(1, 4)])
    db = sqlite3.connect(tmp_path / "metrics.db")
    assert db.execute("SELECT ts, min, max, sum, count FROM rollup_1m").fetchall() == [(60_000, 1, 3, 6, 3)]
    assert db.execute("SELECT ts, count FROM rollup_1h").fetchall() == [(0, 3)]


async def test_raw_points_past_retention_go_and_keep_forever_keeps_them(tmp_path: Path) -> None:
    old = DataPoint("cpu", {}, 1_000, 1)
    new = DataPoint("cpu", {}, 9 * 86_400_000, 2)
    pruned = MetricsStore(tmp_path / "a.db", raw_retention=86_400)
    await pruned.put([old, new])
    assert await pruned.prune(now_ms=9 * 86_400_000) == 1
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
    db = sqlite3.connect(tmp_path / "m.db")
    assert db.execute("SELECT ts FROM points").fetchall() == [(30 * day,)]
    assert db.execute("SELECT ts FROM rollup_1m").fetchall() == [(30 * day,)]
    assert db.execute("SELECT ts FROM rollup_1h ORDER BY ts").fetchall() == [(0,), (30 * day,)]


async def test_listeners_hear_every_stored_put_and_nothing_else(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics.db")
    heard: list[list[DataPoint]] = []
    store.listen(lambda points: heard.append(list(points)))
    point = DataPoint("cpu", {"h": "a"}, 1000, 1)
    await store.put([point])
    await store.put([])
    assert heard == [[point]]
    await store.close()
