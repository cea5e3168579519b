"""Zero downtime: errors seen by a client under load while the app is redeployed and scaled,
through dkos against the same containers run by hand behind a static HAProxy config.

    .venv/bin/python bench/zero_downtime.py [--duration 30] [--connections 64]

Each side gets the same wrk load (`wrk -t2 -c64 -d30s -H 'Host: web.default.localhost'`)
for the same time, and the same changes 2 s into it: the 4-instance demo app goes
demo:1 → demo:2 → demo:1 and is scaled 4 → 2 → 4.

- dkos: a `dkos server` of its own (free ports, temporary data dir); the changes go through
  its API (`POST /v1/apps`, `POST /v1/apps/web/scale`), each waited for until its deployment
  has `succeeded`.
- naive: what a user gets without dkos. The same 4 containers (same image, `--init`,
  0.25 CPU, 32 MiB) started with `docker run`, behind a hand-written HAProxy config of its
  own (`balance roundrobin`, servers by container IP, no health checks) on another port.
  A redeploy is, container after container: `docker stop` → `docker rm` → `docker run` of
  the new image → config rewritten with the new IP → `haproxy -sf <old pid>`. Scaling in
  stops and removes two containers, then rewrites and reloads; scaling out runs two, then
  rewrites and reloads.

wrk's own "Non-2xx or 3xx responses" counts statuses ≥ 400 only; a Lua hook counts every
response that is not 2xx as well, and that is the non-2xx column. Errors = non-2xx +
socket errors (connect, read, write, timeout). The goal for dkos is 0.

The demo app (busybox nc + a shell per connection, 4 × 0.25 CPU) is the bottleneck: the
request rates say nothing about HAProxy (bench/lb_throughput.py does). Needs the demo
images (`make setup`), a Docker engine, haproxy and wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HAPROXY = "/usr/sbin/haproxy"
HOST = "web.default.localhost"
APP_PORT = 8080
INSTANCES = 4
CHANGES_AFTER = 2.0
"""Seconds of steady load before the first change."""

SPEC: dict[str, Any] = {
    "name": "web",
    "image": "dkos-demo:1",
    "instances": INSTANCES,
    "ports": [{"name": "http", "container_port": APP_PORT}],
    "health_check": {"path": "/health", "interval": 1, "timeout": 1},
    "resources": {"cpus": 0.25, "memory": 32},
}

# Counts every response that is not 2xx (wrk's own counter only sees statuses >= 400), per
# thread, and adds the threads' counts up at the end.
WRK_SCRIPT = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
non2xx = 0
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end
function done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do
    n = n + thread:get("non2xx")
  end
  io.write(string.format("bench-non2xx %d\\n", n))
end
"""


PACKAGES = {"wrk": "wrk", "/usr/sbin/nginx": "nginx-light", "/usr/sbin/haproxy": "haproxy", "docker": "docker.io"}
"""The Debian package of each program a benchmark runs, installed when missing (one command each)."""


def require(*programs: str) -> None:
    """Installs the Debian packages of missing programs, or exits saying what is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        packages = [PACKAGES.get(p, p) for p in missing]
        print(f"installing {' '.join(packages)}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        installed = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, check=False)
        if installed.returncode != 0 or any(shutil.which(p) is None for p in missing):
            sys.exit(f"missing: {' '.join(missing)}; install the Debian packages {' '.join(packages)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(*argv: str) -> str:
    """Runs a command; its stdout, or RuntimeError with its stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    except BaseException:  # cancelled or timed out: the command must not outlive us
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {err.decode().strip()}")
    return out.decode()


async def answers(ip: str, port: int = APP_PORT) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


# --- the reference: a minimal hand-written HAProxy config -------------------------------------


def minimal_config(
    servers: list[str],
    http_port: int,
    https_port: int | None = None,
    certificate: Path | None = None,
    *,
    forwarded_headers: bool = False,
) -> str:
    """A minimal hand-written HAProxy config on `servers` ("ip:port"): the reference both benchmarks
    measure dkos against. `forwarded_headers` adds the three request headers dkos' frontends set."""
    binds = f"    bind 127.0.0.1:{http_port}\n"
    if https_port is not None and certificate is not None:
        binds += f"    bind 127.0.0.1:{https_port} ssl crt {certificate}\n"
    headers = (
        "    option forwardfor\n"
        "    http-request set-header X-Forwarded-Proto http\n"
        "    http-request set-header X-Request-Id %[uuid]\n"
        if forwarded_headers
        else ""
    )
    lines = "".join(f"    server s{n} {address}\n" for n, address in enumerate(servers, 1))
    return (
        "global\n"
        "    nbthread 2\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "frontend fe\n"
        f"{binds}{headers}"
        "    default_backend be\n"
        "backend be\n"
        "    balance roundrobin\n"
        f"{lines}"
    )


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    rps: float
    non2xx: int
    """Every response outside 200–299 (the Lua hook)."""
    wrk_status_errors: int
    """wrk's own "Non-2xx or 3xx responses": statuses >= 400."""
    connect: int
    read: int
    write: int
    timeout: int
    """wrk checks every 2 s for connections whose request is older than --timeout and adds one for
    each, without closing it: a request stuck for 10 s counts about 5 times."""
    max_latency: str
    """The slowest response that came, as wrk prints it."""

    @property
    def errors(self) -> int:
        return self.non2xx + self.connect + self.read + self.write + self.timeout


def parse_wrk(output: str) -> WrkResult:
    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, output)
        if match is None:
            if default is None:
                raise RuntimeError(f"no {pattern!r} in wrk's output:\n{output}")
            return default
        return match.group(1)

    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    connect, read, write, timeout = (int(n) for n in sockets.groups()) if sockets else (0, 0, 0, 0)
    return WrkResult(
        requests=int(number(r"(\d+) requests in ")),
        rps=float(number(r"Requests/sec:\s+([\d.]+)")),
        non2xx=int(number(r"bench-non2xx (\d+)")),
        wrk_status_errors=int(number(r"Non-2xx or 3xx responses: (\d+)", "0")),
        connect=connect,
        read=read,
        write=write,
        timeout=timeout,
        max_latency=number(r"Latency\s+\S+\s+\S+\s+(\S+)"),
    )


async def wrk(url: str, *, duration: int, connections: int, script: Path) -> WrkResult:
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "2s",
        "-s",
        str(script),
        "-H",
        f"Host: {HOST}",
        url,
    ]
    output = await asyncio.wait_for(run(*argv), duration + 30)
    return parse_wrk(output)


@dataclass
class Timeline:
    began: float = field(default_factory=time.perf_counter)
    steps: list[tuple[str, float, float]] = field(default_factory=list)

    async def step(self, name: str, action: Callable[[], Awaitable[None]]) -> None:
        start = time.perf_counter()
        await action()
        self.steps.append((name, start - self.began, time.perf_counter() - start))

    @property
    def seconds(self) -> float:
        """From the first change's start to the last one's end."""
        first, last = self.steps[0], self.steps[-1]
        return last[1] + last[2] - first[1]

    def show(self, side: str) -> None:
        for name, at, took in self.steps:
            print(f"  {side}: {name:<24} at {at:5.1f} s, took {took:5.2f} s", file=sys.stderr, flush=True)


async def under_load(
    url: str, changes: Callable[[Timeline], Awaitable[None]], *, duration: int, connections: int, script: Path
) -> tuple[WrkResult, Timeline]:
    """wrk for `duration` seconds; the changes start CHANGES_AFTER seconds in and must end before it does."""
    load = asyncio.create_task(wrk(url, duration=duration, connections=connections, script=script))
    timeline = Timeline()
    await asyncio.sleep(CHANGES_AFTER)
    try:
        await changes(timeline)
    except BaseException:
        load.cancel()
        raise
    if time.perf_counter() - timeline.began > duration:
        print(f"warning: the changes outlasted the {duration} s load; raise --duration", file=sys.stderr)
    return await load, timeline


# --- dkos ---------------------------------------------------------------------------------------


class Dkos:
    """A dkos server of its own: temporary data dir, free API and LB ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        service = free_port()
        env = {
            **os.environ,
            "DKOS_LOG_LEVEL": "WARNING",
            "DKOS_LB_HTTP_PORT": str(self.http_port),
            "DKOS_LB_HTTPS_PORT": str(self.https_port),
            "DKOS_SERVICE_PORT_MIN": str(service),
            "DKOS_SERVICE_PORT_MAX": str(service + 9),
        }
        self.log = (data_dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dkos", "server", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.server_id: str | None = None
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> httpx.AsyncClient:
        token_file = self.data_dir / "admin.token"
        for _ in range(300):
            if self.process.poll() is not None:
                break
            if token_file.exists():
                client = httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{self.port}",
                    headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
                    timeout=30,
                )
                try:
                    health = (await client.get("/v1/health")).json()
                    if health.get("status") == "ok":
                        self.server_id, self.client = health["server_id"], client
                        return client
                except httpx.TransportError:
                    pass
                await client.aclose()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"dkos server did not come up:\n{(self.data_dir / 'server.log').read_text()[-3000:]}")

    async def wait(self, answer: httpx.Response) -> None:
        """Waits until the deployment `answer` started has succeeded."""
        answer.raise_for_status()
        deployment = answer.json()["deployment"]
        if deployment is None:
            raise RuntimeError(f"no deployment started: {answer.text[:500]}")
        assert self.client is not None
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            shown = (await self.client.get(f"/v1/deployments/{deployment['id']}")).json()
            if shown["status"] == "succeeded":
                return
            if shown["status"] != "running":
                raise RuntimeError(f"deployment {deployment['id']} {shown['status']}: {shown.get('reason')}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"deployment {deployment['id']} did not finish in 120 s")

    async def deploy(self, image: str) -> None:
        assert self.client is not None
        await self.wait(await self.client.post("/v1/apps", json={**SPEC, "image": image}))

    async def scale(self, instances: int) -> None:
        assert self.client is not None
        await self.wait(await self.client.post("/v1/apps/web/scale", json={"instances": instances}))

    async def changes(self, timeline: Timeline) -> None:
        await timeline.step("deploy dkos-demo:2", lambda: self.deploy("dkos-demo:2"))
        await timeline.step("deploy dkos-demo:1", lambda: self.deploy("dkos-demo:1"))
        await timeline.step("scale 4 → 2", lambda: self.scale(2))
        await timeline.step("scale 2 → 4", lambda: self.scale(INSTANCES))

    async def close(self) -> None:
        """Stops the server, then its HAProxy (which outlives it) and its containers."""
        if self.client is not None:
            await self.client.aclose()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        pid_file = self.data_dir / "lb" / "haproxy.pid"
        if pid_file.exists():
            await stop_haproxy(int(pid_file.read_text().split()[0]), self.data_dir / "lb" / "haproxy.cfg")
        if self.server_id:
            await remove_containers(f"dkos.owner={self.server_id}")


async def stop_haproxy(pid: int, config: Path) -> None:
    """SIGTERM to `pid` if it is still an HAProxy run on `config` (not a reused pid), then waits."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if str(config).encode() not in cmdline.split(b"\0"):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        await asyncio.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


async def remove_containers(label: str) -> None:
    ids = (await run("docker", "ps", "-aq", "--filter", f"label={label}")).split()
    if ids:
        await run("docker", "rm", "-f", *ids)


# --- naive: docker run + a static HAProxy config, no dkos ----------------------------------------


class Naive:
    """The containers run by hand with the docker CLI behind a static config and `haproxy -sf` reloads."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.config = run_dir / "naive.cfg"
        self.pid_file = run_dir / "naive.pid"
        self.port = free_port()
        self.label = f"dkos.bench={uuid.uuid4().hex}"
        self.containers: list[tuple[str, str]] = []
        """(container id, IP address), one per server line."""
        self.pids: set[int] = set()
        """Every HAProxy process started, so that each is stopped at the end."""
        self.serial = 0

    async def docker_run(self, image: str) -> tuple[str, str]:
        self.serial += 1
        cid = (
            await run(
                "docker", "run", "-d", "--init", "--cpus", "0.25", "--memory", "32m", "--memory-swap", "32m",
                "--label", self.label, "--name", f"dkos-bench-zd-{self.label[-8:]}-{self.serial}", image,
            )
        ).strip()  # fmt: skip
        ip = (await run("docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid)).strip()
        return cid, ip

    async def docker_stop(self, cid: str) -> None:
        await run("docker", "stop", "-t", "10", cid)
        await run("docker", "rm", cid)

    def write_config(self) -> None:
        self.config.write_text(minimal_config([f"{ip}:{APP_PORT}" for _, ip in self.containers], self.port))

    async def reload(self) -> None:
        """Rewrites the config and starts a new HAProxy that tells the old one to finish (`-sf`)."""
        self.write_config()
        old = self.pid_file.read_text().split() if self.pid_file.exists() else []
        await run(HAPROXY, "-D", "-p", str(self.pid_file), "-f", str(self.config), *(["-sf", *old] if old else []))
        self.pids.update(int(pid) for pid in self.pid_file.read_text().split())

    async def start(self) -> None:
        self.containers = list(await asyncio.gather(*(self.docker_run("dkos-demo:1") for _ in range(INSTANCES))))
        for _, ip in self.containers:
            while not await answers(ip):
                await asyncio.sleep(0.05)
        await self.reload()
        while not await answers("127.0.0.1", self.port):
            await asyncio.sleep(0.05)

    async def redeploy(self, image: str) -> None:
        for n, (cid, _) in enumerate(list(self.containers)):
            await self.docker_stop(cid)
            self.containers[n] = await self.docker_run(image)
            await self.reload()

    async def scale(self, instances: int) -> None:
        while len(self.containers) > instances:
            cid, _ = self.containers.pop()
            await self.docker_stop(cid)
        while len(self.containers) < instances:
            self.containers.append(await self.docker_run("dkos-demo:1"))
        await self.reload()

    async def changes(self, timeline: Timeline) -> None:
        await timeline.step("redeploy dkos-demo:2", lambda: self.redeploy("dkos-demo:2"))
        await timeline.step("redeploy dkos-demo:1", lambda: self.redeploy("dkos-demo:1"))
        await timeline.step("scale 4 → 2", lambda: self.scale(2))
        await timeline.step("scale 2 → 4", lambda: self.scale(INSTANCES))

    async def close(self) -> None:
        for pid in self.pids:
            await stop_haproxy(pid, self.config)
        await remove_containers(self.label)


# --- the run ------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=30, help="seconds of load per side (default 30)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    args = parser.parse_args()
    require("docker", HAPROXY, "wrk")

    with tempfile.TemporaryDirectory(prefix="dkos-bench-") as tmp:
        script = Path(tmp) / "count.lua"
        script.write_text(WRK_SCRIPT)
        data_dir = Path(tmp) / "dkos"
        data_dir.mkdir()
        dkos = Dkos(data_dir)
        naive = Naive(Path(tmp))
        try:
            client = await dkos.start()
            await dkos.wait(await client.post("/v1/apps", json=SPEC))
            print("dkos: 4 instances healthy; load and changes begin", file=sys.stderr, flush=True)
            dkos_result, dkos_timeline = await under_load(
                f"http://127.0.0.1:{dkos.http_port}/",
                dkos.changes,
                duration=args.duration,
                connections=args.connections,
                script=script,
            )
            dkos_timeline.show("dkos")

            await naive.start()
            print("naive: 4 containers answer; load and changes begin", file=sys.stderr, flush=True)
            naive_result, naive_timeline = await under_load(
                f"http://127.0.0.1:{naive.port}/",
                naive.changes,
                duration=args.duration,
                connections=args.connections,
                script=script,
            )
            naive_timeline.show("naive")
        finally:
            await dkos.close()
            await naive.close()

    rows = [
        ("dkos (rolling deploys, drain)", dkos_result, dkos_timeline),
        ("naive (docker stop/run, -sf)", naive_result, naive_timeline),
    ]
    print(
        f"zero_downtime: wrk -t2 -c{args.connections} -d{args.duration}s through each side's HAProxy while the"
        f" {INSTANCES}-instance demo app goes demo:1 → demo:2 → demo:1 and scales 4 → 2 → 4"
    )
    print(
        f"  {'':<30} {'requests':>9} {'req/s':>7} {'non-2xx':>8} {'connect':>8} {'read':>6}"
        f" {'write':>6} {'timeout':>8} {'errors':>7} {'slowest':>8} {'changes took':>13}"
    )
    for name, result, timeline in rows:
        print(
            f"  {name:<30} {result.requests:>9} {result.rps:>7.0f} {result.non2xx:>8} {result.connect:>8}"
            f" {result.read:>6} {result.write:>6} {result.timeout:>8} {result.errors:>7} {result.max_latency:>8}"
            f" {timeline.seconds:>11.1f} s"
        )
    print(
        f"  wrk's own 'Non-2xx or 3xx responses' (status ≥ 400): dkos {dkos_result.wrk_status_errors},"
        f" naive {naive_result.wrk_status_errors}"
    )
    verdict = "met" if dkos_result.errors == 0 else "NOT met"
    print(f"  dkos errors: {dkos_result.errors} (goal 0: {verdict}); naive errors: {naive_result.errors}")
    print(
        "  timeout: wrk adds one every 2 s for each connection whose request has waited more than 2 s, so a"
        " request stuck for 10 s counts ≈ 5 times; slowest: the slowest response that came"
    )
    print(
        "  req/s is the demo app's ceiling (busybox nc + a shell per connection, 4 × 0.25 CPU), not HAProxy's:"
        " compare the error columns"
    )


if __name__ == "__main__":
    asyncio.run(main())
