"""Deploy overhead: dkos deploying N instances until healthy, against the same N containers
started directly through the Docker Engine API until their ports answer.

    .venv/bin/python bench/deploy_overhead.py [--instances 10] [--rounds 3]

Both sides run in the same process run, alternating round by round, so a noisy machine
moves both; the figure that matters is the ratio (goal ≤ 1.3). Needs the demo image
(`make setup` builds it) and a Docker engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiodocker
import httpx

IMAGE = "dkos-demo:1"
PORT = 8080


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _answers(ip: str) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, PORT), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def direct_round(docker: aiodocker.Docker, instances: int) -> float:
    """Create and start N containers at once through the Engine API; time until every port answers."""
    label = uuid.uuid4().hex
    config = {
        "Image": IMAGE,
        "Labels": {"dkos.bench": label},
        "HostConfig": {
            "Init": True,
            "NanoCpus": 250_000_000,
            "Memory": 32 * 2**20,
            "MemorySwap": 32 * 2**20,
        },
    }
    began = time.perf_counter()

    async def one(n: int) -> None:
        container = await docker.containers.create(config, name=f"dkos-bench-{label[:8]}-{n}")
        await container.start()
        ip = (await container.show())["NetworkSettings"]["IPAddress"]
        while not await _answers(ip):
            await asyncio.sleep(0.02)

    try:
        await asyncio.gather(*(one(n) for n in range(instances)))
        return time.perf_counter() - began
    finally:
        for container in await docker.containers.list(all=True, filters={"label": [f"dkos.bench={label}"]}):
            await container.delete(force=True)


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        # The load balancer on free ports of its own, so the benchmark collides with nothing.
        service_port = str(_free_port())
        env = {
            **os.environ,
            "DKOS_LB_HTTP_PORT": str(_free_port()),
            "DKOS_LB_HTTPS_PORT": str(_free_port()),
            "DKOS_SERVICE_PORT_MIN": service_port,
            "DKOS_SERVICE_PORT_MAX": service_port,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dkos", "server", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    async def client(self) -> httpx.AsyncClient:
        token_file = self.data_dir / "admin.token"
        for _ in range(300):
            if token_file.exists():
                client = httpx.AsyncClient(
                    base_url=self.url,
                    headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
                )
                try:
                    if (await client.get("/v1/health")).json().get("status") == "ok":
                        return client
                except httpx.TransportError:
                    pass
                await client.aclose()
            await asyncio.sleep(0.1)
        raise RuntimeError("dkos server did not come up")

    def stop(self) -> None:
        """Stop the server, and the HAProxy it leaves serving on purpose."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        pid_file = self.data_dir / "lb" / "haproxy.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


async def dkos_round(client: httpx.AsyncClient, instances: int, name: str) -> float:
    """Deploy an app of N instances through the API; time until dkos reports all healthy."""
    spec = {
        "name": name,
        "image": IMAGE,
        "instances": instances,
        "resources": {"cpus": 0.25, "memory": 32},
        "ports": [{"name": "http", "container_port": PORT}],
        "health_check": {"path": "/health"},
    }
    # Follow the event stream rather than poll: a poll every few ms would load the very
    # server being measured, and the stream says "healthy" the moment dkos decides it.
    healthy: set[str] = set()
    async with client.stream("GET", "/v1/events", params={"app": name}, timeout=None) as events:
        began = time.perf_counter()
        (await client.post("/v1/apps", json=spec)).raise_for_status()
        async for line in events.aiter_lines():
            if line.startswith("data: ") and '"instance.healthy"' in line:
                healthy.add(json.loads(line.removeprefix("data: "))["instance"])
                if len(healthy) == instances:
                    break
        elapsed = time.perf_counter() - began
    (await client.delete(f"/v1/apps/{name}")).raise_for_status()
    while (await client.get(f"/v1/apps/{name}")).status_code != 404:
        await asyncio.sleep(0.1)
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    docker = aiodocker.Docker()
    with tempfile.TemporaryDirectory(prefix="dkos-bench-") as tmp:
        server = Server(Path(tmp))
        try:
            client = await server.client()
            await direct_round(docker, 1)  # warm the image and the engine's caches for both sides
            direct, through_dkos = [], []
            for round_no in range(args.rounds):
                direct.append(await direct_round(docker, args.instances))
                through_dkos.append(await dkos_round(client, args.instances, f"bench{round_no}"))
                print(
                    f"round {round_no + 1}: direct {direct[-1]:.2f} s, dkos {through_dkos[-1]:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
            await client.aclose()
        finally:
            server.stop()
            await docker.close()

    d, k = statistics.median(direct), statistics.median(through_dkos)
    print(f"deploy_overhead: {args.instances} instances, median of {args.rounds} rounds")
    print(f"  direct Docker API, until ports answer : {d:.2f} s")
    print(f"  dkos deploy, until all healthy         : {k:.2f} s")
    print(f"  ratio dkos / direct                    : {k / d:.2f}  (goal ≤ 1.3)")


if __name__ == "__main__":
    os.environ.setdefault("DKOS_LOG_LEVEL", "WARNING")
    asyncio.run(main())
