"""`lb.render`: golden files of the rendered configuration, determinism, and refused configs.

The golden files under `golden/<case>/` are what HAProxy reads; a change to them is a
change of the data plane and shows in review. After an intended change, rewrite them with
`DKOS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/lb/test_render.py` and read the diff.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from dkos.lb import model, render

GOLDEN = Path(__file__).parent / "golden"
PATHS = render.RenderPaths(Path("/run/dkos/lb"))
READY, DRAIN, MAINT = model.ServerState.READY, model.ServerState.DRAIN, model.ServerState.MAINT


def _full() -> model.LbConfig:
    """Everything the renderer knows, given out of order on purpose."""
    return model.LbConfig(
        listeners=model.Listeners(bind_address="0.0.0.0", http_port=80, https_port=443),
        backends=(
            model.Backend(
                "shop.web.http",
                model.Mode.HTTP,
                (
                    model.Server("web-9", "172.17.0.9", 8080, DRAIN),
                    model.Server("web-10", "172.17.0.10", 8080, READY),
                    model.Server("web-11", "172.17.0.11", 8080, MAINT),
                ),
            ),
            model.Backend("shop.db.pg", model.Mode.TCP, (model.Server("db-1", "172.17.0.20", 5432, READY),)),
            model.Backend("default.api.http", model.Mode.HTTP, (model.Server("api-1", "fd00::5", 9000, READY),)),
            model.Backend("default.api.admin", model.Mode.HTTP),
        ),
        http_routes=(
            model.HttpRoute(("web.shop.example.net", "www.shop.test"), "shop.web.http", redirect_to_https=True),
            model.HttpRoute(("api.default.example.net",), "default.api.http"),
            model.HttpRoute(("admin.api.default.example.net",), "default.api.admin"),
        ),
        tcp_routes=(model.TcpRoute(30432, "shop.db.pg"),),
        tls=model.Tls(
            crt_list=Path("/var/lib/dkos/tls/crt-list.txt"),
            default_certificate=Path("/var/lib/dkos/tls/issued/dkos.invalid-0123456789ab.pem"),
        ),
    )


def _plain() -> model.LbConfig:
    """No TLS, one app on non-standard ports: redirects are left out, as there is nowhere to send them."""
    return model.LbConfig(
        listeners=model.Listeners(bind_address="127.0.0.1", http_port=8080, https_port=8443),
        backends=(
            model.Backend("default.web.http", model.Mode.HTTP, (model.Server("web-1", "10.0.0.5", 8080, READY),)),
        ),
        http_routes=(model.HttpRoute(("web.default.localhost",), "default.web.http", redirect_to_https=True),),
    )


def _redirect_on_other_port() -> model.LbConfig:
    plain = _plain()
    return dataclasses.replace(plain, tls=model.Tls(Path("/etc/dkos/crt-list.txt"), Path("/etc/dkos/default.pem")))


CASES = {
    "empty": model.LbConfig(),
    "plain": _plain(),
    "full": _full(),
    "redirect-port": _redirect_on_other_port(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_renders_the_golden_files(case: str) -> None:
    rendered = render.render(CASES[case], paths=PATHS)
    files = {"haproxy.cfg": rendered.haproxy_cfg, **rendered.maps}
    directory = GOLDEN / case
    if os.environ.get("DKOS_UPDATE_GOLDEN"):
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)
    assert sorted(files) == sorted(p.name for p in directory.iterdir())
    for name, text in files.items():
        assert text == (directory / name).read_text(), f"{case}/{name} differs from the golden file"


def test_same_config_in_any_order_gives_the_same_bytes() -> None:
    full = _full()
    shuffled = dataclasses.replace(
        full,
        backends=tuple(dataclasses.replace(b, servers=tuple(reversed(b.servers))) for b in reversed(full.backends)),
        http_routes=tuple(dataclasses.replace(r, hosts=tuple(reversed(r.hosts))) for r in reversed(full.http_routes)),
    )
    first, second = render.render(full, paths=PATHS), render.render(shuffled, paths=PATHS)
    assert first.haproxy_cfg == second.haproxy_cfg
    assert first.maps == second.maps
    assert first.digest == second.digest


def test_routes_go_through_the_hosts_map_and_unknown_hosts_get_404() -> None:
    rendered = render.render(_full(), paths=PATHS)
    assert rendered.maps[render.HOSTS_MAP].splitlines() == [
        "admin.api.default.example.net default.api.admin",
        "api.default.example.net default.api.http",
        "web.shop.example.net shop.web.http",
        "www.shop.test shop.web.http",
    ]
    assert rendered.maps[render.REDIRECT_MAP].splitlines() == ["web.shop.example.net https", "www.shop.test https"]
    assert "map(/run/dkos/lb/hosts.map)" in rendered.haproxy_cfg
    assert "http-request return status 404" in rendered.haproxy_cfg


def test_the_admin_socket_is_a_unix_socket_only() -> None:
    cfg = render.render(_full(), paths=PATHS).haproxy_cfg
    sockets = [line.strip() for line in cfg.splitlines() if line.strip().startswith("stats socket")]
    assert sockets == ["stats socket /run/dkos/lb/admin.sock mode 600 level admin expose-fd listeners"]


def test_servers_carry_the_options_of_dynamic_servers_and_maint_is_disabled() -> None:
    cfg = render.render(_full(), paths=PATHS).haproxy_cfg
    servers = [line for line in cfg.splitlines() if line.startswith(render.SERVER_LINE_PREFIX)]
    assert servers == [
        "    server api-1 ipv6@fd00::5:9000 weight 100 pool-max-conn -1 pool-purge-delay 5s",
        "    server db-1 172.17.0.20:5432 weight 100 pool-max-conn -1 pool-purge-delay 5s",
        "    server web-10 172.17.0.10:8080 weight 100 pool-max-conn -1 pool-purge-delay 5s",
        "    server web-11 172.17.0.11:8080 weight 100 pool-max-conn -1 pool-purge-delay 5s disabled",
        "    server web-9 172.17.0.9:8080 weight 100 pool-max-conn -1 pool-purge-delay 5s",
    ]
    assert "static-rr" not in cfg
    assert "http-server-close" not in cfg


def test_server_changes_keep_the_structure_digest_and_route_changes_do_not() -> None:
    full = _full()
    web = full.backends[0]
    fewer_servers = dataclasses.replace(
        full, backends=(dataclasses.replace(web, servers=web.servers[:1]), *full.backends[1:])
    )
    other_route = dataclasses.replace(
        full, http_routes=(*full.http_routes, model.HttpRoute(("new.example.net",), "shop.web.http"))
    )
    base = render.render(full, paths=PATHS)
    servers_changed = render.render(fewer_servers, paths=PATHS)
    route_changed = render.render(other_route, paths=PATHS)
    assert servers_changed.digest != base.digest
    assert servers_changed.structure_digest == base.structure_digest
    assert route_changed.structure_digest != base.structure_digest


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            model.LbConfig(http_routes=(model.HttpRoute(("a.example",), "missing"),)),
            "not in the config",
        ),
        (
            model.LbConfig(
                backends=(model.Backend("b", model.Mode.HTTP, (model.Server("s", "web.internal", 80, READY),)),)
            ),
            "not an IP address",
        ),
        (
            model.LbConfig(
                backends=(model.Backend("db", model.Mode.TCP),),
                http_routes=(model.HttpRoute(("a.example",), "db"),),
            ),
            "needs a http backend",
        ),
        (
            model.LbConfig(
                backends=(model.Backend("a", model.Mode.HTTP), model.Backend("b", model.Mode.HTTP)),
                http_routes=(model.HttpRoute(("x.example",), "a"), model.HttpRoute(("x.example",), "b")),
            ),
            "routed to both",
        ),
        (
            model.LbConfig(
                backends=(model.Backend("db", model.Mode.TCP),),
                tcp_routes=(model.TcpRoute(8080, "db"),),
            ),
            "taken by the HTTP listener",
        ),
        (
            model.LbConfig(backends=(model.Backend("bad name;del", model.Mode.HTTP),)),
            "backend name",
        ),
        (
            model.LbConfig(
                backends=(
                    model.Backend(
                        "b",
                        model.Mode.HTTP,
                        (model.Server("s", "10.0.0.1", 80, READY), model.Server("s", "10.0.0.2", 80, READY)),
                    ),
                )
            ),
            "listed twice",
        ),
        (model.LbConfig(listeners=model.Listeners(bind_address="localhost")), "not an IP address"),
    ],
)
def test_refuses_a_config_that_contradicts_itself(config: model.LbConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render.render(config, paths=PATHS)


def test_refuses_a_run_dir_whose_socket_path_cannot_be_bound() -> None:
    with pytest.raises(ValueError, match="too long"):
        render.render(model.LbConfig(), paths=render.RenderPaths(Path("/tmp/" + "x" * 120)))
