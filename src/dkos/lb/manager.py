"""`LoadBalancer`: makes the HAProxy that runs match an `LbConfig`, reloading only when it must.

Where it sits: orchestration computes an `LbConfig` from apps and instances
(`orchestration.routing`) and calls `apply` whenever it may have changed (it is cheap when
nothing did); the deployer uses `wait_drained` between draining and removing an instance;
metrics read `stats`. Underneath: `render` (pure), `process` (the HAProxy master) and
`runtime` (the admin socket).

One `apply`, serialised with every other. It renders, then takes one of two paths:

- Anything but server lines changed (frontends, routes, TLS, backends), or HAProxy is not
  running: write the new files to temporary files and validate them with `haproxy -c`; if
  HAProxy refuses them, stop there (the running configuration keeps serving, the error is
  kept in `status().last_error` and raised). Otherwise dump the server state, rename the
  files over the old ones and reload through the master socket (or start HAProxy); a
  reload that brings up no worker (a port already taken) puts the old files back. Then
  bring the servers in line, as below.
- Only servers changed (or nothing): bring them in line through the runtime API first;
  then, if the bytes differ, rename the new files in without a reload, so a restarted
  HAProxy finds the same servers. No `haproxy -c` here: everything but the server lines is
  what HAProxy already runs, and HAProxy has just accepted each server line's address and
  options through `add server` (a server it refuses raises before the file is written).
  `haproxy -c` costs ≈ 50 ms, ≈ 0.3 s with 200 certificates, and every instance health
  change would wait behind it. With nothing changed an apply costs one
  `show servers state` and touches no file.

Bringing servers in line: add what is missing (HAProxy creates it in maint), set ready /
drain / maint or a new address, and take out what is gone (maint, then `del server`;
one with requests still in flight stays in maint and is retried by the next apply). New
servers are added before old ones go, so capacity only grows within a pass.

Routes: a host-route change goes through a reload of the map files, not `add map`/`set
map`. Routes change when apps or their domains change, which almost always adds or removes
a backend, and backends cannot be added at run time anyway; one path keeps the files and
the worker in step. Servers change on every deploy and health change and never reload
(a reload costs a few failed requests under load: idle keep-alive connections close).

HAProxy outlives this object: leaving the `async with` block stops supervising and leaves
HAProxy serving; the next `LoadBalancer` on the same run dir adopts it. `stop()` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from dkos.core.errors import Conflict, DkosError, NotFound
from dkos.lb import model, process, render, runtime

log = logging.getLogger(__name__)

DRAIN_POLL_INTERVAL = 0.05
"""How often `wait_drained` reads a server's current sessions."""


@dataclass(frozen=True)
class ApplyResult:
    """What one `apply` did. Server references read `backend/server`."""

    digest: str
    """SHA-256 of the files HAProxy reads (config and maps) after this apply."""
    generation: int
    """How many times new files were installed since this LoadBalancer started."""
    installed: bool
    """New files replaced the old ones (with or without a reload)."""
    reloaded: bool
    """HAProxy reloaded (or started): frontends, routes, TLS or backends changed."""
    reload_seconds: float | None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    """Servers whose state or address was set, as `backend/server=state`."""
    not_removed: tuple[str, ...] = ()
    """Servers HAProxy would not delete yet (requests in flight): left in maint, retried by the next apply."""
    seconds: float = 0.0


@dataclass(frozen=True)
class LbStatus:
    running: bool
    pid: int | None
    """The HAProxy master's pid."""
    adopted: bool
    """The master was running before this LoadBalancer started (it was not started by it)."""
    generation: int
    digest: str | None
    """SHA-256 of the installed files; None before the first install."""
    last_reload_at: float | None
    """Wall-clock time (epoch seconds) of the last reload or start by this LoadBalancer."""
    last_reload_seconds: float | None
    last_error: str | None
    """Why the last apply failed; None once one succeeds."""
    restarts: int
    """Times HAProxy died and was started again by supervision."""


@dataclass
class _Installed:
    digest: str | None = None
    loaded_structure: str | None = None
    """The structure digest the running worker loaded; None when unknown (adopted without a marker)."""
    generation: int = 0
    last_reload_at: float | None = None
    last_reload_seconds: float | None = None


class LoadBalancer:
    """The HAProxy of one run directory (one per host).

    `async with LoadBalancer(run_dir=..., haproxy=...) as lb:` adopts the HAProxy already
    serving this run dir, or starts one from the files in it; with no files yet, HAProxy
    starts on the first `apply`."""

    def __init__(self, run_dir: Path, haproxy: str = "/usr/sbin/haproxy") -> None:
        self.paths = render.RenderPaths(run_dir.absolute())
        self.paths.check()
        self.runtime = runtime.RuntimeApi(self.paths.admin_socket)
        self.process = process.HaproxyProcess(self.paths, haproxy=haproxy, on_restart=self._after_restart)
        self._lock = asyncio.Lock()
        self._installed = _Installed()
        self._config: model.LbConfig | None = None
        """The last config whose files were installed: what a restarted HAProxy is brought back to."""
        self._last_error: str | None = None
        self._run_lock: IO[bytes] | None = None

    async def __aenter__(self) -> Self:
        self.paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._run_lock = _lock_run_dir(self.paths.run_dir)
        try:
            self._installed.digest = _disk_digest(self.paths)
            if await self.process.adopt():
                self._installed.loaded_structure = _read_marker(self.paths)
            elif self.paths.config.exists():
                # A reboot, or HAProxy died while dkos was down: serve what was last applied.
                try:
                    await self._start()
                except process.HaproxyFailed as exc:
                    # dkos still starts (the API must answer); the next apply starts HAProxy again.
                    log.error("HAProxy did not start from %s: %s", self.paths.config, exc)
                    self._last_error = str(exc)
            if self.process.pid is not None:
                self.process.supervise()
        except BaseException:
            self._release()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The data plane keeps serving without the control plane; see the module docstring.
        await self.process.close()
        self._release()

    async def stop(self) -> None:
        """Stop HAProxy itself (tests, uninstall); the run dir keeps its files."""
        async with self._lock:
            await self.process.stop()

    # --- apply --------------------------------------------------------------------------------

    async def apply(self, config: model.LbConfig) -> ApplyResult:
        """Make HAProxy serve `config`; see the module docstring for the steps.

        Raises ValueError for a config that contradicts itself (`render`), ConfigRejected
        when `haproxy -c` refuses it, HaproxyFailed when a reload or start fails, and
        CommandFailed / HaproxyUnavailable from the runtime API. After any of them the
        previous configuration keeps serving and `status().last_error` says why; server
        changes made before a runtime error stay, and the next apply finishes the rest."""
        async with self._lock:
            try:
                result = await self._apply(config)
            except (DkosError, ValueError) as exc:
                self._last_error = str(exc)
                raise
            self._last_error = None
            return result

    async def _apply(self, config: model.LbConfig) -> ApplyResult:
        started = time.monotonic()
        rendered = render.render(config, paths=self.paths)
        state = self._installed
        if self.process.running and rendered.structure_digest == state.loaded_structure:
            # Servers only: the runtime API first, so a server leaves rotation before any file
            # is written; the file follows, for a later restart of HAProxy.
            added, removed, changed, not_removed = await self._converge(config)
            installed, reloaded = await self._install(rendered, config)
        else:
            # New backends must exist before servers can be added to them.
            installed, reloaded = await self._install(rendered, config)
            added, removed, changed, not_removed = await self._converge(config)
        return ApplyResult(
            digest=rendered.digest,
            generation=state.generation,
            installed=installed,
            reloaded=reloaded,
            reload_seconds=state.last_reload_seconds if reloaded else None,
            added=added,
            removed=removed,
            changed=changed,
            not_removed=not_removed,
            seconds=time.monotonic() - started,
        )

    async def _install(self, rendered: render.RenderedConfig, config: model.LbConfig) -> tuple[bool, bool]:
        """Files and reload. Returns (new files installed, HAProxy reloaded or started)."""
        state = self._installed
        running = self.process.running
        new_files = rendered.digest != state.digest
        needs_reload = rendered.structure_digest != state.loaded_structure
        if not new_files and running and not needs_reload:
            return False, False
        staged: dict[Path, Path] = {}
        try:
            if new_files:
                # Server lines alone need no `haproxy -c`: the rest is what HAProxy runs, and the
                # runtime API has just accepted each server with the same address and options.
                # Skipping it matters: with a few hundred certificates it costs ≈ 0.3 s, and
                # every instance health change would wait behind it.
                staged = await self._stage(rendered, validate=needs_reload or not running)
            if not running:
                await self._swap(staged, self._start)
                self.process.supervise()
            elif needs_reload:
                # Drain and maint are not in the file: the new worker reads them from this dump.
                await self.runtime.dump_server_state(self.paths.server_state)
                await self._swap(staged, self._reload)
            else:
                _rename(staged, last=self.paths.config)
        finally:
            for temporary in staged.values():
                temporary.unlink(missing_ok=True)
        if new_files:
            state.generation += 1
            state.digest = rendered.digest
        self._config = config
        return new_files, needs_reload or not running

    async def _swap(self, staged: dict[Path, Path], load: Callable[[], Awaitable[None]]) -> None:
        """Rename the staged files in and have HAProxy load them; if it cannot (a port already
        taken), put the old files back: the old worker still serves them, and a restart of
        HAProxy or the next reload must not pick up the refused ones."""
        backup = {live: live.read_bytes() for live in staged if live.exists()}
        _rename(staged, last=self.paths.config)
        try:
            await load()
        except process.HaproxyFailed:
            for live, content in backup.items():
                await asyncio.to_thread(_write_bytes_atomic, live, content)
            raise

    async def _stage(self, rendered: render.RenderedConfig, *, validate: bool) -> dict[Path, Path]:
        """Write the new files next to the live ones and validate the configuration; live path → temporary."""
        staged: dict[Path, Path] = {}
        # `haproxy -c` reads the state file too, and warns when there is none.
        process.ensure_state_file(self.paths.server_state)
        try:
            for name, text in sorted(rendered.maps.items()):
                live = self.paths.map_file(name)
                if not live.exists():
                    # `haproxy -c` opens the maps the file names; on the first apply there are none yet.
                    runtime.write_atomic(live, "")
                elif live.read_text() == text:
                    continue
                staged[live] = await asyncio.to_thread(_write_temporary, live, text)
            config = await asyncio.to_thread(_write_temporary, self.paths.config, rendered.haproxy_cfg)
            staged[self.paths.config] = config
            if not validate:
                return staged
            # The exact bytes that will run are validated. They name the live map files, which
            # still hold the old routes: map lines (host → backend name) cannot make a file
            # invalid, and HAProxy does not check that a mapped backend exists.
            warnings = await self.process.validate(config)
            if warnings:
                log.info("HAProxy accepted the configuration with warnings: %s", warnings)
        except BaseException:
            for temporary in staged.values():
                temporary.unlink(missing_ok=True)
            raise
        return staged

    async def _reload(self) -> None:
        started = time.time()
        reloaded = await self.process.reload()
        self._loaded(started, reloaded.seconds)
        log.info("HAProxy reloaded in %.0f ms (worker %s)", reloaded.seconds * 1000, reloaded.worker_pid)

    async def _start(self) -> None:
        started = time.time()
        await self.process.start()
        self._loaded(started, self.process.last_start_seconds or 0.0)

    def _loaded(self, at: float, seconds: float) -> None:
        """The worker now runs the files on disk."""
        state = self._installed
        state.loaded_structure = _disk_structure(self.paths)
        state.last_reload_at, state.last_reload_seconds = at, seconds
        # Read by the next dkos start that adopts this HAProxy: it says what the worker runs,
        # which the files alone do not (dkos may have stopped between rename and reload).
        if state.loaded_structure is not None:
            runtime.write_atomic(self.paths.run_dir / "loaded.sha256", state.loaded_structure + "\n")

    async def _converge(
        self, config: model.LbConfig
    ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """Servers through the runtime API: add, set state or address, remove."""
        api = self.runtime
        actual = {(s.backend, s.name): s for s in await api.servers_state()}
        desired = {(b.name, s.name): s for b in config.backends for s in b.servers}
        added: list[str] = []
        changed: list[str] = []
        removed: list[str] = []
        not_removed: list[str] = []
        # New servers first and old ones last: capacity only grows until the end of a pass.
        for backend, name in sorted(desired.keys() - actual.keys()):
            server = desired[(backend, name)]
            await api.add_server(backend, server)
            if server.state is not model.ServerState.MAINT:
                await api.set_state(backend, name, server.state)
            added.append(f"{backend}/{name}")
        for backend, name in sorted(desired.keys() & actual.keys()):
            want, have = desired[(backend, name)], actual[(backend, name)]
            if not _same_address(want, have):
                await api.set_address(backend, name, want.address, want.port)
                changed.append(f"{backend}/{name}={want.address}:{want.port}")
            if want.state is not have.state:
                await api.set_state(backend, name, want.state)
                changed.append(f"{backend}/{name}={want.state}")
        for backend, name in sorted(actual.keys() - desired.keys()):
            try:
                await api.del_server(backend, name)
                removed.append(f"{backend}/{name}")
            except runtime.CommandFailed as exc:
                # In-flight requests: it is in maint now (no new ones); the next apply deletes it.
                log.info("server %s/%s not removed yet: %s", backend, name, exc.answer.strip())
                not_removed.append(f"{backend}/{name}")
        if added or changed or removed:
            # A HAProxy restarted after a crash loads this: drain survives, addresses are current.
            await api.dump_server_state(self.paths.server_state)
        return tuple(added), tuple(removed), tuple(changed), tuple(not_removed)

    async def _after_restart(self) -> None:
        """Supervision started HAProxy again from the files: bring the servers back in line."""
        async with self._lock:
            self._loaded(time.time(), self.process.last_start_seconds or 0.0)
            if self._config is None:
                return
            try:
                await self._apply(self._config)
                self._last_error = None
                log.info("re-applied the load balancer after a HAProxy restart")
            except (DkosError, ValueError) as exc:
                self._last_error = str(exc)
                raise

    # --- reading ------------------------------------------------------------------------------

    async def sessions(self, backend: str, server: str) -> int:
        """Requests in flight on one server (`scur`). Raises NotFound when there is no such server."""
        for row in await self.runtime.show_stat(backend):
            if row.kind is runtime.StatKind.SERVER and row.name == server:
                return row.scur
        raise NotFound(f"the load balancer has no server {backend}/{server}")

    async def wait_drained(self, backend: str, server: str, *, timeout: float) -> bool:
        """Wait until a server has no request in flight; False if it still has after `timeout`.
        A server that is not there (deleted) is drained."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await self.sessions(backend, server) == 0:
                    return True
            except (NotFound, runtime.CommandFailed):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL_INTERVAL)

    async def servers(self, backend: str | None = None) -> list[runtime.ServerStatus]:
        return await self.runtime.show_servers(backend)

    async def stats(self) -> list[runtime.StatRow]:
        """Traffic figures per frontend, backend and server (`show stat`)."""
        return await self.runtime.show_stat()

    def status(self) -> LbStatus:
        state = self._installed
        return LbStatus(
            running=self.process.running,
            pid=self.process.pid,
            adopted=self.process.adopted,
            generation=state.generation,
            digest=state.digest,
            last_reload_at=state.last_reload_at,
            last_reload_seconds=state.last_reload_seconds,
            last_error=self._last_error,
            restarts=self.process.restarts,
        )

    def _release(self) -> None:
        if self._run_lock is not None:
            self._run_lock.close()
            self._run_lock = None


def _lock_run_dir(run_dir: Path) -> IO[bytes]:
    # Two managers on one run dir would reload each other's files; the second is refused.
    handle = (run_dir / "lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise Conflict(f"another LoadBalancer manages {run_dir}") from None
    return handle


def _disk_files(paths: render.RenderPaths) -> tuple[str, dict[str, str]] | None:
    try:
        config = paths.config.read_text()
        maps = {name: paths.map_file(name).read_text() for name in (render.HOSTS_MAP, render.REDIRECT_MAP)}
    except FileNotFoundError:
        return None
    return config, maps


def _disk_digest(paths: render.RenderPaths) -> str | None:
    files = _disk_files(paths)
    return render.RenderedConfig(haproxy_cfg=files[0], maps=files[1]).digest if files else None


def _disk_structure(paths: render.RenderPaths) -> str | None:
    files = _disk_files(paths)
    return render.structure_digest(*files) if files else None


def _read_marker(paths: render.RenderPaths) -> str | None:
    with contextlib.suppress(OSError):
        return (paths.run_dir / "loaded.sha256").read_text().strip() or None
    return None


def _same_address(want: model.Server, have: runtime.ServerStatus) -> bool:
    try:
        return ipaddress.ip_address(want.address) == ipaddress.ip_address(have.address) and want.port == have.port
    except ValueError:
        return False


def _write_temporary(live: Path, text: str) -> Path:
    fd, name = tempfile.mkstemp(dir=live.parent, prefix=f".{live.name}.", suffix=".new")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(name, 0o644)
    return Path(name)


def _write_bytes_atomic(path: Path, content: bytes) -> None:
    temporary = _write_temporary(path, content.decode())
    os.replace(temporary, path)


def _rename(staged: dict[Path, Path], *, last: Path) -> None:
    # Maps first, the configuration last: a HAProxy that starts in between reads new routes
    # with the old backends (an unknown backend answers 503) rather than the reverse.
    for live, temporary in sorted(staged.items(), key=lambda item: item[0] == last):
        os.replace(temporary, live)
    staged.clear()
