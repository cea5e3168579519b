"""Load-balancer routes: traffic figures per app and per instance, the LB's status, certificates.

Figures come from HAProxy's `show stat` (counters since the current worker started, so they
restart at 0 after a reload); the metrics and autoscaling contexts read them here.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from dkos.api.apps import ProjectQuery, Svc
from dkos.api.services import Services
from dkos.core.errors import Conflict
from dkos.lb.runtime import StatKind, StatRow
from dkos.lb.uploads import UploadedCertificates
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


class CertificateIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", description="A name for the certificate.")
    certificate: str = Field(description="PEM: the certificate, then its intermediates.")
    key: str = Field(description="PEM: the unencrypted private key. Stored with mode 0600, never returned.")


def _uploads(svc: Services) -> UploadedCertificates:
    if svc.uploads is None:
        raise Conflict("the load balancer is disabled on this server (DKOS_LB_ENABLED=false)")
    return svc.uploads


@router.post("/certificates", summary="Upload a certificate and key for the domains it names")
async def put_certificate(body: CertificateIn, svc: Svc) -> JSONResponse:
    upload, created = await _uploads(svc).put(body.name, body.certificate, body.key)
    await svc.reconciler.route()
    return JSONResponse(upload.to_json(), status_code=201 if created else 200)


@router.get("/certificates", summary="Uploaded certificates (never their keys)")
async def list_certificates(svc: Svc) -> dict[str, Any]:
    return {"certificates": [u.to_json() for u in await _uploads(svc).list()]}


@router.delete("/certificates/{name}", status_code=204, summary="Remove an uploaded certificate")
async def delete_certificate(name: str, svc: Svc) -> Response:
    await _uploads(svc).remove(name)
    await svc.reconciler.route()
    return Response(status_code=204)


@router.get(
    "/certificates/ca",
    summary="The local CA's certificate, to trust the certificates dkos issues",
    response_class=PlainTextResponse,
)
async def local_ca(svc: Svc) -> PlainTextResponse:
    if svc.certificates is None:
        raise Conflict("the load balancer is disabled on this server (DKOS_LB_ENABLED=false)")
    return PlainTextResponse(
        await asyncio.to_thread(svc.certificates.ca_certificate_pem), media_type="application/x-pem-file"
    )
