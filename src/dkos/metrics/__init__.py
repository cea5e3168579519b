"""Metrics: collect, store, and answer OpenTSDB-compatible queries.

The query engine is pure (no clock, no I/O) and split by concept:

    timespec     `start`/`end` strings and `1h`-style durations → epoch milliseconds
    aggregators  the named cross-series / downsampling functions and their interpolation
    downsample   `1m-avg-zero` specs, buckets and fill policies
    query        the `Query` model, GET `m=` and POST body parsing, filters, and `evaluate()`

Every way a query can be wrong raises `QueryError`, which carries OpenTSDB's own error body
(status, message, details) so Grafana and curl users see the text OpenTSDB would give them.
It lives here, in the package, because every module of the engine raises it.
"""

from __future__ import annotations

from dkos.core.errors import DkosError


class QueryError(DkosError):
    """Raised when an OpenTSDB query is malformed or names something unknown.

    `status` is the HTTP status (400 for nearly everything); `to_json()` is OpenTSDB's error body
    `{"error": {"code", "message", "details"?}}`, which the API returns as is.
    """

    code = "opentsdb"

    def __init__(self, message: str, *, status: int = 400, details: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.details = details

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.status, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}
