"""Canned dkos API answers for CLI tests, served through `httpx.MockTransport`.

`FakeDkos` routes `(method, path)` to queued answers and records every request, so a
test states what the server says and checks what the CLI sent. The object factories
follow the shapes in docs/api.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeDkos:
    """Routes `(method, path)` to queued answers; the last answer of a route repeats."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []
        self.on("GET", "/v1/health", json=health())

    def on(self, method: str, path: str, *answers: Answer, status: int = 200, json: Any = None) -> None:
        """Answer `method path` with `answers` in turn, or with one JSON body."""
        queue = list(answers) or [httpx.Response(status, json=json)]
        self.routes[(method, path)] = queue

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if queue is None:
            return httpx.Response(404, json={"error": "not_found", "message": f"no route {request.url.path}"})
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer):
            return answer(request)
        # A fresh copy each time: one Response object must not serve two requests.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def health(*, reachable: bool = True, error: str | None = None) -> dict[str, Any]:
    return {
        "status": "ok" if reachable else "degraded",
        "version": "0.1.0",
        "server_id": "5f0c",
        "engine": {"reachable": reachable, "name": "docker", "version": "20.10.24", "error": error},
    }


def deployment(**fields: Any) -> dict[str, Any]:
    return {
        "id": "d-42",
        "project": "default",
        "app": "web",
        "kind": "update",
        "from_version": 2,
        "to_version": 3,
        "target_instances": 2,
        "status": "running",
        "reason": "",
        "healthy": 1,
        "created_at": 1700000100.0,
        "finished_at": None,
        **fields,
    }


def step(after: float, kind: str, message: str, instance: str | None = None) -> dict[str, Any]:
    """One of a deployment's `steps`, `after` seconds into `deployment()` (created at 1700000100)."""
    return {"time": 1700000100.0 + after, "type": kind, "instance": instance, "message": message}


ROLLING_STEPS = [
    step(0.01, "deployment.started", "update to version 3, 2 instances"),
    step(0.05, "instance.pending", "created", "web-8"),
    step(0.42, "instance.starting", "container started", "web-8"),
    step(1.30, "instance.healthy", "health check passed: HTTP 200", "web-8"),
    step(1.31, "instance.stopping", "replaced by version 3", "web-6"),
    step(1.62, "instance.stopping", "drained in 0.31s", "web-6"),
    step(1.90, "instance.stopped", "replaced by version 3", "web-6"),
    step(1.91, "deployment.succeeded", "deployment d-42 succeeded"),
]
"""A rolling update's steps as the server records them: start new, healthy, drain old, stop."""


def figures(requests: int, **fields: Any) -> dict[str, Any]:
    return {
        "request_rate": 3,
        "requests": requests,
        "responses": {"2xx": requests - 1, "3xx": 0, "4xx": 0, "5xx": 1},
        "current_sessions": 0,
        "average_response_ms": 12,
        **fields,
    }


def traffic(**fields: Any) -> dict[str, Any]:
    return {
        "app": "web",
        "project": "default",
        "ports": [
            {
                "port": "http",
                **figures(41),
                "instances": [
                    {"instance": "web-7", "status": "UP", **figures(20)},
                    {"instance": "web-8", "status": "DRAIN", **figures(21, average_response_ms=57)},
                ],
            }
        ],
        **fields,
    }


def lb_status(**fields: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "running": True,
        "pid": 4242,
        "adopted": False,
        "generation": 19,
        "digest": "6fa734be7df7f24c485de5996e1903fb6df66a6aa6abd062adc2d68b57af1054",
        "last_reload_at": 1700000000.0,
        "last_reload_seconds": 0.08,
        "last_error": None,
        "restarts": 0,
        **fields,
    }


def instance(**fields: Any) -> dict[str, Any]:
    return {
        "id": "web-7",
        "app": "web",
        "project": "default",
        "version": 3,
        "slot": 0,
        "state": "healthy",
        "container_id": "9f1c0a2b3c4d5e6f7a8b9c0d",
        "address": "172.17.0.5:8080",
        "reason": "",
        "exit_code": None,
        "created_at": 1700000000.0,
        "started_at": 1700000000.3,
        "healthy_at": 1700000000.9,
        "ended_at": None,
        **fields,
    }


def app_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "project": "default",
        "version": 3,
        "image": "dkos-demo:1",
        "desired_instances": 2,
        "counts": {"healthy": 2, "starting": 0, "pending": 0, "unhealthy": 0, "stopping": 0},
        "state": "running",
        "last_deployment": None,
        "urls": ["http://web.default.localhost:8080", "https://web.default.localhost:8443"],
        "created_at": 1700000000.0,
        "updated_at": 1700000100.0,
        **fields,
    }


def error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message, **extra})


def sse_body(*events: dict[str, Any]) -> bytes:
    frames = [f"id: {e['id']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]
    return (": keep-alive\n\n" + "".join(frames)).encode()


def event(ident: int, kind: str, message: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "time": 1700000000.0 + ident,
        "type": kind,
        "project": "default",
        "app": "web",
        "instance": None,
        "deployment": None,
        "message": message,
        **fields,
    }


def series(
    metric: str, tags: dict[str, str], dps: dict[int, Any], *, aggregate: list[str] | None = None
) -> dict[str, Any]:
    """One element of an OpenTSDB `/api/query` answer; `dps` keys are Unix seconds."""
    return {
        "metric": metric,
        "tags": tags,
        "aggregateTags": aggregate if aggregate is not None else ["node", "zone"],
        "dps": {str(ts): value for ts, value in dps.items()},
    }


def opentsdb_error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": message}})
