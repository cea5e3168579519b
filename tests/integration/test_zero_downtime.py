"""Traffic through the real HAProxy that dkos drives: no request fails while an app is
redeployed, scaled in, or loses an instance to a failing health check."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from dkos_server import DkosServer, docker, wait_until

pytestmark = pytest.mark.docker

HOST = "web.default.localhost"


def web(instances: int = 4, image: str = "dkos-demo:1", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "web",
        "image": image,
        "instances": instances,
        "resources": {"cpus": 0.25, "memory": 32},
        "ports": [{"name": "http", "container_port": 8080}],
        "health_check": {"path": "/health", "interval": 1, "timeout": 1, "grace_period": 5},
        "stop_grace_period": 5,
        "strategy": {"drain_timeout": 10},
    }
    spec.update(overrides)
    return spec


@dataclass
class Load:
    """Keep-alive clients on loopback, bounded in time; counts every answer and failure."""

    port: int
    workers: int = 8
    limit: float = 120.0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        deadline = time.monotonic() + self.limit
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/", headers={"Host": HOST})
                answer = conn.getresponse()
                body = answer.read().decode()
                with self._lock:
                    if answer.status == 200:
                        self.ok += 1
                        self.bodies.add(body.split(" version")[0])
                    else:
                        self.failures.append(f"HTTP {answer.status}")
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def _finished(server: DkosServer, answer: dict[str, Any]) -> None:
    deployment_id = answer["deployment"]["id"]
    wait_until(
        lambda: server.get(f"/v1/deployments/{deployment_id}").json()["status"] == "succeeded",
        timeout=60,
        what=f"deployment {deployment_id}",
    )


def test_requests_reach_every_healthy_instance_through_the_virtual_host(server: DkosServer) -> None:
    server.deploy(web(instances=2))
    healthy = {i["id"] for i in server.wait_healthy("web", 2)}
    with Load(server.http_port, workers=2, limit=3) as load:
        wait_until(lambda: len(load.bodies) == 2, timeout=5, what="both instances to answer")
    assert {b.removeprefix("hello from ") for b in load.bodies} == healthy
    assert load.failures == []
    unknown = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
    unknown.request("GET", "/", headers={"Host": "nobody.default.localhost"})
    assert unknown.getresponse().status == 404
    app = server.get("/v1/apps/web").json()
    assert f"http://{HOST}:{server.http_port}" in app["urls"]


def test_a_rolling_deploy_and_a_scale_in_under_load_fail_no_request(server: DkosServer) -> None:
    server.deploy(web())
    server.wait_healthy("web", 4)
    with Load(server.http_port) as load:
        time.sleep(1)
        _finished(server, server.deploy(web(image="dkos-demo:2")))
        _finished(server, server.post("/v1/apps/web/scale", json={"instances": 2}).json())
        time.sleep(1)
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert load.ok > 200
    steps = server.get("/v1/apps/web/deployments").json()["deployments"]
    assert [d["kind"] for d in steps[:2]] == ["scale", "update"]
    drained = server.get("/v1/events", params={"app": "web", "tail": 500, "follow": "false"}).text
    assert "drained in" in drained


def test_a_failing_health_check_takes_an_instance_out_at_once(server: DkosServer) -> None:
    server.deploy(web(instances=2, health_check={"path": "/health", "interval": 0.5, "timeout": 0.5}))
    sick, well = server.wait_healthy("web", 2)
    docker("exec", sick["container_id"], "wget", "-qO-", "http://127.0.0.1:8080/control/unhealthy")
    wait_until(
        lambda: {i["id"]: i["state"] for i in server.instances("web")}.get(sick["id"]) != "healthy",
        timeout=3,
        what="the check to fail",
    )
    noticed = time.monotonic()

    def out_of_rotation() -> bool:
        [port] = server.get("/v1/apps/web/traffic").json()["ports"]
        return {i["instance"]: i["status"] for i in port["instances"]}.get(sick["id"]) == "MAINT"

    wait_until(out_of_rotation, timeout=2, interval=0.02, what="HAProxy to take the sick instance out")
    assert time.monotonic() - noticed < 1.0, "the LB lagged the failed check by a second or more"
    with Load(server.http_port, workers=2, limit=2) as load:
        time.sleep(1)
    assert load.bodies == {f"hello from {well['id']}"}, "the sick instance got traffic after its check failed"


def test_https_with_a_certificate_from_the_local_ca(server: DkosServer) -> None:
    server.deploy(web(instances=1))
    server.wait_healthy("web", 1)
    context = ssl.create_default_context(cadata=(server.data_dir / "tls" / "ca" / "ca.pem").read_text())
    # SNI and the certificate check use the app's host name; the socket goes to loopback.
    with (
        socket.create_connection(("127.0.0.1", server.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b"hello from" in answer
    traffic = server.get("/v1/apps/web/traffic").json()
    assert traffic["ports"][0]["responses"]["2xx"] >= 1


def test_a_server_killed_mid_rollout_finishes_it_after_a_restart_and_traffic_never_stops(server: DkosServer) -> None:
    server.deploy(web())
    server.wait_healthy("web", 4)
    with Load(server.http_port) as load:
        answer = server.deploy(web(image="dkos-demo:2"))
        wait_until(
            lambda: any(i["version"] == 2 for i in server.instances("web")),
            timeout=20,
            interval=0.05,
            what="the first new instance",
        )
        server.kill()  # the control plane dies; HAProxy and the containers keep serving
        time.sleep(1)
        server.start()
        _finished(server, answer)
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    live = server.wait_healthy("web", 4)
    assert {i["version"] for i in live} == {2}
    assert len(server.containers()) == 4
