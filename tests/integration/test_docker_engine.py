"""The Docker driver against the real engine: every `Engine` method, on busybox containers.

Each test session labels its containers `dkos.owner=<uuid>`; every test removes what it
started, and the session removes anything left over, so runs never see each other.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from dkos.core.errors import ContainerConflict, EngineError, EngineUnavailable, ImageNotFound
from dkos.engines.base import (
    LABEL_INSTANCE,
    LABEL_OWNER,
    ContainerSpec,
    ContainerState,
    EngineEventKind,
    LogLine,
    LogRotation,
    LogStream,
    PortSpec,
)
from dkos.engines.docker import DockerEngine

pytestmark = pytest.mark.docker

IMAGE = "dkos-enginetest:1"
OWNER = f"enginetest-{uuid.uuid4().hex[:12]}"
DOCKER_SOCKET = "/var/run/docker.sock"

# The image's default command: an app that exits 0 on SIGTERM and serves HTTP meanwhile.
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -m 1777 /tmp
CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -p 8080 -h /tmp; while :; do sleep 0.1; done"]
"""
IGNORES_TERM = ("sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")


def docker_cli(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def remove_session_containers() -> None:
    ids = docker_cli("ps", "-aq", "--filter", f"label={LABEL_OWNER}={OWNER}").split()
    if ids:
        docker_cli("rm", "-f", *ids)


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tiny busybox image built FROM scratch (no registry is reachable)."""
    context = tmp_path_factory.mktemp("enginetest-image")
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(busybox, context / "busybox")
    (context / "Dockerfile").write_text(DOCKERFILE)
    subprocess.run(
        ["docker", "build", "-q", "-t", IMAGE, str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=True,
        capture_output=True,
    )
    yield IMAGE
    remove_session_containers()


@pytest.fixture
async def engine(image: str) -> AsyncIterator[DockerEngine]:
    engine = DockerEngine()
    yield engine
    for status in await engine.recover({LABEL_OWNER: OWNER}):
        await engine.destroy(status.id)
    await engine.close()


@pytest.fixture(params=["files", "endpoint"])
async def log_engine(request: pytest.FixtureRequest, engine: DockerEngine) -> AsyncIterator[DockerEngine]:
    """The driver reading json-file files from disk, and the one asking the engine's log endpoint."""
    if request.param == "files":
        yield engine
        return
    reader = DockerEngine(log_files=False)
    yield reader
    await reader.close()


async def read_logs(engine: DockerEngine, container_id: str, **options: Any) -> list[LogLine]:
    return [line async for batch in engine.logs(container_id, **{"follow": False, **options}) for line in batch]


def spec(**overrides: Any) -> ContainerSpec:
    instance = f"t-{uuid.uuid4().hex[:8]}"
    fields: dict[str, Any] = {
        "name": f"dkos.enginetest.{instance}",
        "image": IMAGE,
        "labels": {LABEL_OWNER: OWNER, LABEL_INSTANCE: instance},
    }
    fields.update(overrides)
    return ContainerSpec(**fields)


def docker_inspect(container_id: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker_cli("inspect", container_id))
    return data[0]


async def wait_for_state(engine: DockerEngine, container_id: str, state: ContainerState, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = await engine.inspect(container_id)
        if status is not None and status.state is state:
            return status
        assert time.monotonic() < deadline, f"{container_id} never became {state}: {status}"
        await asyncio.sleep(0.05)


# --- start -------------------------------------------------------------------------------


async def test_start_runs_the_container_and_reports_its_ip(engine: DockerEngine) -> None:
    status = await engine.start(spec())
    assert status.state is ContainerState.RUNNING
    assert status.ip and status.ip.count(".") == 3
    assert status.started_at and status.created_at and status.finished_at is None
    assert status.labels[LABEL_OWNER] == OWNER


async def test_start_is_idempotent_by_name(engine: DockerEngine) -> None:
    wanted = spec()
    first = await engine.start(wanted)
    second = await engine.start(wanted)
    assert second.id == first.id and second.state is ContainerState.RUNNING
    named = [s for s in await engine.recover({LABEL_OWNER: OWNER}) if s.name == wanted.name]
    assert len(named) == 1


async def test_start_starts_an_existing_stopped_container_of_the_same_name(
    engine: DockerEngine,
) -> None:
    wanted = spec()
    first = await engine.start(wanted)
    await engine.stop(first.id, grace=5)
    again = await engine.start(wanted)
    assert again.id == first.id and again.state is ContainerState.RUNNING


async def test_start_refuses_a_name_held_by_a_container_with_other_labels(
    engine: DockerEngine,
) -> None:
    wanted = spec()
    await engine.start(wanted)
    other = spec(name=wanted.name)  # same name, another instance label
    with pytest.raises(ContainerConflict, match=wanted.name):
        await engine.start(other)


async def test_start_with_a_missing_image_raises_image_not_found(engine: DockerEngine) -> None:
    missing = f"dkos-no-such-image-{uuid.uuid4().hex[:6]}:1"
    with pytest.raises(ImageNotFound, match=missing) as caught:
        await engine.start(spec(image=missing))
    assert caught.value.image == missing


async def test_a_command_that_does_not_exist_exits_127_with_the_reason_in_its_logs(
    engine: DockerEngine,
) -> None:
    # docker-init is PID 1 and execs the command, so the start itself succeeds.
    status = await engine.start(spec(command=("/no/such/program",)))
    assert (await engine.wait(status.id)).exit_code == 127
    lines = await read_logs(engine, status.id)
    assert any("/no/such/program" in line.text for line in lines if line.stream is LogStream.STDERR)


async def test_a_spec_the_engine_rejects_raises_engine_error_and_leaves_nothing(
    engine: DockerEngine,
) -> None:
    wanted = spec(cpus=1000.0)
    with pytest.raises(EngineError, match="CPUs"):
        await engine.start(wanted)
    assert [s for s in await engine.recover({LABEL_OWNER: OWNER}) if s.name == wanted.name] == []


async def test_resource_limits_and_log_rotation_land_in_the_host_config(
    engine: DockerEngine,
) -> None:
    status = await engine.start(
        spec(
            cpus=0.5,
            memory_mib=64,
            log_rotation=LogRotation(max_size="5m", max_files=2),
            env={"GREETING": "hello"},
            ports=(PortSpec(name="http", container_port=8080),),
            stop_signal="SIGQUIT",
        )
    )
    data = docker_inspect(status.id)
    host = data["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "5m", "max-file": "2"}}
    assert host["Init"] is True and host["RestartPolicy"]["Name"] == "no"
    assert "GREETING=hello" in data["Config"]["Env"]
    assert "8080/tcp" in data["Config"]["ExposedPorts"]
    assert data["Config"]["StopSignal"] == "SIGQUIT"


async def test_command_replaces_the_entrypoint_and_args_the_cmd(engine: DockerEngine) -> None:
    status = await engine.start(spec(command=("sh", "-c"), args=("echo from-args; sleep 30", "ignored-$0")))
    config = docker_inspect(status.id)["Config"]
    assert config["Entrypoint"] == ["sh", "-c"]
    assert config["Cmd"] == ["echo from-args; sleep 30", "ignored-$0"]
    lines = await read_logs(engine, status.id)
    assert [line.text for line in lines] == ["from-args"]


# --- inspect, wait, recover ----------------------------------------------------------------


async def test_inspect_reports_the_exit_code_of_an_exited_container(
    engine: DockerEngine,
) -> None:
    status = await engine.start(spec(args=("sh", "-c", "exit 7")))
    result = await engine.wait(status.id)
    assert result.exit_code == 7 and not result.oom_killed
    exited = await engine.inspect(status.id)
    assert exited is not None and exited.state is ContainerState.EXITED
    assert exited.exit_code == 7 and not exited.oom_killed
    # A command that exits at once can be stamped finished before its start stamp: the
    # engine takes the two times in different places (by 12 ms, seen on a loaded machine).
    assert exited.finished_at and exited.started_at and exited.finished_at >= exited.started_at - 0.5


async def test_inspect_of_a_missing_container_is_none(engine: DockerEngine) -> None:
    assert await engine.inspect("dkos-no-such-container") is None


async def test_an_oom_killed_container_reports_oom_killed_and_137(engine: DockerEngine) -> None:
    status = await engine.start(spec(memory_mib=8, args=("sh", "-c", 'x=$(head -c 50000000 /dev/zero | tr "\\0" a)')))
    result = await engine.wait(status.id)
    assert result.exit_code == 137 and result.oom_killed
    exited = await engine.inspect(status.id)
    assert exited is not None and exited.oom_killed and exited.exit_code == 137


async def test_recover_finds_running_and_exited_containers_by_labels(
    engine: DockerEngine,
) -> None:
    batch = uuid.uuid4().hex
    labels = {LABEL_OWNER: OWNER, "dkos.app": batch}
    running = await engine.start(spec(labels={**labels, LABEL_INSTANCE: "a"}))
    exited = await engine.start(spec(labels={**labels, LABEL_INSTANCE: "b"}, args=("false",)))
    await engine.wait(exited.id)
    await engine.start(spec())  # same owner, other app: not found

    found = {s.id: s for s in await engine.recover(labels)}
    assert set(found) == {running.id, exited.id}
    assert found[running.id].state is ContainerState.RUNNING
    assert found[running.id].ip == running.ip and found[running.id].instance_id == "a"
    assert found[exited.id].state is ContainerState.EXITED and found[exited.id].exit_code == 1
    assert found[exited.id].name == exited.name


# --- stop, signal, destroy -----------------------------------------------------------------


async def test_stop_is_quick_for_a_process_that_exits_on_sigterm(engine: DockerEngine) -> None:
    status = await engine.start(spec())
    began = time.monotonic()
    await engine.stop(status.id, grace=10)
    elapsed = time.monotonic() - began
    stopped = await engine.inspect(status.id)
    assert stopped is not None and stopped.state is ContainerState.EXITED
    assert stopped.exit_code == 0
    assert elapsed < 2, f"stop took {elapsed:.2f} s"


async def test_stop_kills_a_process_that_ignores_sigterm_after_the_grace(
    engine: DockerEngine,
) -> None:
    status = await engine.start(spec(args=IGNORES_TERM))
    began = time.monotonic()
    await engine.stop(status.id, grace=2)
    elapsed = time.monotonic() - began
    stopped = await engine.inspect(status.id)
    assert stopped is not None and stopped.state is ContainerState.EXITED
    assert stopped.exit_code == 137
    assert 1.8 < elapsed < 5, f"stop took {elapsed:.2f} s"


async def test_stop_with_another_signal_sends_it_then_kills_after_the_grace(
    engine: DockerEngine,
) -> None:
    handles_usr1 = await engine.start(spec(args=("sh", "-c", "trap 'exit 5' USR1; while :; do sleep 0.1; done")))
    began = time.monotonic()
    await engine.stop(handles_usr1.id, grace=10, signal="USR1")
    assert time.monotonic() - began < 2
    stopped = await engine.inspect(handles_usr1.id)
    assert stopped is not None and stopped.exit_code == 5

    ignores_usr1 = await engine.start(spec(args=("sh", "-c", "trap '' USR1; while :; do sleep 0.1; done")))
    began = time.monotonic()
    await engine.stop(ignores_usr1.id, grace=1, signal="SIGUSR1")
    assert 0.9 < time.monotonic() - began < 4
    killed = await engine.inspect(ignores_usr1.id)
    assert killed is not None and killed.exit_code == 137


async def test_signal_reaches_the_app_through_docker_init(engine: DockerEngine) -> None:
    status = await engine.start(spec(args=("sh", "-c", "trap 'exit 9' HUP; while :; do sleep 0.1; done")))
    await engine.signal(status.id, "SIGHUP")
    assert (await engine.wait(status.id)).exit_code == 9


async def test_stop_signal_and_destroy_of_a_missing_container_are_not_errors(
    engine: DockerEngine,
) -> None:
    status = await engine.start(spec())
    await engine.destroy(status.id)
    assert await engine.inspect(status.id) is None
    await engine.destroy(status.id)
    await engine.stop(status.id, grace=1)
    await engine.signal(status.id, "SIGTERM")


async def test_destroy_removes_a_running_container(engine: DockerEngine) -> None:
    status = await engine.start(spec())
    await engine.destroy(status.id)
    assert await engine.inspect(status.id) is None


# --- events, exec, stats, logs -------------------------------------------------------------


async def test_events_report_a_container_that_dies(engine: DockerEngine) -> None:
    batch = uuid.uuid4().hex
    labels = {LABEL_OWNER: OWNER, "dkos.app": batch}
    events = engine.events(labels)
    seen: list[EngineEventKind] = []

    async def until_died() -> Any:
        async for event in events:
            seen.append(event.kind)
            if event.kind is EngineEventKind.DIED:
                return event
        return None

    watcher = asyncio.create_task(until_died())
    await asyncio.sleep(0.3)  # let the subscription reach the engine
    await engine.start(spec())  # same owner, no dkos.app label: filtered out
    status = await engine.start(spec(labels={**labels, LABEL_INSTANCE: "x"}, args=("sh", "-c", "sleep 0.5; exit 3")))
    died = await asyncio.wait_for(watcher, timeout=10)
    await events.aclose()  # type: ignore[attr-defined]
    assert died is not None and died.container_id == status.id
    assert died.labels["dkos.app"] == batch and "exitCode" not in died.labels
    assert EngineEventKind.STARTED in seen
    assert died.time == pytest.approx(time.time(), abs=5)


async def test_exec_returns_output_and_exit_code(engine: DockerEngine) -> None:
    status = await engine.start(spec())
    result = await engine.exec(status.id, ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"], timeout=5)
    assert result.exit_code == 3
    assert "to-out" in result.output and "to-err" in result.output
    await engine.exec(status.id, ["sh", "-c", "echo served > /tmp/index.html"], timeout=5)
    fetched = await engine.exec(status.id, ["wget", "-qO-", "http://127.0.0.1:8080/"], timeout=5)
    assert (fetched.exit_code, fetched.output) == (0, "served\n")


async def test_exec_raises_engine_error_on_timeout(engine: DockerEngine) -> None:
    status = await engine.start(spec())
    began = time.monotonic()
    with pytest.raises(EngineError, match="did not finish"):
        await engine.exec(status.id, ["sleep", "5"], timeout=0.5)
    assert time.monotonic() - began < 2


async def test_stats_yield_samples_with_memory_use(engine: DockerEngine) -> None:
    status = await engine.start(spec(memory_mib=64))
    samples = engine.stats(status.id)
    sample = await asyncio.wait_for(anext(samples), timeout=10)
    await samples.aclose()  # type: ignore[attr-defined]
    assert sample.container_id == status.id
    assert sample.memory_bytes > 0
    assert sample.memory_limit_bytes == 64 * 1024 * 1024
    assert sample.cpu_total_ns > 0 and sample.system_cpu_ns > 0 and sample.online_cpus >= 1
    assert sample.time == pytest.approx(time.time(), abs=5)


async def test_more_streams_than_a_default_connection_pool_all_flow_and_calls_still_answer(
    engine: DockerEngine,
) -> None:
    """A thousand instances hold a thousand stats streams: a pool capped at 100 connections (aiohttp's
    default) would leave the 101st stream, and every call after it, waiting forever."""
    status = await engine.start(spec())
    streams = [engine.stats(status.id) for _ in range(120)]
    try:
        firsts = await asyncio.wait_for(asyncio.gather(*(anext(s) for s in streams)), timeout=60)
        assert {sample.container_id for sample in firsts} == {status.id}
        found = await asyncio.wait_for(engine.inspect(status.id), timeout=10)
        assert found is not None and found.id == status.id
    finally:
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]


async def test_stats_end_when_the_container_stops(engine: DockerEngine) -> None:
    status = await engine.start(spec(args=("sh", "-c", "sleep 1")))
    samples = [s async for s in engine.stats(status.id)]
    assert 1 <= len(samples) <= 4


async def test_logs_tell_stdout_from_stderr(engine: DockerEngine, log_engine: DockerEngine) -> None:
    status = await engine.start(
        spec(args=("sh", "-c", "echo out-1; echo err-1 >&2; sleep 0.05; echo out-2; printf tail"))
    )
    await engine.wait(status.id)
    lines = await read_logs(log_engine, status.id)
    by_stream = {stream: [line.text for line in lines if line.stream is stream] for stream in LogStream}
    assert by_stream[LogStream.STDOUT] == ["out-1", "out-2", "tail"]
    assert by_stream[LogStream.STDERR] == ["err-1"]
    assert all(line.time == pytest.approx(time.time(), abs=30) for line in lines)


async def test_logs_follow_until_the_container_exits_and_honour_since(
    engine: DockerEngine, log_engine: DockerEngine
) -> None:
    status = await engine.start(spec(args=("sh", "-c", "echo early; sleep 1; echo late; sleep 0.5")))
    began = time.monotonic()
    followed = await read_logs(log_engine, status.id, follow=True)
    assert [line.text for line in followed] == ["early", "late"]
    assert time.monotonic() - began > 1  # it waited for the later line and the exit
    # `since_ns` is exact and inclusive: capture resumes from the last stored line's time.
    since = await read_logs(log_engine, status.id, since_ns=followed[1].time_ns)
    assert [line.text for line in since] == ["late"]
    assert await read_logs(log_engine, status.id, since_ns=followed[1].time_ns + 1) == []


async def test_a_long_line_and_escapes_come_back_as_written(engine: DockerEngine, log_engine: DockerEngine) -> None:
    status = await engine.start(
        spec(args=("sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'tab\\there <\\\\> \\001\\n'"))
    )
    await engine.wait(status.id)
    lines = await read_logs(log_engine, status.id)
    assert [len(line.text) for line in lines] == [40000, 14]
    assert lines[1].data == b"tab\there <\\> \x01"


async def test_following_across_rotations_loses_no_line_and_repeats_none(
    engine: DockerEngine, log_engine: DockerEngine
) -> None:
    # 2,000 lines in bursts of 50 through 10 KB files, 5 kept: the engine rotates every
    # second burst or so, and what it keeps covers about a second of output. (Docker
    # 20.10's own follow endpoint sends lines again after a rotation: the driver drops them.)
    script = "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); [ $((i % 50)) = 0 ] && sleep 0.1; done; :"
    status = await engine.start(spec(args=("sh", "-c", script), log_rotation=LogRotation(max_size="10k", max_files=5)))
    followed = await asyncio.wait_for(read_logs(log_engine, status.id, follow=True), timeout=60)
    assert [line.text for line in followed] == [f"line-{i}" for i in range(2000)]
    assert os.path.exists(docker_inspect(status.id)["LogPath"] + ".4")  # it did rotate, 4 times or more


async def test_a_local_engine_s_logs_are_read_from_its_files(engine: DockerEngine) -> None:
    status = await engine.start(spec(args=("sh", "-c", "echo hi")))
    assert await engine._log_file(status.id) == docker_inspect(status.id)["LogPath"]
    assert await DockerEngine(log_files=True, url="tcp://127.0.0.1:9")._log_file(status.id) is None


# --- engine identity and availability ------------------------------------------------------


async def test_ping_reports_the_engine(engine: DockerEngine) -> None:
    info = await engine.ping()
    assert info.name == "docker" and info.version.startswith("20.")
    assert info.api_version and info.cpus >= 1 and info.memory_bytes > 0
    capabilities = engine.capabilities()
    assert capabilities.exec and capabilities.stats_stream and not capabilities.pull_images


async def test_an_engine_that_does_not_answer_raises_engine_unavailable(tmp_path: Path) -> None:
    engine = DockerEngine(f"unix://{tmp_path}/nonexistent.sock")
    with pytest.raises(EngineUnavailable, match=r"nonexistent\.sock"):
        await engine.ping()
    with pytest.raises(EngineUnavailable):
        await engine.inspect("anything")
    with pytest.raises(EngineUnavailable):
        await anext(engine.events({LABEL_OWNER: OWNER}))
    await engine.close()


class SocketProxy:
    """A unix socket forwarding to the engine's, to make the engine vanish and return."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def drop(self) -> None:
        """Close the socket and every connection through it, as a dying engine would."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        with suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(DOCKER_SOCKET)
        self.writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.fixture
async def proxy(tmp_path: Path, image: str) -> AsyncIterator[SocketProxy]:
    running = SocketProxy(tmp_path / "engine.sock")
    yield running
    await running.drop()


async def test_the_engine_is_reached_again_after_it_comes_back(proxy: SocketProxy) -> None:
    engine = DockerEngine(f"unix://{proxy.path}")
    with pytest.raises(EngineUnavailable):
        await engine.ping()  # built and called while the engine is down
    await proxy.start()
    assert (await engine.ping()).name == "docker"
    await proxy.drop()
    with pytest.raises(EngineUnavailable):
        await engine.ping()
    await proxy.start()
    assert (await engine.ping()).name == "docker"
    await engine.close()


async def test_events_end_with_engine_unavailable_when_the_connection_drops(
    proxy: SocketProxy,
) -> None:
    await proxy.start()
    engine = DockerEngine(f"unix://{proxy.path}")
    watcher = asyncio.create_task(anext(engine.events({LABEL_OWNER: OWNER})))
    await asyncio.sleep(0.3)  # the subscription is open
    assert not watcher.done()
    await proxy.drop()
    with pytest.raises(EngineUnavailable):
        await asyncio.wait_for(watcher, timeout=5)
    await engine.close()
