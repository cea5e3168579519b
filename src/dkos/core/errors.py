"""The one error tree of dkos.

    DkosError
    ├── InvalidInput          bad input from a user; carries the field and the rule  → 422
    ├── BadQuery              a search query the store cannot parse (log search's FTS5 syntax) → 400
    ├── NotFound              a named project, app, instance or deployment does not exist → 404
    ├── Conflict              the request collides with what is stored or under way → 409
    │   └── DeploymentRunning a deployment of the app runs; `?force=true` replaces it
    ├── Unauthorized          missing or wrong bearer token → 401
    └── EngineError           the container engine refused or failed an operation
        ├── EngineUnavailable the engine does not answer (retry later; dkos reconnects by itself)
        ├── ImageNotFound     the image named in a spec is not on the engine (permanent until the spec changes)
        └── ContainerConflict a container with the derived name already exists

Outside errors (aiodocker, SQLAlchemy, httpx) are mapped into this tree once, at the
boundary that calls them; the API maps the tree to HTTP statuses in one handler and
the CLI to exit codes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


class DkosError(Exception):
    """Base of every error dkos raises on purpose. `status` is the HTTP status the API answers with."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message}


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule of one field: `field` is a dotted path such as `health_check.interval`."""

    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


class InvalidInput(DkosError):
    """Raised when a spec or a request body breaks a rule; nothing is stored."""

    status = 422
    code = "invalid"

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems

    def to_json(self) -> dict[str, object]:
        return {
            "error": self.code,
            "message": self.message,
            "details": [{"field": p.field, "rule": p.rule} for p in self.problems],
        }


class BadQuery(DkosError):
    """Raised for a search query whose syntax the store rejects; the message says why."""

    status = 400
    code = "bad_query"


class NotFound(DkosError):
    """Raised when a named thing does not exist."""

    status = 404
    code = "not_found"


class Conflict(DkosError):
    """Raised when a request collides with what is stored or under way."""

    status = 409
    code = "conflict"


class DeploymentRunning(Conflict):
    """Raised when an app is changed while one of its deployments runs, without `force`."""

    code = "deployment_running"


class Unauthorized(DkosError):
    """Raised for a missing or wrong token. Says nothing about why, on purpose."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(message)


class EngineError(DkosError):
    """Raised when the container engine refuses or fails an operation."""

    status = 502
    code = "engine_error"


class EngineUnavailable(EngineError):
    """Raised when the engine does not answer. dkos keeps serving and reconnects by itself."""

    status = 503
    code = "engine_unavailable"


class ImageNotFound(EngineError):
    """Raised when a spec names an image the engine does not have. Permanent until the spec changes."""

    code = "image_not_found"

    def __init__(self, image: str) -> None:
        super().__init__(f"image not found: {image}")
        self.image = image


class ContainerConflict(EngineError):
    """Raised when a container with the derived name exists already (the caller adopts it)."""

    code = "container_conflict"
