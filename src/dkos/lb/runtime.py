"""An async client of HAProxy's admin socket (the runtime API): servers change here, without reloads.

Where it sits: `LoadBalancer.apply` reads `servers_state()` to diff what runs with what is
wanted, then calls `add_server` / `set_state` / `set_address` / `del_server`; draining reads
`sessions` through `show_servers`; metrics read `show_stat`; a reload is preceded by
`dump_server_state` so drain and maint survive it.

One unix connection per command: HAProxy answers one command and closes, which gives a
clean end of answer without parsing prompts. A command costs ≈ 0.2–0.3 ms this way through
asyncio, connection included (measured; ≈ 0.1 ms from a blocking client); spawning `socat`
would cost milliseconds.

HAProxy answers text, never a status code, so each command says which answer means success;
anything else raises `CommandFailed` with the command and HAProxy's words.

    DkosError
    ├── CommandFailed       HAProxy refused a command (its answer is kept in `answer`)
    └── HaproxyUnavailable  the socket does not answer (HAProxy is down or restarting: retry)
"""

from __future__ import annotations

import asyncio
import csv
import enum
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dkos.core.errors import DkosError
from dkos.lb import model, render

SOCKET_TIMEOUT = 5.0
"""Seconds a command may take, connection included; HAProxy answers in well under a millisecond."""

# srv_admin_state bits (HAProxy's `enum srv_admin`). CMAINT only records that the file said
# `disabled` (it stays set after `state ready`), so it does not count as maintenance.
_ADMF_FMAINT = 0x01
_ADMF_IMAINT = 0x02
_ADMF_FDRAIN = 0x08
_ADMF_IDRAIN = 0x10
_ADMF_RMAINT = 0x20
_ADMF_MAINT = _ADMF_FMAINT | _ADMF_IMAINT | _ADMF_RMAINT
_ADMF_DRAIN = _ADMF_FDRAIN | _ADMF_IDRAIN


class CommandFailed(DkosError):
    """Raised when HAProxy answers a runtime command with anything but its success answer."""

    status = 502
    code = "lb_command_failed"

    def __init__(self, command: str, answer: str) -> None:
        words = answer.strip() or "(no answer)"
        super().__init__(f"HAProxy refused `{command}`: {words}")
        self.command = command
        self.answer = answer


class HaproxyUnavailable(DkosError):
    """Raised when HAProxy's socket does not answer: it is down, or restarting (retry shortly)."""

    status = 503
    code = "lb_unavailable"


class Operational(enum.StrEnum):
    """srv_op_state: whether HAProxy sees the server up (without checks, `running` unless in maint)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


_OPERATIONAL = {
    "0": Operational.STOPPED,
    "1": Operational.STARTING,
    "2": Operational.RUNNING,
    "3": Operational.STOPPING,
}


@dataclass(frozen=True)
class ServerStatus:
    """One server as HAProxy runs it."""

    backend: str
    name: str
    address: str
    port: int
    state: model.ServerState
    """The admin state dkos sets: ready, drain or maint."""
    operational: Operational
    sessions: int | None = None
    """Current sessions (`scur`): requests in flight. None when read from `show servers state` alone."""


class StatKind(enum.StrEnum):
    FRONTEND = "frontend"
    BACKEND = "backend"
    SERVER = "server"


_STAT_KIND = {"0": StatKind.FRONTEND, "1": StatKind.BACKEND, "2": StatKind.SERVER}


@dataclass(frozen=True)
class StatRow:
    """Traffic figures of one frontend, backend or server (`show stat`), counted since the worker started.

    Counters restart at 0 after a reload (a new worker); `rate` and `rtime` are HAProxy's own
    moving figures."""

    proxy: str
    """The frontend or backend name (`pxname`)."""
    name: str
    """`FRONTEND`, `BACKEND` or the server name (`svname`)."""
    kind: StatKind
    status: str
    """`OPEN` (frontend), `UP`/`DOWN` (backend), or for a server `no check` (up, unchecked), `MAINT`, `DRAIN`."""
    scur: int
    """Current sessions."""
    rate: int
    """Sessions per second over the last second."""
    req_tot: int
    """HTTP requests since the worker started (0 in TCP mode)."""
    hrsp_2xx: int
    hrsp_3xx: int
    hrsp_4xx: int
    hrsp_5xx: int
    rtime: int
    """Average response time of the last 1024 requests, in ms (0 for frontends)."""


class RuntimeApi:
    """Commands to one HAProxy worker through its admin socket (`stats socket … level admin`)."""

    def __init__(self, socket_path: Path, *, timeout: float = SOCKET_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def execute(self, command: str) -> str:
        """Send one command and return HAProxy's whole answer (it closes the connection after it)."""
        if "\n" in command or ";" in command:
            # `;` separates commands on this socket: a name must never smuggle in a second one.
            raise ValueError(f"one runtime command at a time, without ';' or newlines: {command!r}")
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
                try:
                    writer.write(command.encode() + b"\n")
                    await writer.drain()
                    return (await reader.read()).decode(errors="replace")
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            raise HaproxyUnavailable(
                f"HAProxy's admin socket {self.socket_path} did not answer `{command}`: {exc}"
            ) from exc

    # --- servers ----------------------------------------------------------------------------

    async def add_server(self, backend: str, server: model.Server) -> None:
        """Add a server; HAProxy creates it in maint, so it takes no traffic until `set_state`."""
        render.check_name("backend", backend)
        render.check_name("server", server.name)
        command = f"add server {backend}/{server.name} {render.server_address(server)} {render.SERVER_OPTIONS}"
        await self._expect(command, "New server registered.")

    async def set_state(self, backend: str, name: str, state: model.ServerState) -> None:
        """`ready` takes new requests at once; `drain` lets in-flight ones finish; `maint` takes nothing new."""
        await self._expect(f"set server {_server(backend, name)} state {state}", "")

    async def set_address(self, backend: str, name: str, address: str, port: int) -> None:
        """Point a server at another address (its in-flight requests finish where they are)."""
        ip = ipaddress.ip_address(address)  # ValueError for a name: HAProxy would not resolve it
        command = f"set server {_server(backend, name)} addr {ip} port {int(port)}"
        answer = await self.execute(command)
        # HAProxy describes what it did ("IP changed from …", "no need to change the addr, …").
        if "changed" not in answer and "no need to change" not in answer:
            raise CommandFailed(command, answer)

    async def del_server(self, backend: str, name: str) -> None:
        """Remove a server: HAProxy only deletes one in maint, so it is put there first.

        In-flight requests make HAProxy refuse; drain the server first (`LoadBalancer.wait_drained`)."""
        await self.set_state(backend, name, model.ServerState.MAINT)
        await self._expect(f"del server {_server(backend, name)}", "Server deleted.")

    async def servers_state(self, backend: str | None = None) -> list[ServerStatus]:
        """Every server (of `backend`, or of all backends) from `show servers state`: one command, no sessions."""
        command = "show servers state" if backend is None else f"show servers state {_name('backend', backend)}"
        answer = await self.execute(command)
        if not answer.startswith("1\n"):
            # Format version 1 is the only one HAProxy 2.6 writes; anything else is an error text.
            raise CommandFailed(command, answer)
        return parse_servers_state(answer)

    async def show_servers(self, backend: str | None = None) -> list[ServerStatus]:
        """Every server with its current sessions: `show servers state` joined with `show stat`."""
        states = await self.servers_state(backend)
        sessions = {
            (row.proxy, row.name): row.scur for row in await self.show_stat(backend) if row.kind is StatKind.SERVER
        }
        return [
            ServerStatus(
                backend=s.backend,
                name=s.name,
                address=s.address,
                port=s.port,
                state=s.state,
                operational=s.operational,
                sessions=sessions.get((s.backend, s.name), 0),
            )
            for s in states
        ]

    async def show_stat(self, proxy: str | None = None) -> list[StatRow]:
        """Traffic figures of every frontend, backend and server (or of one proxy's rows)."""
        command = "show stat" if proxy is None else f"show stat {_name('backend', proxy)} -1 -1"
        answer = await self.execute(command)
        if not answer.startswith("# pxname,"):
            raise CommandFailed(command, answer)
        return parse_stat(answer)

    async def dump_server_state(self, path: Path) -> None:
        """Write `show servers state` to `path` (atomically), for the next worker to load on reload."""
        command = "show servers state"
        answer = await self.execute(command)
        if not answer.startswith("1\n"):
            raise CommandFailed(command, answer)
        await asyncio.to_thread(write_atomic, path, answer)

    async def _expect(self, command: str, success: str) -> None:
        answer = await self.execute(command)
        if answer.strip() != success:
            raise CommandFailed(command, answer)


def parse_stat(csv_text: str) -> list[StatRow]:
    """`show stat` CSV → rows. Empty fields (a figure that does not apply) read as 0."""
    lines = csv_text.removeprefix("# ").splitlines()
    rows: list[StatRow] = []
    for record in csv.DictReader(line for line in lines if line.strip()):
        kind = _STAT_KIND.get(record.get("type", ""))
        if kind is None:
            continue  # listener rows (only with `option socket-stats`)
        rows.append(
            StatRow(
                proxy=record["pxname"],
                name=record["svname"],
                kind=kind,
                status=record["status"],
                scur=_int(record["scur"]),
                rate=_int(record["rate"]),
                req_tot=_int(record["req_tot"]),
                hrsp_2xx=_int(record["hrsp_2xx"]),
                hrsp_3xx=_int(record["hrsp_3xx"]),
                hrsp_4xx=_int(record["hrsp_4xx"]),
                hrsp_5xx=_int(record["hrsp_5xx"]),
                rtime=_int(record["rtime"]),
            )
        )
    return rows


def parse_servers_state(text: str) -> list[ServerStatus]:
    """`show servers state` (format version 1) → one status per server line."""
    return [_server_status(line) for line in text.splitlines()[1:] if line.strip() and not line.startswith("#")]


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one rename: HAProxy (or a crash) sees the old file or the new one, whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _server_status(line: str) -> ServerStatus:
    # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_port (field 18)
    fields = line.split()
    admin = int(fields[6])
    if admin & _ADMF_MAINT:
        state = model.ServerState.MAINT
    elif admin & _ADMF_DRAIN:
        state = model.ServerState.DRAIN
    else:
        state = model.ServerState.READY
    return ServerStatus(
        backend=fields[1],
        name=fields[3],
        address=fields[4],
        port=int(fields[18]),
        state=state,
        operational=_OPERATIONAL.get(fields[5], Operational.STOPPED),
    )


def _server(backend: str, name: str) -> str:
    return f"{_name('backend', backend)}/{_name('server', name)}"


def _name(kind: str, name: str) -> str:
    render.check_name(kind, name)
    return name


def _int(text: str | None) -> int:
    return int(text) if text else 0
