"""The alarm, channel and policy API on a real server: bad input is refused with a JSON body naming
the field, and notifications are retried on 5xx, not on 4xx, and never dropped silently."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dkos_server import DkosServer, wait_until
from webhook_receiver import Receiver

pytestmark = pytest.mark.docker


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DkosServer]:
    env = {"DKOS_NOTIFY_BACKOFF_INITIAL": "0.1", "DKOS_NOTIFY_MAX_ATTEMPTS": "3", "DKOS_LB_ENABLED": "false"}
    running = DkosServer(tmp_path / "data", env=env).start()
    yield running
    running.cleanup()


ALARM = {"name": "cpuhigh", "app": "web", "metric": "cpu_percent", "comparison": ">=", "threshold": 90, "period": 300}


def _refused(answer: Any, status: int, field: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    if status == 422:
        assert field in [d["field"] for d in body["details"]], body
    else:
        assert field in body["message"], body


def test_bad_alarms_policies_and_channels_are_refused_naming_the_field(server: DkosServer) -> None:
    server.deploy({"name": "web", "image": "dkos-demo:1", "instances": 0})
    _refused(server.post("/v1/alarms", json={**ALARM, "period": 59}), 422, "period")
    _refused(server.post("/v1/alarms", json={**ALARM, "period": 1800}), 422, "period")
    _refused(server.post("/v1/alarms", json={**ALARM, "name": "cpu high"}), 422, "name")
    _refused(server.post("/v1/channels", json={"name": "ops", "url": "ftp://example.com/x"}), 422, "url")
    assert server.post("/v1/alarms", json=ALARM).status_code == 201
    assert server.get("/v1/alarms").json()["alarms"][0]["state"] == "INSUFFICIENT_DATA"

    assert server.post("/v1/projects", json={"name": "other"}).status_code == 201
    theirs = {**ALARM, "name": "theirs", "project": "other", "app": None}
    assert server.post("/v1/alarms", json=theirs).status_code == 201
    policy = {"name": "out", "app": "web", "alarms": ["cpuhigh"], "step": 2, "max": 100, "cooldown": 60}
    _refused(server.post("/v1/policies", json={**policy, "alarms": ["theirs"]}), 404, "theirs")
    _refused(server.post("/v1/policies", json={**policy, "max": 101}), 422, "max")
    _refused(server.post("/v1/policies", json={**policy, "step": 0}), 422, "step")
    assert server.post("/v1/policies", json=policy).status_code == 201
    assert server.get("/v1/policies/out", params={"app": "web"}).json()["executions"] == []

    # The same rules hold in an app spec: nothing is stored.
    spec = {"name": "api", "image": "dkos-demo:1", "instances": 0}
    bad_period = {**spec, "alarms": [{**ALARM, "app": None, "period": 10}]}
    bad_period["alarms"][0].pop("app")
    _refused(server.post("/v1/apps", json=bad_period), 422, "alarms.0.period")
    zero_step = {**spec, "scaling_policies": [{"name": "out", "alarms": ["cpuhigh"], "step": 0}]}
    _refused(server.post("/v1/apps", json=zero_step), 422, "scaling_policies.0.step")
    assert server.get("/v1/apps/api").status_code == 404

    # A deleted app's alarms and policies go with it.
    assert server.request("DELETE", "/v1/apps/web").status_code == 202
    assert server.get("/v1/alarms").json()["alarms"] == []
    assert server.get("/v1/policies").json()["policies"] == []


def _notifications(server: DkosServer) -> list[dict[str, Any]]:
    return list(server.get("/v1/notifications").json()["notifications"])


def test_notifications_are_retried_on_5xx_not_on_4xx_and_kept_when_undelivered(server: DkosServer) -> None:
    with Receiver() as receiver:
        assert server.post("/v1/channels", json={"name": "ops", "url": receiver.url}).status_code == 201
        receiver.statuses = [503, 502]
        assert server.post("/v1/channels/ops/test").status_code == 202
        delivered = wait_until(
            lambda: [n for n in _notifications(server) if n["status"] == "delivered"], timeout=10, what="delivery"
        )
        assert [a["status_code"] for a in delivered[0]["attempt_log"]] == [503, 502, 200]
        assert receiver.received()[0]["version"] == "4"

        receiver.statuses = [400]
        assert server.post("/v1/channels/ops/test").status_code == 202
        refused = wait_until(
            lambda: [n for n in _notifications(server) if n["status"] == "failed"], timeout=10, what="refusal"
        )
        assert [a["status_code"] for a in refused[0]["attempt_log"]] == [400]

        receiver.statuses = [500, 500, 500]
        assert server.post("/v1/channels/ops/test").status_code == 202
        undelivered = wait_until(
            lambda: [n for n in _notifications(server) if n["status"] == "undelivered"], timeout=10, what="give-up"
        )
        assert len(undelivered[0]["attempt_log"]) == 3
        # A chat channel gets one Slack-compatible text.
        chat = {"name": "chat", "type": "chat", "url": receiver.url}
        assert server.post("/v1/channels", json=chat).status_code == 201
        assert server.post("/v1/channels/chat/test").status_code == 202
        texts = wait_until(lambda: [b for b in receiver.received() if "text" in b], timeout=10, what="chat text")
        assert "dkos-test" in texts[0]["text"] and set(texts[0]) == {"text"}
    channels = {c["name"]: c for c in server.get("/v1/channels").json()["channels"]}
    assert channels["ops"]["undelivered"] == 2  # the refused one and the undelivered one stay visible


def test_the_cli_creates_lists_shows_and_deletes_alarms_policies_and_channels(server: DkosServer) -> None:
    server.deploy({"name": "web", "image": "dkos-demo:1", "instances": 0})

    def ok(*args: str) -> str:
        done = server.cli(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    with Receiver() as receiver:
        ok("channels", "create", "ops", "--url", receiver.url)
        assert "delivered" in ok("channels", "test", "ops")
    for line in (
        "alarms create cpuhigh -a web --metric cpu_percent --comparison '>=' --threshold 90 --period 300 --channel ops",
        "alarms create cpulow --app web --metric cpu_percent --comparison < --threshold 10 --period 600",
        "policies create out --app web --alarm cpuhigh --step 2 --max 100 --cooldown 60",
        "policies create in --app web --alarm cpulow --step -1 --min 2 --cooldown 300",
    ):
        ok(*shlex.split(line))

    alarms = json.loads(ok("alarms", "list", "--output", "json"))
    assert {(a["name"], a["state"]) for a in alarms} == {
        ("cpuhigh", "INSUFFICIENT_DATA"),
        ("cpulow", "INSUFFICIENT_DATA"),
    }
    policies = json.loads(ok("policies", "list", "--app", "web", "-o", "json"))
    assert {p["name"]: p["step"] for p in policies} == {"in": -1, "out": 2}
    assert "cpuhigh" in ok("alarms", "show", "cpuhigh")
    assert json.loads(ok("alarms", "history", "cpuhigh", "-o", "json")) == []
    assert json.loads(ok("policies", "history", "out", "--app", "web", "-o", "json")) == []
    assert "cpuhigh" in ok("policies", "show", "out", "--app", "web")
    assert json.loads(ok("channels", "list", "-o", "json"))[0]["name"] == "ops"
    shown = ok("apps", "show", "web")
    assert "cpuhigh" in shown and "INSUFFICIENT_DATA" in shown

    bad = server.cli("alarms", "create", "cpu high", "--metric", "cpu_percent", "--threshold", "1")
    assert bad.returncode != 0 and "name" in bad.stderr
    bad = server.cli("alarms", "create", "bad", "--metric", "cpu_percent", "--threshold", "1", "--period", "5")
    assert bad.returncode != 0 and "period" in bad.stderr

    ok("policies", "delete", "out", "--app", "web")
    ok("alarms", "delete", "cpuhigh")
    ok("channels", "delete", "ops")
    assert [a["name"] for a in json.loads(ok("alarms", "list", "-o", "json"))] == ["cpulow"]


def test_an_alarm_whose_metric_stops_is_judged_while_other_metrics_keep_arriving(tmp_path: Path) -> None:
    env = {"DKOS_ALARM_MIN_PERIOD": "1", "DKOS_ALARM_RESYNC_INTERVAL": "1", "DKOS_LB_ENABLED": "false"}
    server = DkosServer(tmp_path / "data", env=env).start()

    def put(metric: str, value: float) -> None:
        point = {"metric": metric, "timestamp": int(time.time() * 1000), "value": value, "tags": {"host": "a"}}
        assert server.post("/api/put", json=point).status_code == 204

    def state_while_orders_arrive() -> str:
        put("shop.orders", 1)  # another metric all the time: the engine is never left idle
        return str(server.get("/v1/alarms/queue-silent").json()["state"])

    try:
        alarm = {"name": "queue-silent", "metric": "shop.queue", "threshold": 100, "period": 1, "missing": "breaching"}
        assert server.post("/v1/alarms", json=alarm).status_code == 201
        put("shop.queue", 5)
        wait_until(lambda: state_while_orders_arrive() == "OK", timeout=10, interval=0.2, what="a judgement of OK")
        # shop.queue says nothing more: its missing datapoints breach.
        wait_until(lambda: state_while_orders_arrive() == "ALARM", timeout=15, interval=0.2,
                   what="the silent metric to breach by its missing data")  # fmt: skip
    finally:
        server.cleanup()
