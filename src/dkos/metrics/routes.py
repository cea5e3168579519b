"""The OpenTSDB 2.x HTTP API: `/put`, `/query`, `/suggest`, `/aggregators`, `/config/filters`, `/search/lookup`.

`make_router(prefix)` gives one router; the app mounts it at `/api`, `/api/v1` and `/api/v2`, all
answering alike. Handlers read the store from `request.app.state.metrics` and the clock here (the
query engine in `dkos.metrics.query` is pure). Every error, including a wrong method, has OpenTSDB's
body `{"error": {"code", "message", "details"?}}`; `?jsonp=<fn>` wraps any answer. Behaviour follows
/work/shared/specs/opentsdb-api.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dkos.metrics import QueryError, rollups
from dkos.metrics import query as q
from dkos.metrics.downsample import Downsample
from dkos.metrics.store import DataPoint, MetricsStore

MAX_POINTS = 10_000_000
"""Points one query may read unless `settings.metrics_max_points` says otherwise; more → 413."""

MAX_TAGS = 8
"""OpenTSDB's `tsd.storage.max_tags`."""

SUGGEST_DEFAULT_MAX = 25
LOOKUP_DEFAULT_LIMIT = 25

_ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
_KINDS = {"metrics": "metric", "tagk": "tagk", "tagv": "tagv"}
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
_JSONP = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]*")


class OpenTsdbResponse(Response):
    media_type = "application/json; charset=UTF-8"


# ---------------------------------------------------------------------------------------------
# Plumbing


def store_of(request: Request) -> MetricsStore:
    return request.app.state.metrics  # type: ignore[no-any-return]


def max_points(request: Request) -> int:
    """The cap on points one query reads: the settings' `metrics_max_points`, else `MAX_POINTS`."""
    state = request.app.state
    settings = getattr(state, "settings", None)
    if settings is None:
        settings = getattr(getattr(state, "services", None), "settings", None)
    configured = getattr(settings, "metrics_max_points", None)
    return configured if isinstance(configured, int) else MAX_POINTS


def _respond(request: Request, body: object | None, status: int = 200) -> Response:
    if body is None:
        return Response(status_code=status)
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    callback = request.query_params.get("jsonp")
    if callback and _JSONP.fullmatch(callback):
        text = f"{callback}({text})"
    return OpenTsdbResponse(text, status_code=status)


def _error(request: Request, exc: QueryError) -> Response:
    return _respond(request, exc.to_json(), exc.status)


Handler = Callable[[Request], Awaitable[Response]]


def _opentsdb(handler: Handler) -> Handler:
    """Turn `QueryError`s into OpenTSDB error bodies (the router does not rely on app-level handlers)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except QueryError as exc:
            return _error(request, exc)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def _not_allowed(request: Request) -> Response:
    return _error(request, QueryError("Method not allowed", status=405))


def _params(request: Request) -> dict[str, list[str]]:
    return {key: request.query_params.getlist(key) for key in request.query_params}


async def _json_body(request: Request) -> object | None:
    """The decoded body, None when there is none; 400 `Unable to parse the given JSON` if it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        decoded: object = json.loads(raw)
    except ValueError as exc:
        raise QueryError("Unable to parse the given JSON", details=str(exc)) from exc
    return decoded


# ---------------------------------------------------------------------------------------------
# /put


class _BadPoint(Exception):
    """One data point's rejection; the message is OpenTSDB's text for it."""


def _text(value: object, what: str) -> str | None:
    """A Jackson-style scalar → string coercion; objects and arrays make the whole body unparseable."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value
    raise QueryError("Unable to parse the given JSON", details=f"Cannot deserialize {what} from a JSON structure")


def _timestamp(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise QueryError("Unable to parse the given JSON", details="Cannot deserialize timestamp from a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise QueryError("Unable to parse the given JSON", details=f"Cannot deserialize timestamp from {value!r}")


def _decode_point(raw: object) -> dict[str, Any]:
    """A put object → {metric, timestamp, value, tags} as OpenTSDB's IncomingDataPoint holds them."""
    if not isinstance(raw, Mapping):
        raise QueryError("Unable to parse the given JSON", details="each data point must be a JSON object")
    tags = raw.get("tags")
    decoded_tags: dict[str, str] | None = None
    if tags is not None:
        if not isinstance(tags, Mapping):
            raise QueryError("Unable to parse the given JSON", details="tags must be a JSON object")
        decoded_tags = {str(k): _text(v, "a tag value") or "" for k, v in tags.items()}
    return {
        "metric": _text(raw.get("metric"), "metric"),
        "timestamp": _timestamp(raw.get("timestamp")),
        "value": _text(raw.get("value"), "value"),
        "tags": decoded_tags,
    }


def _validate_name(what: str, name: str) -> None:
    if name == "":
        raise _BadPoint(f"Invalid {what}: empty string")
    for c in name:
        if not (c.isascii() and (c.isalnum() or c in "-_./")) and not c.isalpha():
            raise _BadPoint(f'Invalid {what} ("{name}"): illegal character: {c}')


def _java_map(tags: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in tags.items()) + "}"


def _parse_value(text: str) -> int | float:
    if not any(c in text for c in ".eE"):
        if _INTEGER.fullmatch(text):
            number = int(text)
            if _LONG_MIN <= number <= _LONG_MAX:
                return number
        raise _BadPoint("Unable to parse value to a number")
    try:
        value = float(text.strip())
    except ValueError:
        raise _BadPoint("Unable to parse value to a number") from None
    if "_" in text or not math.isfinite(value):
        raise _BadPoint("Unable to parse value to a number")
    return value


def _to_data_point(dp: Mapping[str, Any]) -> DataPoint:
    """Validate one decoded point in OpenTSDB's order; `_BadPoint` says why it is refused."""
    metric: str | None = dp["metric"]
    timestamp: int = dp["timestamp"]
    text: str | None = dp["value"]
    tags: dict[str, str] | None = dp["tags"]
    if not metric:
        raise _BadPoint("Metric name was empty")
    if timestamp <= 0:
        raise _BadPoint("Invalid timestamp")
    if not text:
        raise _BadPoint("Empty value")
    if not tags:
        raise _BadPoint("Missing tags")
    value = _parse_value(text)
    if timestamp > 9_999_999_999_999:
        raise _BadPoint(
            f"bad timestamp={timestamp} when trying to add value={text} to metric={metric}, tags={_java_map(tags)}"
        )
    _validate_name("metric name", metric)
    if len(tags) > MAX_TAGS:
        raise _BadPoint(f"Too many tags: {len(tags)} maximum allowed: {MAX_TAGS}, tags: {_java_map(tags)}")
    for key, tag_value in tags.items():
        _validate_name("tag name", key)
        _validate_name("tag value", tag_value)
    timestamp_ms = timestamp * 1000 if timestamp < 2**32 else timestamp
    return DataPoint(metric, dict(tags), timestamp_ms, value)


@_opentsdb
async def put(request: Request) -> Response:
    """Store data points (one object or an array); each is validated on its own, the good ones are kept.

    204 when all are stored; with `?summary` / `?details` the counts (and each error), 200 or 400.
    """
    raw = (await request.body()).strip()
    if not raw:
        raise QueryError("Missing request content")
    if raw[:1] not in (b"{", b"["):
        raise QueryError("The JSON must start as an object or an array")
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise QueryError("Unable to parse the given JSON", details=str(exc)) from exc
    items = decoded if isinstance(decoded, list) else [decoded]
    if not items:
        raise QueryError("No datapoints found in content")
    points = [_decode_point(item) for item in items]

    good: list[DataPoint] = []
    errors: list[dict[str, object]] = []
    for dp in points:
        try:
            good.append(_to_data_point(dp))
        except _BadPoint as exc:
            errors.append({"datapoint": {k: v for k, v in dp.items() if v is not None}, "error": str(exc)})
    await store_of(request).put(good)  # committed before answering: visible to the next query

    params = request.query_params
    status = 400 if errors else 200
    if "details" in params:
        return _respond(request, {"success": len(good), "failed": len(errors), "errors": errors}, status)
    if "summary" in params:
        summary: dict[str, object] = {"success": len(good), "failed": len(errors)}
        if "sync" in params:
            summary["timeouts"] = 0
        return _respond(request, summary, status)
    if errors:
        raise QueryError(
            "One or more data points had errors",
            details='Please see the TSD logs or append "details" to the put request',
        )
    return _respond(request, None, 204)


# ---------------------------------------------------------------------------------------------
# /query


def _cap_message(limit: int) -> str:
    return (
        f"Sorry, you have attempted to fetch more than our limit of {limit} data points. "
        "Please try filtering using more tags or decrease your time range."
    )


async def run_query(store: MetricsStore, query: q.Query, *, now_ms: int, limit: int) -> list[dict[str, object]]:
    """Names → cap → per sub query: read its scan window, evaluate; the 200 body."""
    metrics_wanted = {sub.metric for sub in query.queries}
    tagks_wanted = {f.tagk for sub in query.queries for f in sub.filters}
    literals = [f.filter for sub in query.queries for f in sub.filters if f.type is q.FilterType.LITERAL_OR]
    tagvs_wanted = {v for text in literals for v in text.split("|")}
    q.check_names(
        query,
        metrics_known=await store.known("metric", metrics_wanted),
        tagks_known=await store.known("tagk", tagks_wanted),
        tagvs_known=await store.known("tagv", tagvs_wanted),
    )
    # One read per distinct (metric, window, downsample a rollup answers): sub queries that differ
    # only in aggregator, filters or rate share it.
    reads = {
        sub: (sub.metric, *q.scan_window(query, sub), sub.downsample if rollups.choose(sub.downsample) else None)
        for sub in query.queries
    }
    total = 0
    for metric, start_ms, end_ms, ds in sorted(set(reads.values()), key=lambda read: read[:3]):
        total += await store.count_points(metric, start_ms, end_ms, ds=ds)
        if total > limit:
            raise QueryError(_cap_message(limit), status=413)

    loaded: dict[tuple[str, int, int, Downsample | None], list[q.Series]] = {}
    results: list[q.Result] = []
    for index, sub in enumerate(query.queries):
        read = reads[sub]
        if read not in loaded:
            metric, start_ms, end_ms, ds = read
            loaded[read] = await (
                store.downsampled(metric, start_ms, end_ms, ds=ds) if ds else store.series(metric, start_ms, end_ms)
            )
        # Each sub query sees exactly its own scan window, as OpenTSDB's per-query row scan does.
        for result in q.evaluate(dataclasses.replace(query, queries=(sub,)), loaded[read], now_ms=now_ms):
            results.append(dataclasses.replace(result, query=sub.to_json(index)) if query.show_query else result)
    return q.render(query, results)


def _now_ms() -> int:
    return int(time.time() * 1000)


@_opentsdb
async def query_get(request: Request) -> Response:
    """`GET /query?start=1h-ago&m=sum:rate:1m-avg:sys.cpu.user{host=*}`."""
    now_ms = _now_ms()
    parsed = q.parse_query_string(_params(request), now_ms=now_ms)
    return _respond(request, await run_query(store_of(request), parsed, now_ms=now_ms, limit=max_points(request)))


@_opentsdb
async def query_post(request: Request) -> Response:
    """`POST /query` with OpenTSDB's JSON body (what Grafana sends)."""
    now_ms = _now_ms()
    parsed = q.parse_query_json(await request.body(), now_ms=now_ms)
    return _respond(request, await run_query(store_of(request), parsed, now_ms=now_ms, limit=max_points(request)))


# ---------------------------------------------------------------------------------------------
# /suggest, /aggregators, /config/filters


def _positive_or_default(raw: object, default: int, message: str) -> int:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise QueryError(message)
    try:
        number = int(raw)
    except ValueError:
        raise QueryError(message) from None
    return number if number > 0 else default


@_opentsdb
async def suggest(request: Request) -> Response:
    """Names of one kind (`metrics`, `tagk`, `tagv`) starting with `q`, sorted, at most `max`."""
    if request.method == "POST":
        body = await _json_body(request)
        if body is not None and not isinstance(body, Mapping):
            raise QueryError("Unable to parse the given JSON", details="the body must be a JSON object")
        fields: Mapping[str, object] = body or {}
        kind = fields.get("type")
        if kind is None or kind == "":
            raise QueryError("Missing 'type' parameter")
        prefix, raw_max = fields.get("q"), fields.get("max")
    else:
        params = request.query_params
        kind = params.get("type")
        if kind is None:
            raise QueryError("Missing parameter <code>type</code>")
        prefix, raw_max = params.get("q"), params.get("max")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise QueryError(f"Invalid 'type' parameter:{kind}")
    limit = _positive_or_default(raw_max, SUGGEST_DEFAULT_MAX, "Unable to parse 'max' as a number")
    names = await store_of(request).names(_KINDS[kind], str(prefix or ""), limit=limit)
    return _respond(request, names)


@_opentsdb
async def aggregators(request: Request) -> Response:
    """Every aggregator name `/query` accepts."""
    return _respond(request, q.aggregator_names())


@_opentsdb
async def config_filters(request: Request) -> Response:
    """Every filter type with its description and examples (Grafana reads the keys)."""
    return _respond(request, q.filter_descriptions())


# ---------------------------------------------------------------------------------------------
# /search/lookup


def _parse_lookup_m(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """`metric{k=v,k2=*}` → (metric or None for any, tag pairs); `*` as key or value matches anything."""
    metric, _, rest = text.partition("{")
    pairs: list[tuple[str, str]] = []
    if rest:
        if not rest.endswith("}"):
            raise QueryError("Unable to parse query", details=f"Missing '}}' at the end of: {text}")
        for part in rest[:-1].split(","):
            if not part.strip():
                continue
            key, eq, value = part.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise QueryError("Unable to parse query", details=f"invalid tag: {part}")
            pairs.append((key.strip(), value.strip()))
    metric = metric.strip()
    return (metric if metric and metric != "*" else None), pairs


def _tsuid(metric: str, tags: Mapping[str, str]) -> str:
    """A stable hex id for a series (dkos has no UIDs; OpenTSDB clients treat it as opaque)."""
    canonical = json.dumps([metric, sorted(tags.items())], separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=3 * (1 + 2 * len(tags))).hexdigest().upper()


async def _check_lookup_names(store: MetricsStore, metric: str | None, pairs: Sequence[tuple[str, str]]) -> None:
    wanted = [("metric", "metrics", metric)] if metric else []
    for key, value in pairs:
        if key != "*":
            wanted.append(("tagk", "tagk", key))
        if value != "*":
            wanted.append(("tagv", "tagv", value))
    for kind, label, name in wanted:
        assert name is not None
        if not await store.known(kind, [name]):
            raise QueryError(
                "Unable to resolve one or more UIDs", status=404, details=f"No such name for '{label}': '{name}'"
            )


@_opentsdb
async def search_lookup(request: Request) -> Response:
    """Series by metric and/or tags: `?m=sys.cpu{host=*}&limit=n` or a JSON body {metric, tags, limit}."""
    started = time.monotonic()
    body = await _json_body(request) if request.method == "POST" else None
    metric: str | None
    if body is not None:
        if not isinstance(body, Mapping):
            raise QueryError("Unable to parse the given JSON", details="the body must be a JSON object")
        raw_metric = _text(body.get("metric"), "metric")
        metric = raw_metric if raw_metric and raw_metric != "*" else None
        pairs = []
        raw_tags = body.get("tags") or []
        if not isinstance(raw_tags, list):
            raise QueryError("Unable to parse the given JSON", details="tags must be an array")
        for tag in raw_tags:
            if not isinstance(tag, Mapping):
                raise QueryError("Unable to parse the given JSON", details="each tag must be an object")
            pairs.append((_text(tag.get("key"), "key") or "*", _text(tag.get("value"), "value") or "*"))
        raw_limit: object = body.get("limit")
    else:
        m = request.query_params.get("m")
        if m is None:
            raise QueryError("Missing parameter <code>m</code>")
        metric, pairs = _parse_lookup_m(m)
        raw_limit = request.query_params.get("limit")
    if metric is None and not pairs:
        raise QueryError("Missing metric and tags. Please supply at least one value.")
    limit = _positive_or_default(raw_limit, LOOKUP_DEFAULT_LIMIT, "Unable to convert 'limit' to a valid number")
    store = store_of(request)
    await _check_lookup_names(store, metric, pairs)

    exact = {k: v for k, v in pairs if k != "*"}
    any_key_values = [v for k, v in pairs if k == "*" and v != "*"]
    found = [
        (name, tags)
        for name, tags in await store.lookup(metric, exact)
        if all(v in tags.values() for v in any_key_values)
    ][:limit]
    results = [{"tsuid": _tsuid(name, tags), "metric": name, "tags": tags} for name, tags in found]
    return _respond(
        request,
        {
            "type": "LOOKUP",
            "metric": metric or "*",
            "tags": [{"key": k, "value": v} for k, v in pairs],
            "limit": limit,
            "time": int((time.monotonic() - started) * 1000),
            "results": results,
            "startIndex": 0,
            "totalResults": len(results),
        },
    )


# ---------------------------------------------------------------------------------------------
# The router

_ROUTES: list[tuple[str, Handler, tuple[str, ...], str]] = [
    ("/put", put, ("POST",), "Write data points"),
    ("/query", query_get, ("GET",), "Query data points (query string)"),
    ("/query", query_post, ("POST",), "Query data points (JSON body)"),
    ("/suggest", suggest, ("GET", "POST"), "Auto-complete metric, tag key and tag value names"),
    ("/aggregators", aggregators, ("GET", "POST"), "Aggregator names"),
    ("/config/filters", config_filters, ("GET",), "Tag value filter types"),
    ("/search/lookup", search_lookup, ("GET", "POST"), "Look up series by metric and tags"),
]


def make_router(prefix: str) -> APIRouter:
    """The OpenTSDB endpoints under `prefix` (`/api`, `/api/v1`, `/api/v2`); other methods get 405."""
    router = APIRouter(prefix=prefix)
    allowed: dict[str, set[str]] = {}
    for path, handler, methods, summary in _ROUTES:
        router.add_api_route(
            path,
            handler,
            methods=list(methods),
            summary=summary,
            response_class=OpenTsdbResponse,
            name=f"opentsdb{prefix.replace('/', '_')}_{handler.__name__}",
        )
        allowed.setdefault(path, set()).update(methods)
    for path, taken in allowed.items():
        others = [m for m in _ALL_METHODS if m not in taken]
        router.add_api_route(
            path,
            _not_allowed,
            methods=others,
            include_in_schema=False,
            name=f"opentsdb{prefix.replace('/', '_')}_not_allowed{path.replace('/', '_')}",
        )
    return router
