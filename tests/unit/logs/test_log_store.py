"""The log store on a real SQLite file: writes with positions, reads, search, caps, drops."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dkos.core.errors import BadQuery
from dkos.logs import caps
from dkos.logs.store import LogStore, Position, Query, Row

T0 = 1_764_097_200 * 10**9


def rows(n: int, *, app: str = "web", instance: str = "web-1", start: int = 0, word: str = "") -> list[Row]:
    return [
        ("default", app, instance, 1, T0 + (start + i) * 10**6, i % 2, 0, 0, f"{instance} line {start + i} {word}")
        for i in range(n)
    ]


@pytest.fixture
async def store(tmp_path: Path) -> LogStore:
    opened = LogStore(tmp_path / "logs.db", limits=caps.Caps(max_age=None))
    yield opened  # type: ignore[misc]
    await opened.close()


async def test_lines_and_positions_are_stored_together_and_survive_a_reopen(tmp_path: Path) -> None:
    first = LogStore(tmp_path / "logs.db", limits=caps.Caps(max_age=None))
    await first.write(rows(10), {"c1": Position(T0 + 9 * 10**6, 1)})
    await first.close()
    again = LogStore(tmp_path / "logs.db", limits=caps.Caps(max_age=None))
    assert await again.positions() == {"c1": Position(T0 + 9 * 10**6, 1)}
    got = await again.read(Query("default", "web"))
    assert [line.text.split()[2] for line in got] == [str(i) for i in range(10)]
    await again.write(rows(1, start=10), {})
    assert (await again.read(Query("default", "web", limit=1)))[0].id == 11, "ids never go back"
    await again.close()


def test_a_position_skips_exactly_the_lines_already_stored() -> None:
    at = Position(100, 2)
    assert at.already_stored(99, 1)
    assert at.already_stored(100, 1) and at.already_stored(100, 2)
    assert not at.already_stored(100, 3)
    assert not at.already_stored(101, 1)
    assert at.advance(100) == Position(100, 3) and at.advance(105) == Position(105, 1)


async def test_reads_filter_by_time_instance_and_stream_and_page(store: LogStore) -> None:
    await store.write(rows(100) + rows(100, instance="web-2"), {})
    tail = await store.read(Query("default", "web", limit=3))
    assert [line.text for line in tail] == [f"web-2 line {i} " for i in (97, 98, 99)]
    ranged = await store.read(
        Query("default", "web", since_ns=T0 + 10 * 10**6, until_ns=T0 + 12 * 10**6, instance="web-1", newest=False)
    )
    assert [line.text for line in ranged] == [f"web-1 line {i} " for i in (10, 11, 12)]
    errors = await store.read(Query("default", "web", stream="stderr", instance="web-1", limit=1000))
    assert len(errors) == 50 and all(line.stream == "stderr" for line in errors)
    page = await store.read(Query("default", "web", after_id=tail[-1].id - 5, newest=False, limit=2))
    assert [line.id for line in page] == [tail[-1].id - 4, tail[-1].id - 3]
    assert await store.read(Query("default", "other")) == []


async def test_full_text_search_within_an_app(store: LogStore) -> None:
    await store.write(rows(50) + rows(1, start=50, word="OutOfMemory") + rows(5, app="api", word="OutOfMemory"), {})
    found = await store.read(Query("default", "web", text="OutOfMemory"))
    assert [line.text for line in found] == ["web-1 line 50 OutOfMemory"]
    assert len(await store.read(Query("default", "web", text='"line 7"'))) == 1
    assert len(await store.read(Query("default", "web", text="outofmemory OR 49", limit=10))) == 2


@pytest.mark.parametrize("bad", ['"open', "foo-bar", "AND", "a:b", "NEAR("])
async def test_bad_search_syntax_is_a_bad_query_with_the_reason(store: LogStore, bad: str) -> None:
    await store.write(rows(1), {})
    with pytest.raises(BadQuery, match="bad search query"):
        await store.read(Query("default", "web", text=bad))
    with pytest.raises(BadQuery):
        await store.read(Query("default", "unknown-app", text=bad))


async def test_over_an_app_cap_the_oldest_lines_go_the_newest_stay_and_the_drop_is_recorded(tmp_path: Path) -> None:
    cost = caps.line_cost("web-1 line 1000 ", "web-1")
    store = LogStore(tmp_path / "logs.db", limits=caps.Caps(app_bytes=100 * cost, max_age=None, headroom=0.1))
    await store.write(rows(1000, start=1000), {})
    kept = await store.read(Query("default", "web", limit=1000))
    assert 85 <= len(kept) <= 100
    assert kept[-1].text == "web-1 line 1999 "
    assert [int(line.text.split()[2]) for line in kept] == list(range(2000 - len(kept), 2000))
    dropped = await store.dropped("default", "web")
    assert dropped.lines == 1000 - len(kept) and dropped.by_reason == {"app_cap": dropped.lines}
    assert await store.read(Query("default", "web", text="1000")) == [], "dropped lines leave the index"
    await store.close()


async def test_over_the_total_cap_the_oldest_lines_of_any_app_go(tmp_path: Path) -> None:
    cost = caps.line_cost("web-1 line 1000 ", "web-1")
    store = LogStore(tmp_path / "logs.db", limits=caps.Caps(total_bytes=300 * cost, max_age=None, headroom=0.0))
    await store.write(rows(200, app="old", start=1000), {})
    await store.write(rows(200, app="new", start=1000), {})
    assert len(await store.read(Query("default", "old", limit=1000))) == 100
    assert len(await store.read(Query("default", "new", limit=1000))) == 200
    assert (await store.dropped("default", "old")).by_reason == {"total_cap": 100}
    await store.close()


async def test_lines_past_the_age_cap_go(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", limits=caps.Caps(max_age=3600))
    now_ns = time.time_ns()
    old = [("default", "web", "web-1", 1, now_ns - 7200 * 10**9 + i, 0, 0, 0, f"old {i}") for i in range(5)]
    new = [("default", "web", "web-1", 1, now_ns + i, 0, 0, 0, f"new {i}") for i in range(5)]
    await store.write(old + new, {})  # the first write checks the age cap
    assert [line.text for line in await store.read(Query("default", "web"))] == [f"new {i}" for i in range(5)]
    assert (await store.dropped("default", "web")).by_reason == {"age": 5}
    assert await store.enforce_caps(now=time.time() + 3600 + 1) == 5
    await store.close()


async def test_a_follower_wakes_when_a_line_is_stored(store: LogStore) -> None:
    assert not await store.wait_newer(store.newest_id, timeout=0.05)
    before = store.newest_id
    began = time.monotonic()
    import asyncio

    writer = asyncio.create_task(store.write(rows(1), {}))
    assert await store.wait_newer(before, timeout=5)
    assert time.monotonic() - began < 1
    await writer
