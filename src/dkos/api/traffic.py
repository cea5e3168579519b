"""Load-balancer routes: traffic figures per app and per instance, and the LB's own status.

Figures come from HAProxy's `show stat` (counters since the current worker started, so they
restart at 0 after a reload); the metrics and autoscaling contexts read them here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter

from dkos.api.apps import ProjectQuery, Svc
from dkos.core.errors import Conflict
from dkos.lb.runtime import StatKind, StatRow
from dkos.orchestration import routing

router = APIRouter(prefix="/v1")


def _figures(row: StatRow) -> dict[str, Any]:
    return {
        "request_rate": row.rate,
        "requests": row.req_tot,
        "responses": {"2xx": row.hrsp_2xx, "3xx": row.hrsp_3xx, "4xx": row.hrsp_4xx, "5xx": row.hrsp_5xx},
        "current_sessions": row.scur,
        "average_response_ms": row.rtime,
    }


@router.get("/apps/{app}/traffic", summary="Request rate, responses by class, sessions and response time")
async def app_traffic(app: str, svc: Svc, project: ProjectQuery = "default") -> dict[str, Any]:
    record = await svc.apps.get_app(project, app)
    if svc.balancer is None:
        raise Conflict("the load balancer is disabled on this server (DKOS_LB_ENABLED=false)")
    backends = {routing.backend_name(record.project, record.name, p.name): p.name for p in record.spec.ports}
    rows = [r for r in await svc.balancer.stats() if r.proxy in backends]
    return {
        "app": record.name,
        "project": record.project,
        "ports": [
            {
                "port": backends[row.proxy],
                **_figures(row),
                "instances": [
                    {"instance": s.name, "status": s.status, **_figures(s)}
                    for s in rows
                    if s.proxy == row.proxy and s.kind is StatKind.SERVER
                ],
            }
            for row in rows
            if row.kind is StatKind.BACKEND
        ],
    }


@router.get("/lb", summary="The load balancer: running, configuration generation, last reload, last error")
async def lb_status(svc: Svc) -> dict[str, Any]:
    if svc.balancer is None:
        return {"enabled": False}
    status = dataclasses.asdict(svc.balancer.status())
    return {"enabled": True, **status, "last_error": status["last_error"] or svc.router.last_error}
