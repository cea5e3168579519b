"""`LbConfig` → HAProxy's files: `haproxy.cfg` and the map files it reads (pure).

Where it sits: orchestration computes an `LbConfig`; `LoadBalancer.apply` renders it here,
compares the bytes with what HAProxy runs, validates and installs them (`process`), then
moves servers with the runtime API (`runtime`). Nothing here does I/O or reads the clock, so
the same input always gives the same bytes: backends, servers, hosts and TCP ports are
sorted, and a change of bytes is a real change.

What the configuration says, and why:

- Host routing goes through a map file (`hosts.map`: host → backend) rather than one ACL
  per app, so thousands of apps cost one hash lookup per request, not a chain of ACLs.
  `redirect.map` lists the hosts whose plain-HTTP requests are redirected to HTTPS.
- Every server is written into the file with its address and state (`disabled` for maint),
  because servers added at run time are lost on a reload. Drain cannot be said in the
  file; it survives reloads through the server-state file, dumped just before each one.
- Server lines carry the same options the runtime API passes to `add server`
  (`SERVER_OPTIONS`): dynamic servers do not inherit `default-server`, and without
  `pool-max-conn -1 pool-purge-delay 5s` keep-alive throughput halves.
- `balance roundrobin`: `static-rr` and map-based algorithms refuse dynamic servers.
- No `option http-server-close`: keep-alive to the servers is what gives throughput.
- The admin socket is a unix socket only (mode 600): it can change every server.

`structure_digest` is what decides a reload: the file without its server lines, plus the
maps. Server changes alone rewrite the file (so a restart finds them) but never reload.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dkos.lb import model

HOSTS_MAP = "hosts.map"
REDIRECT_MAP = "redirect.map"

SERVER_OPTIONS = "weight 100 pool-max-conn -1 pool-purge-delay 5s"
"""Options of every server, in the file and on `add server` alike (dynamic servers do not
inherit `default-server`). Without the pool options a dynamic server keeps no idle
connections and keep-alive throughput fell from ≈ 60k to ≈ 29k req/s (measured)."""

SERVER_LINE_PREFIX = "    server "
"""Every server line starts with this and nothing else does: `structure_digest` relies on it."""

HARD_STOP_AFTER = "30m"
"""How long an old worker may keep serving long-lived connections (websockets, TCP) after a
reload. Without a bound, old workers pile up on hosts that reload often; with a short one,
long downloads are cut. Reloads only happen when frontends, routes or certificates change."""

UNIX_PATH_MAX = 107
"""A unix socket path longer than this (sun_path is 108 bytes with its NUL) cannot be bound."""

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
"""What HAProxy accepts as a proxy or server name; also keeps runtime commands unambiguous
(no blanks, no `;` that would start a second command)."""
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class RenderPaths:
    """The run directory's layout: every file HAProxy and dkos share lives in it."""

    run_dir: Path

    @property
    def config(self) -> Path:
        return self.run_dir / "haproxy.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.run_dir / "master.sock"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "haproxy.pid"

    @property
    def log_file(self) -> Path:
        """HAProxy's stderr: its alerts and warnings (start and reload errors are read from it)."""
        return self.run_dir / "haproxy.log"

    @property
    def server_state(self) -> Path:
        return self.run_dir / "server-state"

    def map_file(self, name: str) -> Path:
        return self.run_dir / name

    def check(self) -> None:
        """Raises ValueError if a socket path is too long to bind or a path would break the file's syntax."""
        for path in (self.admin_socket, self.master_socket):
            if len(str(path).encode()) > UNIX_PATH_MAX:
                raise ValueError(f"unix socket path too long ({len(str(path))} > {UNIX_PATH_MAX}): {path}")
        if not self.run_dir.is_absolute() or any(c.isspace() or c in "\"'#,\\" for c in str(self.run_dir)):
            # The paths go into haproxy.cfg and a master-socket argument unquoted.
            raise ValueError(f"the run dir must be an absolute path without blanks, quotes, '#' or ',': {self.run_dir}")


@dataclass(frozen=True)
class RenderedConfig:
    haproxy_cfg: str
    maps: Mapping[str, str]
    """Map file name (in the run dir) → content."""

    @property
    def digest(self) -> str:
        """Changes whenever any byte HAProxy reads changes."""
        return _digest(self.haproxy_cfg, self.maps)

    @property
    def structure_digest(self) -> str:
        """Changes only when a reload is needed: anything but server lines."""
        return structure_digest(self.haproxy_cfg, self.maps)


def structure_digest(haproxy_cfg: str, maps: Mapping[str, str]) -> str:
    """The digest of the configuration without its server lines (which the runtime API changes)."""
    skeleton = "".join(
        line for line in haproxy_cfg.splitlines(keepends=True) if not line.startswith(SERVER_LINE_PREFIX)
    )
    return _digest(skeleton, maps)


def render(config: model.LbConfig, *, paths: RenderPaths) -> RenderedConfig:
    """The files for `config`. Raises ValueError for a config that contradicts itself (a route
    to a backend that does not exist, a host routed twice, a server address that is not an
    IP address, ...): such a config is a bug of its caller, not something HAProxy should see."""
    paths.check()
    _check(config)
    backends = sorted(config.backends, key=lambda b: b.name)
    hosts = {host: route.backend for route in config.http_routes for host in route.hosts}
    redirects = (
        sorted(host for route in config.http_routes if route.redirect_to_https for host in route.hosts)
        if config.tls is not None
        else []
    )
    sections = [
        _global(paths),
        _defaults(),
        _http_frontend(config, paths),
    ]
    if config.tls is not None:
        sections.append(_https_frontend(config, config.tls, paths))
    sections.extend(_tcp_frontend(config.listeners, route) for route in sorted(config.tcp_routes, key=lambda r: r.port))
    sections.extend(_backend(backend) for backend in backends)
    return RenderedConfig(
        haproxy_cfg="\n".join(sections),
        maps={
            HOSTS_MAP: "".join(f"{host} {hosts[host]}\n" for host in sorted(hosts)),
            REDIRECT_MAP: "".join(f"{host} https\n" for host in redirects),
        },
    )


def server_address(server: model.Server) -> str:
    """`ip:port` as HAProxy reads it, on a server line and on `add server` alike."""
    ip = ipaddress.ip_address(server.address)
    # HAProxy takes the last colon as the port separator, so a bare IPv6 address needs its prefix.
    host = f"ipv6@{ip}" if ip.version == 6 else str(ip)
    return f"{host}:{server.port}"


def check_name(kind: str, name: str) -> None:
    """Raises ValueError for a backend or server name HAProxy would refuse or misread."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r}: use 1 to 100 of A-Z a-z 0-9 _ . : -")


# --- sections ---------------------------------------------------------------------------------


def _global(paths: RenderPaths) -> str:
    # master-worker mode comes from the command line (-W, -S), so the same file also
    # validates with `haproxy -c` and starts by hand for debugging.
    return _section(
        "global",
        [
            f"stats socket {paths.admin_socket} mode 600 level admin expose-fd listeners",
            "stats timeout 1m",
            f"server-state-file {paths.server_state}",
            "nbthread 2",
            f"hard-stop-after {HARD_STOP_AFTER}",
            # ECDHE suites do not use DH parameters; 2048 bits keeps any DHE suite acceptable.
            "tune.ssl.default-dh-param 2048",
            "ssl-default-bind-options ssl-min-ver TLSv1.2",
        ],
    )


def _defaults() -> str:
    return _section(
        "defaults",
        [
            "mode http",
            "timeout connect 5s",
            "timeout client 60s",
            "timeout server 60s",
            "timeout http-keep-alive 60s",
            # A client that never finishes its headers must not hold a connection for a minute.
            "timeout http-request 10s",
            # Websockets and other upgraded connections live on after their first exchange.
            "timeout tunnel 1h",
            # A connection refused by a server that just died is retried once more on another.
            "option redispatch",
            "retries 2",
            "load-server-state-from-file global",
        ],
    )


def _http_frontend(config: model.LbConfig, paths: RenderPaths) -> str:
    listeners = config.listeners
    lines = [f"bind {_bind(listeners.bind_address, listeners.http_port)}", *_http_common("http")]
    if config.tls is not None:
        port = "" if listeners.https_port == 443 else f":{listeners.https_port}"
        # 308, not 301: a client keeps its method and body (a POST stays a POST).
        lines.append(
            f"http-request redirect location https://%[req.hdr(host),lower,word(1,:)]{port}%[pathq] code 308"
            f" if {{ req.hdr(host),lower,word(1,:),map({paths.map_file(REDIRECT_MAP)}) -m found }}"
        )
    lines.extend(_host_routing(paths))
    return _section("frontend http", lines)


def _https_frontend(config: model.LbConfig, tls: model.Tls, paths: RenderPaths) -> str:
    listeners = config.listeners
    # The first certificate on the bind line is the one served when no SNI name matches.
    bind = (
        f"bind {_bind(listeners.bind_address, listeners.https_port)} ssl"
        f" crt {_file_path(tls.default_certificate)} crt-list {_file_path(tls.crt_list)} alpn h2,http/1.1"
    )
    return _section("frontend https", [bind, *_http_common("https"), *_host_routing(paths)])


def _http_common(proto: str) -> list[str]:
    return [
        "option forwardfor",
        # Set, not added: a client must not be able to claim it came over HTTPS.
        f"http-request set-header X-Forwarded-Proto {proto}",
        # A caller's X-Request-Id is kept, so one id follows a request across services; otherwise
        # HAProxy makes one. The unique id is read back from the header (not generated with
        # unique-id-header, which would add a second header next to the caller's), so `%ID` in
        # logs is the id the app saw.
        "http-request set-header X-Request-Id %[uuid] unless { req.hdr(x-request-id) -m found }",
        "unique-id-format %[req.hdr(x-request-id)]",
    ]


def _host_routing(paths: RenderPaths) -> list[str]:
    hosts = paths.map_file(HOSTS_MAP)
    return [
        # One lookup: the port is cut off the Host header and case does not matter in host names.
        f"http-request set-var(txn.backend) req.hdr(host),lower,word(1,:),map({hosts})",
        'http-request return status 404 content-type text/plain string "no app is served at this host name"'
        " unless { var(txn.backend) -m found }",
        "use_backend %[var(txn.backend)]",
    ]


def _tcp_frontend(listeners: model.Listeners, route: model.TcpRoute) -> str:
    return _section(
        f"frontend tcp-{route.port}",
        [
            "mode tcp",
            f"bind {_bind(listeners.bind_address, route.port)}",
            f"default_backend {route.backend}",
        ],
    )


def _backend(backend: model.Backend) -> str:
    lines = [f"mode {backend.mode}", "balance roundrobin"]
    # A backend with no servers stays: its servers arrive through the runtime API.
    for server in sorted(backend.servers, key=lambda s: s.name):
        disabled = " disabled" if server.state is model.ServerState.MAINT else ""
        lines.append(f"server {server.name} {server_address(server)} {SERVER_OPTIONS}{disabled}")
    return _section(f"backend {backend.name}", lines)


def _section(header: str, lines: Iterable[str]) -> str:
    return header + "\n" + "".join(f"    {line}\n" for line in lines)


def _bind(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _file_path(path: Path) -> str:
    text = str(path)
    if not path.is_absolute() or any(c.isspace() or c in "\"'#" for c in text):
        raise ValueError(f"a certificate path must be absolute, without blanks, quotes or '#': {text!r}")
    return text


def _digest(haproxy_cfg: str, maps: Mapping[str, str]) -> str:
    hasher = hashlib.sha256(haproxy_cfg.encode())
    for name in sorted(maps):
        hasher.update(f"\0{name}\0".encode())
        hasher.update(maps[name].encode())
    return hasher.hexdigest()


# --- consistency ------------------------------------------------------------------------------


def _check(config: model.LbConfig) -> None:
    listeners = config.listeners
    try:
        ipaddress.ip_address(listeners.bind_address)
    except ValueError:
        raise ValueError(f"bind address {listeners.bind_address!r} is not an IP address") from None
    backends: dict[str, model.Backend] = {}
    for backend in config.backends:
        check_name("backend", backend.name)
        if backend.name in backends:
            raise ValueError(f"backend {backend.name} is listed twice")
        backends[backend.name] = backend
        names: set[str] = set()
        for server in backend.servers:
            check_name("server", server.name)
            if server.name in names:
                raise ValueError(f"server {server.name} is listed twice in backend {backend.name}")
            names.add(server.name)
            try:
                ipaddress.ip_address(server.address)
            except ValueError:
                # HAProxy accepts a name on `add server` but never resolves it.
                raise ValueError(
                    f"server {backend.name}/{server.name}: {server.address!r} is not an IP address"
                ) from None
            _check_port(f"server {backend.name}/{server.name}", server.port)
    routed: dict[str, str] = {}
    for route in config.http_routes:
        _check_target(backends, route.backend, model.Mode.HTTP, f"http route {route.hosts}")
        for host in route.hosts:
            if not _HOST.fullmatch(host):
                raise ValueError(f"host name {host!r}: lower-case letters, digits, '-' and '.' only")
            if host in routed:
                raise ValueError(f"host {host} is routed to both {routed[host]} and {route.backend}")
            routed[host] = route.backend
    ports = {listeners.http_port: "the HTTP listener"}
    if config.tls is not None:
        ports[listeners.https_port] = "the HTTPS listener"
        if listeners.https_port == listeners.http_port:
            raise ValueError(f"the HTTP and HTTPS listeners share port {listeners.http_port}")
    for port in ports:
        _check_port("listener", port)
    for tcp in config.tcp_routes:
        _check_target(backends, tcp.backend, model.Mode.TCP, f"tcp route {tcp.port}")
        _check_port(f"tcp route to {tcp.backend}", tcp.port)
        if tcp.port in ports:
            raise ValueError(f"tcp route to {tcp.backend}: port {tcp.port} is taken by {ports[tcp.port]}")
        ports[tcp.port] = f"the tcp route to {tcp.backend}"


def _check_target(backends: Mapping[str, model.Backend], name: str, mode: model.Mode, what: str) -> None:
    backend = backends.get(name)
    if backend is None:
        raise ValueError(f"{what} goes to backend {name}, which is not in the config")
    if backend.mode is not mode:
        raise ValueError(f"{what} needs a {mode} backend; {name} is {backend.mode}")


def _check_port(what: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is not between 1 and 65535")
