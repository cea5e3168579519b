"""The Docker driver of the `Engine` protocol: one Docker Engine (API 1.41, Docker 20.10+).

Where it sits: the reconciler, deployer, health checks, metrics collectors and log
capture call `engines.base.Engine`; this module is the only place in dkos that speaks
the Docker Engine API. It uses aiodocker because the server is one asyncio process and
the Engine API's long-lived streams (events, stats, logs) are plain chunked HTTP
responses that aiohttp reads without threads.

Errors are mapped into the `core.errors` tree here, once, by `DockerEngine._call`:

    aiohttp connection errors, aiodocker's status 900    → EngineUnavailable (and the
    ("cannot connect"), timeouts, a stream cut mid-way      client is rebuilt on the next call)
    404 "No such image" on create                        → ImageNotFound
    409 on create, the name held by a container that     → ContainerConflict
    does not carry the spec's labels
    any other refusal of the engine                      → EngineError

Choices worth knowing:

- The log stream alone is read over a connection of its own with an HTTP/1.0 request
  (`_log_body`), so the engine sends it without chunked encoding: decoding one HTTP chunk
  per line capped log capture at ≈ 25,000 lines/s.
- Streams are read from the raw responses (`Docker._query`), not through aiodocker's
  helpers: its log reader drops the stream id of each multiplexed frame (stdout and
  stderr could not be told apart), and its stream readers end silently when the
  connection drops, where dkos must learn it (EngineUnavailable) to resubscribe.
- Containers run with `Init: True`: docker-init is PID 1, forwards SIGTERM to the app
  and reaps zombies, so a stop takes milliseconds instead of the whole grace period for
  apps that never installed a signal handler.
- Docker never restarts a container (`RestartPolicy: no`): dkos does, with backoff, so
  that every restart is visible to the reconciler.
- Images are never pulled (`capabilities().pull_images` is False): no registry is
  reachable from the machines dkos targets, and a missing image is a spec error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal as posix_signal
import struct
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from dkos.core.errors import (
    ContainerConflict,
    DkosError,
    EngineError,
    EngineUnavailable,
    ImageNotFound,
)
from dkos.engines import loglines
from dkos.engines.base import (
    Capabilities,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    EngineEvent,
    EngineEventKind,
    EngineInfo,
    ExecResult,
    ExitResult,
    LogLine,
    LogStream,
)

DEFAULT_URL = "unix:///var/run/docker.sock"

_CANNOT_CONNECT = 900
"""The status aiodocker gives its DockerError when the connection to the engine fails."""

_CAPABILITIES = Capabilities(
    exec=True,
    signals=True,
    stats_stream=True,
    log_stream=True,
    resource_limits=True,
    pull_images=False,
)

_STATES = {
    "created": ContainerState.CREATED,
    "running": ContainerState.RUNNING,
    # A paused container still holds its process and memory and resumes on unpause; dkos
    # never pauses, so one paused by hand stays RUNNING and its failing health checks
    # decide. Reporting it EXITED would make `start` adopt it and fail to start it.
    "paused": ContainerState.RUNNING,
}
"""Docker's `State.Status` values that are not "stopped"; the rest (exited, dead,
removing, restarting) are EXITED."""

_EVENT_KINDS = {
    "start": EngineEventKind.STARTED,
    "die": EngineEventKind.DIED,
    "oom": EngineEventKind.OOM,
    "destroy": EngineEventKind.DESTROYED,
}

_EVENT_ATTRIBUTES = frozenset({"name", "image", "exitCode", "signal", "execID", "execDuration"})
"""Attributes Docker adds to an event's actor next to the container's labels."""

_STREAMS = {1: LogStream.STDOUT, 2: LogStream.STDERR}
_FRAME_HEADER = struct.Struct(">BxxxL")
"""The multiplexed stream's frame header: stream id, 3 padding bytes, payload length."""

_LOG_POLL = (0.01, 0.25)
"""Seconds between looks at a followed json-file file: the shortest right after it grew,
doubling while it stays quiet up to the longest (4 looks a second for an idle container)."""


def _unlimited_connector(url: str) -> aiohttp.BaseConnector | None:
    """A connection pool without aiohttp's default cap of 100 connections for a local engine.

    Every stats and log stream holds a connection for as long as its container runs: with the
    cap, the 101st instance's stream — and every ordinary call after it — would queue behind them
    forever. For a remote engine (tcp, with aiodocker's TLS handling) aiodocker's own pool stays."""
    if url.startswith("unix://"):
        return aiohttp.UnixConnector(path=url.removeprefix("unix://"), limit=0)
    return None


class DockerEngine:
    """The `Engine` protocol over one Docker Engine.

    The aiodocker client is created on first use, so the object can be built while the
    engine is down; after any EngineUnavailable the client is dropped and the next call
    connects afresh (a restarted or upgraded engine is met with a new session and a
    re-negotiated API version).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        request_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        log_files: bool = True,
    ) -> None:
        """`url`: `unix:///path`, `tcp://host:port` or `http(s)://host:port`; None means
        DOCKER_HOST, else the local socket. `request_timeout` bounds every call that is
        not a stream or a wait (settings pass it in); `connect_timeout` bounds connecting.
        `log_files`: read a local engine's json-file logs from disk (see `logs`)."""
        # Resolved here rather than by aiodocker, whose own search fails an assertion when
        # no socket exists yet: the engine may come up after dkos.
        self.url = url or os.environ.get("DOCKER_HOST") or DEFAULT_URL
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._log_files = log_files
        self._docker: aiodocker.Docker | None = None

    async def __aenter__(self) -> DockerEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def capabilities(self) -> Capabilities:
        return _CAPABILITIES

    async def ping(self) -> EngineInfo:
        async with self._call("answer a ping") as docker:
            version = await docker._query_json("version", versioned_api=False)
            info = await docker._query_json("info")
        return EngineInfo(
            name="docker",
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            cpus=int(info.get("NCPU") or 0),
            memory_bytes=int(info.get("MemTotal") or 0),
        )

    async def start(self, spec: ContainerSpec) -> ContainerStatus:
        async with self._call(f"start container {spec.name}") as docker:
            created = False
            try:
                reply = await docker._query_json(
                    "containers/create",
                    "POST",
                    params={"name": spec.name},
                    data=_create_config(spec),
                )
                container_id = str(reply["Id"])
                created = True
            except DockerError as exc:
                if exc.status == 404 and "no such image" in exc.message.lower():
                    raise ImageNotFound(spec.image) from exc
                if exc.status != 409:
                    raise
                # The name exists: a previous start (maybe by a server killed half-way)
                # made it. Adopt it if it is the same instance, else refuse.
                existing = await docker._query_json(f"containers/{spec.name}/json")
                labels = existing["Config"].get("Labels") or {}
                if any(labels.get(k) != v for k, v in spec.labels.items()):
                    raise ContainerConflict(
                        f"container name {spec.name} is held by container "
                        f"{existing['Id'][:12]} whose labels differ from the spec's; "
                        "remove it or let the sweeper do so"
                    ) from exc
                container_id = str(existing["Id"])
                if existing["State"].get("Running"):
                    return _status_from_inspect(existing)
            try:
                async with docker._query(f"containers/{container_id}/start", "POST"):
                    pass
            except DockerError as exc:
                if not created or exc.status == _CANNOT_CONNECT:
                    raise
                # A container that cannot start (bad command, bad config) would hold the
                # name and fail the same way on every retry: remove what this call made,
                # so `start` either returns a started container or leaves nothing behind.
                with contextlib.suppress(DockerError, aiohttp.ClientError, TimeoutError):
                    await self._remove(docker, container_id)
                raise EngineError(f"container {spec.name} of image {spec.image} did not start: {exc.message}") from exc
            # Inspect after start: the IP is assigned when the network is attached, at start.
            data = await docker._query_json(f"containers/{container_id}/json")
        return _status_from_inspect(data)

    async def wait(self, container_id: str) -> ExitResult:
        async with self._call(f"wait for container {container_id}") as docker:
            reply = await docker._query_json(
                f"containers/{container_id}/wait",
                "POST",
                params={"condition": "not-running"},
                timeout=self._stream_timeout(),
            )
            # The wait reply has no OOM flag; the state has it until the container is removed.
            data = await self._inspect_raw(docker, container_id)
        oom = bool(data and data["State"].get("OOMKilled"))
        return ExitResult(exit_code=int(reply.get("StatusCode", -1)), oom_killed=oom)

    async def stop(self, container_id: str, *, grace: float, signal: str = "SIGTERM") -> None:
        wanted = _signal_name(signal)
        async with self._call(f"stop container {container_id}") as docker:
            data = await self._inspect_raw(docker, container_id)
            if data is None or not data["State"].get("Running"):
                return
            configured = _signal_name(data["Config"].get("StopSignal") or "SIGTERM")
            if wanted == configured:
                # The daemon's own stop sends the configured signal, waits, then SIGKILLs:
                # the kill happens even if dkos dies during the grace period.
                try:
                    async with docker._query(
                        f"containers/{container_id}/stop",
                        "POST",
                        params={"t": math.ceil(max(grace, 0.0))},  # whole seconds only
                        timeout=aiohttp.ClientTimeout(
                            total=grace + self._request_timeout,
                            sock_connect=self._connect_timeout,
                        ),
                    ):
                        pass  # 204 stopped, 304 already stopped
                except DockerError as exc:
                    if exc.status != 404:
                        raise
                return
            # Engine API 1.41 has no signal parameter on stop: signal, wait, then kill.
            if not await self._kill(docker, container_id, wanted):
                return
            deadline = asyncio.timeout(max(grace, 0.0))
            try:
                async with deadline:
                    await self._wait_not_running(docker, container_id)
                return
            except TimeoutError:
                if not deadline.expired():
                    raise  # the engine, not the grace period, timed out
            if await self._kill(docker, container_id, "SIGKILL"):
                await self._wait_not_running(docker, container_id)

    async def signal(self, container_id: str, signal: str) -> None:
        """Send `signal` to the container's PID 1 (docker-init, which forwards it to the app).

        A container that is gone or not running is not an error: a signal is advice, and
        the caller learns the container's fate from `inspect` or `events`."""
        async with self._call(f"signal container {container_id}") as docker:
            await self._kill(docker, container_id, _signal_name(signal))

    async def destroy(self, container_id: str) -> None:
        async with self._call(f"remove container {container_id}") as docker:
            await self._remove(docker, container_id)

    async def inspect(self, container_id: str) -> ContainerStatus | None:
        async with self._call(f"inspect container {container_id}") as docker:
            data = await self._inspect_raw(docker, container_id)
        return None if data is None else _status_from_inspect(data)

    async def recover(self, labels: Mapping[str, str]) -> list[ContainerStatus]:
        """One list call; an inspect only for stopped containers, whose exit code, OOM flag
        and error the list does not carry. Running containers come from the list alone, so
        their `started_at` is None (the list has only `created_at`)."""
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        async with self._call("list containers") as docker:
            listed = await docker._query_json("containers/json", params={"all": True, "filters": json.dumps(filters)})
            found: list[ContainerStatus] = []
            for item in listed:
                status = _status_from_list(item)
                if status.state is ContainerState.EXITED:
                    data = await self._inspect_raw(docker, status.id)
                    if data is None:
                        continue  # removed since the list call
                    status = _status_from_inspect(data)
                found.append(status)
        return found

    async def exec(self, container_id: str, command: list[str], *, timeout: float) -> ExecResult:
        """Run `command` (no TTY), stdout and stderr interleaved as they arrive.

        On timeout the exec's process keeps running inside the container: the Engine API
        has no way to kill an exec. Commands used as health checks should bound
        themselves (e.g. `timeout 2 ...`)."""
        async with self._call(f"exec in container {container_id}") as docker:
            container = docker.containers.container(container_id)
            output = bytearray()
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    execution = await container.exec(command, stdout=True, stderr=True)
                    async with execution.start(detach=False) as stream:
                        while (message := await stream.read_out()) is not None:
                            output.extend(message.data)
                    # The output can end a moment before the engine records the exit code.
                    while (details := await execution.inspect())["Running"]:
                        await asyncio.sleep(0.01)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # the engine, not the command, timed out: `_call` maps it
                raise EngineError(
                    f"exec {command!r} in container {container_id} did not finish within "
                    f"{timeout:g} s; it may still run inside the container"
                ) from exc
        return ExecResult(
            exit_code=int(details.get("ExitCode") or 0),
            output=output.decode("utf-8", errors="replace"),
        )

    async def stats(self, container_id: str) -> AsyncIterator[ContainerStats]:
        """The engine's stream: a sample at once, then one a second, until the container
        stops (the engine then sends zeroed samples forever; those end the iterator)."""
        async with (
            self._call(f"read the stats of container {container_id}") as docker,
            self._stream(docker, f"containers/{container_id}/stats", {"stream": True}) as response,
        ):
            while line := await response.content.readline():
                sample = _stats_from_json(container_id, json.loads(line))
                if sample is None:
                    return
                yield sample

    async def logs(
        self, container_id: str, *, follow: bool, since_ns: int | None = None
    ) -> AsyncIterator[list[LogLine]]:
        """Batches of lines in the order the engine stored them (json-file: stdout and stderr are
        copied concurrently, so lines written within microseconds on the two streams may
        swap); lines the engine split at 16 KiB are joined again, up to
        `loglines.MAX_JOINED_LINE`. `since_ns` is inclusive and exact.

        A local engine's json-file files are read straight from disk when this process may
        read them (`loglines.JsonFileTail`: it spares dockerd a JSON decode and encode per
        line); otherwise, and with `log_files=False`, the engine's log endpoint is read."""
        joiner = loglines.LineJoiner()
        path = await self._log_file(container_id) if self._log_files else None
        tail = loglines.JsonFileTail(path, since_ns=since_ns) if path else None
        if tail is not None:
            try:
                tail.open()
            except OSError:
                tail = None
        if tail is not None:
            try:
                async for batch in self._follow_file(container_id, tail, follow=follow):
                    if lines := joiner.feed(batch):
                        yield lines
            finally:
                tail.close()
        else:
            async for batch in self._follow_endpoint(container_id, follow=follow, since_ns=since_ns):
                if lines := joiner.feed(batch):
                    yield lines
        # The stream ended cleanly: a last line without a newline is still a line.
        if lines := joiner.flush():
            yield lines

    async def _log_file(self, container_id: str) -> str | None:
        """The container's json-file path, if the engine runs on this machine and has one."""
        if not self.url.startswith("unix://"):
            return None
        async with self._call(f"inspect container {container_id}") as docker:
            data = await self._inspect_raw(docker, container_id)
        if data is None:
            raise EngineError(f"Docker engine at {self.url} has no container {container_id}")
        config = (data.get("HostConfig") or {}).get("LogConfig") or {}
        path = data.get("LogPath")
        return str(path) if path and config.get("Type") == "json-file" else None

    async def _follow_file(
        self, container_id: str, tail: loglines.JsonFileTail, *, follow: bool
    ) -> AsyncIterator[list[LogLine]]:
        """Lines from `tail` as they are written; with `follow`, until the container has
        stopped and its file is read to the end (the engine has written every line by
        the time it reports the stop)."""
        stopped = asyncio.create_task(self._stopped(container_id)) if follow else None
        delay = _LOG_POLL[0]
        try:
            while True:
                done = stopped is not None and stopped.done()
                lines = tail.read()
                if lines:
                    yield lines
                    delay = _LOG_POLL[0]
                    # A long backlog is read a chunk at a time with the event loop let go in
                    # between: the API and the health checks share it.
                    await asyncio.sleep(0)
                    continue
                if stopped is None or done:
                    break
                await asyncio.wait([stopped], timeout=delay)
                delay = min(delay * 2, _LOG_POLL[1])
            if stopped is not None:
                stopped.result()  # an engine lost while waiting: the caller reopens from its position
        finally:
            if stopped is not None:
                stopped.cancel()
                with contextlib.suppress(asyncio.CancelledError, DkosError):
                    await stopped

    async def _stopped(self, container_id: str) -> None:
        """Returns when the container is not running (or is gone)."""
        async with self._call(f"wait for container {container_id}") as docker:
            await self._wait_not_running(docker, container_id)

    async def _follow_endpoint(
        self, container_id: str, *, follow: bool, since_ns: int | None
    ) -> AsyncIterator[list[LogLine]]:
        """Lines from the engine's log endpoint. The body is read in chunks and cut into
        frames by `_split_frames`, not frame by frame: two awaits per line would cap capture
        far below what the engine writes.

        Docker 20.10's follow sends lines again after a rotation, from the last one read
        on. A stream's lines are stamped in the order they are written, each at its own
        nanosecond (no two alike in 200,000 lines written as fast as the engine took them;
        only the parts of a line it split share one), so a line not newer than the last one
        of its stream is such a repeat and is dropped (across the two streams, times may
        interleave)."""
        params: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "timestamps": True,
            "follow": follow,
        }
        if since_ns is not None:
            params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        newest = dict.fromkeys(LogStream, (-1, False))
        async with self._call(f"read the logs of container {container_id}") as docker:
            buffer = bytearray()
            async for chunk in self._log_body(docker, container_id, params):
                buffer += chunk
                frames, used = _split_frames(buffer)
                del buffer[:used]
                yield _without_repeats(_frame_lines(frames), newest)
            if buffer:
                raise asyncio.IncompleteReadError(bytes(buffer), None)

    async def _log_body(
        self, docker: aiodocker.Docker, container_id: str, params: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """The log stream's body, in chunks as they arrive.

        Over a unix socket or plain TCP the request is HTTP/1.0, on a connection of its own:
        the engine then sends the body as it is, without chunked encoding. Over HTTP/1.1 it
        sends every frame (every line) as an HTTP chunk, and decoding those in aiohttp cost
        ≈ 10 µs a line — most of capture's time. TLS endpoints go through aiohttp."""
        opened = await self._open_raw()
        if opened is None:
            async with self._stream(docker, f"containers/{container_id}/logs", params) as response:
                while chunk := await response.content.readany():
                    yield chunk
            return
        reader, writer = opened
        try:
            query = urlencode({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()})
            writer.write(
                f"GET /containers/{quote(container_id)}/logs?{query} HTTP/1.0\r\nHost: docker\r\n\r\n".encode()
            )
            status_line = await reader.readline()
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise aiohttp.ServerDisconnectedError(f"no HTTP answer to a log request: {status_line[:100]!r}")
            while await reader.readline() not in (b"\r\n", b"\n", b""):
                pass  # the headers: nothing in them changes how the body is read
            status = int(parts[1])
            if status != 200:
                body = await reader.read()
                try:
                    message = str(json.loads(body).get("message", ""))
                except ValueError:
                    message = body[:200].decode(errors="replace")
                raise DockerError(status, {"message": message})  # type: ignore[arg-type]
            while chunk := await reader.read(1 << 16):
                yield chunk
        except OSError as exc:  # a reset connection: `_call` maps aiohttp's kind
            raise aiohttp.ClientConnectionError(str(exc) or type(exc).__name__) from exc
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _open_raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A fresh connection to the engine for one raw request; None for TLS endpoints."""
        url = self.url
        if url.startswith("unix://"):
            connect = asyncio.open_unix_connection(url.removeprefix("unix://"), limit=1 << 20)
        elif url.startswith(("tcp://", "http://")):
            host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
            connect = asyncio.open_connection(host, int(port), limit=1 << 20)
        else:
            return None
        try:
            return await asyncio.wait_for(connect, self._connect_timeout)
        except OSError as exc:
            raise aiohttp.ClientConnectionError(str(exc)) from exc

    async def events(self, labels: Mapping[str, str]) -> AsyncIterator[EngineEvent]:
        """Container events for `labels`, from now on. The engine never ends this stream by
        itself, so its end means the connection dropped: that raises EngineUnavailable.

        Exec events (`exec_create`, `exec_start`, `exec_die`) are dropped: dkos' own command
        health checks cause them and they say nothing about the container's state."""
        filters = {
            "type": ["container"],
            "label": [f"{key}={value}" for key, value in labels.items()],
        }
        async with (
            self._call("follow container events") as docker,
            self._stream(docker, "events", {"filters": json.dumps(filters)}) as response,
        ):
            while line := await response.content.readline():
                event = _event_from_json(json.loads(line))
                if event is not None:
                    yield event
            raise aiohttp.ServerDisconnectedError("the engine closed the event stream")

    async def close(self) -> None:
        docker, self._docker = self._docker, None
        if docker is not None:
            await docker.close()
            await docker.connector.close()  # ours (see `_unlimited_connector`): aiodocker leaves it open

    # --- the boundary -----------------------------------------------------------------

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            connector = _unlimited_connector(self.url)
            self._docker = aiodocker.Docker(
                # With our own connector the URL only names the host in request URLs, as
                # aiodocker's own unix connector does.
                url="unix://localhost" if connector else self.url,
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._request_timeout, sock_connect=self._connect_timeout),
            )
        return self._docker

    @contextlib.asynccontextmanager
    async def _call(self, action: str) -> AsyncIterator[aiodocker.Docker]:
        """Hand out the client and map what escapes into the dkos error tree, once.

        `action` completes "Docker engine ... could not ___" in the messages."""
        docker = self._client()
        try:
            yield docker
        except DkosError:
            raise
        except (
            aiohttp.ClientConnectionError,
            aiohttp.ClientPayloadError,
            asyncio.IncompleteReadError,
            TimeoutError,
        ) as exc:
            raise await self._unavailable(docker, action, exc) from exc
        except DockerError as exc:
            if exc.status == _CANNOT_CONNECT:
                raise await self._unavailable(docker, action, exc) from exc
            raise EngineError(f"Docker engine at {self.url} could not {action}: {exc.message}") from exc
        except RuntimeError as exc:
            # aiohttp's "Session is closed": another call retired this client meanwhile.
            if "closed" not in str(exc):
                raise
            raise await self._unavailable(docker, action, exc) from exc
        except aiohttp.ClientError as exc:
            raise EngineError(f"Docker engine at {self.url} could not {action}: {exc}") from exc

    async def _unavailable(self, docker: aiodocker.Docker, action: str, exc: BaseException) -> EngineUnavailable:
        # Drop the client so the next call connects afresh. Streams still open on it end
        # with EngineUnavailable too: they ran over the connection that just failed.
        if self._docker is docker:
            self._docker = None
            with contextlib.suppress(Exception):
                await docker.close()
                await docker.connector.close()
        reason = str(exc) or type(exc).__name__
        return EngineUnavailable(
            f"Docker engine at {self.url} did not answer (could not {action}): {reason}; "
            "dkos reconnects on the next call"
        )

    # --- calls shared by several methods (raise raw aiodocker errors; `_call` maps them) ---

    def _stream_timeout(self) -> aiohttp.ClientTimeout:
        """No total or read limit: streams and waits last as long as the container."""
        return aiohttp.ClientTimeout(sock_connect=self._connect_timeout)

    @contextlib.asynccontextmanager
    async def _stream(
        self, docker: aiodocker.Docker, path: str, params: Mapping[str, Any]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET whose body is read as it comes (logs, stats, events)."""
        async with docker._query(path, params=params, timeout=self._stream_timeout()) as response:
            try:
                yield response
            finally:
                # aiodocker's _query leaves the response open: a stream its reader leaves
                # early (a consumer that stops iterating) would hold its connection forever.
                response.close()

    async def _inspect_raw(self, docker: aiodocker.Docker, container_id: str) -> Any:
        try:
            return await docker._query_json(f"containers/{container_id}/json")
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    async def _kill(self, docker: aiodocker.Docker, container_id: str, signal: str) -> bool:
        """Send a signal; False when the container is gone (404) or not running (409)."""
        try:
            async with docker._query(f"containers/{container_id}/kill", "POST", params={"signal": signal}):
                return True
        except DockerError as exc:
            if exc.status in (404, 409):
                return False
            raise

    async def _wait_not_running(self, docker: aiodocker.Docker, container_id: str) -> None:
        try:
            await docker._query_json(
                f"containers/{container_id}/wait",
                "POST",
                params={"condition": "not-running"},
                timeout=self._stream_timeout(),
            )
        except DockerError as exc:
            if exc.status != 404:
                raise

    async def _remove(self, docker: aiodocker.Docker, container_id: str) -> None:
        try:
            async with docker._query(
                f"containers/{container_id}",
                "DELETE",
                params={"force": True, "v": True},
                timeout=self._stream_timeout(),
            ):
                pass
        except DockerError as exc:
            # 404: gone already. 409: "removal already in progress" — someone else removes it.
            if exc.status not in (404, 409):
                raise


# --- pure translation between dkos' types and the Engine API's JSON -----------------------


def _create_config(spec: ContainerSpec) -> dict[str, Any]:
    host_config: dict[str, Any] = {
        "Init": True,
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {
            "Type": "json-file",
            "Config": {
                "max-size": spec.log_rotation.max_size,
                "max-file": str(spec.log_rotation.max_files),
            },
        },
    }
    if spec.cpus is not None:
        host_config["NanoCpus"] = round(spec.cpus * 1e9)
    if spec.memory_mib is not None:
        # MemorySwap equal to Memory: the limit holds, the container cannot swap past it.
        host_config["Memory"] = host_config["MemorySwap"] = spec.memory_mib * 1024 * 1024
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Labels": dict(spec.labels),
        "ExposedPorts": {f"{p.container_port}/{p.protocol}": {} for p in spec.ports},
        "StopSignal": spec.stop_signal,
        "HostConfig": host_config,
    }
    # Kubernetes semantics, which Docker's create shares: `command` replaces the
    # entrypoint (and drops the image's CMD), `args` replaces the CMD; None keeps the image's.
    if spec.command is not None:
        config["Entrypoint"] = list(spec.command)
    if spec.args is not None:
        config["Cmd"] = list(spec.args)
    return config


def _status_from_inspect(data: Mapping[str, Any]) -> ContainerStatus:
    state = data.get("State") or {}
    status = str(state.get("Status", ""))
    kind = _STATES.get(status, ContainerState.EXITED)
    stopped = kind is ContainerState.EXITED
    error = str(state.get("Error") or ("paused" if status == "paused" else ""))
    return ContainerStatus(
        id=str(data["Id"]),
        name=str(data.get("Name", "")).lstrip("/"),
        labels=dict((data.get("Config") or {}).get("Labels") or {}),
        state=kind,
        ip=_ip(data.get("NetworkSettings")),
        exit_code=int(state.get("ExitCode", 0)) if stopped else None,
        oom_killed=bool(state.get("OOMKilled")),
        error=error,
        started_at=_parse_time(state.get("StartedAt")),
        finished_at=_parse_time(state.get("FinishedAt")) if stopped else None,
        created_at=_parse_time(data.get("Created")),
    )


def _status_from_list(item: Mapping[str, Any]) -> ContainerStatus:
    names = item.get("Names") or [""]
    created = item.get("Created")
    return ContainerStatus(
        id=str(item["Id"]),
        name=str(names[0]).lstrip("/"),
        labels=dict(item.get("Labels") or {}),
        state=_STATES.get(str(item.get("State", "")), ContainerState.EXITED),
        ip=_ip(item.get("NetworkSettings")),
        created_at=float(created) if created else None,
    )


def _ip(network_settings: Mapping[str, Any] | None) -> str | None:
    """The default bridge's address, else the first attached network's (list and inspect
    both carry `Networks`; only inspect has the top-level `IPAddress`)."""
    if not network_settings:
        return None
    if address := network_settings.get("IPAddress"):
        return str(address)
    for network in (network_settings.get("Networks") or {}).values():
        if address := (network or {}).get("IPAddress"):
            return str(address)
    return None


def _parse_time(value: object) -> float | None:
    """RFC 3339 (nanoseconds allowed) to epoch seconds; Go's zero time and junk to None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # 3.11+: accepts "Z" and 9 fraction digits
    except ValueError:
        return None
    if parsed.year < 1970:
        return None
    return parsed.timestamp()


def _signal_name(signal: str) -> str:
    """The canonical name: `TERM`, `sigterm`, `15` and `SIGTERM` all become `SIGTERM`."""
    name = signal.strip().upper()
    if name.isdigit():
        try:
            return posix_signal.Signals(int(name)).name
        except ValueError:
            return name
    return name if name.startswith("SIG") else f"SIG{name}"


def _stats_from_json(container_id: str, data: Mapping[str, Any]) -> ContainerStats | None:
    """One stats sample, or None for the zeroed samples of a stopped container."""
    read_at = _parse_time(data.get("read"))
    if read_at is None:
        return None
    cpu = data.get("cpu_stats") or {}
    cpu_usage = cpu.get("cpu_usage") or {}
    memory = data.get("memory_stats") or {}
    networks = (data.get("networks") or {}).values()
    blkio = (data.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    return ContainerStats(
        container_id=container_id,
        time=read_at,
        cpu_total_ns=int(cpu_usage.get("total_usage") or 0),
        system_cpu_ns=int(cpu.get("system_cpu_usage") or 0),
        online_cpus=int(cpu.get("online_cpus") or len(cpu_usage.get("percpu_usage") or [])),
        memory_bytes=_working_set(memory),
        memory_limit_bytes=int(memory.get("limit") or 0),
        rx_bytes=sum(int(n.get("rx_bytes") or 0) for n in networks),
        tx_bytes=sum(int(n.get("tx_bytes") or 0) for n in networks),
        blkio_read_bytes=sum(int(e.get("value") or 0) for e in blkio if _op(e) == "read"),
        blkio_write_bytes=sum(int(e.get("value") or 0) for e in blkio if _op(e) == "write"),
    )


def _working_set(memory: Mapping[str, Any]) -> int:
    """Memory in use minus the reclaimable page cache, as `docker stats` shows it.

    Raw `usage` counts the page cache (cgroup v1), so a container that only reads files
    would look close to its limit and trip memory alarms; the kernel reclaims that cache
    before it OOM-kills anything."""
    usage = int(memory.get("usage") or 0)
    details = memory.get("stats") or {}
    # cgroup v1 names it total_inactive_file, v2 inactive_file.
    inactive = details.get("total_inactive_file", details.get("inactive_file"))
    if inactive is not None and int(inactive) < usage:
        return usage - int(inactive)
    return usage


def _op(entry: Mapping[str, Any]) -> str:
    return str(entry.get("op", "")).lower()  # "Read" on cgroup v1, "read" on v2


def _event_from_json(data: Mapping[str, Any]) -> EngineEvent | None:
    if data.get("Type") != "container":
        return None
    action = str(data.get("Action", ""))
    if action.startswith("exec_"):
        return None
    if action.startswith("health_status"):
        kind = EngineEventKind.HEALTH
    else:
        kind = _EVENT_KINDS.get(action, EngineEventKind.OTHER)
    actor = data.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    nanos = data.get("timeNano")
    return EngineEvent(
        kind=kind,
        container_id=str(actor.get("ID", "")),
        labels={k: str(v) for k, v in attributes.items() if k not in _EVENT_ATTRIBUTES},
        time=nanos / 1e9 if nanos else float(data.get("time") or 0),
    )


def _split_frames(buffer: bytes | bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """The complete frames at the head of `buffer` (stream id, payload), and how many bytes
    they took; an incomplete frame at the end waits for the next chunk."""
    frames: list[tuple[int, bytes]] = []
    pos, size = 0, len(buffer)
    header = _FRAME_HEADER.size
    while size - pos >= header:
        stream_id, length = _FRAME_HEADER.unpack_from(buffer, pos)
        end = pos + header + length
        if end > size:
            break
        frames.append((stream_id, bytes(buffer[pos + header : end])))
        pos = end
    return frames, pos


def _without_repeats(lines: list[LogLine], newest: dict[LogStream, tuple[int, bool]]) -> list[LogLine]:
    """`lines` less those not newer than the newest line seen on their stream; the parts
    of a line the engine split share its time, so a part after a `partial` one is kept.
    `newest` (time, partial) is updated."""
    kept = []
    for line in lines:
        ts, partial = newest[line.stream]
        if line.time_ns > ts or (partial and line.time_ns == ts):
            newest[line.stream] = (line.time_ns, line.partial)
            kept.append(line)
    return kept


def _frame_lines(frames: list[tuple[int, bytes]]) -> list[LogLine]:
    """Frames of a log stream asked `timestamps=true` → lines; stdin (0) never carries output."""
    lines: list[LogLine] = []
    append = lines.append
    seconds_of = loglines.epoch_of_second
    for stream_id, payload in frames:
        stream = _STREAMS.get(stream_id)
        if stream is None:
            continue
        # The engine's fixed-width stamp (`2026-11-25T19:44:20.123456789Z `), parsed in
        # place: this runs for every line captured.
        seconds = seconds_of(payload[:19]) if payload[29:31] == b"Z " else None
        if seconds is not None:
            at: int | None = seconds * 1_000_000_000 + int(payload[20:29])
            text = payload[31:]
        else:
            stamp, _, text = payload.partition(b" ")
            at = loglines.stamp_ns(stamp)
        if at is None:
            at = time.time_ns()
        if text[-1:] == b"\n":
            append(LogLine(at, stream, text[:-1]))
        else:
            append(LogLine(at, stream, text, partial=True))  # the engine split it; the rest follows
    return lines
