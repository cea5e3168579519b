"""The server keeps serving without a Docker engine and reconnects by itself.

The engine is reached through a unix-socket relay the test controls, so "the engine goes
away" is real (connections refused, streams cut) without stopping the machine's dockerd.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dkos_server import DkosServer, wait_until

pytestmark = pytest.mark.docker

DOCKER_SOCKET = "/var/run/docker.sock"


class _Relay(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.open: set[socket.socket] = set()
        super().__init__(path, _Pipe)


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(DOCKER_SOCKET)
        relay: _Relay = self.server  # type: ignore[assignment]
        relay.open.update({self.request, upstream})

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join()


@contextlib.contextmanager
def engine_relay(path: Path) -> Iterator[None]:
    relay = _Relay(str(path))
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        relay.shutdown()
        relay.server_close()
        for sock in list(relay.open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        os.unlink(path)


def test_starts_without_an_engine_says_so_and_reconnects_when_it_comes_back(tmp_path: Path) -> None:
    relay_path = tmp_path / "engine.sock"
    server = DkosServer(tmp_path / "data", env={"DKOS_DOCKER_URL": f"unix://{relay_path}"}).start()
    try:
        health = server.get("/v1/health").json()
        assert health["status"] == "degraded" and health["engine"]["reachable"] is False
        assert health["engine"]["error"]
        assert server.get("/v1/apps").status_code == 200
        listed = server.cli("apps", "list")
        assert listed.returncode == 0 and "container engine unreachable" in listed.stderr
        spec = {
            "name": "web",
            "image": "dkos-demo:1",
            "instances": 1,
            "ports": [{"name": "http", "container_port": 8080}],
            "health_check": {"path": "/health"},
            "resources": {"memory": 32},
        }
        assert server.post("/v1/apps", json=spec).status_code == 201, "the API takes changes while the engine is away"

        with engine_relay(relay_path):
            wait_until(
                lambda: server.get("/v1/health").json()["status"] == "ok",
                timeout=10,
                what="the engine",
            )
            server.wait_healthy("web", 1, timeout=20)

        wait_until(
            lambda: server.get("/v1/health").json()["status"] == "degraded",
            timeout=10,
            what="the outage",
        )
        events = server.get("/v1/events", params={"tail": 100, "follow": "false"}).text
        assert "event: engine.reachable" in events and "event: engine.unreachable" in events

        with engine_relay(relay_path):
            wait_until(
                lambda: server.get("/v1/health").json()["status"] == "ok",
                timeout=10,
                what="the engine again",
            )
            assert len(server.wait_healthy("web", 1, timeout=20)) == 1
            server.stop()
    finally:
        server.cleanup()
