"""Metrics on a real server: collected from the real engine and HAProxy, pushed with
`/api/put`, read back with OpenTSDB queries the way Grafana's data source sends them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dkos_server import DkosServer, wait_until

pytestmark = pytest.mark.docker

INTERVAL = 1.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DkosServer]:
    running = DkosServer(tmp_path / "data", env={"DKOS_METRICS_INTERVAL": str(INTERVAL)}).start()
    yield running
    running.cleanup()


def query(server: DkosServer, m: str, start: str = "1m-ago") -> list[dict[str, Any]]:
    answer = server.get("/api/query", params={"start": start, "m": m})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_a_running_apps_cpu_and_memory_appear_within_two_collection_intervals(server: DkosServer) -> None:
    server.deploy(
        {
            "name": "web",
            "image": "dkos-demo:1",
            "instances": 2,
            "resources": {"memory": 32},
            "ports": [{"name": "http", "container_port": 8080}],
            "health_check": {"path": "/health"},
        }
    )
    healthy = server.wait_healthy("web", 2)
    since = time.monotonic()

    def once_written(metric: str, m: str) -> list[dict[str, Any]]:
        """The query's answer, or nothing while the metric has never been written (a 400 then)."""
        known = set(server.get("/api/suggest", params={"type": "metrics", "q": "dkos.", "max": 100}).json())
        return query(server, m) if metric in known else []

    def memory_of_both() -> list[dict[str, Any]]:
        found = once_written("dkos.container.memory.bytes", "sum:dkos.container.memory.bytes{app=web,instance=*}")
        return found if len(found) == 2 else []

    series = wait_until(memory_of_both, timeout=10, interval=0.2, what="memory of both instances")
    assert time.monotonic() - since <= 2 * INTERVAL + 2, "more than two collection intervals (plus a query)"
    assert {s["tags"]["instance"] for s in series} == {i["id"] for i in healthy}
    assert all(v > 0 for s in series for v in s["dps"].values())
    assert all(s["tags"]["project"] == "default" and s["tags"]["version"] == "1" for s in series)
    # CPU needs two samples of a stream: averaged over both instances, their tags differ in `instance` only.
    cpu = wait_until(
        lambda: [
            r
            for r in once_written("dkos.container.cpu.percent", "avg:dkos.container.cpu.percent{app=web}")
            if r["aggregateTags"]
        ],
        timeout=2 * INTERVAL + 3,
        what="CPU figures of both instances",
    )
    assert cpu[0]["aggregateTags"] == ["instance"] and cpu[0]["tags"]["app"] == "web"


def test_pushed_points_come_back_through_grafana_style_queries(server: DkosServer) -> None:
    now = int(time.time())
    points = [
        {"metric": "shop.orders", "timestamp": now - 60 * k, "value": 10 * k, "tags": {"host": h}}
        for k in range(10)
        for h in ("a", "b")
    ]
    assert server.post("/api/put", json=points).status_code == 204
    bad = server.post("/api/put", params={"details": ""}, json=[points[0], {"metric": "x", "value": 1}])
    assert bad.status_code == 400 and bad.json()["success"] == 1 and bad.json()["failed"] == 1

    # What Grafana's OpenTSDB data source (2.3 mode) posts: downsample with fill, filters, msResolution.
    body = {
        "start": (now - 3600) * 1000,
        "end": now * 1000,
        "queries": [
            {
                "aggregator": "sum",
                "metric": "shop.orders",
                "downsample": "5m-avg-zero",
                "filters": [{"type": "wildcard", "tagk": "host", "filter": "*", "groupBy": False}],
            }
        ],
        "msResolution": False,
        "globalAnnotations": True,
        "showQuery": True,
    }
    answer = server.post("/api/query", json=body)
    assert answer.status_code == 200, answer.text
    [result] = answer.json()
    assert result["metric"] == "shop.orders" and result["aggregateTags"] == ["host"]
    assert "query" in result and max(result["dps"].values()) > 0
    for path in ("/api/aggregators", "/api/v1/aggregators", "/api/v2/aggregators"):
        assert "sum" in server.get(path).json()
    assert "literal_or" in server.get("/api/config/filters").json()
    assert server.get("/api/suggest", params={"type": "tagk", "q": "ho"}).json() == ["host"]
    unknown = server.get("/api/query", params={"start": "1h-ago", "m": "sum:nope"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "No such name for 'metrics': 'nope'"


def test_the_metrics_api_needs_the_token_too(server: DkosServer) -> None:
    import httpx

    assert httpx.get(server.url + "/api/aggregators").status_code == 401
    assert httpx.get(server.url + "/metrics").status_code == 401
    own = server.get("/metrics")
    assert own.status_code == 200 and "dkos_reconcile_duration_seconds" in own.text
