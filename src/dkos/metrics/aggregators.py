"""OpenTSDB's named aggregators: what `sum`, `p99`, `mimmax`… compute, and how they fill gaps.

Used twice in the query flow: as the downsampling function over one series' bucket (always in
doubles) and as the cross-series aggregator at each output timestamp (in Java `long` arithmetic
when every value involved is an integer, else doubles). Each aggregator also names the
interpolation that supplies a value for a series that has no point at the timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

Value = int | float

LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)
DOUBLE_MAX = 1.7976931348623157e308


class Interpolation(StrEnum):
    """How a series between two of its points (x0, y0) < x < (x1, y1) gets a value at x."""

    LERP = "lerp"  # linear, integer division when everything is an integer
    ZIM = "zim"  # zero if missing
    MAX = "max"  # the largest value if missing (mimmin)
    MIN = "min"  # the smallest value if missing (mimmax)
    PREV = "prev"  # the previous point's value (pfsum)


@dataclass(frozen=True)
class Aggregator:
    """One named aggregator. `run_long`/`run_double` get the participating values (never empty)."""

    name: str
    interpolation: Interpolation
    run_long: Callable[[Sequence[int]], int]
    run_double: Callable[[Sequence[float]], float]
    skips_nan: bool = True


def java_div(a: int, b: int) -> int:
    """Java `long` division: truncation toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _avg_long(xs: Sequence[int]) -> int:
    return java_div(sum(xs), len(xs))


def _dev(xs: Sequence[float]) -> float:
    # Welford, population deviation, as OpenTSDB's StdDev.
    if len(xs) == 1:
        return 0.0
    mean = 0.0
    m2 = 0.0
    for n, x in enumerate(xs, start=1):
        delta = x - mean
        mean += delta / n
        m2 += delta * (x - mean)
    return math.sqrt(m2 / len(xs))


def _product(xs: Sequence[Value]) -> Value:
    result: Value = 1
    for x in xs:
        result *= x
    return result


def _legacy(xs: Sequence[float], p: float) -> float:
    """Apache Commons Math `Percentile` LEGACY estimation (what `p*` uses)."""
    s = sorted(xs)
    n = len(s)
    pos = p * (n + 1)
    if n == 1 or pos < 1:
        return s[0]
    if pos >= n:
        return s[-1]
    low = math.floor(pos)
    return s[low - 1] + (pos - low) * (s[low] - s[low - 1])


def _r3(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    n = len(s)
    pos = 0 if p <= 0.5 / n else round(n * p)  # Python's round is half-even, as R-3 wants
    if pos < 1:
        return s[0]
    if pos >= n:
        return s[-1]
    return s[pos - 1]


def _r7(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    n = len(s)
    pos = 1 + (n - 1) * p
    if pos < 1:
        return s[0]
    if pos >= n:
        return s[-1]
    low = math.floor(pos)
    return s[low - 1] + (pos - low) * (s[low] - s[low - 1])


def _percentile(name: str, p: float, estimate: Callable[[Sequence[float], float], float]) -> Aggregator:
    # Integer inputs: estimate then truncate. Double inputs always use LEGACY (OpenTSDB's behaviour).
    return Aggregator(
        name,
        Interpolation.LERP,
        run_long=lambda xs: int(estimate([float(x) for x in xs], p)),
        run_double=lambda xs: _legacy(xs, p),
    )


def _simple(name: str, interpolation: Interpolation, fn: Callable[[Sequence[Value]], Value]) -> Aggregator:
    return Aggregator(name, interpolation, run_long=lambda xs: int(fn(xs)), run_double=lambda xs: float(fn(xs)))


def _build() -> dict[str, Aggregator]:
    lerp, zim = Interpolation.LERP, Interpolation.ZIM
    found: list[Aggregator] = [
        _simple("sum", lerp, sum),
        _simple("zimsum", zim, sum),
        _simple("pfsum", Interpolation.PREV, sum),
        Aggregator("avg", lerp, run_long=_avg_long, run_double=lambda xs: sum(xs) / len(xs)),
        _simple("min", lerp, min),
        _simple("max", lerp, max),
        _simple("mimmin", Interpolation.MAX, min),
        _simple("mimmax", Interpolation.MIN, max),
        _simple("count", zim, len),
        Aggregator("dev", lerp, run_long=lambda xs: int(_dev([float(x) for x in xs])), run_double=_dev),
        _simple("median", lerp, lambda xs: sorted(xs)[len(xs) // 2]),
        _simple("squareSum", zim, lambda xs: sum(x * x for x in xs)),
        Aggregator("mult", lerp, run_long=lambda xs: int(_product(xs)), run_double=_product, skips_nan=False),
        Aggregator(
            "diff", lerp, run_long=lambda xs: xs[-1] - xs[0], run_double=lambda xs: xs[-1] - xs[0], skips_nan=False
        ),
        Aggregator("first", zim, run_long=lambda xs: xs[0], run_double=lambda xs: xs[0], skips_nan=False),
        Aggregator("last", zim, run_long=lambda xs: xs[-1], run_double=lambda xs: xs[-1], skips_nan=False),
        Aggregator("none", zim, run_long=lambda xs: xs[0], run_double=lambda xs: xs[0], skips_nan=False),
    ]
    for label, p in (("50", 0.5), ("75", 0.75), ("90", 0.9), ("95", 0.95), ("99", 0.99), ("999", 0.999)):
        found.append(_percentile(f"p{label}", p, _legacy))
        found.append(_percentile(f"ep{label}r3", p, _r3))
        found.append(_percentile(f"ep{label}r7", p, _r7))
    return {a.name: a for a in found}


_REGISTRY = _build()
NONE = _REGISTRY["none"]


def get(name: str) -> Aggregator | None:
    """The aggregator registered under `name` (case-sensitive), or None."""
    return _REGISTRY.get(name)


def names() -> list[str]:
    """What `GET /api/aggregators` returns (sorted, although clients treat it as a set)."""
    return sorted(_REGISTRY)


def run(aggregator: Aggregator, values: Sequence[Value], *, integer: bool) -> Value:
    """Aggregate the participating values, in `long` arithmetic when `integer` (all values ints).

    NaN is skipped by every aggregator except mult, diff, first, last and none; only NaN gives NaN.
    """
    if integer:
        return aggregator.run_long(list(map(int, values)))
    doubles = list(map(float, values))
    if aggregator.skips_nan and any(map(math.isnan, doubles)):
        doubles = [v for v in doubles if not math.isnan(v)]
        if not doubles:
            return math.nan
    return aggregator.run_double(doubles)


def lerp(x: int, x0: int, y0: Value, x1: int, y1: Value, *, integer: bool) -> Value:
    """Java's `y0 + (x − x0)·(y1 − y0)/(x1 − x0)`, integer division when `integer`."""
    if integer:
        return int(y0) + java_div((x - x0) * (int(y1) - int(y0)), x1 - x0)
    return float(y0) + (x - x0) * (float(y1) - float(y0)) / (x1 - x0)


def missing_value(aggregator: Aggregator, *, integer: bool) -> Value:
    """The fill of a non-LERP, non-PREV interpolation (ZIM, MAX, MIN)."""
    if aggregator.interpolation is Interpolation.MAX:
        return LONG_MAX if integer else DOUBLE_MAX
    if aggregator.interpolation is Interpolation.MIN:
        return LONG_MIN if integer else -DOUBLE_MAX
    return 0 if integer else 0.0
