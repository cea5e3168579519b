"""The HAProxy manager against a real HAProxy 2.6 and real demo containers.

Each test gets its own run dir and listeners on free loopback ports, and stops the HAProxy
it started. Demo containers carry the label `dkos.test=lb` and are removed at the end.
Figures (reload time, runtime command time, swap time under load) are printed: run with
`-s` to see them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from dkos.core.errors import Conflict
from dkos.lb import manager, model, process, runtime

pytestmark = pytest.mark.docker

IMAGE = "dkos-demo:1"
LABEL = "dkos.test=lb"
HAPROXY = "/usr/sbin/haproxy"
HOST = "web.default.localhost"
BACKEND = "default.web.http"
READY, DRAIN, MAINT = model.ServerState.READY, model.ServerState.DRAIN, model.ServerState.MAINT


# --- helpers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    """A zombie (exited, parent has not reaped it) is not alive."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Demo:
    id: str
    instance: str
    ip: str

    def server(self, state: model.ServerState = READY) -> model.Server:
        return model.Server(name=self.instance, address=self.ip, port=8080, state=state)


@pytest.fixture
def demo() -> Iterator[Callable[[str], Demo]]:
    """Starts demo containers (`demo("web-1")`), each answering with its instance id."""
    started: list[str] = []

    def start(instance: str) -> Demo:
        container = docker("run", "-d", "--rm", "--init", "-l", LABEL, "-e", f"DKOS_INSTANCE={instance}", IMAGE)
        started.append(container)
        ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container)
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://{ip}:8080/health", timeout=1).status_code == 200:
                    return Demo(container, instance, ip)
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    yield start
    if started:
        subprocess.run(["docker", "rm", "-f", *started], capture_output=True, timeout=60, check=False)


@pytest.fixture
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short on purpose: unix socket paths must stay under 108 bytes, and test names are long.
    return tmp_path_factory.mktemp("lb")


@pytest.fixture
def listeners() -> model.Listeners:
    return model.Listeners(bind_address="127.0.0.1", http_port=free_port(), https_port=free_port())


@pytest.fixture
async def lb(run_dir: Path) -> AsyncIterator[manager.LoadBalancer]:
    async with manager.LoadBalancer(run_dir, haproxy=HAPROXY) as balancer:
        try:
            yield balancer
        finally:
            await balancer.stop()


def web(listeners: model.Listeners, *servers: model.Server, tls: model.Tls | None = None) -> model.LbConfig:
    """One HTTP app at `web.default.localhost` with `servers`."""
    return model.LbConfig(
        listeners=listeners,
        backends=(model.Backend(BACKEND, model.Mode.HTTP, servers),),
        http_routes=(model.HttpRoute((HOST,), BACKEND),),
        tls=tls,
    )


async def get(
    listeners: model.Listeners, path: str = "/", *, host: str = HOST, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listeners.http_port}", timeout=10) as client:
        return await client.get(path, headers={"Host": host, **(headers or {})})


async def instances_answering(listeners: model.Listeners, requests: int) -> list[str]:
    answers = []
    for _ in range(requests):
        response = await get(listeners)
        assert response.status_code == 200, response.text
        answers.append(response.text.split()[2])  # "hello from <instance> version ..."
    return answers


async def master_pid_and_worker(lb: manager.LoadBalancer) -> tuple[int, int, tuple[process.Worker, ...]]:
    info = await lb.process.show_proc()
    return info.master_pid, info.reloads, info.workers


# --- routing ----------------------------------------------------------------------------------


async def test_requests_for_an_app_host_reach_every_instance_in_turn(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    first = await lb.apply(web(listeners, one.server(), two.server()))
    assert first.reloaded and first.installed
    print(f"\nfirst apply (validate + start): {first.seconds * 1000:.0f} ms")

    answers = await instances_answering(listeners, 10)

    assert set(answers) == {"web-1", "web-2"}
    assert answers.count("web-1") == 5  # round robin, not chance
    again = await lb.apply(web(listeners, one.server(), two.server()))
    assert not again.installed and not again.reloaded and not (again.added or again.changed or again.removed)
    print(f"apply with nothing to do: {again.seconds * 1000:.2f} ms")


async def test_stats_count_requests_per_backend_and_server(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, one.server(), two.server()))
    await instances_answering(listeners, 6)
    await get(listeners, host="nobody.default.localhost")

    rows = {(row.proxy, row.name): row for row in await lb.stats()}

    assert {rows[(BACKEND, name)].hrsp_2xx for name in ("web-1", "web-2")} == {3}
    backend = rows[(BACKEND, "BACKEND")]
    assert (backend.kind, backend.req_tot, backend.hrsp_2xx, backend.status) == (runtime.StatKind.BACKEND, 6, 6, "UP")
    frontend = rows[("http", "FRONTEND")]
    assert (frontend.req_tot, frontend.hrsp_4xx) == (7, 1)
    assert rows[(BACKEND, "web-1")].status == "no check"  # up; dkos runs the health checks itself


async def test_a_request_for_an_unknown_host_gets_404(lb: manager.LoadBalancer, listeners: model.Listeners) -> None:
    await lb.apply(web(listeners))

    response = await get(listeners, host="nobody.default.localhost")

    assert response.status_code == 404
    assert "no app" in response.text


async def test_a_backend_without_servers_answers_503_until_servers_arrive_at_run_time(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    await lb.apply(web(listeners))
    assert (await get(listeners)).status_code == 503
    one = demo("web-1")

    result = await lb.apply(web(listeners, one.server()))

    assert result.added == (f"{BACKEND}/web-1",) and not result.reloaded
    assert await instances_answering(listeners, 2) == ["web-1", "web-1"]


# --- server states ----------------------------------------------------------------------------


async def test_a_server_in_maint_gets_no_new_requests(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, one.server(), two.server()))

    result = await lb.apply(web(listeners, one.server(MAINT), two.server()))

    assert not result.reloaded
    assert set(await instances_answering(listeners, 8)) == {"web-2"}
    states = {s.name: s.state for s in await lb.servers(BACKEND)}
    assert states == {"web-1": MAINT, "web-2": READY}


async def test_a_draining_server_finishes_its_request_while_new_ones_go_elsewhere(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    # Only web-1 takes requests, so the slow one lands there.
    await lb.apply(web(listeners, one.server(), two.server(MAINT)))
    slow = asyncio.create_task(get(listeners, "/slow?seconds=2"))
    deadline = time.monotonic() + 5
    while await lb.sessions(BACKEND, "web-1") == 0:
        assert time.monotonic() < deadline, "the slow request never reached web-1"
        await asyncio.sleep(0.02)

    started = time.monotonic()
    result = await lb.apply(web(listeners, one.server(DRAIN), two.server()))

    assert not result.reloaded
    assert set(await instances_answering(listeners, 6)) == {"web-2"}
    assert await lb.sessions(BACKEND, "web-1") == 1
    assert await lb.wait_drained(BACKEND, "web-1", timeout=10)
    waited = time.monotonic() - started
    response = await slow
    assert response.status_code == 200 and "from web-1" in response.text
    assert waited > 1.0, "wait_drained returned before the request in flight finished"
    assert await lb.sessions(BACKEND, "web-1") == 0


async def test_wait_drained_gives_up_after_its_timeout(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one = demo("web-1")
    await lb.apply(web(listeners, one.server()))
    slow = asyncio.create_task(get(listeners, "/slow?seconds=2"))
    await asyncio.sleep(0.3)
    await lb.apply(web(listeners, one.server(DRAIN)))

    assert not await lb.wait_drained(BACKEND, "web-1", timeout=0.3)
    assert (await slow).status_code == 200


async def test_removing_a_server_takes_it_out_without_a_reload(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, one.server(), two.server()))
    before = await master_pid_and_worker(lb)

    result = await lb.apply(web(listeners, two.server()))

    assert result.removed == (f"{BACKEND}/web-1",)
    assert result.installed and not result.reloaded
    assert await master_pid_and_worker(lb) == before
    assert set(await instances_answering(listeners, 6)) == {"web-2"}
    assert [s.name for s in await lb.servers(BACKEND)] == ["web-2"]
    # The file follows, so a restarted HAProxy would not bring web-1 back.
    assert "web-1" not in (lb.paths.config).read_text()


async def test_a_server_with_requests_in_flight_is_removed_by_a_later_apply(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, one.server(), two.server(MAINT)))
    slow = asyncio.create_task(get(listeners, "/slow?seconds=1"))
    while await lb.sessions(BACKEND, "web-1") == 0:
        await asyncio.sleep(0.02)

    early = await lb.apply(web(listeners, two.server()))  # no drain first: the caller skipped it

    assert early.not_removed == (f"{BACKEND}/web-1",) and early.removed == ()
    assert {s.name: s.state for s in await lb.servers(BACKEND)} == {"web-1": MAINT, "web-2": READY}
    assert (await slow).status_code == 200  # maint takes no new requests but lets this one finish
    later = await lb.apply(web(listeners, two.server()))
    assert later.removed == (f"{BACKEND}/web-1",) and not later.reloaded


async def test_a_server_whose_address_changes_is_moved_without_a_reload(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, one.server()))
    before = await master_pid_and_worker(lb)

    result = await lb.apply(web(listeners, replace(one.server(), address=two.ip)))

    assert result.changed == (f"{BACKEND}/web-1={two.ip}:8080",) and not result.reloaded
    assert await instances_answering(listeners, 2) == ["web-2", "web-2"]  # the container behind web-1 now
    assert await master_pid_and_worker(lb) == before


# --- configuration changes --------------------------------------------------------------------


async def test_a_config_haproxy_refuses_never_replaces_the_running_one(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo], run_dir: Path
) -> None:
    one = demo("web-1")
    good = web(listeners, one.server())
    await lb.apply(good)
    served = lb.paths.config.read_text()
    before = await master_pid_and_worker(lb)
    missing = model.Tls(crt_list=run_dir / "no-crt-list.txt", default_certificate=run_dir / "no-cert.pem")

    with pytest.raises(process.ConfigRejected) as refused:
        await lb.apply(replace(good, tls=missing))

    assert "no-cert.pem" in refused.value.message
    assert lb.status().last_error == refused.value.message
    assert lb.paths.config.read_text() == served
    assert await master_pid_and_worker(lb) == before
    assert await instances_answering(listeners, 2) == ["web-1", "web-1"]
    assert not list(run_dir.glob(".*.new")), "temporary files were left behind"

    await lb.apply(good)
    assert lb.status().last_error is None


async def test_a_reload_that_cannot_bind_keeps_the_old_worker_and_the_old_files(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one = demo("web-1")
    good = web(listeners, one.server())
    await lb.apply(good)
    served, digest = lb.paths.config.read_text(), lb.status().digest
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    # `haproxy -c` does not bind, so only the reload can find out that the port is taken.
    clash = replace(
        good,
        backends=(*good.backends, model.Backend("default.db.pg", model.Mode.TCP)),
        tcp_routes=(model.TcpRoute(port, "default.db.pg"),),
    )
    try:
        with pytest.raises(process.HaproxyFailed, match="Address already in use"):
            await lb.apply(clash)
    finally:
        taken.close()

    assert lb.paths.config.read_text() == served
    assert lb.status().digest == digest
    assert await instances_answering(listeners, 2) == ["web-1", "web-1"]
    fixed = await lb.apply(clash)  # the port is free now
    assert fixed.reloaded and lb.status().last_error is None


async def test_a_route_change_reloads_and_keeps_the_servers_and_their_drain(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, one.server(), two.server(DRAIN)))
    before = await master_pid_and_worker(lb)
    config = web(listeners, one.server(), two.server(DRAIN))
    more_hosts = replace(config, http_routes=(model.HttpRoute((HOST, "www.example.test"), BACKEND),))

    result = await lb.apply(more_hosts)

    assert result.reloaded and not (result.added or result.changed or result.removed)
    master, reloads, workers = await master_pid_and_worker(lb)
    assert master == before[0] and reloads == before[1] + 1 and workers != before[2]
    assert {s.name: s.state for s in await lb.servers(BACKEND)} == {"web-1": READY, "web-2": DRAIN}
    assert (await get(listeners, host="www.example.test")).text.split()[2] == "web-1"
    assert result.reload_seconds is not None
    print(f"\nreload (dump state, rename, reload, new worker answering): {result.reload_seconds * 1000:.0f} ms")


# --- supervision and adoption -----------------------------------------------------------------


async def test_haproxy_killed_comes_back_with_its_servers(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one, two = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, one.server(), two.server(DRAIN)))
    killed = lb.status().pid
    assert killed is not None

    started = time.monotonic()
    os.kill(killed, signal.SIGKILL)
    while lb.status().restarts == 0:
        assert time.monotonic() - started < 5, "HAProxy was not started again"
        await asyncio.sleep(0.01)
    back = time.monotonic() - started

    assert lb.status().pid not in (None, killed)
    assert {s.name: s.state for s in await lb.servers(BACKEND)} == {"web-1": READY, "web-2": DRAIN}
    assert await instances_answering(listeners, 3) == ["web-1"] * 3
    print(f"\nSIGKILL → new master serving with servers re-applied: {back * 1000:.0f} ms")


async def test_a_new_manager_adopts_the_running_haproxy_instead_of_starting_another(
    run_dir: Path, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one = demo("web-1")
    config = web(listeners, one.server())
    first = manager.LoadBalancer(run_dir, haproxy=HAPROXY)
    async with first:
        await first.apply(config)
        pid = first.status().pid
    # The control plane stopped; the data plane did not.
    assert await instances_answering(listeners, 1) == ["web-1"]

    second = manager.LoadBalancer(run_dir, haproxy=HAPROXY)
    async with second:
        try:
            status = second.status()
            assert status.adopted and status.pid == pid
            result = await second.apply(config)
            assert not result.reloaded and not result.installed
        finally:
            await second.stop()
    assert pid is not None and not alive(pid)


async def test_a_new_manager_starts_haproxy_from_the_last_applied_files_when_none_runs(
    run_dir: Path, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one = demo("web-1")
    async with manager.LoadBalancer(run_dir, haproxy=HAPROXY) as first:
        await first.apply(web(listeners, one.server()))
        await first.stop()  # as after a reboot

    async with manager.LoadBalancer(run_dir, haproxy=HAPROXY) as second:
        try:
            assert second.status().running and not second.status().adopted
            assert await instances_answering(listeners, 1) == ["web-1"]
        finally:
            await second.stop()


async def test_a_stale_pid_file_and_socket_do_not_stop_a_start(
    run_dir: Path, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one = demo("web-1")
    (run_dir / "haproxy.pid").write_text("999999\n")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(run_dir / "master.sock"))  # a socket file nobody listens on
    async with manager.LoadBalancer(run_dir, haproxy=HAPROXY) as balancer:
        try:
            await balancer.apply(web(listeners, one.server()))
            assert not balancer.status().adopted
            assert await instances_answering(listeners, 1) == ["web-1"]
        finally:
            await balancer.stop()


async def test_a_second_manager_on_the_same_run_dir_is_refused(lb: manager.LoadBalancer, run_dir: Path) -> None:
    with pytest.raises(Conflict):
        async with manager.LoadBalancer(run_dir, haproxy=HAPROXY):
            pass


# --- what reaches the app ---------------------------------------------------------------------


class _EchoHeaders(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({name.lower(): value for name, value in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # HAProxy closes its idle pooled connections when it stops: not a test failure.
        pass


@pytest.fixture
def echo_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers with the request's headers as JSON."""
    server = _QuietServer(("127.0.0.1", 0), _EchoHeaders)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _certificate(directory: Path, host: str) -> model.Tls:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}"),
            *("-addext", f"subjectAltName=DNS:{host}", "-days", "2"),
        ],
        check=True,
        capture_output=True,
    )
    bundle = directory / "bundle.pem"
    bundle.write_text(cert.read_text() + key.read_text())
    crt_list = directory / "crt-list.txt"
    crt_list.write_text(f"{bundle} [alpn h2,http/1.1] {host}\n")
    return model.Tls(crt_list=crt_list, default_certificate=bundle)


async def test_forwarded_headers_and_a_request_id_reach_the_app(
    lb: manager.LoadBalancer, listeners: model.Listeners, echo_server: int, tmp_path: Path
) -> None:
    tls = _certificate(tmp_path, HOST)
    config = web(listeners, model.Server("echo-1", "127.0.0.1", echo_server, READY), tls=tls)
    await lb.apply(config)

    plain = (await get(listeners)).json()
    kept = (await get(listeners, headers={"X-Request-Id": "caller-42", "X-Forwarded-Proto": "https"})).json()
    context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    secure = await _https_get(listeners.https_port, context)

    assert plain["x-forwarded-for"] == "127.0.0.1"
    assert plain["x-forwarded-proto"] == "http"
    assert len(plain["x-request-id"]) == 36  # a UUID made by HAProxy
    assert kept["x-request-id"] == "caller-42"
    assert kept["x-forwarded-proto"] == "http", "a client must not be able to claim HTTPS"
    assert secure["x-forwarded-proto"] == "https"
    assert secure["x-request-id"] != plain["x-request-id"]


async def _https_get(port: int, context: ssl.SSLContext) -> dict[str, str]:
    """GET / over TLS to 127.0.0.1 with SNI and Host set to the app's name."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=HOST)
    writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    result: dict[str, str] = json.loads(body)
    return result


async def test_plain_http_is_redirected_to_https_for_routes_that_ask_for_it(
    lb: manager.LoadBalancer, listeners: model.Listeners, echo_server: int, tmp_path: Path
) -> None:
    tls = _certificate(tmp_path, HOST)
    config = web(listeners, model.Server("echo-1", "127.0.0.1", echo_server, READY), tls=tls)
    config = replace(config, http_routes=(model.HttpRoute((HOST,), BACKEND, redirect_to_https=True),))
    await lb.apply(config)

    response = await get(listeners, "/a/b?c=1")

    assert response.status_code == 308
    assert response.headers["location"] == f"https://{HOST}:{listeners.https_port}/a/b?c=1"


async def test_a_tcp_route_forwards_to_its_backend(lb: manager.LoadBalancer, listeners: model.Listeners) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo: " + await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    backend_port = server.sockets[0].getsockname()[1]
    service_port = free_port()
    config = web(listeners)
    config = replace(
        config,
        backends=(
            *config.backends,
            model.Backend("default.db.tcp", model.Mode.TCP, (model.Server("db-1", "127.0.0.1", backend_port, READY),)),
        ),
        tcp_routes=(model.TcpRoute(service_port, "default.db.tcp"),),
    )
    try:
        await lb.apply(config)
        reader, writer = await asyncio.open_connection("127.0.0.1", service_port)
        writer.write(b"hello\n")
        answer = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    finally:
        server.close()

    assert answer == b"echo: hello\n"


# --- figures and zero-downtime ----------------------------------------------------------------


async def test_runtime_commands_take_well_under_a_millisecond(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    one = demo("web-1")
    await lb.apply(web(listeners, one.server()))
    api = runtime.RuntimeApi(lb.paths.admin_socket)
    rounds = 500

    started = time.monotonic()
    for _ in range(rounds):
        await api.set_state(BACKEND, "web-1", READY)
    per_command = (time.monotonic() - started) / rounds

    print(f"\nruntime command (connect, send, answer): {per_command * 1000:.3f} ms")
    assert per_command < 0.005


LOAD_GENERATOR = r"""
import http.client, json, sys, threading, time

port, host, seconds, clients = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()
seen, failures, last_seen = {}, [], {}


def client():
    # One keep-alive connection per client, reopened only after a failure.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            connection.request("GET", "/", headers={"Host": host})
            response = connection.getresponse()
            body = response.read().decode()
        except Exception as exc:
            with lock:
                failures.append(repr(exc))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        with lock:
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
                continue
            instance = body.split()[2]
            seen[instance] = seen.get(instance, 0) + 1
            last_seen[instance] = time.monotonic()


threads = [threading.Thread(target=client) for _ in range(clients)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"seen": seen, "failures": failures, "last_seen": last_seen}))
"""


async def test_swapping_a_server_under_load_fails_no_request(
    lb: manager.LoadBalancer, listeners: model.Listeners, demo: Callable[[str], Demo]
) -> None:
    old, new = demo("web-1"), demo("web-2")
    await lb.apply(web(listeners, old.server()))
    before = await master_pid_and_worker(lb)
    # The load runs in another process, as it would in real life: dkos' event loop only runs dkos.
    load = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOAD_GENERATOR,
        str(listeners.http_port),
        HOST,
        "3",
        "8",
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.7)
    steps: dict[str, float] = {}
    started = time.monotonic()
    await lb.apply(web(listeners, old.server(), new.server()))  # add (maint) → ready
    steps["add+ready"] = time.monotonic() - started
    await lb.apply(web(listeners, old.server(DRAIN), new.server()))
    steps["drain"] = time.monotonic() - started
    drained = await lb.wait_drained(BACKEND, "web-1", timeout=10)
    steps["drained"] = time.monotonic() - started
    removed = await lb.apply(web(listeners, new.server()))
    gone = time.monotonic()
    steps["del"] = gone - started
    output, _ = await load.communicate()
    figures = json.loads(output)
    seen, failures = figures["seen"], figures["failures"]

    total = sum(seen.values())
    timeline = ", ".join(f"{step} {at * 1000:.0f} ms" for step, at in steps.items())
    print(f"\nswap under load: {timeline}; {total} requests over 3 s, {len(failures)} failed; per instance {seen}")
    assert drained and removed.removed == (f"{BACKEND}/web-1",)
    assert failures == []
    assert await master_pid_and_worker(lb) == before, "a server swap must not reload"
    assert seen.get("web-1", 0) > 0 and seen.get("web-2", 0) > 0
    assert figures["last_seen"]["web-1"] < gone, "web-1 answered after it was removed"
