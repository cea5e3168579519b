"""The names of the metrics dkos collects into its own store, with what each one means.

Where it sits: `collect` builds `DataPoint`s under these names; `docs/metrics.md` shows the
same table to users; Grafana dashboards query them through the OpenTSDB API. A name is a
contract with every saved dashboard: rename one only with a migration note.

Tags every point carries where they apply (see `Tag`):

    container metrics  project, app, instance, version, node, zone
    app metrics        project, app, port, node, zone   (one series per app port, i.e. per backend)
    node metrics       node, zone                        (a node belongs to no project or app)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    GAUGE = "gauge"
    """A value at the moment it was read."""
    COUNTER = "counter"
    """A running total, as the source counts it; it restarts at 0 when the source restarts
    (container restart, HAProxy reload), so query it with `rate` and `counter` set."""


class Tag(enum.StrEnum):
    PROJECT = "project"
    APP = "app"
    INSTANCE = "instance"
    VERSION = "version"
    PORT = "port"
    """The app's port name (an app has one load-balancer backend per port)."""
    NODE = "node"
    """The host name of the node the server runs on."""
    ZONE = "zone"
    CLASS = "class"
    """The HTTP status class of `dkos.app.responses`: 2xx, 3xx, 4xx or 5xx."""


DEFAULT_ZONE = "default"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    unit: str
    description: str


# Containers: one series per instance, from the engine's stats stream.
CONTAINER_CPU_PERCENT = Metric(
    "dkos.container.cpu.percent", Kind.GAUGE, "%", "CPU used since the previous sample, in percent of one core."
)
CONTAINER_CPU_LIMIT_PERCENT = Metric(
    "dkos.container.cpu.limit_percent",
    Kind.GAUGE,
    "%",
    "CPU used in percent of the container's CPU limit (of all the node's cores when it has none).",
)
CONTAINER_MEMORY_BYTES = Metric(
    "dkos.container.memory.bytes", Kind.GAUGE, "bytes", "Memory in use (working set, without page cache)."
)
CONTAINER_MEMORY_LIMIT_PERCENT = Metric(
    "dkos.container.memory.limit_percent", Kind.GAUGE, "%", "Memory in use in percent of the container's limit."
)
CONTAINER_NET_RX_BYTES = Metric(
    "dkos.container.net.rx_bytes", Kind.COUNTER, "bytes", "Bytes received on all the container's interfaces."
)
CONTAINER_NET_TX_BYTES = Metric(
    "dkos.container.net.tx_bytes", Kind.COUNTER, "bytes", "Bytes sent on all the container's interfaces."
)
CONTAINER_BLKIO_READ_BYTES = Metric(
    "dkos.container.blkio.read_bytes", Kind.COUNTER, "bytes", "Bytes read from block devices."
)
CONTAINER_BLKIO_WRITE_BYTES = Metric(
    "dkos.container.blkio.write_bytes", Kind.COUNTER, "bytes", "Bytes written to block devices."
)
CONTAINER_RESTARTS = Metric(
    "dkos.container.restarts", Kind.COUNTER, "restarts", "Times dkos has restarted this instance's slot so far."
)

# Apps: one series per load-balancer backend (app port), from HAProxy's `show stat`.
APP_REQUESTS = Metric("dkos.app.requests", Kind.COUNTER, "requests", "HTTP requests received (0 for TCP ports).")
APP_RESPONSES = Metric(
    "dkos.app.responses", Kind.COUNTER, "responses", "HTTP responses sent, by status class (tag `class`)."
)
APP_SESSIONS = Metric("dkos.app.sessions", Kind.GAUGE, "sessions", "Sessions (connections) open now.")
APP_RESPONSE_MS = Metric(
    "dkos.app.response_ms", Kind.GAUGE, "ms", "Average response time of the last 1024 requests (HAProxy's rtime)."
)

# The node the server runs on.
NODE_LOAD1 = Metric("dkos.node.load1", Kind.GAUGE, "", "Load average over 1 minute.")
NODE_LOAD5 = Metric("dkos.node.load5", Kind.GAUGE, "", "Load average over 5 minutes.")
NODE_LOAD15 = Metric("dkos.node.load15", Kind.GAUGE, "", "Load average over 15 minutes.")
NODE_MEMORY_USED_BYTES = Metric(
    "dkos.node.memory.used_bytes", Kind.GAUGE, "bytes", "Memory in use: total less available (MemAvailable)."
)
NODE_MEMORY_TOTAL_BYTES = Metric("dkos.node.memory.total_bytes", Kind.GAUGE, "bytes", "Physical memory.")
NODE_DISK_USED_BYTES = Metric(
    "dkos.node.disk.used_bytes", Kind.GAUGE, "bytes", "Space used on the filesystem of the data directory."
)
NODE_DISK_TOTAL_BYTES = Metric(
    "dkos.node.disk.total_bytes", Kind.GAUGE, "bytes", "Size of the filesystem of the data directory."
)

ALL: tuple[Metric, ...] = (
    CONTAINER_CPU_PERCENT,
    CONTAINER_CPU_LIMIT_PERCENT,
    CONTAINER_MEMORY_BYTES,
    CONTAINER_MEMORY_LIMIT_PERCENT,
    CONTAINER_NET_RX_BYTES,
    CONTAINER_NET_TX_BYTES,
    CONTAINER_BLKIO_READ_BYTES,
    CONTAINER_BLKIO_WRITE_BYTES,
    CONTAINER_RESTARTS,
    APP_REQUESTS,
    APP_RESPONSES,
    APP_SESSIONS,
    APP_RESPONSE_MS,
    NODE_LOAD1,
    NODE_LOAD5,
    NODE_LOAD15,
    NODE_MEMORY_USED_BYTES,
    NODE_MEMORY_TOTAL_BYTES,
    NODE_DISK_USED_BYTES,
    NODE_DISK_TOTAL_BYTES,
)
"""Every metric dkos collects, in the order the docs list them."""
