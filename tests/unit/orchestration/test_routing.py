"""Which instances the load balancer carries, and under which names (pure)."""

from __future__ import annotations

from dkos.apps import spec
from dkos.lb import model
from dkos.orchestration import routing
from dkos.orchestration.instances import Instance, InstanceState

SPEC = spec.parse(
    """
name: web
image: x
ports:
  - {name: http, container_port: 8080}
  - {name: admin, container_port: 9090}
  - {name: db, container_port: 5432, protocol: tcp}
domains: [news.example.com]
redirect_to_https: true
"""
)
LISTENERS = model.Listeners("127.0.0.1", 18080, 18443)
TLS = model.Tls(crt_list=model.Path("/x/crt-list.txt"), default_certificate=model.Path("/x/default.pem"))


def _instance(n: int, state: InstanceState) -> Instance:
    return Instance(app_id=1, id=f"web-{n}", slot=n, version=1, template_hash="t", state=state, ip=f"172.17.0.{n}")


def _config(*instances: Instance, tls: model.Tls | None = TLS) -> model.LbConfig:
    app = routing.RoutedApp("default", "web", SPEC, instances, {"db": 10005})
    return routing.compute_lb_config([app], listeners=LISTENERS, base_domain="localhost", tls=tls)


def test_only_instances_that_may_take_traffic_are_servers_in_the_right_state() -> None:
    config = _config(
        _instance(1, InstanceState.HEALTHY),
        _instance(2, InstanceState.STOPPING),
        _instance(3, InstanceState.UNHEALTHY),
        _instance(4, InstanceState.PENDING),
        _instance(5, InstanceState.FAILED),
    )
    http = next(b for b in config.backends if b.name == "default.web.http")
    assert [(s.name, s.state) for s in http.servers] == [
        ("web-1", model.ServerState.READY),
        ("web-2", model.ServerState.DRAIN),
        ("web-3", model.ServerState.MAINT),
    ]
    assert http.servers[0].address == "172.17.0.1" and http.servers[0].port == 8080


def test_the_first_http_port_gets_the_virtual_host_and_the_custom_domains() -> None:
    config = _config()
    assert config.http_routes == (
        model.HttpRoute(("web.default.localhost", "news.example.com"), "default.web.http", redirect_to_https=True),
        model.HttpRoute(("admin.web.default.localhost",), "default.web.admin", redirect_to_https=True),
    )
    assert config.tcp_routes == (model.TcpRoute(10005, "default.web.db"),)
    assert {b.name: b.mode for b in config.backends}["default.web.db"] is model.Mode.TCP


def test_no_redirect_to_https_without_certificates() -> None:
    assert not any(r.redirect_to_https for r in _config(tls=None).http_routes)
