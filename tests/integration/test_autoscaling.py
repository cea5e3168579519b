"""Alarms and autoscaling on a real server: the demo app burning CPU scales 2 → 4 and back to 2,
and a webhook receiver gets Alertmanager-shaped firing and resolved messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dkos_server import DkosServer, wait_until
from webhook_receiver import Receiver

pytestmark = pytest.mark.docker

FAST = {
    "DKOS_METRICS_INTERVAL": "1",
    "DKOS_ALARM_MIN_PERIOD": "1",
    "DKOS_NOTIFY_BACKOFF_INITIAL": "0.2",
    "DKOS_NOTIFY_MAX_ATTEMPTS": "3",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DkosServer]:
    running = DkosServer(tmp_path / "data", env=FAST).start()
    yield running
    running.cleanup()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _spec(**extra: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "image": "dkos-demo:1",
        "instances": 2,
        "resources": {"cpus": 1, "memory": 32},
        "ports": [{"name": "http", "container_port": 8080}],
        "health_check": {"path": "/health", "interval": 1, "timeout": 1},
        "stop_grace_period": 5,
        "strategy": {"drain_timeout": 2},
        **extra,
    }


def _alarm(server: DkosServer, name: str) -> dict[str, Any]:
    answer = server.get(f"/v1/alarms/{name}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_demo_app_burning_cpu_scales_from_2_to_4_and_back_to_2(server: DkosServer, receiver: Receiver) -> None:
    assert server.post("/v1/channels", json={"name": "ops", "url": receiver.url}).status_code == 201
    server.deploy(
        _spec(
            alarms=[
                {
                    "name": "cpuhigh",
                    "metric": "cpu_percent",
                    "comparison": ">=",
                    "threshold": 20,
                    "period": 4,
                    "channels": ["ops"],
                },
                {"name": "cpulow", "metric": "cpu_percent", "comparison": "<", "threshold": 5, "period": 4},
            ],
            scaling_policies=[
                {"name": "out", "alarms": ["cpuhigh"], "step": 2, "max": 4, "cooldown": 3},
                {"name": "in", "alarms": ["cpulow"], "step": -1, "min": 2, "cooldown": 3},
            ],
        )
    )
    instances = server.wait_healthy("web", 2)
    wait_until(lambda: _alarm(server, "cpulow")["state"] == "ALARM", timeout=30, what="cpulow in ALARM when idle")
    assert server.get("/v1/apps/web").json()["desired_instances"] == 2  # the scale-in policy is limited by min

    for instance in instances:
        answer = httpx.get(f"http://{instance['address']}/control/burn", params={"seconds": 45}, timeout=5)
        assert answer.status_code == 200

    # A busy core is 100 %; on a machine shared with other test runs it may get a fifth of that.
    wait_until(lambda: _alarm(server, "cpuhigh")["state"] == "ALARM", timeout=60, what="cpuhigh in ALARM")
    server.wait_healthy("web", 4, timeout=60)
    executions = server.get("/v1/executions", params={"app": "web"}).json()["executions"]
    first = executions[-1]
    assert (first["policy"], first["from_instances"], first["to_instances"]) == ("out", 2, 4)
    assert first["alarms"] == ["cpuhigh"] and first["value"] >= 20
    wait_until(
        lambda: server.get("/v1/executions", params={"app": "web"}).json()["executions"][-1]["finished_at"],
        timeout=30,
        what="the scale-out execution finished",
    )

    # The burn ends by itself; CPU falls, cpuhigh resolves, the scale-in policy removes 1, then 1 more.
    server.wait_healthy("web", 2, timeout=180)
    executions = server.get("/v1/executions", params={"app": "web"}).json()["executions"]
    ins = [e for e in executions if e["policy"] == "in"]
    assert [(e["from_instances"], e["to_instances"]) for e in reversed(ins)][:2] == [(4, 3), (3, 2)]
    shown = server.get("/v1/apps/web").json()
    assert {a["name"]: a["state"] for a in shown["alarms"]}["cpuhigh"] == "OK"
    assert shown["scaling_executions"][0]["policy"] == "in"

    def firing_and_resolved() -> list[dict[str, Any]]:
        found = [b for b in receiver.received() if b.get("commonLabels", {}).get("alertname") == "cpuhigh"]
        statuses = [b["status"] for b in found]
        return found if "firing" in statuses and "resolved" in statuses[statuses.index("firing") :] else []

    messages = wait_until(firing_and_resolved, timeout=30, what="firing then resolved messages")
    # Every transition notifies: the first OK after creation is a "resolved" too, so look after the firing.
    at = next(i for i, m in enumerate(messages) if m["status"] == "firing")
    firing = messages[at]
    resolved = next(m for m in messages[at:] if m["status"] == "resolved")
    assert firing["version"] == "4" and firing["receiver"] == "ops"
    alert = firing["alerts"][0]
    assert alert["labels"]["alertname"] == "cpuhigh" and alert["labels"]["app"] == "web"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z" and len(alert["fingerprint"]) == 16
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert resolved["alerts"][0]["startsAt"] == alert["startsAt"]
    history = server.get("/v1/alarms/cpuhigh/history").json()["history"]
    assert [h["new_state"] for h in reversed(history)][-2:] == ["ALARM", "OK"]


def test_target_tracking_scales_out_at_once_and_in_after_its_stabilisation_window(server: DkosServer) -> None:
    policy = {
        "name": "track",
        "type": "target_tracking",
        "metric": "cpu_percent",
        "target": 10,
        "period": 3,
        "min": 1,
        "max": 3,
        "scale_in_window": 5,
    }
    server.deploy(_spec(instances=1, scaling_policies=[policy]))
    (instance,) = server.wait_healthy("web", 1)
    answer = httpx.get(f"http://{instance['address']}/control/burn", params={"seconds": 15}, timeout=5)
    assert answer.status_code == 200

    def scaled_out() -> list[dict[str, Any]]:
        found = server.get("/v1/policies/track/executions", params={"app": "web"}).json()["executions"]
        return list(found)

    first = wait_until(scaled_out, timeout=60, what="a scale-out")[-1]
    # ceil(1 × CPU ÷ 10): a busy core wants 10, clamped to 3 ("limited by max"); a core shared with
    # other test runs may get only a part of that, which still wants 2 or more.
    assert first["from_instances"] == 1 and first["to_instances"] in (2, 3)

    server.wait_healthy("web", 1, timeout=120)
    executions = server.get("/v1/policies/track/executions", params={"app": "web"}).json()["executions"]
    assert executions[0]["to_instances"] == 1
    # Up while the core burns, then down in one or more steps as the CPU falls, never up again.
    ups = [e["to_instances"] > e["from_instances"] for e in reversed(executions)]
    assert ups == sorted(ups, reverse=True) and ups[0] and not ups[-1]
