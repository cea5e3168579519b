"""Downsampling: `<n><unit>[c]-<function>[-<fill>]` specs and their per-series buckets.

Step 2 of the query pipeline (before rate and cross-series aggregation). Buckets are epoch-aligned
in UTC (`1w` starts on Thursdays), or calendar-aligned in the query's timezone with the `c`
suffix / `useCalendar`. The function sees the bucket's values as doubles and always yields a
double. Fill policies create the buckets that have no raw point, over the whole query range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from dkos import metrics
from dkos.metrics import aggregators, timespec

Point = tuple[int, aggregators.Value]


class FillPolicy(StrEnum):
    """What an empty bucket becomes. `nan` and `null` are both NaN inside; they serialize differently."""

    NONE = "none"
    NAN = "nan"
    NULL = "null"
    ZERO = "zero"


@dataclass(frozen=True)
class Downsample:
    """A parsed downsample spec. `interval_ms` is None for `0all` (one bucket for the whole range)."""

    spec: str
    function: str
    interval_ms: int | None
    fill: FillPolicy = FillPolicy.NONE
    calendar: bool = False
    unit: str = ""  # the duration's unit letter(s), for calendar buckets
    count: int = 0  # the duration's number, for calendar buckets


def parse(spec: str, *, use_calendar: bool = False) -> Downsample:
    """Parse `1m-avg`, `500ms-sum-zero`, `1dc-max`, `0all-sum`; raise `QueryError` with OpenTSDB's text."""
    parts = spec.split("-")
    if len(parts) < 2:
        raise metrics.QueryError(
            f"Invalid downsampling specifier '{spec}': must provide at least interval and function"
        )
    if len(parts) > 3:
        raise metrics.QueryError(
            f"Invalid downsampling specifier '{spec}': must consist of interval, function, and optional fill policy"
        )
    interval_text = parts[0]
    interval_ms: int | None
    calendar = False
    if "all" in interval_text:
        interval_ms = None
    else:
        if interval_text.endswith("c"):
            interval_text = interval_text[:-1]
            calendar = True
        interval_ms = timespec.parse_duration(interval_text)
        calendar = calendar or use_calendar
    function = aggregators.get(parts[1])
    if function is None:
        raise metrics.QueryError(f"No such downsampling function: {parts[1]}")
    if function is aggregators.NONE:
        raise metrics.QueryError("cannot use the NONE aggregator for downsampling")
    fill = FillPolicy.NONE
    if len(parts) == 3:
        try:
            fill = FillPolicy(parts[2].lower())
        except ValueError:
            raise metrics.QueryError(f"Unrecognized fill policy: {parts[2]}") from None
    digits = len(interval_text) - len(interval_text.lstrip("0123456789"))
    unit = interval_text[digits:].lower() if interval_ms is not None else ""
    count = int(interval_text[:digits]) if interval_ms is not None else 0
    if unit != "ms":
        unit = unit[-1:]
    return Downsample(spec, parts[1], interval_ms, fill, calendar, unit, count)


def bucket_start(ds: Downsample, ts: int, tz: ZoneInfo) -> int:
    """The start (epoch ms) of the bucket holding `ts`."""
    assert ds.interval_ms is not None
    if not ds.calendar:
        return ts - ts % ds.interval_ms
    anchor = _calendar_anchor(ds, ts, tz)
    current = anchor
    while True:
        following = _step(ds, current, tz)
        if _epoch_ms(following) > ts:
            return _epoch_ms(current)
        current = following


def next_bucket(ds: Downsample, bucket: int, tz: ZoneInfo) -> int:
    """The start of the bucket after the one starting at `bucket`."""
    assert ds.interval_ms is not None
    if not ds.calendar:
        return bucket + ds.interval_ms
    local = datetime.fromtimestamp(bucket / 1000, tz).replace(tzinfo=None)
    return _epoch_ms(_step(ds, local, tz))


def apply(ds: Downsample, points: Sequence[Point], *, start_ms: int, end_ms: int, tz: ZoneInfo) -> list[Point]:
    """Downsample one series' points (sorted by time). Values come out as doubles, buckets sorted."""
    function = aggregators.get(ds.function)
    assert function is not None
    if ds.interval_ms is None:
        inside = [v for t, v in points if start_ms <= t < end_ms]
        return [(start_ms, aggregators.run(function, inside, integer=False))] if inside else []
    buckets: dict[int, list[aggregators.Value]] = {}
    for ts, value in points:
        buckets.setdefault(bucket_start(ds, ts, tz), []).append(value)
    out = [(b, aggregators.run(function, values, integer=False)) for b, values in buckets.items()]
    return list(fill(ds, out, start_ms=start_ms, end_ms=end_ms, tz=tz))


def fill(ds: Downsample, buckets: Sequence[Point], *, start_ms: int, end_ms: int, tz: ZoneInfo) -> Sequence[Point]:
    """Downsampled buckets (sorted) → the same plus the fill policy's empty buckets over the range.

    The second half of `apply`, alone for buckets a rollup already computed (handed back as they
    came when there is nothing to fill, so arrays stay arrays)."""
    if ds.fill is FillPolicy.NONE or not buckets or ds.interval_ms is None:
        return buckets
    out = dict(buckets)
    filler = 0.0 if ds.fill is FillPolicy.ZERO else math.nan
    b = bucket_start(ds, start_ms, tz)
    while b <= end_ms:
        out.setdefault(b, filler)
        b = next_bucket(ds, b, tz)
    return sorted(out.items())


# Calendar buckets: count units from a larger anchor, in local wall-clock time (DST-aware).


def _epoch_ms(local: datetime) -> int:
    return int(local.timestamp()) * 1000 + local.microsecond // 1000


def _calendar_anchor(ds: Downsample, ts: int, tz: ZoneInfo) -> datetime:
    local = datetime.fromtimestamp(ts / 1000, UTC).astimezone(tz)
    n = ds.count
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if ds.unit == "ms":
        top = local.replace(microsecond=0)
        return top if 1000 % n == 0 else top.replace(second=0)
    if ds.unit == "s":
        top = local.replace(second=0, microsecond=0)
        return top if 60 % n == 0 else top.replace(minute=0)
    if ds.unit == "m":
        top = local.replace(minute=0, second=0, microsecond=0)
        return top if 60 % n == 0 else day
    if ds.unit == "h":
        return day if 24 % n == 0 else day.replace(day=1)
    if ds.unit == "d":
        return day.replace(day=1) if n == 1 else day.replace(month=1, day=1)
    if ds.unit == "w":
        # Weeks start on Sunday (the US locale's first day of week, OpenTSDB's default).
        return day - timedelta(days=(day.weekday() + 1) % 7) if n == 1 else day.replace(month=1, day=1)
    if ds.unit == "n":
        return day.replace(month=1, day=1)
    return day.replace(year=1970, month=1, day=1) if n > 1 else day.replace(month=1, day=1)


def _step(ds: Downsample, local: datetime, tz: ZoneInfo) -> datetime:
    """Add `count` units in wall-clock time; the result is re-localised in `tz`."""
    naive = local.replace(tzinfo=None)
    n = ds.count
    if ds.unit in ("n", "y"):
        months = n if ds.unit == "n" else 12 * n
        total = naive.year * 12 + naive.month - 1 + months
        naive = naive.replace(year=total // 12, month=total % 12 + 1)
    else:
        seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[ds.unit]
        if ds.unit in ("d", "w"):
            naive = naive + timedelta(days=n * (7 if ds.unit == "w" else 1))
        else:
            # Sub-day units step in absolute time so DST changes do not repeat or skip buckets.
            instant = local.replace(tzinfo=tz) if local.tzinfo is None else local
            return (instant.astimezone(UTC) + timedelta(seconds=seconds * n)).astimezone(tz)
    return naive.replace(tzinfo=tz)
