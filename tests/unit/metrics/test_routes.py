"""The OpenTSDB HTTP routes on a real MetricsStore (SQLite in tmp_path), driven through ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from dkos.metrics import routes
from dkos.metrics.store import DataPoint, MetricsStore

T0 = 1356998400  # 2013-01-01T00:00:00Z


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetricsStore]:
    metrics = MetricsStore(tmp_path / "metrics.db", raw_retention=None)
    yield metrics
    await metrics.close()


@pytest.fixture
async def client(store: MetricsStore) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.metrics = store
    for prefix in ("/api", "/api/v1", "/api/v2"):
        app.include_router(routes.make_router(prefix))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


def point(metric: str, ts: int, value: Any, **tags: str) -> dict[str, Any]:
    return {"metric": metric, "timestamp": ts, "value": value, "tags": tags}


async def seed(store: MetricsStore) -> None:
    """sys.cpu.user on web01 and web02, every 30 s for 5 minutes from T0."""
    await store.put(
        [DataPoint("sys.cpu.user", {"host": "web01", "dc": "lga"}, (T0 + 30 * i) * 1000, i) for i in range(10)]
        + [DataPoint("sys.cpu.user", {"host": "web02", "dc": "lga"}, (T0 + 30 * i) * 1000, 10 * i) for i in range(10)]
    )


# /put ---------------------------------------------------------------------------------------------


async def test_put_single_object_is_204_and_queryable(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/put", json=point("sys.cpu.nice", T0, 18, host="web01"))
    assert answer.status_code == 204
    assert answer.content == b""
    got = await client.get("/api/query", params={"start": str(T0), "end": str(T0 + 60), "m": "sum:sys.cpu.nice"})
    assert got.status_code == 200
    assert got.json() == [
        {"metric": "sys.cpu.nice", "tags": {"host": "web01"}, "aggregateTags": [], "dps": {"1356998400": 18}}
    ]


async def test_put_array_with_a_bad_point_stores_the_good_ones_and_details_the_bad(
    client: httpx.AsyncClient, store: MetricsStore
) -> None:
    body = [
        point("sys.cpu.nice", T0, 1, host="web01"),
        point("sys.cpu.nice", T0 + 10, "notanumber", host="web01"),
        point("sys.cpu.nice", T0 + 20, "2.5", host="web01"),
    ]
    answer = await client.post("/api/put?details", json=body)
    assert answer.status_code == 400
    assert answer.json() == {
        "success": 2,
        "failed": 1,
        "errors": [
            {
                "datapoint": {
                    "metric": "sys.cpu.nice",
                    "timestamp": T0 + 10,
                    "value": "notanumber",
                    "tags": {"host": "web01"},
                },
                "error": "Unable to parse value to a number",
            }
        ],
    }
    [series] = await store.series("sys.cpu.nice", 0, (T0 + 100) * 1000)
    assert list(series.points) == [(T0 * 1000, 1), ((T0 + 20) * 1000, 2.5)]


async def test_put_reasons_and_flags(client: httpx.AsyncClient) -> None:
    bad = [
        {"timestamp": T0, "value": 1, "tags": {"h": "a"}},
        point("m", 0, 1, h="a"),
        point("m", T0, "", h="a"),
        {"metric": "m", "timestamp": T0, "value": 1},
        point("bad name", T0, 1, h="a"),
        point("m", T0, 1, **{f"k{i}": "v" for i in range(9)}),
        point("m", T0, "NaN", h="a"),
    ]
    answer = await client.post("/api/put?details", json=bad)
    assert answer.status_code == 400
    reasons = [e["error"] for e in answer.json()["errors"]]
    assert reasons[:5] == [
        "Metric name was empty",
        "Invalid timestamp",
        "Empty value",
        "Missing tags",
        'Invalid metric name ("bad name"): illegal character:  ',
    ]
    assert reasons[5].startswith("Too many tags: 9 maximum allowed: 8, tags: {k0=v, ")
    assert reasons[6] == "Unable to parse value to a number"

    summary = await client.post("/api/put?summary", json=[point("m", T0, 1, h="a"), point("", T0, 1, h="a")])
    assert (summary.status_code, summary.json()) == (400, {"success": 1, "failed": 1})
    ok = await client.post("/api/put?summary", json=[point("m", T0, 1, h="a")])
    assert (ok.status_code, ok.json()) == (200, {"success": 1, "failed": 0})
    plain = await client.post("/api/put", json=[point("", T0, 1, h="a")])
    assert plain.status_code == 400
    assert plain.json() == {
        "error": {
            "code": 400,
            "message": "One or more data points had errors",
            "details": 'Please see the TSD logs or append "details" to the put request',
        }
    }


async def test_put_body_errors_and_method(client: httpx.AsyncClient) -> None:
    empty = await client.post("/api/put", json=[])
    assert (empty.status_code, empty.json()["error"]["message"]) == (400, "No datapoints found in content")
    scalar = await client.post("/api/put", content=b"42")
    assert scalar.json()["error"]["message"] == "The JSON must start as an object or an array"
    broken = await client.post("/api/put", content=b'{"metric": ')
    assert (broken.status_code, broken.json()["error"]["message"]) == (400, "Unable to parse the given JSON")
    get = await client.get("/api/put")
    assert get.status_code == 405
    assert get.json() == {"error": {"code": 405, "message": "Method not allowed"}}


async def test_put_keeps_ints_ints_and_ms_timestamps(client: httpx.AsyncClient, store: MetricsStore) -> None:
    ms = T0 * 1000 + 500
    await client.post("/api/put", json=[point("m", ms, "17", h="a"), point("m", T0 + 1, 42.0, h="a")])
    [series] = await store.series("m", 0, (T0 + 10) * 1000)
    assert list(series.points) == [(ms, 17), ((T0 + 1) * 1000, 42.0)]
    assert isinstance(series.points[0][1], int) and isinstance(series.points[1][1], float)


# /query -------------------------------------------------------------------------------------------


async def test_query_get_and_post_sum_round_trip(client: httpx.AsyncClient, store: MetricsStore) -> None:
    await seed(store)
    expected = [
        {
            "metric": "sys.cpu.user",
            "tags": {"dc": "lga"},
            "aggregateTags": ["host"],
            "dps": {str(T0 + 30 * i): 11 * i for i in range(3)},
        }
    ]
    got = await client.get("/api/query", params={"start": str(T0), "end": str(T0 + 60), "m": "sum:sys.cpu.user"})
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json; charset=UTF-8"
    assert got.json() == expected
    body = {"start": T0, "end": T0 + 60, "queries": [{"aggregator": "sum", "metric": "sys.cpu.user"}]}
    posted = await client.post("/api/query", json=body)
    assert posted.status_code == 200
    assert posted.json() == expected


async def test_query_downsample_with_fill_and_group_by(client: httpx.AsyncClient, store: MetricsStore) -> None:
    await seed(store)
    body = {
        "start": T0,
        "end": T0 + 599,
        "showQuery": True,
        "queries": [
            {"aggregator": "sum", "metric": "sys.cpu.user", "downsample": "2m-avg-zero", "tags": {"host": "web01"}}
        ],
    }
    got = await client.post("/api/query", json=body)
    assert got.status_code == 200, got.text
    [result] = got.json()
    # buckets T0 (0..3 → 1.5), T0+120 (4..7 → 5.5), T0+240 (8,9 → 8.5), then zero-filled T0+360, T0+480
    assert result["dps"] == {
        str(T0): 1.5,
        str(T0 + 120): 5.5,
        str(T0 + 240): 8.5,
        str(T0 + 360): 0.0,
        str(T0 + 480): 0.0,
    }
    assert result["tags"] == {"host": "web01", "dc": "lga"}
    assert result["query"]["index"] == 0


async def test_query_rate(client: httpx.AsyncClient, store: MetricsStore) -> None:
    await seed(store)
    got = await client.get(
        "/api/query", params={"start": str(T0), "end": str(T0 + 90), "m": "sum:rate:sys.cpu.user{host=web02}"}
    )
    assert got.status_code == 200, got.text
    [result] = got.json()
    # web02 rises 10 every 30 s; no rate at the first point
    assert result["dps"] == {
        str(T0 + 30): pytest.approx(1 / 3),
        str(T0 + 60): pytest.approx(1 / 3),
        str(T0 + 90): pytest.approx(1 / 3),
    }


async def test_query_errors_have_opentsdb_bodies(client: httpx.AsyncClient, store: MetricsStore) -> None:
    await seed(store)
    unknown = await client.get("/api/query", params={"start": str(T0), "m": "sum:sys.cpu.nice"})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": {"code": 400, "message": "No such name for 'metrics': 'sys.cpu.nice'"}}
    tagv = await client.get("/api/query", params={"start": str(T0), "m": "sum:sys.cpu.user{host=web09}"})
    assert tagv.json()["error"]["message"] == "No such name for 'tagv': 'web09'"
    malformed = await client.post(
        "/api/query",
        json={"start": T0, "queries": [{"aggregator": "sum", "metric": "sys.cpu.user", "downsample": "1m-avg-zero-x"}]},
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["message"].startswith("Invalid downsampling specifier '1m-avg-zero-x'")
    bad_fn = await client.get("/api/query", params={"start": str(T0), "m": "sum:1m-bogus:sys.cpu.user"})
    assert bad_fn.json()["error"]["message"] == "No such downsampling function: bogus"
    missing = await client.get("/api/query", params={"m": "sum:sys.cpu.user"})
    assert missing.json()["error"]["message"] == "Missing parameter <code>start</code>"
    empty = await client.post("/api/query", content=b"")
    assert empty.json()["error"]["message"] == "Missing message content"
    wrong_verb = await client.put("/api/query")
    assert (wrong_verb.status_code, wrong_verb.json()["error"]["message"]) == (405, "Method not allowed")


async def test_known_metric_without_data_in_range_is_empty(client: httpx.AsyncClient, store: MetricsStore) -> None:
    await seed(store)
    got = await client.get("/api/query", params={"start": str(T0 + 86400), "m": "sum:sys.cpu.user"})
    assert (got.status_code, got.json()) == (200, [])


async def test_query_cap_is_413(
    client: httpx.AsyncClient, store: MetricsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(store)
    monkeypatch.setattr(routes, "MAX_POINTS", 19)
    got = await client.get("/api/query", params={"start": str(T0), "end": str(T0 + 60), "m": "sum:sys.cpu.user"})
    assert got.status_code == 413
    assert got.json()["error"]["message"].startswith(
        "Sorry, you have attempted to fetch more than our limit of 19 data points."
    )
    monkeypatch.setattr(routes, "MAX_POINTS", 20)
    ok = await client.get("/api/query", params={"start": str(T0), "end": str(T0 + 60), "m": "sum:sys.cpu.user"})
    assert ok.status_code == 200


async def test_jsonp_wraps_the_answer(client: httpx.AsyncClient) -> None:
    got = await client.get("/api/aggregators", params={"jsonp": "cb"})
    assert got.text.startswith('cb(["') and got.text.endswith("])")


# /suggest, /aggregators, /config/filters, /search/lookup --------------------------------------------


async def test_suggest_get_and_post(client: httpx.AsyncClient, store: MetricsStore) -> None:
    await seed(store)
    await store.put([DataPoint("sys.mem", {"host": "db01"}, T0 * 1000, 1)])
    got = await client.get("/api/suggest", params={"type": "metrics", "q": "sys.c"})
    assert got.json() == ["sys.cpu.user"]
    assert (await client.get("/api/suggest", params={"type": "tagv", "max": "2"})).json() == ["db01", "lga"]
    posted = await client.post("/api/suggest", json={"type": "tagk", "q": ""})
    assert posted.json() == ["dc", "host"]
    missing = await client.get("/api/suggest")
    assert (missing.status_code, missing.json()["error"]["message"]) == (400, "Missing parameter <code>type</code>")
    wrong = await client.get("/api/suggest", params={"type": "hosts"})
    assert wrong.json()["error"]["message"] == "Invalid 'type' parameter:hosts"
    bad_max = await client.get("/api/suggest", params={"type": "tagk", "max": "x"})
    assert bad_max.json()["error"]["message"] == "Unable to parse 'max' as a number"
    assert (await client.post("/api/suggest", json={})).json()["error"]["message"] == "Missing 'type' parameter"


async def test_aggregators_and_filters(client: httpx.AsyncClient) -> None:
    names = (await client.get("/api/aggregators")).json()
    assert {"sum", "avg", "max", "zimsum", "none", "p99"} <= set(names)
    assert (await client.post("/api/aggregators")).json() == names
    filters = (await client.get("/api/config/filters")).json()
    assert {"literal_or", "wildcard", "regexp"} <= set(filters)
    assert set(filters["literal_or"]) == {"description", "examples"}


async def test_search_lookup(client: httpx.AsyncClient, store: MetricsStore) -> None:
    await seed(store)
    await store.put([DataPoint("sys.mem", {"host": "web01"}, T0 * 1000, 1)])
    got = await client.get("/api/search/lookup", params={"m": "sys.cpu.user{host=*}"})
    assert got.status_code == 200
    body = got.json()
    assert body["type"] == "LOOKUP" and body["metric"] == "sys.cpu.user"
    assert body["tags"] == [{"key": "host", "value": "*"}]
    assert body["totalResults"] == 2 and body["startIndex"] == 0 and body["limit"] == 25
    assert [r["tags"]["host"] for r in body["results"]] == ["web01", "web02"]
    assert all(r["metric"] == "sys.cpu.user" and r["tsuid"] for r in body["results"])

    by_tag = await client.post("/api/search/lookup", json={"tags": [{"key": "host", "value": "web01"}], "limit": 5})
    assert sorted(r["metric"] for r in by_tag.json()["results"]) == ["sys.cpu.user", "sys.mem"]
    unknown = await client.get("/api/search/lookup", params={"m": "nope"})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": {
            "code": 404,
            "message": "Unable to resolve one or more UIDs",
            "details": "No such name for 'metrics': 'nope'",
        }
    }
    assert (await client.get("/api/search/lookup")).json()["error"]["message"] == "Missing parameter <code>m</code>"


# versions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api/v1", "/api/v2"])
async def test_versioned_prefixes_answer_alike(client: httpx.AsyncClient, store: MetricsStore, prefix: str) -> None:
    assert (await client.post(f"{prefix}/put", json=point("m", T0, 3, h="a"))).status_code == 204
    got = await client.get(f"{prefix}/query", params={"start": str(T0), "end": str(T0 + 1), "m": "sum:m"})
    assert got.json()[0]["dps"] == {str(T0): 3}
    assert (await client.get(f"{prefix}/suggest", params={"type": "metrics"})).json() == ["m"]
    assert (await client.get(f"{prefix}/put")).status_code == 405
