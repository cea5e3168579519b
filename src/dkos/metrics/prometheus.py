"""dkos' own health in Prometheus' text format, for a `/metrics` route.

Where it sits: the figures users' apps produce go to the metrics store (`collect`); the
figures of dkos itself — how long reconcile passes take, how deploys end, how fast the API
answers, how big the store grows — are exposed here for a Prometheus server to scrape.

Everything is registered on a dedicated `CollectorRegistry` owned by one `DkosMetrics`, never
on prometheus-client's global registry: two servers in one process (tests) do not collide,
and `/metrics` shows dkos' figures only (no process or GC collectors unless asked for).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The `Content-Type` of `render`'s answer."""

UNMATCHED_ROUTE = "<unmatched>"
"""The `route` label of requests no route matched: raw paths would make a series per URL."""

_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class DkosMetrics:
    """dkos' own metrics on a registry of their own; the server makes one and hands it around."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.reconcile_seconds = Histogram(
            "dkos_reconcile_duration_seconds",
            "Time one reconcile pass of an app took.",
            buckets=_RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.deploys = Counter(
            "dkos_deploys",
            "Deploys finished, by kind (deploy, scale, restart, rollback) and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.api_request_seconds = Histogram(
            "dkos_api_request_duration_seconds",
            "Time the API took to answer, by method, route template and status.",
            ["method", "route", "status"],
            buckets=_API_BUCKETS,
            registry=self.registry,
        )
        self.store_bytes = Gauge(
            "dkos_metrics_store_bytes", "Size of the metrics store on disk, with its WAL.", registry=self.registry
        )
        self.store_series = Gauge("dkos_metrics_store_series", "Series in the metrics store.", registry=self.registry)

    def watch_store(self, *, size_bytes: Callable[[], float], series: Callable[[], float]) -> None:
        """Read the store's gauges from callables at each scrape (they must be quick and not block:
        they run on the event loop, in the `/metrics` handler)."""
        self.store_bytes.set_function(size_bytes)
        self.store_series.set_function(series)


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text exposition format (serve with `CONTENT_TYPE`)."""
    return generate_latest(registry)


class PrometheusMiddleware:
    """ASGI middleware timing every HTTP request into `api_request_seconds`.

    The `route` label is the matched route's template (`/api/v1/apps/{project}/{name}`), which
    Starlette's router leaves in the scope; the status is the one sent, 500 when the app raised
    before answering. Streams (logs, events) are timed until their last byte."""

    def __init__(self, app: ASGIApp, *, metrics: DkosMetrics) -> None:
        self.app = app
        self.histogram = metrics.api_request_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.histogram.labels(scope["method"], _route(scope), str(status)).observe(time.perf_counter() - start)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE
