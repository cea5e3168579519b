"""`dkos metrics query` and `dkos top`: the server's OpenTSDB answers, as tables and charts.

The API answers `GET /api/query` with an array of series, each `{"metric", "tags",
"aggregateTags", "dps": {"<unix seconds>": value}}` (docs/metrics.md names the metrics).
Everything here is pure except `gather_top`, which sends the queries of one `dkos top`
refresh: parsing times, naming series, rounding values and drawing are unit-tested on
plain data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dkos.cli import client, output

_RELATIVE = re.compile(r"[0-9]+(ms|s|m|h|d|w|n|y)")
"""OpenTSDB's durations: `10m`, `1h`, `2d` (`n` is a month of 30 days, `y` 365 days)."""

CPU_METRIC = "dkos.container.cpu.percent"
MEMORY_METRIC = "dkos.container.memory.bytes"
REQUESTS_METRIC = "dkos.app.requests"
TOP_WINDOW = "1m-ago"
"""How far back `dkos top` looks for each figure's latest value."""

MIB = 1024 * 1024
BARS = " ▁▂▃▄▅▆▇█"
"""Eighths of a character cell, from empty to full: the chart's vertical resolution."""


def opentsdb_time(value: str) -> str:
    """`1h` → `1h-ago`; anything else (`1h-ago`, `now`, `2024/01/31-12:00`, a Unix time) as given."""
    value = value.strip()
    return f"{value}-ago" if _RELATIVE.fullmatch(value) else value


# -- series ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One element of the query answer, its points sorted by time; None where a value is not a number."""

    label: str
    points: list[tuple[int, float | None]]

    def latest(self) -> float | None:
        for _, value in reversed(self.points):
            if value is not None:
                return value
        return None


def _number(value: object) -> float | None:
    # OpenTSDB writes a gap as null, or as "NaN" when no fill policy was asked for.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _points(dps: object) -> list[tuple[int, float | None]]:
    pairs: list[tuple[int, float | None]] = []
    items = dps.items() if isinstance(dps, Mapping) else (dps if isinstance(dps, list) else [])
    for item in items:
        timestamp, value = item if isinstance(item, tuple | list) and len(item) == 2 else (None, None)
        try:
            seconds = int(float(str(timestamp)))
        except ValueError:
            continue
        if seconds > 10**11:  # msResolution: milliseconds
            seconds //= 1000
        pairs.append((seconds, _number(value)))
    return sorted(pairs, key=lambda pair: pair[0])


def series_label(result: Mapping[str, Any], *, with_metric: bool = False) -> str:
    """A series named by its tags (`app=web,instance=web-3`); by its metric when it has none."""
    tags = result.get("tags") or {}
    named = ",".join(f"{key}={tags[key]}" for key in sorted(tags))
    metric = str(result.get("metric") or "?")
    if not named:
        return metric
    return f"{metric}{{{named}}}" if with_metric else named


def parse_series(results: Sequence[Mapping[str, Any]]) -> list[Series]:
    """The answer's series with unique labels; the metric joins the label when several metrics are mixed."""
    with_metric = len({result.get("metric") for result in results}) > 1
    seen: dict[str, int] = {}
    series: list[Series] = []
    for result in results:
        label = series_label(result, with_metric=with_metric)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} #{seen[label]}"
        series.append(Series(label, _points(result.get("dps"))))
    return series


def format_value(value: float | None) -> str:
    """Rounded to what a person reads: 3, 1234, 12.3, 4.56, 0.0123."""
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    size = abs(value)
    if size >= 1000:
        return f"{value:.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def series_table(series: Sequence[Series]) -> Table:
    """A row per timestamp (local time), a column per series."""
    table = Table(box=None, pad_edge=False)
    table.add_column("TIME", no_wrap=True)
    for one in series:
        table.add_column(one.label, justify="right", no_wrap=True)
    columns = [dict(one.points) for one in series]
    for timestamp in sorted({ts for one in series for ts, _ in one.points}):
        table.add_row(
            Text(output.format_time(timestamp)),
            *(Text(format_value(column.get(timestamp)) if timestamp in column else "") for column in columns),
        )
    return table


# -- the chart -------------------------------------------------------------------------------

CHART_HEIGHT = 6
"""Rows of one series' chart; with more than 3 series each gets a one-row sparkline instead."""


def _columns(series: Sequence[Series], width: int) -> tuple[int, int, list[list[float | None]]]:
    """Each series' values in `width` time buckets over the span of all of them (mean of each bucket)."""
    stamps = sorted({ts for one in series for ts, value in one.points if value is not None})
    first, last = stamps[0], stamps[-1]
    if len(stamps) <= width:
        index = {ts: i for i, ts in enumerate(stamps)}
        count = len(stamps)

        def bucket(ts: int) -> int:
            return index[ts]
    else:
        count, span = width, last - first

        def bucket(ts: int) -> int:
            return min(width - 1, (ts - first) * width // span)

    rows: list[list[float | None]] = []
    for one in series:
        sums, counts = [0.0] * count, [0] * count
        for ts, value in one.points:
            if value is not None:
                sums[bucket(ts)] += value
                counts[bucket(ts)] += 1
        rows.append([s / n if n else None for s, n in zip(sums, counts, strict=True)])
    return first, last, rows


def _bars(values: Sequence[float | None], height: int, style: str) -> list[Text]:
    """Columns of block characters, `height` rows tall, from 0 (or the lowest value, if negative) to the top."""
    present = [v for v in values if v is not None]
    low = min(0.0, *present)
    high = max(present)
    if high <= low:
        high = low + 1
    # A value at the bottom still gets its eighth, so a point is never mistaken for a gap.
    eighths = [None if v is None else max(1, round((v - low) / (high - low) * height * 8)) for v in values]
    lines: list[Text] = []
    for row in range(height - 1, -1, -1):
        cells = (" " if e is None else BARS[max(0, min(8, e - row * 8))] for e in eighths)
        lines.append(Text("".join(cells), style=style))
    return lines


_COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def chart(series: Sequence[Series], *, width: int) -> RenderableType:
    """Each series as a column chart of block characters on a shared time axis, with its min, max and last value."""
    drawn = [one for one in series if one.latest() is not None]
    if not drawn:
        return Text("no values to draw")
    axis_width = max(len(format_value(v)) for one in drawn for v in (_low(one), _high(one)))
    first, last, rows = _columns(drawn, max(10, width - axis_width - 2))
    height = CHART_HEIGHT if len(drawn) <= 3 else 1
    parts: list[RenderableType] = []
    for number, (one, values) in enumerate(zip(drawn, rows, strict=True)):
        style = _COLORS[number % len(_COLORS)]
        title = Text(one.label, style=f"bold {style}")
        title.append(
            f"  min {format_value(_low(one))}  max {format_value(_high(one))}  last {format_value(one.latest())}",
            style="dim",
        )
        parts.append(title)
        lines = _bars(values, height, style)
        for row, line in enumerate(lines):
            scale = ""
            if row == 0:
                scale = format_value(_high(one))
            elif row == height - 1:
                scale = format_value(min(0.0, _low(one)))
            parts.append(Text(f"{scale:>{axis_width}} │", style="dim") + line)
    span = len(rows[0])
    start, end = output.format_time(first), output.format_time(last)
    times = (
        f"{start}{' ' * (span - len(start) - len(end))}{end}" if span > len(start) + len(end) else f"{start} → {end}"
    )
    margin = " " * axis_width
    parts += [Text(f"{margin} └{'─' * span}", style="dim"), Text(f"{margin}  {times}", style="dim")]
    return Group(*parts)


def _low(one: Series) -> float:
    return min(v for _, v in one.points if v is not None)


def _high(one: Series) -> float:
    return max(v for _, v in one.points if v is not None)


# -- dkos top --------------------------------------------------------------------------------


def _filter(project: str | None, *group_by: str) -> str:
    parts = [f"project={project}" if project else "project=*", *(f"{key}=*" for key in group_by)]
    return "{" + ",".join(parts) + "}"


def top_queries(project: str | None) -> dict[str, str]:
    """The `m` of each query one refresh sends: per instance for CPU and memory, per app for requests."""
    return {
        "cpu": f"sum:{CPU_METRIC}{_filter(project, 'app', 'instance')}",
        "memory": f"sum:{MEMORY_METRIC}{_filter(project, 'app', 'instance')}",
        # The counter restarts when HAProxy reloads; rate{counter} reads that as a reset, not a drop.
        "requests": f"sum:rate{{counter}}:{REQUESTS_METRIC}{_filter(project, 'app')}",
    }


def _latest_by(results: Sequence[Mapping[str, Any]], *keys: str) -> dict[tuple[str, ...], tuple[float | None, str]]:
    """The latest value of each series, keyed by its `keys` tags, with its `version` tag (or "")."""
    found: dict[tuple[str, ...], tuple[float | None, str]] = {}
    for result in results:
        tags = result.get("tags") or {}
        if not all(key in tags for key in keys):
            continue
        found[tuple(str(tags[key]) for key in keys)] = (
            Series("", _points(result.get("dps"))).latest(),
            str(tags.get("version", "")),
        )
    return found


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def gather_top(api: client.Client, project: str | None) -> dict[str, Any]:
    """One refresh of `dkos top`: three queries, arranged per app with its instances under it.

    An app's CPU is the average of its instances', its memory their sum; the request rate
    (per second, every port together) is the load balancer's, so it exists per app only.
    """
    queries = top_queries(project)
    answers = {name: api.query(m, start=TOP_WINDOW) for name, m in queries.items()}
    cpu = _latest_by(answers["cpu"], "project", "app", "instance")
    memory = _latest_by(answers["memory"], "project", "app", "instance")
    requests = _latest_by(answers["requests"], "project", "app")
    apps: dict[tuple[str, ...], list[dict[str, Any]]] = {key: [] for key in requests}
    for key in sorted(cpu.keys() | memory.keys()):
        cpu_value, version = cpu.get(key, (None, ""))
        memory_value, memory_version = memory.get(key, (None, ""))
        apps.setdefault(key[:2], []).append(
            {
                "instance": key[2],
                "version": version or memory_version or None,
                "cpu_percent": _round(cpu_value, 2),
                "memory_bytes": None if memory_value is None else int(memory_value),
            }
        )
    rows: list[dict[str, Any]] = []
    for (project_name, app_name), instances in sorted(apps.items()):
        cpus = [i["cpu_percent"] for i in instances if i["cpu_percent"] is not None]
        memories = [i["memory_bytes"] for i in instances if i["memory_bytes"] is not None]
        rate = requests.get((project_name, app_name), (None, ""))[0]
        rows.append(
            {
                "project": project_name,
                "app": app_name,
                "cpu_percent": _round(sum(cpus) / len(cpus), 2) if cpus else None,
                "memory_bytes": sum(memories) if memories else None,
                "requests_per_second": _round(rate, 3),
                "instances": instances,
            }
        )
    return {"project": project, "window": TOP_WINDOW, "queries": queries, "apps": rows}


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def top_table(figures: Mapping[str, Any], *, now: float) -> RenderableType:
    """`dkos top`: a bold row per app (CPU averaged, memory summed, requests/s), its instances under it."""
    apps = figures.get("apps") or []
    where = f"project {figures['project']}" if figures.get("project") else "every project"
    heading = Text(f"dkos top: {where}, {output.format_time(now)}", style="bold")
    if not apps:
        return Group(heading, Text(f"no figures in the last minute for {where}", style="dim"))
    table = Table(box=None, pad_edge=False)
    table.add_column("APP / INSTANCE", no_wrap=True)
    table.add_column("PROJECT", no_wrap=True)
    table.add_column("VERSION", no_wrap=True)
    table.add_column("CPU %", justify="right", no_wrap=True)
    table.add_column("MEM MiB", justify="right", no_wrap=True)
    table.add_column("REQ/S", justify="right", no_wrap=True)
    for app in apps:
        rate = app.get("requests_per_second")
        table.add_row(
            Text(str(app.get("app")), style="bold"),
            Text(str(app.get("project"))),
            Text(""),
            Text(_percent(app.get("cpu_percent")), style="bold"),
            Text(_mib(app.get("memory_bytes")), style="bold"),
            Text("-" if rate is None else format_value(rate), style="bold"),
        )
        for instance in app.get("instances") or []:
            table.add_row(
                Text(f"  {instance.get('instance')}"),
                Text(""),
                Text(str(instance.get("version") or "-")),
                Text(_percent(instance.get("cpu_percent"))),
                Text(_mib(instance.get("memory_bytes"))),
                Text(""),
            )
    return Group(heading, table)
