"""dkos' own metrics in Prometheus' text format, through a tiny FastAPI app."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException, Response
from prometheus_client.parser import text_string_to_metric_families

from dkos.metrics import prometheus


def samples(metrics: prometheus.DkosMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = prometheus.render(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def make_app(metrics: prometheus.DkosMetrics) -> FastAPI:
    app = FastAPI()
    app.add_middleware(prometheus.PrometheusMiddleware, metrics=metrics)

    @app.get("/api/v1/apps/{project}/{name}")
    async def get_app(project: str, name: str) -> dict[str, str]:
        if name == "missing":
            raise HTTPException(404)
        return {"project": project, "name": name}

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(prometheus.render(metrics.registry), media_type=prometheus.CONTENT_TYPE)

    return app


async def test_api_latency_is_counted_by_route_template_and_status() -> None:
    metrics = prometheus.DkosMetrics()
    transport = httpx.ASGITransport(app=make_app(metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://dkos") as client:
        assert (await client.get("/api/v1/apps/default/web")).status_code == 200
        assert (await client.get("/api/v1/apps/shop/api")).status_code == 200
        assert (await client.get("/api/v1/apps/default/missing")).status_code == 404
        assert (await client.get("/nowhere/123")).status_code == 404
        scraped = await client.get("/metrics")

    assert scraped.headers["content-type"].startswith("text/plain")
    assert "dkos_api_request_duration_seconds_count" in scraped.text
    found = samples(metrics)
    route = "/api/v1/apps/{project}/{name}"

    def count(route: str, status: str) -> float:
        labels = (("method", "GET"), ("route", route), ("status", status))
        return found[("dkos_api_request_duration_seconds_count", labels)]

    assert count(route, "200") == 2
    assert count(route, "404") == 1
    assert count(prometheus.UNMATCHED_ROUTE, "404") == 1


async def test_an_exception_is_counted_as_a_500() -> None:
    metrics = prometheus.DkosMetrics()
    app = FastAPI()
    app.add_middleware(prometheus.PrometheusMiddleware, metrics=metrics)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://dkos") as client:
        assert (await client.get("/boom")).status_code == 500
    labels = (("method", "GET"), ("route", "/boom"), ("status", "500"))
    assert samples(metrics)[("dkos_api_request_duration_seconds_count", labels)] == 1


def test_reconcile_deploys_and_store_gauges_are_exposed_on_a_registry_of_their_own() -> None:
    metrics = prometheus.DkosMetrics()
    metrics.reconcile_seconds.observe(0.2)
    metrics.deploys.labels(kind="deploy", outcome="succeeded").inc()
    metrics.deploys.labels(kind="deploy", outcome="succeeded").inc()
    metrics.deploys.labels(kind="rollback", outcome="failed").inc()
    size = [1000]
    metrics.watch_store(size_bytes=lambda: size[0], series=lambda: 42)
    size[0] = 4096

    found = samples(metrics)
    assert found[("dkos_reconcile_duration_seconds_count", ())] == 1
    assert found[("dkos_reconcile_duration_seconds_bucket", (("le", "0.25"),))] == 1
    assert found[("dkos_deploys_total", (("kind", "deploy"), ("outcome", "succeeded")))] == 2
    assert found[("dkos_deploys_total", (("kind", "rollback"), ("outcome", "failed")))] == 1
    assert found[("dkos_metrics_store_bytes", ())] == 4096
    assert found[("dkos_metrics_store_series", ())] == 42
    # A second instance does not collide with the first (the global registry would raise here).
    assert samples(prometheus.DkosMetrics())[("dkos_metrics_store_bytes", ())] == 0
    assert not any(name.startswith("process_") for name, _ in found)
