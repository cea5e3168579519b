"""A real `dkos server` in a subprocess, on a free port with its own data dir, for tests.

Each server has its own identity, so its containers are found (and removed at the end)
by the `dkos.owner` label without touching anything else on the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class DkosServer:
    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self.server_id: str | None = None
        # Every server gets its own load-balancer ports, so tests never collide.
        self.http_port = free_port()
        self.https_port = free_port()
        self.service_port = free_port()

    # process ---------------------------------------------------------------------------

    def start(self) -> DkosServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DKOS_RESYNC_INTERVAL": "2",
            "DKOS_LB_HTTP_PORT": str(self.http_port),
            "DKOS_LB_HTTPS_PORT": str(self.https_port),
            "DKOS_SERVICE_PORT_MIN": str(self.service_port),
            "DKOS_SERVICE_PORT_MAX": str(self.service_port),
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dkos",
                "server",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_until(self._answers, timeout=30, what="the dkos API")
        self.server_id = self.get("/v1/health").json()["server_id"]
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"dkos server exited with {self.process.returncode}:\n{self.log()}")
        try:
            return self.get("/v1/health").status_code == 200
        except (httpx.TransportError, FileNotFoundError):
            return False

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a crash would leave it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        return int(self.process.returncode)

    def cleanup(self) -> None:
        """Stop the server, then what it leaves running on purpose: containers and HAProxy."""
        if self.process is not None:
            self.stop()
        self.remove_containers()
        pid_file = self.data_dir / "lb" / "haproxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # API -------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def deploy(self, spec: dict[str, Any]) -> dict[str, Any]:
        answer = self.post("/v1/apps", json=spec)
        assert answer.status_code in (200, 201), answer.text
        return dict(answer.json())

    def instances(self, app: str, *, all: bool = False) -> list[dict[str, Any]]:
        answer = self.get(f"/v1/apps/{app}/instances", params={"all": str(all).lower()})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["instances"])

    def healthy(self, app: str) -> list[dict[str, Any]]:
        return [i for i in self.instances(app) if i["state"] == "healthy"]

    def wait_healthy(self, app: str, count: int, *, timeout: float = 30) -> list[dict[str, Any]]:
        def settled() -> list[dict[str, Any]] | None:
            live = self.instances(app)
            healthy = [i for i in live if i["state"] == "healthy"]
            done = len(healthy) == count and len(live) == count
            # ...and its deployment judged, so the next change is not refused as concurrent
            return healthy if done and self.get(f"/v1/apps/{app}").json()["state"] != "deploying" else None

        return list(wait_until(settled, timeout=timeout, what=f"{count} healthy instances of {app}"))

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `dkos` command against this server, as a user would."""
        env = {"DKOS_URL": self.url, "DKOS_TOKEN": token or self.token, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "dkos", *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )

    def containers(self, *, all: bool = True) -> list[dict[str, Any]]:
        """This server's containers as the engine lists them."""
        args = ["ps", "--format", "{{json .}}", "--filter", f"label=dkos.owner={self.server_id}"]
        out = docker(*args, *(["-a"] if all else []))
        return [json.loads(line) for line in out.splitlines() if line]

    def remove_containers(self) -> None:
        ids = [c["ID"] for c in self.containers()]
        if ids:
            docker("rm", "-f", *ids, check=False)
