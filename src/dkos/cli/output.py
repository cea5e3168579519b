"""What commands print: rich tables for people, JSON for programs.

`--output json` writes exactly one JSON document (or, for events, one object a line) to
stdout and nothing else there — warnings and progress go to stderr — so `dkos … -o json
| jq` always works. The JSON is the API's objects passed through, never reshaped.

Renderers are pure: they take the objects and `now` and return rich renderables, so a
command decides what to show and `print_*` only does the writing. Every cell is a
`Text`, never a markup string: reasons and messages come from containers and users and
may contain `[brackets]` that rich would otherwise read as markup.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer
import yaml
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

CONTAINER_ID_LENGTH = 12
"""As `docker ps` shows it: enough to be unique on a host and to paste into `docker logs`."""


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


STATE_STYLES: Mapping[str, str] = {
    # instance states
    "pending": "cyan",
    "starting": "cyan",
    "healthy": "green",
    "unhealthy": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red",
    # app states
    "running": "green",
    "deploying": "cyan",
    "degraded": "yellow",
    "deleting": "yellow",
    # deployment statuses ("running" is shared with apps)
    "succeeded": "green",
    "superseded": "yellow",
}

_EVENT_STYLES: Mapping[str, str] = {
    "created": "green",
    "updated": "cyan",
    "deleted": "dim",
    "started": "cyan",
    "succeeded": "green",
    "failed": "bold red",
    "superseded": "yellow",
    "reachable": "green",
    "unreachable": "bold red",
}


PIPED_WIDTH = 400
"""Columns when stdout is not a terminal: a row stays one line for grep, instead of wrapping at 80."""


def stdout() -> Console:
    # A fresh console per use: it binds to whatever sys.stdout is now (tests swap it).
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_json_line(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def print_renderable(renderable: RenderableType) -> None:
    stdout().print(renderable)


def show(data: Any, fmt: Format, table: Callable[[Any], RenderableType]) -> None:
    """JSON for programs, or the table `table` draws of the same data for people."""
    if fmt is Format.JSON:
        print_json(data)
    else:
        print_renderable(table(data))


def warn(message: str) -> None:
    # soft_wrap: one warning, one line, whatever the width (stderr is often a log file).
    stderr().print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)


# -- small formatters ------------------------------------------------------------------


def format_age(seconds: float | None) -> str:
    """A duration as one unit, like `docker ps`: 42s, 5m, 3h, 12d."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def format_time(timestamp: float | None) -> str:
    """A Unix time in the user's local zone, to the second."""
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def short_id(container_id: str | None) -> str:
    return container_id[:CONTAINER_ID_LENGTH] if container_id else "-"


def state_text(state: str | None) -> Text:
    return Text(state or "-", style=STATE_STYLES.get(state or "", ""))


def _text(value: object) -> Text:
    return Text("-" if value is None or value == "" else str(value))


def _age(now: float, since: float | None) -> Text:
    return Text(format_age(None if since is None else now - since))


# -- renderers ---------------------------------------------------------------------------


def apps_table(apps: Sequence[Mapping[str, Any]], *, now: float) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in (
        "NAME",
        "PROJECT",
        "VERSION",
        "STATE",
        "HEALTHY",
        "IMAGE",
        "DEPLOYMENT",
        "UPDATED",
    ):
        table.add_column(column, no_wrap=column in ("NAME", "PROJECT"))
    for app in apps:
        counts = app.get("counts") or {}
        table.add_row(
            _text(app.get("name")),
            _text(app.get("project")),
            _text(app.get("version")),
            state_text(app.get("state")),
            Text(f"{counts.get('healthy', 0)}/{app.get('desired_instances', 0)}"),
            _text(app.get("image")),
            _deployment_text(app.get("last_deployment")),
            _age(now, app.get("updated_at")),
        )
    return table


def app_detail(app: Mapping[str, Any], *, now: float) -> RenderableType:
    """`dkos apps show`: a summary, the live instances and the full spec (defaults filled in)."""
    counts = app.get("counts") or {}
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("name", _text(app.get("name")))
    summary.add_row("project", _text(app.get("project")))
    summary.add_row("state", state_text(app.get("state")))
    summary.add_row("version", _text(app.get("version")))
    summary.add_row("image", _text(app.get("image")))
    summary.add_row(
        "instances",
        Text(
            f"{counts.get('healthy', 0)}/{app.get('desired_instances', 0)} healthy"
            + "".join(f", {counts[k]} {k}" for k in sorted(counts) if k != "healthy" and counts[k])
        ),
    )
    summary.add_row("last deployment", _deployment_text(app.get("last_deployment")))
    summary.add_row("created", Text(format_time(app.get("created_at"))))
    summary.add_row("updated", Text(format_time(app.get("updated_at"))))
    parts: list[RenderableType] = [summary, Text("")]
    instances = app.get("instances") or []
    parts.append(instances_table(instances, now=now) if instances else Text("no live instances", style="dim"))
    if app.get("spec") is not None:
        parts += [
            Text(""),
            Text("spec:", style="bold"),
            Text(yaml.safe_dump(app["spec"], sort_keys=False).rstrip()),
        ]
    return Group(*parts)


def instances_table(instances: Sequence[Mapping[str, Any]], *, now: float) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "VERSION", "STATE", "ADDRESS", "CONTAINER", "AGE", "REASON"):
        table.add_column(column, no_wrap=column != "REASON")
    for instance in instances:
        table.add_row(
            _text(instance.get("id")),
            _text(instance.get("version")),
            state_text(instance.get("state")),
            _text(instance.get("address")),
            Text(short_id(instance.get("container_id"))),
            _age(now, instance.get("created_at")),
            _text(instance.get("reason")),
        )
    return table


def versions_table(versions: Sequence[Mapping[str, Any]], *, now: float) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("VERSION", "CREATED", "AGE", "BY", "CHANGE"):
        table.add_column(column, no_wrap=column != "CHANGE")
    for version in versions:
        table.add_row(
            _text(version.get("version")),
            Text(format_time(version.get("created_at"))),
            _age(now, version.get("created_at")),
            _text(version.get("created_by")),
            _text(version.get("change")),
        )
    return table


def event_line(event: Mapping[str, Any]) -> Text:
    """One event as a line: time, type (coloured by what happened), app/instance, message."""
    kind = str(event.get("type") or "-")
    style = _EVENT_STYLES.get(kind.rpartition(".")[2], "")
    if kind.startswith("instance."):
        style = STATE_STYLES.get(kind.rpartition(".")[2], style)
    subject = "/".join(str(event[key]) for key in ("app", "instance") if event.get(key)) or "-"
    line = Text()
    line.append(format_time(event.get("time")), style="dim")
    line.append("  ")
    line.append(f"{kind:<22}", style=style)
    line.append("  ")
    line.append(f"{subject:<20}")
    line.append("  ")
    line.append(str(event.get("message") or ""))
    return line


def _deployment_text(deployment: Mapping[str, Any] | None) -> Text:
    if not deployment:
        return Text("-")
    status = str(deployment.get("status", ""))
    text = Text(f"{deployment.get('kind', '')} ")
    text.append(status, style=STATE_STYLES.get(status, ""))
    text.append(f" ({deployment.get('id')})", style="dim")
    return text
