"""What the load balancer should look like, as plain data: the input of `lb.render` and
`LoadBalancer.apply`, computed from apps and instances by the orchestration package.

One backend per app port. HTTP ports are routed by host name (the app's virtual host
`<app>.<project>.<base domain>` and its custom domains) on the shared HTTP and HTTPS
listeners; TCP ports get a listener of their own on a service port. A server is one
instance; its state says whether it takes new requests (ready), finishes what it has
(drain), or takes nothing (maint).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class ServerState(enum.StrEnum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


class Mode(enum.StrEnum):
    HTTP = "http"
    TCP = "tcp"


@dataclass(frozen=True)
class Server:
    name: str
    """The instance id, e.g. `web-7` (unique within its backend)."""
    address: str
    """An IP address: HAProxy never resolves names of servers added at run time."""
    port: int
    state: ServerState


@dataclass(frozen=True)
class Backend:
    name: str
    """`<project>.<app>.<port name>`: stable across versions, so a deploy changes servers, not backends."""
    mode: Mode
    servers: tuple[Server, ...] = ()


@dataclass(frozen=True)
class HttpRoute:
    hosts: tuple[str, ...]
    """Lower-case host names, the virtual host first."""
    backend: str
    redirect_to_https: bool = False


@dataclass(frozen=True)
class TcpRoute:
    port: int
    backend: str


@dataclass(frozen=True)
class Listeners:
    bind_address: str = "127.0.0.1"
    http_port: int = 8080
    https_port: int = 8443


@dataclass(frozen=True)
class Tls:
    """Certificates for the HTTPS listener: a crt-list file maps SNI names to PEM bundles."""

    crt_list: Path
    default_certificate: Path
    """Served when no SNI name matches (HAProxy needs one to start the TLS listener)."""


@dataclass(frozen=True)
class LbConfig:
    listeners: Listeners = field(default_factory=Listeners)
    backends: tuple[Backend, ...] = ()
    http_routes: tuple[HttpRoute, ...] = ()
    tcp_routes: tuple[TcpRoute, ...] = ()
    tls: Tls | None = None
