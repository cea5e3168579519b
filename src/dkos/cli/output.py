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

from dkos.cli import alerting_tables

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


def show(data: Any, fmt: Format, table: Callable[[Any], RenderableType], *, empty: str | None = None) -> None:
    """JSON for programs, or the table `table` draws of the same data for people — or, when
    there is nothing to draw, the `empty` sentence saying what to do next."""
    if fmt is Format.JSON:
        print_json(data)
    elif not data and empty is not None:
        typer.echo(empty)
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


def format_duration(seconds: float | None) -> str:
    """A span of time precise enough to read a drain or a health check: 0.42s, 12.30s, 2m05s, 1h02m."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3_600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3_600)}h{int(seconds % 3_600 // 60):02d}m"


def format_offset(seconds: float | None) -> str:
    """When a step happened, counted from the start of its deployment: +0.42s."""
    return "-" if seconds is None else f"+{format_duration(seconds)}"


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


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def event_type_text(kind: str | None) -> Text:
    """An event or step type, coloured by what happened (`instance.failed` red, `….healthy` green)."""
    kind = kind or "-"
    what = kind.rpartition(".")[2]
    style = _EVENT_STYLES.get(what, "")
    if kind.startswith("instance."):
        style = STATE_STYLES.get(what, style)
    return Text(kind, style=style)


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
        "URL",
    ):
        table.add_column(column, no_wrap=column in ("NAME", "PROJECT", "URL"))
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
            _text(next(iter(app.get("urls") or []), None)),
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
    urls = app.get("urls") or []
    if urls:
        # Where users go first after a deploy, so it comes before the instances.
        parts += [Text("reach it at:", style="bold"), *(Text(f"  {url}") for url in urls), Text("")]
    instances = app.get("instances") or []
    parts.append(instances_table(instances, now=now) if instances else Text("no live instances", style="dim"))
    parts += alerting_tables.app_parts(app)
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
    kind = event_type_text(event.get("type"))
    subject = "/".join(str(event[key]) for key in ("app", "instance") if event.get(key)) or "-"
    line = Text()
    line.append(format_time(event.get("time")), style="dim")
    line.append("  ")
    line.append(f"{kind.plain:<22}", style=kind.style)
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


# -- deployments --------------------------------------------------------------------------


def _versions_text(deployment: Mapping[str, Any]) -> Text:
    """`2→3` for a change of version, just `1` when there was none before (a create)."""
    before, after = deployment.get("from_version"), deployment.get("to_version")
    if before is None or before == after:
        return _text(after)
    return Text(f"{before}→{after}")


def _took(deployment: Mapping[str, Any], *, now: float) -> float | None:
    """How long the deployment ran: until it finished, or until now while it runs."""
    end = deployment.get("finished_at")
    if end is None and deployment.get("status") == "running":
        end = now
    return _span(deployment.get("created_at"), end)


def deployments_table(deployments: Sequence[Mapping[str, Any]], *, now: float) -> Table:
    """`dkos deploys list`: newest first, as the API sends them."""
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "KIND", "VERSION", "STATUS", "HEALTHY", "STARTED", "TOOK", "REASON"):
        table.add_column(column, no_wrap=column != "REASON")
    for deployment in deployments:
        table.add_row(
            _text(deployment.get("id")),
            _text(deployment.get("kind")),
            _versions_text(deployment),
            state_text(deployment.get("status")),
            Text(f"{deployment.get('healthy') or 0}/{deployment.get('target_instances') or 0}"),
            Text(f"{_age(now, deployment.get('created_at')).plain} ago"),
            Text(format_duration(_took(deployment, now=now))),
            _text(deployment.get("reason")),
        )
    return table


def steps_table(steps: Sequence[Mapping[str, Any]], *, start: float | None, header: bool = True) -> Table:
    """A deployment's steps, each timed from `start` (the deployment's creation): `+0.42s`."""
    table = Table(box=None, pad_edge=False, show_header=header and bool(steps))
    for column in ("TIME", "STEP", "INSTANCE", "MESSAGE"):
        table.add_column(column, no_wrap=column != "MESSAGE", justify="right" if column == "TIME" else "left")
    for step in steps:
        table.add_row(
            Text(format_offset(_span(start, step.get("time"))), style="dim"),
            event_type_text(step.get("type")),
            _text(step.get("instance")),
            _text(step.get("message")),
        )
    return table


def deployment_detail(deployment: Mapping[str, Any], *, now: float) -> RenderableType:
    """`dkos deploys show`: the deployment, then every step it took, oldest first."""
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("deployment", _text(deployment.get("id")))
    summary.add_row("app", Text(f"{deployment.get('app')} (project {deployment.get('project')})"))
    summary.add_row("kind", _text(deployment.get("kind")))
    summary.add_row("version", _versions_text(deployment))
    summary.add_row("status", state_text(deployment.get("status")))
    summary.add_row("healthy", Text(f"{deployment.get('healthy') or 0}/{deployment.get('target_instances') or 0}"))
    summary.add_row("started", Text(format_time(deployment.get("created_at"))))
    summary.add_row("finished", Text(format_time(deployment.get("finished_at"))))
    summary.add_row("took", Text(format_duration(_took(deployment, now=now))))
    if deployment.get("reason"):
        summary.add_row("reason", _text(deployment.get("reason")))
    steps = deployment.get("steps") or []
    return Group(
        summary,
        Text(""),
        steps_table(steps, start=deployment.get("created_at")) if steps else Text("no steps yet", style="dim"),
    )


# -- load balancer -------------------------------------------------------------------------


def _server_status_text(status: str | None) -> Text:
    """HAProxy's server status (`UP`, `DOWN`, `DRAIN`, `MAINT`, `UP 1/3`, `no check`)."""
    word = (status or "").split(" ")[0].upper()
    style = {"UP": "green", "DOWN": "bold red", "DRAIN": "yellow", "MAINT": "yellow", "NOLB": "yellow"}.get(word, "")
    return Text(status or "-", style=style)


def _figures_cells(figures: Mapping[str, Any]) -> list[Text]:
    responses = figures.get("responses") or {}
    return [
        _text(figures.get("request_rate")),
        _text(figures.get("requests")),
        *(_text(responses.get(kind)) for kind in ("2xx", "3xx", "4xx", "5xx")),
        _text(figures.get("current_sessions")),
        _text(figures.get("average_response_ms")),
    ]


def traffic_table(traffic: Mapping[str, Any]) -> Table:
    """`dkos apps traffic`: a row per port (the backend's totals), then a row per instance under it."""
    table = Table(box=None, pad_edge=False)
    table.add_column("PORT / INSTANCE", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    for column in ("REQ/S", "REQUESTS", "2XX", "3XX", "4XX", "5XX", "SESSIONS", "AVG MS"):
        table.add_column(column, justify="right", no_wrap=True)
    for port in traffic.get("ports") or []:
        table.add_row(Text(str(port.get("port")), style="bold"), Text(""), *_figures_cells(port))
        for instance in port.get("instances") or []:
            table.add_row(
                Text(f"  {instance.get('instance')}"),
                _server_status_text(instance.get("status")),
                *_figures_cells(instance),
            )
    return table


LB_DISABLED = "the load balancer is disabled on this server (DKOS_LB_ENABLED=false)"


def lb_status_detail(status: Mapping[str, Any], *, now: float) -> RenderableType:
    """`dkos lb status`: whether HAProxy runs, which configuration it has, how the last reload went."""
    if not status.get("enabled"):
        return Text(LB_DISABLED)
    running = bool(status.get("running"))
    state = Text("running" if running else "not running", style="green" if running else "bold red")
    if status.get("pid") is not None:
        state.append(f" (master pid {status['pid']}{', adopted' if status.get('adopted') else ''})", style="dim")
    reload_at = status.get("last_reload_at")
    last_reload = Text(format_time(reload_at))
    if reload_at is not None:
        last_reload.append(f" ({format_age(now - reload_at)} ago", style="dim")
        if status.get("last_reload_seconds") is not None:
            last_reload.append(f", took {format_duration(status['last_reload_seconds'])}", style="dim")
        last_reload.append(")", style="dim")
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("haproxy", state)
    summary.add_row("generation", _text(status.get("generation")))
    summary.add_row("config digest", Text(short_id(status.get("digest"))))
    summary.add_row("last reload", last_reload)
    summary.add_row("restarts", _text(status.get("restarts")))
    error = status.get("last_error")
    summary.add_row("last error", Text(str(error), style="bold red") if error else Text("none"))
    return summary
