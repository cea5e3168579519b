"""Capture: the engine's log stream of every container this server owns → the log store.

One follower task per container reads the engine's stream from the container's stored
position (`store.Position`) and appends rows to a shared buffer; one writer task stores
the buffer and the positions it reached in one transaction, as soon as there is something
to store (after a short gathering delay, so a busy second becomes a few big transactions).
A follower whose stream breaks (the engine restarts or goes away) waits and reopens it from
its position; one whose container has stopped reads to the end and marks the container
`done`. Which containers exist comes from the engine itself (`recover` by the `dkos.owner`
label, on every `started` event and every `discover_interval`), not from the state
database: a container started while the server was down, or one that exited before the
server noticed, is read from its first line.

`DrainingEngine` closes the last gap: the reconciler removes a stopped container at once,
and a removed container's logs are gone, so its `destroy` first lets capture read the
container to its end (bounded by `drain_timeout`). The reconciler is none the wiser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from itertools import repeat
from types import TracebackType
from typing import Self

from dkos.core.errors import EngineError, EngineUnavailable
from dkos.core.settings import Settings
from dkos.engines import base
from dkos.engines.base import ContainerState, ContainerStatus, Engine
from dkos.logs import lines
from dkos.logs.store import LogStore, Position, Row, row_flags

log = logging.getLogger(__name__)

_STREAM_INDEX = {base.LogStream.STDOUT: 0, base.LogStream.STDERR: 1}


class Capture:
    """An async context manager: entering starts discovery, the followers and the writer;
    leaving stops them and stores what was read."""

    def __init__(self, store: LogStore, engine: Engine, *, owner: str, settings: Settings) -> None:
        self.store = store
        self.engine = engine
        self.owner = owner
        self.max_line_bytes = settings.logs_max_line_bytes
        self.flush_delay = settings.logs_flush_delay
        self.batch_lines = settings.logs_batch_lines
        self.discover_interval = settings.logs_discover_interval
        self.drain_timeout = settings.logs_drain_timeout
        self.retry_max = settings.logs_retry_max_delay
        self._positions: dict[str, Position] = {}
        """Each container's position as of the last flush (or as stored, at start)."""
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._rows: list[Row] = []
        """Read, not yet stored; one list for good (followers hold its `append`)."""
        self._live: dict[str, list[int]] = {}
        """Each followed container's position as far as read: [engine time ns, lines at that time]."""
        self._touched: set[str] = set()
        """Containers whose live position moved since the last flush."""
        self._done: dict[str, Position] = {}
        """Containers read to the end since the last flush."""
        self._pending: dict[str, Position] = {}
        """Positions taken by a flush whose write failed, to go with the rows put back."""
        self._has_rows = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._positions = await self.store.positions()
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="logs-writer"),
            asyncio.create_task(self._discover_loop(), name="logs-discover"),
            asyncio.create_task(self._events_loop(), name="logs-events"),
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        followers = list(self._followers.values())
        for task in [*followers, *self._tasks]:
            task.cancel()
        await asyncio.gather(*followers, *self._tasks, return_exceptions=True)
        self._followers.clear()
        # Rows and positions in the buffer agree (a position moves only after its rows are
        # in), so storing them now is as good as at any other moment.
        with contextlib.suppress(Exception):
            await self.flush()

    # discovery -------------------------------------------------------------------------------

    async def _discover_loop(self) -> None:
        while True:
            try:
                listed = await self.engine.recover({base.LABEL_OWNER: self.owner})
                self.sync(listed)
                await self._forget_removed({c.id for c in listed})
            except Exception as exc:
                log.debug("log capture could not list containers: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.discover_interval)
            self._wake.clear()

    async def _events_loop(self) -> None:
        """A started container is followed at once, not at the next discovery tick."""
        delay = 0.5
        while True:
            try:
                async for event in self.engine.events({base.LABEL_OWNER: self.owner}):
                    delay = 0.5
                    if event.kind is base.EngineEventKind.STARTED:
                        self._wake.set()
            except Exception as exc:
                log.debug("log capture lost the engine's events: %s", exc)
            self._wake.set()  # whatever happened meanwhile, look again when it is back
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    def sync(self, containers: list[ContainerStatus]) -> None:
        """Follow every container not followed yet whose lines are not all stored."""
        for container in containers:
            task = self._followers.get(container.id)
            if task is not None and not task.done():
                continue
            if self._positions.get(container.id, Position()).done:
                continue
            self._start(container)

    async def _forget_removed(self, listed: set[str]) -> None:
        """Positions of containers read to the end and since removed are of no more use."""
        gone = [cid for cid, p in self._positions.items() if p.done and cid not in listed and cid not in self._done]
        if gone:
            await self.store.forget_positions(gone)
            for cid in gone:
                self._positions.pop(cid, None)
                self._live.pop(cid, None)
                self._followers.pop(cid, None)

    def _start(self, container: ContainerStatus) -> asyncio.Task[None]:
        task = asyncio.create_task(self._follow(container), name=f"logs-{container.name}")
        self._followers[container.id] = task
        return task

    # following -------------------------------------------------------------------------------

    async def _follow(self, container: ContainerStatus) -> None:
        labels = container.labels
        project = labels.get(base.LABEL_PROJECT, "")
        app = labels.get(base.LABEL_APP, "")
        instance = labels.get(base.LABEL_INSTANCE, container.name)
        try:
            version = int(labels.get(base.LABEL_VERSION, "0"))
        except ValueError:
            version = 0
        cid = container.id
        delay = 0.2
        while True:
            try:
                await self._read(cid, project, app, instance, version)
                status = await self.engine.inspect(cid)
                if status is None or status.state is ContainerState.EXITED:
                    self._finish(cid)
                    return
                # The stream ended while the container runs (the engine closed it), or before
                # it started (found between the engine's create and start): look again.
            except asyncio.CancelledError:
                raise
            except EngineUnavailable as exc:
                log.debug("log stream of %s broke: %s", instance, exc)
            except EngineError as exc:
                status = await self._inspect_quietly(cid)
                if status is None:
                    log.warning("container of %s is gone before its logs were read to the end: %s", instance, exc)
                    self._finish(cid)
                    return
                log.warning("log stream of %s failed: %s", instance, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def _read(self, cid: str, project: str, app: str, instance: str, version: int) -> None:
        # The live position is a mutable [time, count] (one object a container, not one per
        # line); `flush` copies it into a `Position` at the moment it takes the rows. A stream
        # reopened in this process resumes from it: lines read are in the buffer if not stored.
        stored = self._positions.get(cid, Position())
        live = self._live.setdefault(cid, [stored.ts_ns, stored.count])
        start = Position(live[0], live[1])
        last_ts, seen = -1, 0
        stream = self.engine.logs(cid, follow=True, since_ns=start.ts_ns or None)
        async for batch in stream:
            if start.count:
                # The first lines again may be ones stored before: the engine's `since` is
                # inclusive, and several lines can share the stored line's time.
                for index, line in enumerate(batch):
                    ts = line.time_ns
                    last_ts, seen = (ts, seen + 1) if ts == last_ts else (ts, 1)
                    if not start.already_stored(ts, seen):
                        batch = batch[index:]
                        start = Position()  # lines come back in order: the rest are new
                        break
                else:
                    continue
            self._rows += self._to_rows(batch, project, app, instance, version)
            _advance(live, batch)
            self._touched.add(cid)
            if not self._has_rows.is_set():
                self._has_rows.set()
            if len(self._rows) >= 4 * self.batch_lines:  # the writer is behind: wait for it
                self._room.clear()
                await self._room.wait()

    def _to_rows(self, batch: list[base.LogLine], project: str, app: str, instance: str, version: int) -> list[Row]:
        """Lines → rows: escaped, and cut into pieces when over-long. One C-speed pass over
        the whole batch when no line needs either, which is nearly always."""
        times, streams, datas, partials = zip(*batch, strict=True)
        clean = lines.clean_texts(datas, max_bytes=self.max_line_bytes)
        if clean is not None and not any(partials):
            n = len(batch)
            return list(
                zip(
                    repeat(project, n), repeat(app, n), repeat(instance, n), repeat(version, n), times,
                    map(_STREAM_INDEX.__getitem__, streams), repeat(0, n), repeat(0, n), clean,
                    strict=True,
                )
            )  # fmt: skip
        rows: list[Row] = []
        for line in batch:
            index = _STREAM_INDEX[line.stream]
            for piece in lines.split(line.data, max_bytes=self.max_line_bytes, continued=line.partial):
                flags = row_flags(escaped=piece.escaped, more=piece.more)
                rows.append((project, app, instance, version, line.time_ns, index, piece.part, flags, piece.text))
        return rows

    def _finish(self, cid: str) -> None:
        live = self._live.get(cid)
        position = Position(live[0], live[1]) if live else self._positions.get(cid, Position())
        self._positions[cid] = self._done[cid] = Position(position.ts_ns, position.count, done=True)
        self._has_rows.set()

    async def _inspect_quietly(self, cid: str) -> ContainerStatus | None:
        try:
            return await self.engine.inspect(cid)
        except EngineError:
            return ContainerStatus(cid, "", {}, ContainerState.RUNNING)  # unknown: keep trying

    # writing ---------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._has_rows.wait()
            if len(self._rows) < self.batch_lines:
                await asyncio.sleep(self.flush_delay)  # gather a batch; bounds the added latency
            try:
                await self.flush()
            except Exception:
                log.exception("could not store log lines; retrying")
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        """Store what was read so far, with the positions it brings each container to."""
        async with self._flush_lock:
            self._has_rows.clear()
            rows = self._rows[:]
            self._rows.clear()
            positions = dict(self._pending)
            for cid in self._touched - self._done.keys():
                ts_ns, count = self._live[cid]
                positions[cid] = self._positions[cid] = Position(ts_ns, count)
            self._touched.clear()
            positions.update(self._done)
            self._done.clear()
            self._pending.clear()
            self._room.set()
            if not rows and not positions:
                return
            try:
                await self.store.write(rows, positions)
            except BaseException:
                # Put them back in front of what came meanwhile: order and positions hold.
                self._rows[:0] = rows
                self._pending = {**positions, **self._pending}
                self._has_rows.set()
                raise

    # draining ---------------------------------------------------------------------------------

    async def drain(self, ref: str) -> None:
        """Read a container's logs to the end and store them, before the container goes away.

        `ref` is a container id or name. A running container is killed first (its removal
        would kill it anyway), so that its stream ends; the wait is bounded by `drain_timeout`."""
        try:
            status = await self.engine.inspect(ref)
        except EngineError:
            return
        if status is None or status.labels.get(base.LABEL_OWNER) != self.owner:
            return
        if self._positions.get(status.id, Position()).done:
            return
        if status.state is ContainerState.CREATED:
            # Never started, so it wrote nothing; its follower would wait for it to start.
            task = self._followers.pop(status.id, None)
            if task is not None:
                task.cancel()
            return
        if status.state is ContainerState.RUNNING:
            with contextlib.suppress(EngineError):
                await self.engine.signal(status.id, "SIGKILL")
        task = self._followers.get(status.id)
        if task is None or task.done():
            task = self._start(status)
        try:
            await asyncio.wait_for(asyncio.shield(task), self.drain_timeout)
        except TimeoutError:
            log.warning(
                "logs of %s not read to the end within %gs; removing it anyway", status.name, self.drain_timeout
            )
        with contextlib.suppress(Exception):
            await self.flush()


def _advance(live: list[int], batch: list[base.LogLine]) -> None:
    """The live position after `batch`: the last line's time, and how many lines read carry it."""
    last = batch[-1].time_ns
    same = 0
    for line in reversed(batch):
        if line.time_ns != last:
            break
        same += 1
    if same == len(batch) and last == live[0]:
        live[1] += same
    else:
        live[0], live[1] = last, same


class DrainingEngine:
    """The `Engine` protocol with one change: `destroy` drains the container's logs first.

    The server hands this to the reconciler, so every removal dkos makes — a stopped
    instance, a crashed one, an orphan — keeps the container's last lines."""

    def __init__(self, inner: Engine, capture: Capture) -> None:
        self._inner = inner
        self._capture = capture

    async def destroy(self, container_id: str) -> None:
        await self._capture.drain(container_id)
        await self._inner.destroy(container_id)

    def capabilities(self) -> base.Capabilities:
        return self._inner.capabilities()

    async def ping(self) -> base.EngineInfo:
        return await self._inner.ping()

    async def start(self, spec: base.ContainerSpec) -> ContainerStatus:
        return await self._inner.start(spec)

    async def wait(self, container_id: str) -> base.ExitResult:
        return await self._inner.wait(container_id)

    async def stop(self, container_id: str, *, grace: float, signal: str = "SIGTERM") -> None:
        await self._inner.stop(container_id, grace=grace, signal=signal)

    async def signal(self, container_id: str, signal: str) -> None:
        await self._inner.signal(container_id, signal)

    async def inspect(self, container_id: str) -> ContainerStatus | None:
        return await self._inner.inspect(container_id)

    async def recover(self, labels: Mapping[str, str]) -> list[ContainerStatus]:
        return await self._inner.recover(labels)

    async def exec(self, container_id: str, command: list[str], *, timeout: float) -> base.ExecResult:
        return await self._inner.exec(container_id, command, timeout=timeout)

    def stats(self, container_id: str) -> AsyncIterator[base.ContainerStats]:
        return self._inner.stats(container_id)

    def logs(
        self, container_id: str, *, follow: bool, since_ns: int | None = None
    ) -> AsyncIterator[list[base.LogLine]]:
        return self._inner.logs(container_id, follow=follow, since_ns=since_ns)

    def events(self, labels: Mapping[str, str]) -> AsyncIterator[base.EngineEvent]:
        return self._inner.events(labels)

    async def close(self) -> None:
        await self._inner.close()
