"""Keeps the load balancer in step with the instances: the I/O around `routing.compute_lb_config`.

`sync()` reads every app and its instances, computes the wanted LB configuration and
applies it (server changes through HAProxy's runtime API, a reload only when frontends or
certificates change). Calls coalesce: when `sync()` returns, the LB reflects the state
stored before it was called, so the deployer can rely on "enabled" and "draining" having
reached HAProxy before it goes on — the ordered, acknowledged protocol that lets a stop
wait for in-flight requests instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from dkos.apps.store import AppRecord, AppStore
from dkos.core.settings import Settings
from dkos.lb import model, uploads
from dkos.lb.certs import CertificateStore
from dkos.lb.uploads import UploadedCertificates
from dkos.orchestration import routing
from dkos.orchestration.instances import ACTIVE, Instance, InstanceStore

log = logging.getLogger(__name__)


TLS_RECHECK = 3600.0
"""Seconds between looks at the certificate files when nothing else changed (renewal is at 30 days left)."""


class Balancer(Protocol):
    """What the router needs of `lb.manager.LoadBalancer`."""

    async def apply(self, config: model.LbConfig) -> Any: ...

    async def wait_drained(self, backend: str, server: str, *, timeout: float) -> bool: ...

    async def stats(self) -> Any: ...


class Router:
    def __init__(
        self,
        *,
        settings: Settings,
        apps: AppStore,
        instances: InstanceStore,
        balancer: Balancer | None,
        certificates: CertificateStore | None,
        uploads: UploadedCertificates | None = None,
    ) -> None:
        self._uploads = uploads
        self._tls_cache: tuple[object, float, model.Tls] | None = None
        self._settings = settings
        self._apps = apps
        self._instances = instances
        self._balancer = balancer
        self._certificates = certificates
        self._lock = asyncio.Lock()
        self._requested = 0
        self._applied = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self._balancer is not None

    async def sync(self) -> None:
        """Apply the stored state to the LB; returns once a state at least this new is applied."""
        if self._balancer is None:
            return
        self._requested += 1
        wanted = self._requested
        async with self._lock:
            if self._applied >= wanted:
                return  # another caller applied a newer state while we waited
            generation = self._requested
            config = await self.compute()
            try:
                await self._balancer.apply(config)
            except Exception as exc:
                # The previous configuration keeps serving; the error is shown by the API.
                self.last_error = str(exc)
                raise
            self.last_error = None
            self._applied = generation

    async def compute(self) -> model.LbConfig:
        routed = []
        for app in await self._apps.list_apps():
            routed.append(
                routing.RoutedApp(
                    project=app.project,
                    name=app.name,
                    spec=app.spec,
                    instances=await self._instances.for_app(app.id, states=ACTIVE),
                    service_ports=await self._apps.service_ports(app.id),
                )
            )
        s = self._settings
        return routing.compute_lb_config(
            routed,
            listeners=model.Listeners(s.lb_bind_address, s.lb_http_port, s.lb_https_port),
            base_domain=s.base_domain,
            tls=await self._tls(routed),
        )

    async def _tls(self, apps: list[routing.RoutedApp]) -> model.Tls | None:
        """Uploaded certificates for the names they cover (unexpired, first upload per name wins),
        and a local-CA certificate for every other name: one per project
        (`*.<project>.<base domain>`) and one per custom domain."""
        store = self._certificates
        if store is None:
            return None
        wanted = sorted({f"*.{a.project}.{self._settings.base_domain}" for a in apps if a.spec.http_port()})
        wanted += sorted({d for a in apps for d in a.spec.domains})
        entries: list[tuple[Path, list[str]]] = []
        served: list[str] = []
        fingerprints: list[str] = []
        now = time.time()
        for upload in await self._uploads.list() if self._uploads else []:
            fresh = [n for n in upload.names if n not in served]
            if upload.not_after > now and fresh:
                entries.append((upload.path, fresh))
                served += fresh
                fingerprints.append(upload.fingerprint)
        missing = [n for n in wanted if not any(uploads.covers(p, n) for p in served)]
        # Certificates change rarely: reuse the last answer while the names and uploads are the
        # same, and look at the files again (renewals) at most every TLS_RECHECK seconds.
        key = (tuple(map(str, entries)), tuple(fingerprints), tuple(missing))
        cached = self._tls_cache
        if cached is not None and cached[0] == key and time.monotonic() < cached[1]:
            return cached[2]

        def issue() -> model.Tls:
            issued = [(store.ensure_issued([name]).path, [name]) for name in missing]
            return store.tls([*entries, *issued])

        tls = await asyncio.to_thread(issue)
        self._tls_cache = (key, time.monotonic() + TLS_RECHECK, tls)
        return tls

    async def drain(self, app: AppRecord, instance: Instance) -> float:
        """Wait until no request is in flight on the instance in any of its backends, bounded by
        the app's drain timeout; returns the seconds waited. The caller set it draining first."""
        if self._balancer is None or instance.ip is None:
            return 0.0
        began = time.monotonic()
        deadline = began + app.spec.strategy.drain_timeout
        for port in app.spec.ports:
            backend = routing.backend_name(app.project, app.name, port.name)
            left = max(0.0, deadline - time.monotonic())
            if not await self._balancer.wait_drained(backend, instance.id, timeout=left):
                log.info("%s still had sessions after the drain timeout; stopping it anyway", instance.id)
        return time.monotonic() - began

    def urls(self, app: AppRecord, service_ports: dict[str, int]) -> list[str]:
        """Where users reach the app through the LB."""
        if self._balancer is None:
            return []
        s = self._settings
        found: list[str] = []
        for port in app.spec.ports:
            if port.name in service_ports:
                found.append(f"tcp://{s.lb_bind_address}:{service_ports[port.name]}")
                continue
            routed = routing.RoutedApp(app.project, app.name, app.spec, (), service_ports)
            for host in routing.host_names(routed, port.name, base_domain=s.base_domain):
                if not app.spec.redirect_to_https:
                    found.append(f"http://{host}:{s.lb_http_port}")
                if self._certificates is not None:
                    found.append(f"https://{host}:{s.lb_https_port}")
        return found
