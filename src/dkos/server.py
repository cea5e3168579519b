"""`dkos server`: one asyncio process that serves the API and runs the loops.

Subsystems start in order and stop in reverse (database → events → reconciler → API).
SIGTERM or SIGINT stops the API (bounded wait for open requests), ends event streams,
and stops the loops; running instances keep running — the control plane is not the
data plane — and the next start adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

import dkos
from dkos.alerts.engine import Alarms
from dkos.alerts.notify import Notifier
from dkos.alerts.store import AlarmStore
from dkos.api.app import create_app
from dkos.api.services import Services
from dkos.apps.store import AppStore
from dkos.autoscale.engine import Autoscaler
from dkos.autoscale.store import PolicyStore
from dkos.core import db
from dkos.core.events import EventBus
from dkos.core.settings import Settings
from dkos.engines.docker import DockerEngine
from dkos.iam.tokens import TokenStore
from dkos.lb.certs import CertificateStore
from dkos.lb.manager import LoadBalancer
from dkos.lb.uploads import UploadedCertificates
from dkos.logs import keywords
from dkos.logs import service as log_service
from dkos.metrics import collect, prometheus
from dkos.metrics.store import MetricsStore
from dkos.orchestration.instances import RUNNING, InstanceStore
from dkos.orchestration.reconciler import Reconciler
from dkos.orchestration.router import Router

log = logging.getLogger("dkos")


async def server_identity(engine: AsyncEngine) -> str:
    """A stable id for this control plane, put on every container it owns, so two servers
    sharing one Docker engine never adopt or sweep each other's containers."""
    async with engine.begin() as conn:
        found = await conn.scalar(sa.select(db.meta.c.value).where(db.meta.c.key == "server_id"))
        if found is not None:
            return str(found)
        server_id = uuid.uuid4().hex[:16]
        await conn.execute(db.meta.insert().values(key="server_id", value=server_id))
        return server_id


class _Server(uvicorn.Server):
    """Ends the event streams when shutdown begins, so open SSE clients do not hold it up.

    Signals are ours, not uvicorn's: its handler re-raises SIGTERM after shutdown, which
    would make a clean stop exit with -15 instead of 0."""

    def __init__(self, config: uvicorn.Config, bus: EventBus) -> None:
        super().__init__(config)
        self._bus = bus

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_exit)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _request_exit(self) -> None:
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._bus.close()
        await super().shutdown(sockets)


def metric_targets(apps: AppStore, instances: InstanceStore) -> Callable[[], Awaitable[list[collect.Target]]]:
    """What the collector follows: every running instance with a container."""

    async def targets() -> list[collect.Target]:
        return [
            collect.Target(i.id, i.container_id, app.project, app.name, i.version, app.spec.resources.cpus)
            for app in await apps.list_apps()
            for i in await instances.for_app(app.id, states=RUNNING)
            if i.container_id is not None
        ]

    return targets


async def serve(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(db.open_database(settings.db_url))
        apps = AppStore(engine, service_ports=range(settings.service_port_min, settings.service_port_max + 1))
        await apps.ensure_project("default", "created at first start")
        server_id = await server_identity(engine)
        tokens = TokenStore(engine)
        token_file = await tokens.ensure_admin(settings.data_dir)
        log.info("admin token in %s", token_file.resolve())
        bus = EventBus(engine)
        docker = DockerEngine(settings.docker_url)
        stack.push_async_callback(docker.close)
        instances = InstanceStore(engine)
        metrics = MetricsStore(
            settings.data_dir / "metrics.db",
            raw_retention=settings.metrics_raw_retention,
            rollup_retention={
                "1m": settings.metrics_rollup_1m_retention,
                "5m": settings.metrics_rollup_5m_retention,
                "1h": settings.metrics_rollup_1h_retention,
            },
        )
        stack.push_async_callback(metrics.close)
        prom = prometheus.DkosMetrics()
        prom.watch_store(size_bytes=metrics.disk_bytes, series=lambda: metrics.series_count)
        balancer = None
        if settings.lb_enabled:
            # HAProxy outlives this process (the data plane keeps serving); a restart adopts it.
            balancer = await stack.enter_async_context(
                LoadBalancer(run_dir=settings.data_dir / "lb", haproxy=settings.haproxy)
            )
        certificates = CertificateStore(settings.data_dir / "tls") if balancer else None
        uploaded = UploadedCertificates(engine, certificates) if certificates else None
        router = Router(
            settings=settings,
            apps=apps,
            instances=instances,
            balancer=balancer,
            certificates=certificates,
            uploads=uploaded,
        )
        logs = await stack.enter_async_context(log_service.running(settings, docker, owner=server_id))
        reconciler = await stack.enter_async_context(
            Reconciler(
                settings=settings,
                apps=apps,
                instances=instances,
                engine=logs.engine,
                bus=bus,
                owner=server_id,
                router=router,
                prom=prom,
            )
        )
        await stack.enter_async_context(
            collect.Collector(
                metrics,
                docker,
                metric_targets(apps, instances),
                balancer=balancer,
                data_dir=settings.data_dir,
                node=socket.gethostname(),
                zone=settings.zone,
                interval=settings.metrics_interval,
            )
        )
        # Alarms evaluate as metrics arrive and notify; the autoscaler acts on them (issue 5).
        alarm_store = AlarmStore(engine)
        notifier = await stack.enter_async_context(Notifier(alarm_store, settings))
        alarms = await stack.enter_async_context(
            Alarms(
                store=alarm_store,
                notifier=notifier,
                metrics=metrics,
                apps=apps,
                instances=instances,
                settings=settings,
            )
        )
        # Keyword alarms count captured lines; states and notifications are the alarms' (issue 6).
        await stack.enter_async_context(keywords.KeywordAlarms(alarms, logs.store, settings=settings))
        autoscaler = await stack.enter_async_context(
            Autoscaler(
                store=PolicyStore(engine),
                alarms=alarms,
                apps=apps,
                instances=instances,
                bus=bus,
                reconciler=reconciler,
                metrics=metrics,
                settings=settings,
            )
        )
        services = Services(
            settings=settings,
            server_id=server_id,
            apps=apps,
            instances=instances,
            tokens=tokens,
            bus=bus,
            reconciler=reconciler,
            router=router,
            balancer=balancer,
            certificates=certificates,
            uploads=uploaded,
            metrics=metrics,
            prom=prom,
            logs=logs.store,
            alarms=alarms,
            autoscaler=autoscaler,
        )
        host, port = settings.host_port
        config = uvicorn.Config(
            create_app(services),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        log.info("dkos %s API on http://%s:%d (server id %s)", dkos.__version__, host, port, server_id)
        if balancer is not None:
            log.info(
                "load balancer: http://%s:%d, https://%s:%d, apps at <app>.<project>.%s",
                settings.lb_bind_address,
                settings.lb_http_port,
                settings.lb_bind_address,
                settings.lb_https_port,
                settings.base_domain,
            )
        await _Server(config, bus).serve()
        log.info("stopping: loops end, instances and the load balancer keep running")


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("DKOS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("httpx", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def run(*, data_dir: Path, listen: str) -> None:
    configure_logging()
    asyncio.run(serve(Settings(data_dir=data_dir, listen=listen)))
