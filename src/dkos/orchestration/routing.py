"""What the load balancer should carry, decided from apps and their instances (pure).

Each app port is a backend. The first HTTP port answers the app's virtual host
`<app>.<project>.<base domain>` and its custom domains; further HTTP ports answer
`<port>.<app>.<project>.<base domain>`; TCP ports get their service port. An instance is a
server of its app's backends only while it may take traffic: healthy → ready, stopping →
drain (in-flight requests finish, no new ones), unhealthy or still starting → maint (it
left rotation the moment a check failed). Pending, stopped and failed instances are not
servers at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dkos.apps.spec import AppSpec, Protocol
from dkos.lb import model
from dkos.orchestration.instances import Instance, InstanceState

_SERVER_STATE = {
    InstanceState.HEALTHY: model.ServerState.READY,
    InstanceState.STOPPING: model.ServerState.DRAIN,
    InstanceState.UNHEALTHY: model.ServerState.MAINT,
    InstanceState.STARTING: model.ServerState.MAINT,
}


@dataclass(frozen=True)
class RoutedApp:
    project: str
    name: str
    spec: AppSpec
    instances: Sequence[Instance]
    service_ports: Mapping[str, int]
    """TCP port name → the service port allocated to it."""


def backend_name(project: str, app: str, port: str) -> str:
    return f"{project}.{app}.{port}"


def host_names(app: RoutedApp, port_name: str, *, base_domain: str) -> tuple[str, ...]:
    """The host names an HTTP port answers, its virtual host first."""
    first = app.spec.http_port()
    vhost = f"{app.name}.{app.project}.{base_domain}"
    if first is not None and first.name == port_name:
        return (vhost, *app.spec.domains)
    return (f"{port_name}.{vhost}",)


def server_for(instance: Instance, port: int) -> model.Server | None:
    state = _SERVER_STATE.get(instance.state)
    if state is None or instance.ip is None:
        return None
    return model.Server(name=instance.id, address=instance.ip, port=port, state=state)


def compute_lb_config(
    apps: Sequence[RoutedApp], *, listeners: model.Listeners, base_domain: str, tls: model.Tls | None
) -> model.LbConfig:
    backends: list[model.Backend] = []
    http_routes: list[model.HttpRoute] = []
    tcp_routes: list[model.TcpRoute] = []
    for app in sorted(apps, key=lambda a: (a.project, a.name)):
        for port in app.spec.ports:
            name = backend_name(app.project, app.name, port.name)
            servers = (server_for(i, port.container_port) for i in app.instances)
            mode = model.Mode.HTTP if port.protocol is Protocol.HTTP else model.Mode.TCP
            backends.append(
                model.Backend(name=name, mode=mode, servers=tuple(sorted((s for s in servers if s), key=_by_name)))
            )
            if mode is model.Mode.HTTP:
                http_routes.append(
                    model.HttpRoute(
                        hosts=host_names(app, port.name, base_domain=base_domain),
                        backend=name,
                        redirect_to_https=app.spec.redirect_to_https and tls is not None,
                    )
                )
            elif port.name in app.service_ports:
                tcp_routes.append(model.TcpRoute(port=app.service_ports[port.name], backend=name))
    return model.LbConfig(
        listeners=listeners,
        backends=tuple(backends),
        http_routes=tuple(http_routes),
        tcp_routes=tuple(tcp_routes),
        tls=tls,
    )


def _by_name(server: model.Server) -> str:
    return server.name
