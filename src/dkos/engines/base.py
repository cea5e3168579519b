"""The `Engine` protocol: what dkos asks of a container engine.

Shaped like Nomad's task-driver contract (start, wait, stop, destroy, inspect, stats,
logs, recover, events, exec, capabilities). The orchestration package talks only to
this protocol; the Docker Engine API is spoken only in `engines/docker.py`.

Every container dkos starts carries the `dkos.*` labels below and a name derived from
them, so a restarted server finds (`recover`) and adopts what runs instead of starting
duplicates, and a sweeper can remove what nothing tracks.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

LABEL_OWNER = "dkos.owner"
"""Identity of the dkos server that owns the container: two servers sharing one engine
never touch each other's containers."""
LABEL_PROJECT = "dkos.project"
LABEL_APP = "dkos.app"
LABEL_VERSION = "dkos.version"
LABEL_INSTANCE = "dkos.instance"
LABEL_SLOT = "dkos.slot"


def container_name(project: str, instance_id: str, owner: str) -> str:
    """The derived container name, e.g. `dkos.default.web-7.1d6540d2`.

    Instance ids are `<app>-<n>` and unique within a project; project names are DNS labels
    (no `.`), so the name is unambiguous and a restarted server finds the same name again.
    The owner's prefix keeps two servers sharing one engine from claiming the same name."""
    return f"dkos.{project}.{instance_id}.{owner[:8]}"


@dataclass(frozen=True)
class PortSpec:
    name: str
    container_port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class LogRotation:
    """Engine-side rotation of a container's stdout/stderr (json-file max-size / max-file)."""

    max_size: str = "10m"
    max_files: int = 3


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the engine needs to run one instance."""

    name: str
    image: str
    labels: Mapping[str, str]
    command: tuple[str, ...] | None = None
    """Replaces the image's entrypoint (Kubernetes `command`)."""
    args: tuple[str, ...] | None = None
    """Replaces the image's default arguments (Kubernetes `args`)."""
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory_mib: int | None = None
    ports: tuple[PortSpec, ...] = ()
    log_rotation: LogRotation = field(default_factory=LogRotation)
    stop_signal: str = "SIGTERM"


class ContainerState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    """Stopped for any reason (exit, kill, OOM); see `ContainerStatus.exit_code`."""


@dataclass(frozen=True)
class ContainerStatus:
    """What the engine reports about one container."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: ContainerState
    ip: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    created_at: float | None = None

    @property
    def instance_id(self) -> str | None:
        return self.labels.get(LABEL_INSTANCE)


@dataclass(frozen=True)
class ExitResult:
    exit_code: int
    oom_killed: bool = False


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class ContainerStats:
    """One sample of a container's resource use, as the engine's stats stream gives it."""

    container_id: str
    time: float
    cpu_total_ns: int
    system_cpu_ns: int
    online_cpus: int
    memory_bytes: int
    """The working set (usage less inactive page cache), as `docker stats` shows it."""
    memory_limit_bytes: int
    rx_bytes: int
    tx_bytes: int
    blkio_read_bytes: int
    blkio_write_bytes: int


class LogStream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class LogLine(NamedTuple):
    """One line a container wrote, as the engine stored it.

    `time_ns` is the engine's own timestamp, exact to the nanosecond: log capture resumes
    from it (`logs(since_ns=...)`), so it must not be rounded through a float. `data` is the
    line's bytes without its newline, undecoded: what to do with invalid UTF-8 or control
    bytes is the log store's decision, not the driver's. A named tuple, not a dataclass:
    capture makes tens of thousands a second, and a tuple is made in half the time."""

    time_ns: int
    stream: LogStream
    data: bytes
    partial: bool = False
    """The line goes on in the next line(s) of its stream: the engine split it (json-file
    cuts at 16 KiB; the driver joins such parts again) or it was too long to join."""

    @property
    def time(self) -> float:
        return self.time_ns / 1e9

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class EngineEventKind(enum.StrEnum):
    STARTED = "started"
    DIED = "died"
    OOM = "oom"
    DESTROYED = "destroyed"
    HEALTH = "health"
    OTHER = "other"


@dataclass(frozen=True)
class EngineEvent:
    """A container changed; orchestration treats it only as a hint to re-read state."""

    kind: EngineEventKind
    container_id: str
    labels: Mapping[str, str]
    time: float


@dataclass(frozen=True)
class EngineInfo:
    name: str
    version: str
    api_version: str
    cpus: int
    memory_bytes: int


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do, so callers degrade instead of failing (Nomad's `Capabilities`)."""

    exec: bool
    signals: bool
    stats_stream: bool
    log_stream: bool
    resource_limits: bool
    pull_images: bool


class Engine(Protocol):
    """A container engine. Every method raises `EngineUnavailable` when the engine does not answer."""

    def capabilities(self) -> Capabilities: ...

    async def ping(self) -> EngineInfo:
        """Return the engine's identity; raise `EngineUnavailable` if it does not answer."""
        ...

    async def start(self, spec: ContainerSpec) -> ContainerStatus:
        """Create and start a container. Idempotent by `spec.name`: an existing container of that
        name is started if needed and returned. Raises `ImageNotFound` for a missing image, and
        `ContainerConflict` when the name belongs to a container with other labels."""
        ...

    async def wait(self, container_id: str) -> ExitResult:
        """Block until the container exits."""
        ...

    async def stop(self, container_id: str, *, grace: float, signal: str = "SIGTERM") -> None:
        """Send `signal`, then SIGKILL after `grace` seconds (Docker rounds up to whole seconds).
        A container already gone is not an error."""
        ...

    async def signal(self, container_id: str, signal: str) -> None: ...

    async def destroy(self, container_id: str) -> None:
        """Remove the container (killing it if it runs). A container already gone is not an error."""
        ...

    async def inspect(self, container_id: str) -> ContainerStatus | None:
        """Return the container's status, or None when it does not exist."""
        ...

    async def recover(self, labels: Mapping[str, str]) -> list[ContainerStatus]:
        """Every container, running or not, whose labels include all of `labels`. `started_at`
        is known only for containers that have stopped (it costs an inspect each)."""
        ...

    async def exec(self, container_id: str, command: list[str], *, timeout: float) -> ExecResult:
        """Run a command inside a running container; raise `EngineError` on timeout. A timed-out
        command is not killed (the Engine API cannot), so checks should bound themselves."""
        ...

    def stats(self, container_id: str) -> AsyncIterator[ContainerStats]:
        """The engine's stats stream for one container, until it stops."""
        ...

    def logs(self, container_id: str, *, follow: bool, since_ns: int | None = None) -> AsyncIterator[list[LogLine]]:
        """Stdout and stderr lines in the order the engine stored them, from `since_ns`
        (inclusive) or the first one kept, optionally following until the container stops;
        in batches as they are read (a line at a time would cost capture more than the line).
        A stream the engine cuts raises `EngineUnavailable` or just ends: a caller that must
        tell the two apart asks `inspect` whether the container still runs."""
        ...

    def events(self, labels: Mapping[str, str]) -> AsyncIterator[EngineEvent]:
        """Container events for containers carrying `labels`, until the engine connection drops."""
        ...

    async def close(self) -> None: ...
