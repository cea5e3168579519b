"""The FastAPI application: routers, the bearer-token gate, and the one error handler."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

import dkos
from dkos.api import alerting, apps, events, traffic
from dkos.api import logs as logs_routes
from dkos.api.apps import Svc
from dkos.api.auth import BearerAuth
from dkos.api.services import Services
from dkos.core.errors import DkosError, FieldProblem, InvalidInput
from dkos.metrics import prometheus
from dkos.metrics import routes as metrics_routes


async def _dkos_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DkosError)
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own body and query validation, in the same shape as spec validation."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        FieldProblem(
            ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")) or "body",
            e["msg"],
        )
        for e in exc.errors()
    ]
    error = InvalidInput(problems)
    return JSONResponse(error.to_json(), status_code=error.status)


def create_app(services: Services) -> FastAPI:
    api = FastAPI(
        title="dkos",
        version=dkos.__version__,
        description="A self-hosted container cloud. Every `/v1` call needs `Authorization: Bearer <token>`.",
    )
    api.state.services = services
    api.state.metrics = services.metrics
    api.add_exception_handler(DkosError, _dkos_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_middleware(prometheus.PrometheusMiddleware, metrics=services.prom)
    api.add_middleware(BearerAuth, tokens=services.tokens)

    @api.get("/metrics", summary="dkos' own metrics, in Prometheus' text format", tags=["health"])
    async def own_metrics(svc: Svc) -> Response:
        return Response(prometheus.render(svc.prom.registry), media_type=prometheus.CONTENT_TYPE)

    @api.get("/v1/health", summary="Server and engine health", tags=["health"])
    async def health(svc: Svc) -> dict[str, Any]:
        engine = svc.reconciler.engine_status
        return {
            "status": "ok" if engine.reachable else "degraded",
            "version": dkos.__version__,
            "server_id": svc.server_id,
            "engine": engine.to_json(),
        }

    api.include_router(apps.router, tags=["apps"])
    api.include_router(events.router, tags=["events"])
    api.include_router(traffic.router, tags=["load balancer"])
    api.include_router(alerting.router, tags=["alarms and autoscaling"])
    api.include_router(logs_routes.router, tags=["logs"])
    # The OpenTSDB HTTP API, where Grafana's data source and OpenTSDB scripts look for it.
    for prefix in ("/api", "/api/v1", "/api/v2"):
        api.include_router(metrics_routes.make_router(prefix), tags=["metrics (OpenTSDB)"])
    return api
