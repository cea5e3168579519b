"""OpenTSDB queries: the model, GET/POST parsing, series filters, and the pure evaluation.

Flow: the API parses a request with `parse_query_string()` / `parse_query_json()` into a `Query`;
the storage layer fetches, per sub query, the series of its metric over `scan_window()`; then
`check_names()` (400 for names never written) and `evaluate()` turn them into `Result`s, which
`Result.to_json()` renders the way OpenTSDB 2.4/2.5 does. Nothing here reads the clock: `now_ms`
is passed in. The behaviour follows /work/shared/specs/opentsdb-api.md, quirks included.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import overload

import numpy as np
import numpy.typing as npt

from dkos import metrics
from dkos.metrics import aggregators, downsample, timespec

Value = aggregators.Value
Point = tuple[int, Value]
LONG_MAX = aggregators.LONG_MAX
_HOUR_MS = 3_600_000

# ---------------------------------------------------------------------------------------------
# Filters


class FilterType(StrEnum):
    """The tag value filter types OpenTSDB 2.5 registers (`not_key` is documented but not registered)."""

    LITERAL_OR = "literal_or"
    ILITERAL_OR = "iliteral_or"
    NOT_LITERAL_OR = "not_literal_or"
    NOT_ILITERAL_OR = "not_iliteral_or"
    WILDCARD = "wildcard"
    IWILDCARD = "iwildcard"
    REGEXP = "regexp"


_FILTER_DOCS: dict[FilterType, tuple[str, str]] = {
    FilterType.LITERAL_OR: (
        "Accepts one or more exact values and matches if the series contains any of them. Multiple values "
        "can be included and must be separated by the | (pipe) character. The filter is case sensitive and "
        "will not allow characters that TSDB does not allow at write time.",
        'host=literal_or(web01), host=literal_or(web01|web02|web03)  {"type":"literal_or",'
        '"tagk":"host","filter":"web01|web02|web03","groupBy":false}',
    ),
    FilterType.ILITERAL_OR: (
        "Accepts one or more exact values and matches if the series contains any of them. Multiple values "
        "can be included and must be separated by the | (pipe) character. The filter is case insensitive "
        "and will not allow characters that TSDB does not allow at write time.",
        'host=iliteral_or(web01), host=iliteral_or(web01|web02|web03)  {"type":"iliteral_or",'
        '"tagk":"host","filter":"web01|web02|web03","groupBy":false}',
    ),
    FilterType.NOT_LITERAL_OR: (
        "Accepts one or more exact values and matches if the series does NOT contain any of them. Multiple "
        "values can be included and must be separated by the | (pipe) character. The filter is case "
        "sensitive and will not allow characters that TSDB does not allow at write time.",
        'host=not_literal_or(web01), host=not_literal_or(web01|web02|web03)  {"type":"not_literal_or",'
        '"tagk":"host","filter":"web01|web02|web03","groupBy":false}',
    ),
    FilterType.NOT_ILITERAL_OR: (
        "Accepts one or more exact values and matches if the series does NOT contain any of them. Multiple "
        "values can be included and must be separated by the | (pipe) character. The filter is case "
        "insensitive and will not allow characters that TSDB does not allow at write time.",
        'host=not_iliteral_or(web01), host=not_iliteral_or(web01|web02|web03)  {"type":"not_iliteral_or",'
        '"tagk":"host","filter":"web01|web02|web03","groupBy":false}',
    ),
    FilterType.WILDCARD: (
        "Performs pre, post and in-fix glob matching of values. The globs are case sensitive and multiple "
        "wildcards can be used. The wildcard character is the * (asterisk). At least one wildcard must be "
        "present in the filter value. A wildcard by itself can be used as well to match on any value for "
        "the tag key.",
        'host=wildcard(web*), host=wildcard(web*.tsdb.net)  {"type":"wildcard","tagk":"host",'
        '"filter":"web*.tsdb.net","groupBy":false}',
    ),
    FilterType.IWILDCARD: (
        "Performs pre, post and in-fix glob matching of values. The globs are case insensitive and multiple "
        "wildcards can be used. The wildcard character is the * (asterisk). Case insensitivity is achieved "
        "by dropping all values to lower case. At least one wildcard must be present in the filter value. "
        "A wildcard by itself can be used as well to match on any value for the tag key.",
        'host=iwildcard(web*), host=iwildcard(web*.tsdb.net)  {"type":"iwildcard","tagk":"host",'
        '"filter":"web*.tsdb.net","groupBy":false}',
    ),
    FilterType.REGEXP: (
        "Provides full, POSIX compliant regular expression using the built in Java Pattern class. Note that "
        "an expression containing curly braces {} will not parse properly in URLs. If the pattern is not a "
        "valid regular expression then an exception will be raised.",
        'host=regexp(.*)  {"type":"regexp","tagk":"host","filter":".*","groupBy":false}',
    ),
}


def filter_descriptions() -> dict[str, dict[str, str]]:
    """What `GET /api/config/filters` returns: type → {description, examples}."""
    return {t.value: {"description": d, "examples": e} for t, (d, e) in _FILTER_DOCS.items()}


def aggregator_names() -> list[str]:
    """What `GET /api/aggregators` returns."""
    return aggregators.names()


@dataclass(frozen=True)
class Filter:
    """One tag value filter. `case_insensitive` marks a `*` glob that came from `tags` / URI braces."""

    type: FilterType
    tagk: str
    filter: str
    group_by: bool = False
    case_insensitive: bool = False

    def matches(self, value: str) -> bool:
        """Whether a series whose `tagk` is `value` passes (the key being present is checked apart)."""
        t = self.type
        if t in (FilterType.LITERAL_OR, FilterType.NOT_LITERAL_OR):
            return (value in self.filter.split("|")) == (t is FilterType.LITERAL_OR)
        if t in (FilterType.ILITERAL_OR, FilterType.NOT_ILITERAL_OR):
            found = value.lower() in {v.lower() for v in self.filter.split("|")}
            return found == (t is FilterType.ILITERAL_OR)
        if t is FilterType.REGEXP:
            return _regex(self.filter).search(value) is not None
        if t is FilterType.IWILDCARD or self.case_insensitive:
            return _glob(self.filter.lower(), value.lower())
        return _glob(self.filter, value)

    def to_json(self) -> dict[str, object]:
        return {"tagk": self.tagk, "filter": self.filter, "group_by": self.group_by, "type": self.type.value}


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _glob(pattern: str, value: str) -> bool:
    """OpenTSDB's TagVWildcardFilter match, exactly (index advances by the component's length)."""
    postfix = pattern.startswith("*")
    core = pattern.lstrip("*")
    prefix = core.endswith("*")
    core = core.rstrip("*")
    components = core.split("*") if core else []
    if not components:
        return True
    if postfix and not prefix and not value.endswith(components[-1]):
        return False
    if prefix and not postfix and not value.startswith(components[0]):
        return False
    idx = 0
    for component in components:
        if component and value.find(component, idx) < 0:
            return False
        idx += len(component)
    return True


def make_filter(type_name: str, tagk: str, expression: str, *, group_by: bool) -> Filter:
    """Build and validate one filter (the JSON `filters` entry, or `type(expr)` in a URI)."""
    if not type_name:
        raise metrics.QueryError("The filter type cannot be null or empty")
    if not tagk:
        raise metrics.QueryError("The tagk cannot be null or empty")
    if type_name == FilterType.REGEXP and expression == "*":
        type_name = FilterType.WILDCARD
    try:
        ftype = FilterType(type_name)
    except ValueError:
        raise metrics.QueryError(f"Could not find a tag value filter of the type: {type_name}") from None
    if not expression:
        raise metrics.QueryError("Filter cannot be null or empty")
    if ftype in (FilterType.WILDCARD, FilterType.IWILDCARD) and "*" not in expression:
        raise metrics.QueryError("Filter must contain an asterisk")
    if ftype is FilterType.REGEXP:
        try:
            _regex(expression)
        except re.error as exc:
            raise metrics.QueryError(f"Invalid regular expression: {expression}: {exc}") from exc
    return Filter(ftype, tagk, expression, group_by)


def filter_from_expression(tagk: str, expression: str, *, group_by: bool) -> Filter:
    """Convert an old-style `tags` value or a URI brace value (`*`, `web*`, `a|b`, `regexp(x)`)."""
    if expression == "*":
        return Filter(FilterType.WILDCARD, tagk, "*", group_by, case_insensitive=True)
    if "(" in expression:
        if not expression.endswith(")"):
            raise metrics.QueryError(f"Filter must end with a closing parenthesis: {expression}")
        paren = expression.index("(")
        return make_filter(expression[:paren].lower(), tagk, expression[paren + 1 : -1], group_by=group_by)
    if "*" in expression:
        return Filter(FilterType.WILDCARD, tagk, expression, group_by, case_insensitive=True)
    return make_filter(FilterType.LITERAL_OR, tagk, expression, group_by=group_by)


# ---------------------------------------------------------------------------------------------
# The query model


@dataclass(frozen=True)
class RateOptions:
    """Counter handling for `rate`; the defaults are OpenTSDB's (a reset is a huge rate unless told)."""

    counter: bool = False
    counter_max: int = LONG_MAX
    reset_value: int = 0
    drop_resets: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "counter": self.counter,
            "counterMax": self.counter_max,
            "resetValue": self.reset_value,
            "dropResets": self.drop_resets,
        }


@dataclass(frozen=True)
class SubQuery:
    """One entry of `queries` (or one `m=`). Equal sub queries are merged by `Query`."""

    aggregator: str
    metric: str
    filters: tuple[Filter, ...] = ()
    downsample: downsample.Downsample | None = None
    rate: bool = False
    rate_options: RateOptions = field(default_factory=RateOptions)
    explicit_tags: bool = False

    @property
    def group_by_keys(self) -> tuple[str, ...]:
        """Every key with at least one grouping filter — grouping on a key is sticky."""
        return tuple(sorted({f.tagk for f in self.filters if f.group_by}))

    def to_json(self, index: int) -> dict[str, object]:
        """The `query` echo of showQuery; Grafana maps results back to targets by `index`."""
        return {
            "aggregator": self.aggregator,
            "metric": self.metric,
            "tsuids": None,
            "downsample": self.downsample.spec if self.downsample else None,
            "rate": self.rate,
            "filters": [f.to_json() for f in self.filters],
            "explicitTags": self.explicit_tags,
            "index": index,
            "tags": {f.tagk: f"{f.type.value}({f.filter})" for f in self.filters if f.group_by},
            "rateOptions": self.rate_options.to_json(),
        }


@dataclass(frozen=True)
class Query:
    """A whole query, times resolved to epoch ms, sub queries already de-duplicated."""

    start_ms: int
    end_ms: int
    queries: tuple[SubQuery, ...]
    ms_resolution: bool = False
    show_query: bool = False
    timezone: str | None = None
    arrays: bool = False


def _dedup(subs: Sequence[SubQuery]) -> tuple[SubQuery, ...]:
    return tuple(dict.fromkeys(subs))


def _time_range(start: str | None, end: str | None, *, now_ms: int, timezone: str | None) -> tuple[int, int]:
    if start is None or start == "":
        raise metrics.QueryError("Missing start time")
    start_ms = timespec.parse_time(start, now_ms=now_ms, timezone=timezone)
    end_ms = now_ms if end is None or end == "" else timespec.parse_time(end, now_ms=now_ms, timezone=timezone)
    if end_ms < start_ms:
        raise metrics.QueryError(f"End time [{end_ms}] must be greater than or equal to the start time [{start_ms}]")
    return start_ms, end_ms


def _aggregator(name: str | None) -> str:
    if not name:
        raise metrics.QueryError("Missing the aggregation function")
    if aggregators.get(name) is None:
        raise metrics.QueryError(f"No such aggregation function: {name}")
    return name


# ---------------------------------------------------------------------------------------------
# GET /api/query


def parse_rate(text: str) -> RateOptions:
    """`rate`, `rate{counter}`, `rate{counter,,1000}`, `rate{dropcounter,100,0}` → options."""
    if len(text) < 6:
        return RateOptions()
    parts = text[5:-1].split(",")
    if len(parts) > 3:
        raise metrics.QueryError(
            "Incorrect number of values in rate options specification, must be "
            f"counter[,counter max value,reset value], recieved: {len(parts)} parts"
        )
    counter = parts[0].endswith("counter")
    max_text = parts[1] if len(parts) >= 2 else ""
    reset_text = parts[2] if len(parts) >= 3 else ""
    try:
        counter_max = int(max_text) if max_text else LONG_MAX
    except ValueError:
        raise metrics.QueryError(f"Max value of counter was not a number, received '{max_text}'") from None
    try:
        reset = int(reset_text) if reset_text else 0
    except ValueError:
        raise metrics.QueryError(f"Reset value of counter was not a number, received '{reset_text}'") from None
    return RateOptions(counter, counter_max, reset, parts[0] == "dropcounter")


def _brace_filters(text: str, *, group_by: bool) -> list[Filter]:
    found: list[Filter] = []
    for pair in text.split(","):
        if not pair:
            continue
        key, sep, expression = pair.partition("=")
        if not sep or not key or not expression:
            raise metrics.QueryError(f"invalid tag: {pair}")
        found.append(filter_from_expression(key.strip(), expression.strip(), group_by=group_by))
    return found


def _metric_and_filters(text: str) -> tuple[str, list[Filter]]:
    brace = text.find("{")
    if brace < 0:
        return text, []
    metric = text[:brace]
    rest = text[brace:]
    groups = re.fullmatch(r"\{([^{}]*)\}(?:\{([^{}]*)\})?", rest)
    if groups is None:
        raise metrics.QueryError(f"Invalid tags in metric: {text}")
    found = _brace_filters(groups.group(1), group_by=True)
    if groups.group(2) is not None:
        found += _brace_filters(groups.group(2), group_by=False)
    return metric, found


def parse_m(text: str, *, use_calendar: bool = False) -> SubQuery:
    """One GET `m=` value: `sum:rate{counter,,1000}:1m-avg-zero:metric{host=*}{dc=lga}`."""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 5:
        how = "not enough" if len(parts) < 2 else "too many"
        raise metrics.QueryError(f"Invalid parameter m={text} ({how} :-separated parts)")
    aggregator = _aggregator(parts[0])
    metric, found = _metric_and_filters(parts[-1])
    rate = False
    rate_options = RateOptions()
    ds: downsample.Downsample | None = None
    explicit = False
    for modifier in parts[1:-1]:
        if modifier.startswith("rate"):
            rate = True
            rate_options = parse_rate(modifier)
        elif modifier[:1].isdigit():
            ds = downsample.parse(modifier, use_calendar=use_calendar)
        elif modifier == "explicit_tags":
            explicit = True
        # pre-agg, rollup_*, percentiles[...], show-histogram-buckets: storage/histogram hints, ignored.
    if not metric:
        raise metrics.QueryError("Missing the metric or tsuids, provide at least one")
    return SubQuery(aggregator, metric, tuple(found), ds, rate, rate_options, explicit)


def parse_query_string(params: Mapping[str, Sequence[str]], *, now_ms: int) -> Query:
    """GET /api/query's parameters (each name → its values, as a web framework gives them)."""

    def first(name: str) -> str | None:
        values = params.get(name)
        return values[0] if values else None

    if first("start") is None:
        raise metrics.QueryError("Missing parameter <code>start</code>")
    start_ms, end_ms = _time_range(first("start"), first("end"), now_ms=now_ms, timezone=None)
    ms = list(params.get("m", ()))
    if not ms and not params.get("tsuid"):
        raise metrics.QueryError("Missing sub queries")
    if not ms:
        raise metrics.QueryError("Queries by tsuid are not supported; use m=<aggregator>:<metric>")
    subs = [parse_m(m) for m in dict.fromkeys(ms)]
    return Query(
        start_ms,
        end_ms,
        _dedup(subs),
        ms_resolution="ms" in params,
        show_query="show_query" in params,
        arrays="arrays" in params,
    )


# ---------------------------------------------------------------------------------------------
# POST /api/query


def _bad_json(details: str) -> metrics.QueryError:
    return metrics.QueryError("Unable to parse the given JSON", details=details)


def _as_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad_json(f"Cannot read {name} from a boolean")
    if isinstance(value, str | int | float):
        return str(value)
    raise _bad_json(f"{name} must be a string")


def _as_bool(value: object, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad_json(f"{name} must be a boolean")


def _as_long(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise _bad_json(f"{name} must be an integer")


def _rate_options(raw: object) -> RateOptions:
    if raw is None:
        return RateOptions()
    if not isinstance(raw, Mapping):
        raise _bad_json("rateOptions must be an object")
    options = RateOptions()
    for key, value in raw.items():
        if key in ("counter", "isCounter"):
            options = RateOptions(_as_bool(value, key), options.counter_max, options.reset_value, options.drop_resets)
        elif key == "counterMax":
            options = RateOptions(options.counter, _as_long(value, key), options.reset_value, options.drop_resets)
        elif key == "resetValue":
            options = RateOptions(options.counter, options.counter_max, _as_long(value, key), options.drop_resets)
        elif key == "dropResets":
            options = RateOptions(options.counter, options.counter_max, options.reset_value, _as_bool(value, key))
        else:
            raise _bad_json(f'Unrecognized field "{key}" (class net.opentsdb.core.RateOptions)')
    return options


def _json_filter(raw: object) -> Filter:
    if not isinstance(raw, Mapping):
        raise _bad_json("a filter must be an object")
    group_by = raw.get("groupBy", raw.get("group_by"))
    if "groupBy" not in raw and "group_by" not in raw and "groupby" in raw:
        # The dkos docs spell it `groupby`; OpenTSDB ignores that key. We accept it as a synonym:
        # for single-value filters (the documented case) grouping or not gives the same answer.
        group_by = raw["groupby"]
    try:
        return make_filter(
            _as_str(raw.get("type"), "type") or "",
            _as_str(raw.get("tagk"), "tagk") or "",
            _as_str(raw.get("filter"), "filter") or "",
            group_by=_as_bool(group_by, "groupBy"),
        )
    except metrics.QueryError as exc:
        raise _bad_json(exc.message) from exc


def _json_sub_query(raw: object) -> tuple[str | None, str | None, SubQuery]:
    """Returns (aggregator, metric, partially built sub query): validation of those comes later."""
    if not isinstance(raw, Mapping):
        raise _bad_json("each entry of queries must be an object")
    found: list[Filter] = []
    for key, value in raw.items():  # `tags` and `filters`: the later one in the document wins
        if key == "tags":
            if not isinstance(value, Mapping):
                raise _bad_json("tags must be an object")
            try:
                found = [filter_from_expression(k, str(v), group_by=True) for k, v in value.items()]
            except metrics.QueryError as exc:
                raise _bad_json(exc.message) from exc
        elif key == "filters":
            if not isinstance(value, list):
                raise _bad_json("filters must be an array")
            found = [_json_filter(f) for f in value]
    sub = SubQuery(
        aggregator="",
        metric="",
        filters=tuple(found),
        rate=_as_bool(raw.get("rate"), "rate"),
        rate_options=_rate_options(raw.get("rateOptions")),
        explicit_tags=_as_bool(raw.get("explicitTags"), "explicitTags"),
    )
    return _as_str(raw.get("aggregator"), "aggregator"), _as_str(raw.get("metric"), "metric"), sub


def parse_query_json(body: str | bytes | Mapping[str, object], *, now_ms: int) -> Query:
    """A POST /api/query body (raw text or already decoded) → `Query`, in OpenTSDB's validation order."""
    if isinstance(body, str | bytes):
        if not body.strip():
            raise metrics.QueryError("Missing message content")
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise _bad_json(str(exc)) from exc
    else:
        decoded = body
    if not isinstance(decoded, Mapping):
        raise _bad_json("the query must be a JSON object")
    timezone = _as_str(decoded.get("timezone"), "timezone")
    use_calendar = _as_bool(decoded.get("useCalendar"), "useCalendar")
    raw_queries = decoded.get("queries")
    if raw_queries is not None and not isinstance(raw_queries, list):
        raise _bad_json("queries must be an array")
    partial = [_json_sub_query(q) for q in raw_queries or []]
    flags = {k: _as_bool(decoded.get(k), k) for k in ("msResolution", "showQuery")}

    start_ms, end_ms = _time_range(
        _as_str(decoded.get("start"), "start"), _as_str(decoded.get("end"), "end"), now_ms=now_ms, timezone=timezone
    )
    if not partial:
        raise metrics.QueryError("Missing queries")
    subs: list[SubQuery] = []
    for (aggregator, metric, sub), raw in zip(partial, raw_queries or [], strict=True):
        name = _aggregator(aggregator)
        if not metric:
            raise metrics.QueryError("Missing the metric or tsuids, provide at least one")
        spec = _as_str(raw.get("downsample"), "downsample")
        ds = downsample.parse(spec, use_calendar=use_calendar) if spec else None
        subs.append(SubQuery(name, metric, sub.filters, ds, sub.rate, sub.rate_options, sub.explicit_tags))
    if timezone:
        timespec.zone(timezone)
    return Query(
        start_ms,
        end_ms,
        _dedup(subs),
        ms_resolution=flags["msResolution"],
        show_query=flags["showQuery"],
        timezone=timezone,
    )


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class Series:
    """One stored series as storage returns it: points sorted by timestamp (ms), ints or floats."""

    metric: str
    tags: Mapping[str, str]
    points: Sequence[Point]
    downsampled: bool = False
    """The points are already the sub query's downsample buckets (read from a rollup): only the
    fill policy is left to apply."""


class PointArray(Sequence[Point]):
    """Points held as two numpy arrays (ms stamps, double values) instead of a tuple each: how the
    store hands over thousands of downsampled series read from rollups. Indexing and iterating
    give ordinary points, so every step of the engine takes it; the merge of aligned series
    (`_merge_arrays`), where the time goes, works on the arrays themselves."""

    __slots__ = ("stamps", "values")

    def __init__(self, stamps: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        self.stamps = stamps
        self.values = values

    def __len__(self) -> int:
        return len(self.stamps)

    @overload
    def __getitem__(self, index: int) -> Point: ...
    @overload
    def __getitem__(self, index: slice) -> PointArray: ...
    def __getitem__(self, index: int | slice) -> Point | PointArray:
        if isinstance(index, slice):
            return PointArray(self.stamps[index], self.values[index])
        return int(self.stamps[index]), float(self.values[index])

    def __iter__(self) -> Iterator[Point]:
        return zip(self.stamps.tolist(), self.values.tolist(), strict=True)

    def __eq__(self, other: object) -> bool:
        return list(self) == (list(other) if isinstance(other, Sequence) else other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Result:
    """One element of the /api/query answer. `dps` keys are already seconds or ms, as asked."""

    metric: str
    tags: dict[str, str]
    aggregate_tags: list[str]
    dps: list[tuple[int, Value | str | None]]
    query: dict[str, object] | None = None

    def to_json(self, *, arrays: bool = False) -> dict[str, object]:
        body: dict[str, object] = {"metric": self.metric, "tags": self.tags, "aggregateTags": self.aggregate_tags}
        if arrays:
            body["dps"] = [[ts, v] for ts, v in self.dps]
        else:
            body["dps"] = {str(ts): v for ts, v in self.dps}
        if self.query is not None:
            body["query"] = self.query
        return body


def render(query: Query, results: Sequence[Result]) -> list[dict[str, object]]:
    """The whole JSON array of a 200 answer."""
    return [r.to_json(arrays=query.arrays) for r in results]


def scan_window(query: Query, sub: SubQuery) -> tuple[int, int]:
    """[from, to) in ms that storage should read for `sub`: OpenTSDB's whole-hour row scan.

    Points outside [start, end] matter: the last bucket takes points after `end`, a rate at the first
    point looks back one point, and interpolation uses neighbours just outside the range.
    """
    start = query.start_ms
    end = query.end_ms
    interval = sub.downsample.interval_ms if sub.downsample else None
    if interval:
        start -= start % interval
        end = end - end % interval + interval
    start -= start % _HOUR_MS
    end = end - end % _HOUR_MS + _HOUR_MS
    return start, end


def check_names(
    query: Query, *, metrics_known: Container[str], tagks_known: Container[str], tagvs_known: Container[str]
) -> None:
    """400 for names never written, as OpenTSDB's UID resolution (metric, then each filter in order)."""
    for sub in query.queries:
        if sub.metric not in metrics_known:
            raise metrics.QueryError(f"No such name for 'metrics': '{sub.metric}'")
        for f in sub.filters:
            if f.tagk not in tagks_known:
                raise metrics.QueryError(f"No such name for 'tagk': '{f.tagk}'")
            if f.type is FilterType.LITERAL_OR:
                for value in f.filter.split("|"):
                    if value not in tagvs_known:
                        raise metrics.QueryError(f"No such name for 'tagv': '{value}'")


def select(sub: SubQuery, series: Sequence[Series]) -> list[Series]:
    """The series of `sub.metric` that have every filtered key and pass every filter (AND)."""
    keys = {f.tagk for f in sub.filters}
    chosen = []
    for s in series:
        if s.metric != sub.metric:
            continue
        if not all(f.tagk in s.tags and f.matches(s.tags[f.tagk]) for f in sub.filters):
            continue
        if sub.explicit_tags and set(s.tags) != keys:
            continue
        chosen.append(s)
    return chosen


def rate(points: Sequence[Point], options: RateOptions) -> list[Point]:
    """Per-second rate of change; nothing at the first point; counters wrap at `counter_max`."""
    out: list[Point] = []
    if not points:
        return out
    t0, v0 = points[0]
    for t1, v1 in points[1:]:
        seconds = (t1 - t0) / 1000.0
        both_int = isinstance(v0, int) and isinstance(v1, int)
        if options.counter and v1 < v0:
            if options.drop_resets:
                t0, v0 = t1, v1
                continue
            delta: Value = options.counter_max - v0 + v1 if both_int else float(options.counter_max) - v0 + v1
            value = float(delta) / seconds
            if options.reset_value > 0 and value > options.reset_value:
                value = 0.0
        else:
            value = float(v1 - v0) / seconds if both_int else (float(v1) - float(v0)) / seconds
        out.append((t1, value))
        t0, v0 = t1, v1
    return out


def _merge(agg: aggregators.Aggregator, group: Sequence[Sequence[Point]], *, rated: bool) -> list[Point]:
    """Aggregate several series at the union of their timestamps, interpolating, never extrapolating."""
    arrays = [points for points in group if isinstance(points, PointArray)]
    aligned = _merge_arrays(agg, arrays) if len(arrays) == len(group) else _merge_aligned(agg, group)
    return aligned if aligned is not None else _merge_interpolating(agg, group, rated=rated)


def _merge_interpolating(agg: aggregators.Aggregator, group: Sequence[Sequence[Point]], *, rated: bool) -> list[Point]:
    stamps = sorted({t for pts in group for t, _ in pts})
    cursors = [0] * len(group)  # index of the first point with t > x, per series
    out: list[Point] = []
    for x in stamps:
        for i, pts in enumerate(group):
            while cursors[i] < len(pts) and pts[cursors[i]][0] <= x:
                cursors[i] += 1
        involved: list[Value] = []
        for i, pts in enumerate(group):
            c = cursors[i]
            if not pts or x > pts[-1][0]:
                continue
            if c > 0:
                involved.append(pts[c - 1][1])
            if c < len(pts):
                involved.append(pts[c][1])
        integer = all(isinstance(v, int) for v in involved)
        values: list[Value] = []
        for i, pts in enumerate(group):
            c = cursors[i]
            if not pts or x < pts[0][0] or x > pts[-1][0]:
                continue
            t0, y0 = pts[c - 1]
            if t0 == x or rated or agg.interpolation is aggregators.Interpolation.PREV:
                values.append(y0)
            elif agg.interpolation is aggregators.Interpolation.LERP:
                t1, y1 = pts[c]
                values.append(aggregators.lerp(x, t0, y0, t1, y1, integer=integer))
            else:
                values.append(aggregators.missing_value(agg, integer=integer))
        out.append((x, aggregators.run(agg, values, integer=integer)))
    return out


def _merge_aligned(agg: aggregators.Aggregator, group: Sequence[Sequence[Point]]) -> list[Point] | None:
    """`_merge` when every series has a point at exactly the same timestamps, as downsampled series
    of a steady collector do: nothing to interpolate, one pass over the columns; None otherwise.

    The integer rule is `_merge`'s: the points involved at a timestamp are the values there and
    the next ones (the interpolation neighbours), so a column is integer when both are."""
    stamps, _ = zip(*group[0], strict=True) if group[0] else ((), ())
    columns: list[tuple[Value, ...]] = []
    for points in group:
        # One C-level unzip and tuple comparison per series, not a Python step per point.
        series_stamps, values = zip(*points, strict=True) if points else ((), ())
        if series_stamps != stamps:
            return None
        columns.append(values)
    rows = [list(row) for row in zip(*columns, strict=True)]
    ints = [all(isinstance(v, int) for v in row) for row in rows]
    count = len(rows)
    return [
        (x, aggregators.run(agg, row, integer=ints[j] and (j + 1 == count or ints[j + 1])))
        for j, (x, row) in enumerate(zip(stamps, rows, strict=True))
    ]


_ARRAY_AGGREGATORS: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]] = {
    # Reducing over axis 0 of a row-per-series matrix adds row after row, in order, as the
    # aggregators' own sums do (no pairwise summation along that axis).
    **dict.fromkeys(("sum", "zimsum", "pfsum"), lambda m: np.add.reduce(m, axis=0)),
    **dict.fromkeys(("min", "mimmin"), lambda m: np.minimum.reduce(m, axis=0)),
    **dict.fromkeys(("max", "mimmax"), lambda m: np.maximum.reduce(m, axis=0)),
    "avg": lambda m: np.add.reduce(m, axis=0) / m.shape[0],
    "count": lambda m: np.full(m.shape[1], float(m.shape[0])),
}


def _merge_arrays(agg: aggregators.Aggregator, group: Sequence[PointArray]) -> list[Point] | None:
    """`_merge_aligned` for series held as arrays (all doubles): one matrix, one reduction per
    aggregator that has one, else the aggregator per column. None when the series are not at the
    same timestamps or hold a NaN (the general path knows how each aggregator treats NaN)."""
    stamps = group[0].stamps
    if any(not np.array_equal(points.stamps, stamps) for points in group):
        return None
    matrix = np.vstack([points.values for points in group])
    if np.isnan(matrix).any():
        return None
    reduce = _ARRAY_AGGREGATORS.get(agg.name)
    if reduce is not None:
        values: list[Value] = reduce(matrix).tolist()
    else:
        values = [aggregators.run(agg, column, integer=False) for column in matrix.T.tolist()]
    return list(zip(stamps.tolist(), values, strict=True))


def _tag_fields(group: Sequence[Series]) -> tuple[dict[str, str], list[str]]:
    """OpenTSDB's bookkeeping: a key seen with two values moves to aggregateTags, else it stays."""
    tags: dict[str, str] = {}
    aggregated: list[str] = []
    for s in group:
        for key, value in s.tags.items():
            if key in aggregated:
                continue
            if key in tags and tags[key] != value:
                del tags[key]
                aggregated.append(key)
            elif key not in tags:
                tags[key] = value
    return dict(sorted(tags.items())), sorted(aggregated)


def _process(query: Query, sub: SubQuery, s: Series) -> Sequence[Point]:
    """Steps 1–3 for one series: keep the scan window, downsample (with fill), rate."""
    low, high = scan_window(query, sub)
    points: Sequence[Point] = s.points
    if points and not (low <= points[0][0] and points[-1][0] < high):
        points = [(t, v) for t, v in points if low <= t < high]
    if sub.downsample is not None:
        step = downsample.fill if s.downsampled else downsample.apply
        points = step(
            sub.downsample,
            points,
            start_ms=query.start_ms,
            end_ms=query.end_ms,
            tz=timespec.zone(query.timezone),
        )
    if sub.rate:
        points = rate(points, sub.rate_options)
    return points


def _serialize(query: Query, sub: SubQuery, points: Sequence[Point]) -> list[tuple[int, Value | str | None]]:
    null_fill = sub.downsample is not None and sub.downsample.fill is downsample.FillPolicy.NULL
    out: list[tuple[int, Value | str | None]] = []
    for ts, v in points:
        if sub.downsample is not None and sub.downsample.interval_ms is None:
            inside = True  # `0all` is already cut to [start, end) and stamped with start
        else:
            inside = query.start_ms <= ts <= query.end_ms
        if not inside:
            continue
        key = ts if query.ms_resolution else ts // 1000
        if isinstance(v, float) and math.isnan(v):
            out.append((key, None if null_fill else "NaN"))
        else:
            out.append((key, v))
    return out


def evaluate(query: Query, series: Sequence[Series], *, now_ms: int) -> list[Result]:
    """Run every sub query over the series storage returned (any metric; each picks its own).

    `now_ms` is accepted for symmetry with parsing; the times in `query` are already resolved.
    """
    del now_ms
    results: list[Result] = []
    for index, sub in enumerate(query.queries):
        agg = aggregators.get(sub.aggregator)
        assert agg is not None
        chosen = select(sub, series)
        groups: dict[tuple[str, ...], list[Series]] = {}
        if agg is aggregators.NONE:
            for n, s in enumerate(chosen):
                groups[(str(n),)] = [s]
        else:
            keys = sub.group_by_keys
            for s in chosen:
                groups.setdefault(tuple(s.tags[k] for k in keys), []).append(s)
        for members in groups.values():
            processed = [_process(query, sub, s) for s in members]
            if not any(processed):
                continue
            merged = processed[0] if agg is aggregators.NONE else _merge(agg, processed, rated=sub.rate)
            tags, aggregated = _tag_fields(members)
            results.append(
                Result(
                    metric=sub.metric,
                    tags=tags,
                    aggregate_tags=aggregated,
                    dps=_serialize(query, sub, merged),
                    query=sub.to_json(index) if query.show_query else None,
                )
            )
    return results
