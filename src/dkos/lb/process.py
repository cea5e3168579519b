"""The HAProxy process: started (or adopted), validated against, reloaded and supervised.

Where it sits: `LoadBalancer` owns one `HaproxyProcess`. It asks `validate` before a new file
replaces the running one, `reload` when frontends, routes or certificates changed, and is
told through `on_restart` when HAProxy died and was started again, so it re-applies servers.

HAProxy runs in master-worker mode:

    haproxy -W -S <run>/master.sock,mode,600 -f <run>/haproxy.cfg -p <run>/haproxy.pid

The control plane is not the data plane: HAProxy keeps serving while the dkos server stops,
restarts or upgrades. So the master is started in a session of its own (no signal aimed at
dkos' process group reaches it), its output goes to `<run>/haproxy.log`, and nothing stops
it when dkos exits. The next dkos start ADOPTS it when its master socket answers, instead
of starting a second HAProxy on the same ports. Only `stop()` ends it (tests, uninstall).

Supervision watches the master with a pidfd, which works for an adopted master that is
not our child as well as for one we started. When the master dies (its workers exit with
it), it is started again from the files on disk at once, with a backoff only if starting
fails, and `on_restart` runs.

The master CLI keeps a connection open until the client half-closes (`shutdown(SHUT_WR)`),
refuses connections for a few milliseconds after `reload` (it re-executes itself), and in
2.6 `reload` answers nothing: success is read from `show proc` (a new worker) and failure
from HAProxy's log. A failed reload leaves the old worker serving.

    DkosError
    ├── ConfigRejected   `haproxy -c` refused a file (HAProxy's words in `output`)
    └── HaproxyFailed    HAProxy did not start, or a reload made no new worker (its log in `output`)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from dkos.core.errors import DkosError
from dkos.lb import render, runtime

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
"""Seconds HAProxy may take to answer on both sockets after it is started."""
RELOAD_TIMEOUT = 15.0
"""Seconds a reload may take to show its outcome. A reload whose bind fails took ≈ 2 s here."""
VALIDATE_TIMEOUT = 30.0
POLL_INTERVAL = 0.005
"""How often the sockets are tried while HAProxy (re)starts: a new worker serves ≈ 60 ms after a reload."""
RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Delays before successive attempts to start a dead master: the first is immediate."""
LOG_ROTATE_BYTES = 10 * 1024 * 1024
"""HAProxy's stderr file is set aside at a start once it is larger than this."""
ADOPT_GRACE = 2.0
"""Seconds a master of ours that is alive but silent (mid-reload) gets before it is replaced."""


class ConfigRejected(DkosError):
    """Raised when `haproxy -c` refuses a configuration; the running one keeps serving."""

    status = 502
    code = "lb_config_rejected"

    def __init__(self, output: str) -> None:
        super().__init__(f"HAProxy refused the configuration: {_alerts(output)}")
        self.output = output


class HaproxyFailed(DkosError):
    """Raised when HAProxy does not start, or a reload brings up no new worker (the old one keeps serving)."""

    status = 502
    code = "lb_failed"

    def __init__(self, what: str, output: str) -> None:
        super().__init__(f"{what}: {_alerts(output)}")
        self.output = output


@dataclass(frozen=True)
class Worker:
    pid: int
    reloads: int
    """How many reloads this worker has lived through (0 for the newest)."""


@dataclass(frozen=True)
class ProcInfo:
    """The master CLI's `show proc`."""

    master_pid: int
    reloads: int
    failed_reloads: int
    """Failed reloads since the last successful one (HAProxy resets it on success)."""
    workers: tuple[Worker, ...]
    """Current workers (one with this configuration)."""
    old_workers: tuple[Worker, ...]
    """Workers of earlier configurations still finishing their connections."""


@dataclass(frozen=True)
class Reloaded:
    worker_pid: int
    seconds: float
    """From `reload` to the new worker answering on the admin socket."""


class HaproxyProcess:
    """One HAProxy master for one run directory."""

    def __init__(
        self,
        paths: render.RenderPaths,
        *,
        haproxy: str = "/usr/sbin/haproxy",
        on_restart: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.paths = paths
        self.haproxy = haproxy
        self.on_restart = on_restart
        self.pid: int | None = None
        self.restarts = 0
        """Times supervision started a dead master again."""
        self.adopted = False
        self.last_start_seconds: float | None = None
        """From spawning the master to its worker answering, for the last start."""
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    # --- start, adopt, stop -------------------------------------------------------------------

    async def adopt(self) -> bool:
        """Take over a master that serves this run dir already; False if there is none.

        A master that is ours (its command line names our config) but does not answer within
        `ADOPT_GRACE` is killed, so a fresh start does not run beside it on the same ports."""
        async with self._lock:
            deadline = time.monotonic() + ADOPT_GRACE
            while True:
                try:
                    info: ProcInfo | None = await master_command_proc(self.paths.master_socket, timeout=0.2)
                except (runtime.HaproxyUnavailable, HaproxyFailed):
                    info = None
                if info is not None and _alive(info.master_pid):
                    self.pid, self.adopted, self._child = info.master_pid, True, None
                    log.info("adopted the running HAProxy master %s", info.master_pid)
                    return True
                stale = self._stale_master()
                if stale is None:
                    return False
                if time.monotonic() > deadline:
                    log.warning("HAProxy master %s does not answer on %s; killing it", stale, self.paths.master_socket)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(stale, signal.SIGKILL)
                    await _wait_exit(stale, timeout=5)
                    return False
                await asyncio.sleep(0.05)

    async def start(self) -> None:
        """Start a new master on the configuration file in the run dir (it must exist);
        nothing to do when one runs already (supervision may have just started it)."""
        async with self._lock:
            if not self.running:
                await self._start()

    def supervise(self) -> None:
        """Start watching the master (started or adopted); a death starts it again."""
        if self._watcher is None or self._watcher.done():
            self._stopping = False
            self._watcher = asyncio.create_task(self._watch(), name="haproxy-supervisor")

    async def close(self) -> None:
        """Stop supervising and leave HAProxy serving (the next dkos start adopts it)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Stop HAProxy itself: SIGTERM to the master (workers stop at once), SIGKILL after `timeout`."""
        self._stopping = True
        await self.close()
        async with self._lock:
            pid = self.pid
            if pid is not None and _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not await _wait_exit(pid, timeout=timeout):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    await _wait_exit(pid, timeout=5)
            self._reap()
            self.pid = None
            self.paths.pid_file.unlink(missing_ok=True)

    # --- configuration ------------------------------------------------------------------------

    async def validate(self, config_path: Path) -> str:
        """`haproxy -c` on a file; returns HAProxy's warnings (often empty), raises ConfigRejected."""
        process = await asyncio.create_subprocess_exec(
            self.haproxy,
            "-c",
            "-f",
            str(config_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(VALIDATE_TIMEOUT):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ConfigRejected(f"haproxy -c did not finish within {VALIDATE_TIMEOUT}s") from None
        text = output.decode(errors="replace")
        if process.returncode != 0:
            raise ConfigRejected(text)
        return "\n".join(line for line in text.splitlines() if "[WARNING]" in line)

    async def reload(self) -> Reloaded:
        """Reload through the master socket and wait for the new worker to answer; the old one
        finishes its connections. Raises HaproxyFailed (old worker still serving) if no new
        worker appears, with HAProxy's alerts."""
        async with self._lock:
            before = await self._show_proc()
            offset = _size(self.paths.log_file)
            started = time.monotonic()
            # The master may drop the connection as it re-executes itself: the outcome is read below.
            await master_command(self.paths.master_socket, "reload", answer_expected=False)
            deadline = started + RELOAD_TIMEOUT
            info = before
            while info.reloads <= before.reloads or info.master_pid != before.master_pid:
                if time.monotonic() > deadline:
                    raise HaproxyFailed("HAProxy did not finish reloading", _read_from(self.paths.log_file, offset))
                await asyncio.sleep(POLL_INTERVAL)
                with contextlib.suppress(runtime.HaproxyUnavailable):
                    info = await self._show_proc()
            old = {w.pid for w in (*before.workers, *before.old_workers)}
            new = [w.pid for w in info.workers if w.pid not in old]
            if not new:
                raise HaproxyFailed("HAProxy refused the new configuration", _read_from(self.paths.log_file, offset))
            await self._wait_worker(new[0], deadline)
            return Reloaded(worker_pid=new[0], seconds=time.monotonic() - started)

    async def show_proc(self) -> ProcInfo:
        return await self._show_proc()

    # --- internals ----------------------------------------------------------------------------

    async def _start(self) -> None:
        if not self.paths.config.exists():
            raise HaproxyFailed("HAProxy cannot start", f"no configuration at {self.paths.config}")
        ensure_state_file(self.paths.server_state)
        # Nothing answers on them (adopt() said so): HAProxy would replace them, but our polling
        # must not mistake a dead socket file for a starting master.
        for stale in (self.paths.master_socket, self.paths.admin_socket):
            stale.unlink(missing_ok=True)
        if _size(self.paths.log_file) > LOG_ROTATE_BYTES:
            # HAProxy writes a few lines per reload (no traffic logs go there); one old copy is kept.
            os.replace(self.paths.log_file, self.paths.log_file.with_suffix(".log.1"))
        offset = _size(self.paths.log_file)
        command = [
            self.haproxy,
            "-W",
            "-S",
            f"{self.paths.master_socket},mode,600",
            "-f",
            str(self.paths.config),
            "-p",
            str(self.paths.pid_file),
        ]
        with self.paths.log_file.open("ab") as output:
            # Its own session: HAProxy outlives dkos and ignores signals sent to dkos' process group.
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True, close_fds=True
            )
        started = time.monotonic()
        deadline = started + START_TIMEOUT
        while True:
            if child.poll() is not None:
                raise HaproxyFailed(
                    f"HAProxy exited with code {child.returncode} at start", _read_from(self.paths.log_file, offset)
                )
            with contextlib.suppress(runtime.HaproxyUnavailable):
                info = await master_command_proc(self.paths.master_socket, timeout=0.2)
                if info.workers:
                    break
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise HaproxyFailed("HAProxy did not answer after start", _read_from(self.paths.log_file, offset))
            await asyncio.sleep(POLL_INTERVAL)
        self.pid, self.adopted, self._child = child.pid, False, child
        await self._wait_worker(info.workers[0].pid, deadline)
        self.last_start_seconds = time.monotonic() - started
        log.info("started HAProxy master %s in %.0f ms", child.pid, (time.monotonic() - started) * 1000)

    async def _wait_worker(self, worker_pid: int, deadline: float) -> None:
        # Right after a reload the old worker may still accept on the shared admin socket:
        # commands meant for the new worker wait until it is the one answering.
        api = runtime.RuntimeApi(self.paths.admin_socket, timeout=1.0)
        while True:
            with contextlib.suppress(runtime.HaproxyUnavailable):
                if f"\nPid: {worker_pid}\n" in await api.execute("show info"):
                    return
            if time.monotonic() > deadline:
                raise HaproxyFailed(f"HAProxy worker {worker_pid} did not answer", _tail(self.paths.log_file))
            await asyncio.sleep(POLL_INTERVAL)

    async def _show_proc(self) -> ProcInfo:
        return await master_command_proc(self.paths.master_socket)

    async def _watch(self) -> None:
        while True:
            pid = self.pid
            if pid is None:
                return
            await _wait_exit(pid, timeout=None)
            if self._stopping:
                return
            async with self._lock:
                if self.pid != pid:
                    continue  # stopped and started by someone else meanwhile
                self._reap()
                log.warning("HAProxy master %s died; starting it again", pid)
                self.pid = None
            await self._restart()
            if self.on_restart is not None:
                try:
                    await self.on_restart()
                except Exception:
                    # Supervision must go on whatever the callback hit; it logs and the next apply retries.
                    log.exception("re-applying the load balancer after a HAProxy restart failed")
            # Counted once the restart is complete, callback included: a reader of `restarts`
            # may rely on the servers being back.
            self.restarts += 1

    async def _restart(self) -> None:
        for attempt in itertools.count():
            # The lock is not held while waiting, so a reload or an apply is not stuck behind
            # a HAProxy that keeps failing to start; an apply may even start it first.
            await asyncio.sleep(RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)])
            async with self._lock:
                if self.running:
                    return
                try:
                    await self._start()
                    return
                except HaproxyFailed as exc:
                    log.error("starting HAProxy again failed (attempt %d): %s", attempt + 1, exc)

    def _reap(self) -> None:
        if self._child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=1)
            self._child = None

    def _stale_master(self) -> int | None:
        """The pid in the pid file if it is a live HAProxy started on our configuration."""
        try:
            pid = int(self.paths.pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        if str(self.paths.config).encode() in cmdline and _alive(pid):
            return pid
        return None


async def master_command(socket_path: Path, command: str, *, timeout: float = 5.0, answer_expected: bool = True) -> str:
    """One command on the master CLI. It answers only after the client half-closes, so the
    write side is shut (`write_eof`) before reading; a client that waits without it hangs.

    Connecting is retried within `timeout`: the master refuses connections for a few
    milliseconds after a reload, while it re-executes itself. With `answer_expected=False`
    (`reload`, which answers nothing in 2.6) a dropped connection after sending is no error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket_path))
            break
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            if time.monotonic() > deadline:
                raise runtime.HaproxyUnavailable(
                    f"HAProxy's master socket {socket_path} did not answer `{command}`: {exc}"
                ) from exc
            await asyncio.sleep(POLL_INTERVAL)
        except OSError as exc:
            raise runtime.HaproxyUnavailable(f"HAProxy's master socket {socket_path}: {exc}") from exc
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.5)):
            writer.write(command.encode() + b"\n")
            writer.write_eof()
            await writer.drain()
            return (await reader.read()).decode(errors="replace")
    except (OSError, TimeoutError) as exc:
        if not answer_expected:
            return ""
        raise runtime.HaproxyUnavailable(f"HAProxy's master socket {socket_path} dropped `{command}`: {exc}") from exc
    finally:
        writer.close()


async def master_command_proc(socket_path: Path, *, timeout: float = 5.0) -> ProcInfo:
    return parse_show_proc(await master_command(socket_path, "show proc", timeout=timeout))


_MASTER_LINE = re.compile(r"^(\d+)\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]")
_WORKER_LINE = re.compile(r"^(\d+)\s+worker\s+\[?(?:was:\s*)?(\d+)")


def parse_show_proc(text: str) -> ProcInfo:
    master: tuple[int, int, int] | None = None
    workers: list[Worker] = []
    old: list[Worker] = []
    section = "master"
    for line in text.splitlines():
        if line.startswith("#"):
            if "old workers" in line:
                section = "old"
            elif "workers" in line:
                section = "workers"
            elif "programs" in line:
                section = "programs"
            continue
        if found := _MASTER_LINE.match(line):
            master = (int(found[1]), int(found[2]), int(found[3]))
        elif (found := _WORKER_LINE.match(line)) and section in ("workers", "old"):
            (old if section == "old" else workers).append(Worker(pid=int(found[1]), reloads=int(found[2])))
    if master is None:
        raise HaproxyFailed("unexpected answer to `show proc`", text)
    return ProcInfo(
        master_pid=master[0],
        reloads=master[1],
        failed_reloads=master[2],
        workers=tuple(workers),
        old_workers=tuple(old),
    )


async def _wait_exit(pid: int, *, timeout: float | None) -> bool:
    """Wait until `pid` has exited (a zombie counts); False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        async with asyncio.timeout(timeout):
            await exited
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not reaped yet) is not alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain blanks.
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def ensure_state_file(path: Path) -> None:
    # HAProxy warns about a missing or empty state file; "1" alone is a valid, empty version-1 file.
    if not path.exists() or path.stat().st_size == 0:
        runtime.write_atomic(path, "1\n")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tail(path: Path) -> str:
    return _read_from(path, max(_size(path) - 4096, 0))


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(64 * 1024).decode(errors="replace")
    except OSError as exc:
        return f"(HAProxy's log {path} cannot be read: {exc})"


def _alerts(output: str) -> str:
    """HAProxy's alert lines without their `[ALERT]    (pid) : ` prefix; the whole text when there are none."""
    lines = [re.sub(r"^\[ALERT\]\s+\(\d+\)\s*:\s*", "", line) for line in output.splitlines() if "[ALERT]" in line]
    return " | ".join(lines) if lines else output.strip()
