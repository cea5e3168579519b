"""The HTTP client of the dkos REST API (docs/api.md): one method per call.

The CLI talks to dkos only through this module, never through server internals, so
everything the CLI does is something any API user can do. Objects come back as the
plain JSON the server sent (`dict[str, Any]`); the CLI passes them through to
`--output json` unchanged, so the API stays the one source of truth for their shape.

Every failure is mapped here, once, into this tree (the CLI turns it into messages
and exit codes in `cli/errors.py`):

    ClientError         no usable answer; the base of the tree
    ├── ApiError        the server answered with an error status (401, 404, 422, …),
    │                   carrying its `error` code, `message` and 422 `details` (or the
    │                   OpenTSDB API's nested `{"error": {"code", "message"}}`)
    ├── Unreachable     no connection at all: refused, unknown host, connect timeout
    └── ConnectionLost  connected, then the answer broke off or timed out

I/O sits behind an `httpx` transport, so tests pass `httpx.MockTransport` instead of
patching anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from dkos.cli import sse

JSON = dict[str, Any]
"""One API object (App, Instance, Deployment, Version, Event), exactly as the server sent it."""

DEFAULT_TIMEOUT = 10.0
"""Seconds for one ordinary request: the API answers from its database, not the engine."""

STREAM_READ_TIMEOUT = 45.0
"""Seconds of silence after which a followed event stream counts as dead: the server
sends a keep-alive comment every 15 s, so three missed ones mean the connection is gone."""


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule of a 422 answer: `instances: must be ≥ 0`."""

    field: str
    rule: str


class ClientError(Exception):
    """The CLI got no answer it can use; `str()` says what happened."""


class ApiError(ClientError):
    """Raised when the server answers with a status ≥ 400 (see the table in docs/api.md)."""

    def __init__(self, status: int, error: str, message: str, details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or []


class Unreachable(ClientError):
    """Raised when no connection could be made to `url` (refused, unknown host, connect timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class ConnectionLost(ClientError):
    """Raised when a connection was made but the answer broke off or took too long."""


@dataclass(frozen=True)
class DeployResult:
    """What `POST /v1/apps` answered: 201 means a new app, `deployment` None means no change."""

    created: bool
    app: JSON
    deployment: JSON | None


@dataclass
class Client:
    """A session with one dkos server: its base URL and bearer token.

    `transport` is where requests go; None means the network. Use it as a context
    manager, or call `close()`, to release the connection pool.
    """

    base_url: str
    token: str | None
    transport: httpx.BaseTransport | None = None
    timeout: float = DEFAULT_TIMEOUT
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=self.timeout, transport=self.transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- health and projects ---------------------------------------------------------

    def health(self) -> JSON:
        """`GET /v1/health`: server version and whether the container engine answers."""
        return self._json("GET", "/v1/health")

    def list_projects(self) -> list[JSON]:
        return list(self._json("GET", "/v1/projects")["projects"])

    def create_project(self, name: str, description: str = "") -> JSON:
        return self._json("POST", "/v1/projects", json={"name": name, "description": description})

    # -- apps --------------------------------------------------------------------------

    def deploy(self, spec_text: str, *, content_type: str, force: bool = False) -> DeployResult:
        """`POST /v1/apps` with the spec file's text as written: dkos keeps what the user wrote.

        `force` replaces a deployment of the app that still runs; without it dkos answers 409."""
        response = self._send(
            "POST",
            "/v1/apps",
            params=_force(force),
            content=spec_text.encode(),
            headers={"Content-Type": content_type},
        )
        body = _body(response)
        return DeployResult(created=response.status_code == 201, app=body["app"], deployment=body.get("deployment"))

    def list_apps(self, project: str | None) -> list[JSON]:
        """`GET /v1/apps`; `project` None lists every project's apps."""
        params = {} if project is None else {"project": project}
        return list(self._json("GET", "/v1/apps", params=params)["apps"])

    def get_app(self, app: str, project: str) -> JSON:
        return self._json("GET", _app_path(app), params={"project": project})

    def scale(self, app: str, project: str, instances: int, *, force: bool = False) -> JSON:
        """`POST /v1/apps/{app}/scale` → `{"app": App, "deployment": Deployment}`."""
        return self._json(
            "POST",
            _app_path(app, "scale"),
            params={"project": project, **_force(force)},
            json={"instances": instances},
        )

    def restart(self, app: str, project: str, *, force: bool = False) -> JSON:
        return self._json("POST", _app_path(app, "restart"), params={"project": project, **_force(force)})

    def rollback(self, app: str, project: str, *, to_version: int | None = None, force: bool = False) -> JSON:
        """`POST /v1/apps/{app}/rollback` → `{"app": App, "deployment": Deployment}`.

        Without `to_version` the server picks the newest earlier version with a different template."""
        return self._json(
            "POST",
            _app_path(app, "rollback"),
            params={"project": project, **_force(force)},
            json={} if to_version is None else {"to_version": to_version},
        )

    def delete_app(self, app: str, project: str) -> JSON:
        return self._json("DELETE", _app_path(app), params={"project": project})

    def versions(self, app: str, project: str) -> list[JSON]:
        return list(self._json("GET", _app_path(app, "versions"), params={"project": project})["versions"])

    def instances(self, app: str, project: str, *, include_ended: bool = False) -> list[JSON]:
        """Live instances, or with `include_ended` the stopped and failed ones too."""
        params = {"project": project}
        if include_ended:
            params["all"] = "true"
        return list(self._json("GET", _app_path(app, "instances"), params=params)["instances"])

    def deployments(self, app: str, project: str) -> list[JSON]:
        """`GET /v1/apps/{app}/deployments`, newest first."""
        return list(self._json("GET", _app_path(app, "deployments"), params={"project": project})["deployments"])

    def deployment(self, deployment_id: str) -> JSON:
        """`GET /v1/deployments/{id}`: the Deployment plus its `steps`, oldest first."""
        return self._json("GET", f"/v1/deployments/{quote(deployment_id, safe='')}")

    # -- load balancer -----------------------------------------------------------------

    def traffic(self, app: str, project: str) -> JSON:
        """`GET /v1/apps/{app}/traffic`: figures per port and per instance, from HAProxy."""
        return self._json("GET", _app_path(app, "traffic"), params={"project": project})

    def lb_status(self) -> JSON:
        """`GET /v1/lb`: `{"enabled": false}`, or whether HAProxy runs and how its last reload went."""
        return self._json("GET", "/v1/lb")

    # -- metrics (the OpenTSDB API) -----------------------------------------------------

    def query(self, m: str, *, start: str, end: str | None = None) -> list[JSON]:
        """`GET /api/query?start=…&m=…`: OpenTSDB's answer, one object per series
        (`metric`, `tags`, `aggregateTags`, `dps` = `{"<unix seconds>": value}`)."""
        params = {"start": start, "m": m}
        if end is not None:
            params["end"] = end
        response = self._send("GET", "/api/query", params=params)
        try:
            body = response.json()
        except ValueError as exc:
            raise ClientError(f"dkos answered a query with something not JSON: {response.text[:200]!r}") from exc
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise ClientError("dkos answered a query with JSON that is not an array of series")
        return body

    # -- events ------------------------------------------------------------------------

    def events(
        self,
        *,
        project: str | None = None,
        app: str | None = None,
        tail: int = 0,
        follow: bool = True,
        last_event_id: str | None = None,
    ) -> Iterator[JSON]:
        """Events from the SSE stream `GET /v1/events`, each the JSON of its `data:` field.

        Without `follow` the server sends the last `tail` events and closes; with it the
        iterator runs until the connection ends. `last_event_id` resumes after a drop.
        """
        params: dict[str, str] = {"tail": str(tail), "follow": "true" if follow else "false"}
        if project is not None:
            params["project"] = project
        if app is not None:
            params["app"] = app
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        # A followed stream may be silent for a long time between events; only the
        # keep-alive comments tell it is alive, so the read timeout is theirs, not ours.
        timeout = httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT if follow else self.timeout)
        try:
            with self._http.stream("GET", "/v1/events", params=params, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                for message in sse.parse(response.iter_lines()):
                    yield _event(message)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    def logs(self, app: str, project: str, params: dict[str, str]) -> JSON:
        """One page of `GET /v1/apps/{app}/logs` (docs/logs.md: tail, since/until, after/before, q…)."""
        return self._json("GET", _app_path(app, "logs"), params={"project": project, **params})

    def follow_logs(
        self, app: str, project: str, params: dict[str, str], *, last_event_id: str | None = None
    ) -> Iterator[JSON]:
        """Lines from the SSE stream `GET /v1/apps/{app}/logs/stream`, until the connection ends."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT)
        path = _app_path(app, "logs", "stream")
        try:
            with self._http.stream(
                "GET", path, params={"project": project, **params}, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                for message in sse.parse(response.iter_lines()):
                    yield _event(message)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    # -- plumbing ----------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> JSON:
        return _body(self._send(method, path, **kwargs))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _transport_error(self, exc: httpx.HTTPError) -> ClientError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.UnsupportedProtocol):
            return Unreachable(self.base_url, str(exc) or type(exc).__name__)
        if isinstance(exc, httpx.TimeoutException):
            return ConnectionLost(f"dkos at {self.base_url} did not answer in time ({type(exc).__name__})")
        return ConnectionLost(f"the connection to dkos at {self.base_url} failed: {exc or type(exc).__name__}")


def _app_path(app: str, *rest: str) -> str:
    # Quote the name: `dkos apps show ../deployments/d-1` must not address another resource.
    return "/".join(["/v1/apps", quote(app, safe=""), *rest])


def _force(force: bool) -> dict[str, str]:
    # Sent only when asked for, so a request without --force reads as it did before.
    return {"force": "true"} if force else {}


def _body(response: httpx.Response) -> JSON:
    try:
        body = response.json()
    except ValueError as exc:
        raise ClientError(
            f"dkos answered {response.status_code} with something that is not JSON: {response.text[:200]!r}"
        ) from exc
    if not isinstance(body, dict):
        raise ClientError(f"dkos answered {response.status_code} with JSON that is not an object")
    return body


def _api_error(response: httpx.Response) -> ApiError:
    """The error the server described, or a generic one when a proxy or a crash answered instead."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, f"http_{response.status_code}", text)
    nested = body.get("error")
    if isinstance(nested, dict):
        # The OpenTSDB API (/api/…) nests its error: {"error": {"code", "message", "details"}}.
        return ApiError(
            response.status_code,
            f"http_{response.status_code}",
            str(nested.get("message") or response.reason_phrase),
        )
    details = [
        FieldProblem(field=str(d.get("field", "")), rule=str(d.get("rule", "")))
        for d in body.get("details") or []
        if isinstance(d, dict)
    ]
    return ApiError(
        response.status_code,
        str(body.get("error", f"http_{response.status_code}")),
        str(body.get("message", response.reason_phrase)),
        details,
    )


def _event(message: sse.Message) -> JSON:
    try:
        event = json.loads(message.data)
    except ValueError as exc:
        raise ClientError(f"dkos sent an event whose data is not JSON: {message.data[:200]!r}") from exc
    if not isinstance(event, dict):
        raise ClientError(f"dkos sent an event whose data is not a JSON object: {message.data[:200]!r}")
    # The SSE fields are the fallback: the data object is what docs/api.md promises.
    event.setdefault("id", message.id)
    event.setdefault("type", message.event)
    return event
