"""Apps on a real dkos server, the real Docker engine and a real SQLite file."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import pytest
from dkos_server import DkosServer, docker, wait_until

pytestmark = pytest.mark.docker

DEMO = "dkos-demo:1"


def web(name: str = "web", instances: int = 3, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "image": DEMO,
        "instances": instances,
        "resources": {"cpus": 0.25, "memory": 32},
        "ports": [{"name": "http", "container_port": 8080}],
        "health_check": {"path": "/health", "grace_period": 5, "interval": 1, "timeout": 1},
        "stop_grace_period": 5,
    }
    spec.update(overrides)
    return spec


def test_deploys_three_instances_that_all_become_healthy(server: DkosServer) -> None:
    answer = server.deploy(web())
    assert answer["app"]["version"] == 1 and answer["deployment"]["kind"] == "create"
    healthy = server.wait_healthy("web", 3, timeout=20)
    assert len({i["container_id"] for i in healthy}) == 3
    body = docker("exec", healthy[0]["container_id"], "wget", "-qO-", "http://127.0.0.1:8080/")
    assert healthy[0]["id"] in body
    deployment = server.get(f"/v1/deployments/{answer['deployment']['id']}").json()
    wait_until(
        lambda: server.get(f"/v1/deployments/{answer['deployment']['id']}").json()["status"] == "succeeded",
        timeout=5,
        what="the deployment to succeed",
    )
    assert deployment["target_instances"] == 3
    labels = docker("inspect", "-f", "{{json .Config.Labels}}", healthy[0]["container_id"])
    assert '"dkos.app":"web"' in labels and '"dkos.project":"default"' in labels
    host = docker(
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{json .HostConfig.LogConfig}}",
        healthy[0]["container_id"],
    )
    assert host.startswith(f"{32 * 1024 * 1024} {250_000_000} ")
    assert '"max-size":"10m"' in host and '"max-file":"3"' in host


def test_replaces_a_killed_instance_within_five_seconds(server: DkosServer) -> None:
    server.deploy(web())
    victim = server.wait_healthy("web", 3, timeout=20)[0]
    killed_at = time.monotonic()
    docker("kill", victim["container_id"])

    def replaced() -> bool:
        healthy = server.healthy("web")
        return len(healthy) == 3 and victim["id"] not in {i["id"] for i in healthy}

    wait_until(replaced, timeout=5, what="a healthy replacement")
    assert time.monotonic() - killed_at < 5
    history = {i["id"]: i for i in server.instances("web", all=True)}
    assert history[victim["id"]]["state"] == "failed"
    assert history[victim["id"]]["reason"] == "exited with code 137 (killed)"


def test_an_app_that_exits_at_once_restarts_with_growing_delays(server: DkosServer) -> None:
    server.deploy(web("crasher", instances=1, env={"CRASH": "1"}, health_check=None, ports=[]))

    def failures() -> list[dict[str, Any]]:
        done = [i for i in server.instances("crasher", all=True) if i["state"] == "failed"]
        return done if len(done) >= 5 else []

    failed = sorted(wait_until(failures, timeout=30, what="five failed starts"), key=lambda i: i["ended_at"])
    assert all(i["reason"] == "exited with code 1" for i in failed)
    # The wait between one failure and the next start is dkos' backoff: at once, then 1 s,
    # 2 s, 4 s (how long the app takes to exit under its CPU limit does not count). Each
    # wait also holds the engine's start of the container, which a loaded machine can
    # stretch past a second: the first wait is that alone, so the backoffs are measured
    # against it.
    waits = [later["started_at"] - earlier["ended_at"] for earlier, later in itertools.pairwise(failed)]
    assert waits[0] < waits[1] < waits[2] < waits[3], waits
    backoffs = [wait - waits[0] for wait in waits[1:]]
    assert 0.5 < backoffs[0] < 1.9 and 3.0 < backoffs[2] < 5.0, waits
    deployment = server.get("/v1/apps/crasher").json()["last_deployment"]
    assert deployment["status"] == "failed" and "exited with code 1" in deployment["reason"]


def test_a_missing_image_fails_the_deployment_and_the_server_keeps_serving(
    server: DkosServer,
) -> None:
    answer = server.deploy(web("ghost", instances=1, image="no-such-image:1"))
    deployment_id = answer["deployment"]["id"]
    status = wait_until(
        lambda: (d := server.get(f"/v1/deployments/{deployment_id}").json())["status"] == "failed" and d,
        timeout=10,
        what="the deployment to fail",
    )
    assert "image not found: no-such-image:1" in status["reason"]
    failed = [i for i in server.instances("ghost", all=True) if i["state"] == "failed"]
    assert failed and failed[0]["reason"] == "image not found: no-such-image:1"
    events = server.get("/v1/events", params={"app": "ghost", "tail": 100, "follow": "false"}).text
    assert "image not found: no-such-image:1" in events
    assert server.get("/v1/health").json()["status"] == "ok"


def test_a_server_killed_mid_deploy_converges_to_exactly_the_desired_containers(
    server: DkosServer,
) -> None:
    server.deploy(web(instances=4))
    wait_until(lambda: len(server.containers()) >= 1, timeout=10, interval=0.02, what="the first container")
    server.kill()
    server.start()
    server.wait_healthy("web", 4, timeout=30)
    time.sleep(3)  # a resync and a sweep pass
    running = server.containers(all=True)
    assert len(running) == 4, running
    assert sorted(c["Names"] for c in running) == sorted(
        f"dkos.default.{i['id']}.{server.server_id[:8]}" for i in server.instances("web")
    )


def test_scale_restart_and_versions(server: DkosServer) -> None:
    server.deploy(web(instances=2))
    first = {i["id"] for i in server.wait_healthy("web", 2)}

    scaled = server.post("/v1/apps/web/scale", json={"instances": 3}).json()
    assert scaled["deployment"]["kind"] == "scale"
    after_scale = {i["id"] for i in server.wait_healthy("web", 3)}
    assert first < after_scale, "scaling out must keep the running instances"

    server.post("/v1/apps/web/scale", json={"instances": 1})
    assert {i["id"] for i in server.wait_healthy("web", 1)} < after_scale

    restarted = server.post("/v1/apps/web/restart").json()
    assert restarted["deployment"]["kind"] == "restart"
    wait_until(
        lambda: server.get(f"/v1/deployments/{restarted['deployment']['id']}").json()["status"] == "succeeded",
        timeout=20,
        what="the restart",
    )
    assert not {i["id"] for i in server.wait_healthy("web", 1)} & after_scale

    versions = server.get("/v1/apps/web/versions").json()["versions"]
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert [v["change"] for v in versions] == [
        "restart",
        "instances 3 → 1",
        "instances 2 → 3",
        "created with image dkos-demo:1, 2 instances",
    ]
    assert {v["created_by"] for v in versions} == {"admin"}


def test_delete_stops_every_instance_and_leaves_no_containers(server: DkosServer) -> None:
    server.deploy(web(instances=2))
    server.wait_healthy("web", 2)
    answer = server.request("DELETE", "/v1/apps/web")
    assert answer.status_code == 202
    wait_until(lambda: server.get("/v1/apps/web").status_code == 404, timeout=20, what="the app to be gone")
    assert server.containers() == []
    assert server.get("/v1/apps").json()["apps"] == []


def test_an_invalid_spec_is_refused_with_the_field_and_nothing_is_stored(
    server: DkosServer,
) -> None:
    answer = server.post("/v1/apps", json=web(instances=-1))
    assert answer.status_code == 422
    assert answer.json()["details"] == [{"field": "instances", "rule": "must be ≥ 0"}]
    assert server.get("/v1/apps/web").status_code == 404
    yaml_answer = server.post(
        "/v1/apps",
        content=b"name: web\nimage: x\ninstance: 2\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert yaml_answer.status_code == 422
    assert {"field": "instance", "rule": "is not a known field"} in yaml_answer.json()["details"]


def test_every_api_call_needs_a_valid_token(server: DkosServer) -> None:
    import httpx

    for path in ("/v1/apps", "/v1/health", "/v1/no-such-thing"):
        missing = httpx.get(server.url + path)
        assert missing.status_code == 401
        assert missing.json() == {
            "error": "unauthorized",
            "message": "a valid bearer token is required",
        }
        assert server.get(path, token="dkos_wrong").status_code == 401
    token_file = server.data_dir / "admin.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert server.token not in server.log()
    assert server.token not in (server.data_dir / "dkos.db").read_bytes().decode(errors="replace")


def test_the_event_stream_reports_instances_becoming_healthy(server: DkosServer) -> None:
    server.deploy(web(instances=1))
    server.wait_healthy("web", 1)
    text = server.get("/v1/events", params={"app": "web", "tail": 50, "follow": "false"}).text
    assert "event: app.created" in text and "event: instance.healthy" in text
    assert "event: deployment.succeeded" in text or wait_until(
        lambda: (
            "deployment.succeeded"
            in server.get("/v1/events", params={"app": "web", "tail": 50, "follow": "false"}).text
        ),
        timeout=5,
    )


def test_sigterm_stops_the_server_and_leaves_instances_running(server: DkosServer) -> None:
    server.deploy(web(instances=2))
    before = {i["container_id"] for i in server.wait_healthy("web", 2)}
    assert server.stop() == 0
    assert {c["ID"] for c in server.containers(all=False)} == {c[:12] for c in before}
    server.start()
    after = {i["container_id"] for i in server.wait_healthy("web", 2)}
    assert after == before, "a restarted server adopts what runs"


def test_an_instance_that_turns_unhealthy_is_replaced_and_says_why(server: DkosServer) -> None:
    server.deploy(web(instances=2))
    sick = server.wait_healthy("web", 2)[0]
    docker("exec", sick["container_id"], "wget", "-qO-", "http://127.0.0.1:8080/control/unhealthy")

    def replaced() -> dict[str, Any] | None:
        gone = {i["id"]: i for i in server.instances("web", all=True)}.get(sick["id"])
        return gone if gone and gone["state"] == "failed" else None

    failed = wait_until(replaced, timeout=15, what="the sick instance to be replaced")
    assert failed["reason"] == "health check failed 3 times: HTTP 500"
    assert sick["id"] not in {i["id"] for i in server.wait_healthy("web", 2, timeout=15)}
    events = server.get("/v1/events", params={"app": "web", "tail": 100, "follow": "false"}).text
    assert "health check failed: HTTP 500" in events  # the unhealthy transition came first


def test_a_new_version_replaces_instances_one_at_a_time(server: DkosServer) -> None:
    server.deploy(web(instances=2))
    old = {i["id"] for i in server.wait_healthy("web", 2)}
    answer = server.deploy(web(instances=2, image="dkos-demo:2"))
    assert answer["deployment"]["kind"] == "update"
    healthy_counts = []

    def finished() -> bool:
        live = server.instances("web")
        healthy_counts.append(sum(1 for i in live if i["state"] == "healthy"))
        states = server.get(f"/v1/deployments/{answer['deployment']['id']}").json()["status"]
        return states == "succeeded"

    wait_until(finished, timeout=30, interval=0.05, what="the rolling update")
    assert min(healthy_counts) >= 2, f"capacity dropped during the rollout: {healthy_counts}"
    new = server.wait_healthy("web", 2)
    assert not {i["id"] for i in new} & old
    assert all(i["version"] == 2 for i in new)
    body = docker("exec", new[0]["container_id"], "wget", "-qO-", "http://127.0.0.1:8080/")
    assert "image_version 2" in body


def test_a_followed_event_stream_delivers_new_events_live_and_resumes_by_id(server: DkosServer) -> None:
    import httpx

    seen: list[str] = []
    last_id = None
    with httpx.stream(
        "GET",
        server.url + "/v1/events",
        params={"app": "web"},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        server.deploy(web(instances=1))
        for line in stream.iter_lines():
            if line.startswith("id: "):
                last_id = line.removeprefix("id: ")
            if line.startswith("event: "):
                seen.append(line.removeprefix("event: "))
                if seen[-1] == "instance.healthy":
                    break
    assert seen[:2] == ["app.created", "deployment.started"]
    assert "instance.starting" in seen
    server.wait_healthy("web", 1)  # and its deployment done: a change during one is refused
    assert server.post("/v1/apps/web/scale", json={"instances": 0}).status_code == 200
    resumed = server.get(
        "/v1/events", params={"app": "web", "follow": "false"}, headers={"Last-Event-ID": str(last_id)}
    ).text
    ids = [int(found) for found in re.findall(r"^id: (\d+)$", resumed, re.MULTILINE)]
    assert ids and min(ids) > int(str(last_id)), "replayed from just after the id, nothing earlier"
    assert "event: app.updated" in resumed


@pytest.mark.parametrize(
    "check",
    [
        {"type": "tcp", "interval": 1, "timeout": 1, "grace_period": 5},
        {"type": "command", "command": ["/bin/sh", "-c", "test ! -e /tmp/demo/unhealthy"], "interval": 1, "timeout": 1},
    ],
    ids=["tcp", "command"],
)
def test_tcp_and_command_checks_judge_instances_too(server: DkosServer, check: dict[str, Any]) -> None:
    server.deploy(web(instances=1, health_check=check))
    [instance] = server.wait_healthy("web", 1, timeout=15)
    if check["type"] == "command":
        docker("exec", instance["container_id"], "touch", "/tmp/demo/unhealthy")
        wait_until(
            lambda: server.instances("web", all=True)[0]["state"] == "failed", timeout=10, what="the failing check"
        )
        assert (
            server.instances("web", all=True)[0]["reason"] == "health check failed 3 times: command exited with code 1"
        )


def test_a_second_deploy_while_one_runs_is_refused_unless_forced(server: DkosServer) -> None:
    server.deploy(web(instances=1, env={"UNHEALTHY": "1"}))  # stays "running" for a while
    refused = server.post("/v1/apps", json=web(instances=1))
    assert refused.status_code == 409
    assert "still running" in refused.json()["message"]
    forced = server.post("/v1/apps", params={"force": "true"}, json=web(instances=1))
    assert forced.status_code == 200
    server.wait_healthy("web", 1)


def test_a_version_that_never_gets_healthy_is_rolled_back_and_the_old_one_keeps_serving(server: DkosServer) -> None:
    server.deploy(web(instances=2))
    old = {i["id"] for i in server.wait_healthy("web", 2)}
    broken = server.deploy(web(instances=2, env={"UNHEALTHY": "1"}, strategy={"progress_deadline": 4}))
    failed = wait_until(
        lambda: (d := server.get(f"/v1/deployments/{broken['deployment']['id']}").json())["status"] == "failed" and d,
        timeout=20,
        what="the broken version to fail",
    )
    assert "progress deadline" in failed["reason"] or "starts in a row failed" in failed["reason"]
    app = wait_until(
        lambda: (a := server.get("/v1/apps/web").json())["state"] == "running" and a, timeout=20, what="the rollback"
    )
    assert app["version"] == 3 and app["spec"]["env"] == {}
    assert {i["id"] for i in app["instances"]} == old, "the old instances kept serving throughout"
    versions = server.get("/v1/apps/web/versions").json()["versions"]
    assert versions[0]["created_by"] == "dkos" and versions[0]["change"].startswith("rollback to version 1: ")
    steps = server.get(f"/v1/deployments/{broken['deployment']['id']}").json()["steps"]
    assert steps[0]["type"] == "deployment.started" and steps[-1]["type"] == "deployment.failed"
