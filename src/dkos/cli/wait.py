"""`--wait`: watch a deployment until it ends, with a live progress display on stderr.

Deploy, scale, restart and delete answer at once with a Deployment (docs/api.md); the
work happens in dkos' reconciler afterwards. With `--wait` the CLI polls the deployment
(which carries its steps) and the app's instances every `POLL_INTERVAL` seconds and
redraws a progress bar (healthy / target), the last `STEPS_SHOWN` steps under it (new
instance started → healthy → old one draining → drained → stopped) and the instances'
states, until the deployment `succeeded` (ok),
`failed` or was `superseded` (not ok), or the timeout passes (not ok). A deletion is
done when the app answers 404.

Deciding whether the wait is over is the pure `judge_*` functions; the loops only fetch
and draw. Ending the wait (Ctrl-C or timeout) never touches the deployment: it goes on
in dkos, and the message says so.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dkos.cli import client, output

POLL_INTERVAL = 0.5
"""Seconds between polls: fast enough to show each instance turn healthy, light on the server."""

STEPS_SHOWN = 6
"""How many of the deployment's latest steps the live display keeps under the bar."""


class DeploymentStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Outcome:
    """How a wait ended: `ok` decides the exit code, `message` is what the user reads."""

    ok: bool
    message: str


def judge_deployment(deployment: Mapping[str, Any]) -> Outcome | None:
    """The outcome once a deployment has ended, None while it still runs."""
    ident = deployment.get("id")
    status = deployment.get("status")
    if status == DeploymentStatus.SUCCEEDED:
        return Outcome(
            True,
            f"deployment {ident} succeeded: {_healthy_of(deployment)} instances healthy",
        )
    if status == DeploymentStatus.FAILED:
        reason = deployment.get("reason") or "no reason given"
        return Outcome(
            False,
            f"deployment {ident} failed: {reason} "
            f"(dkos keeps retrying; see `dkos instances {deployment.get('app')} -p {deployment.get('project')}`)",
        )
    if status == DeploymentStatus.SUPERSEDED:
        return Outcome(
            False,
            f"deployment {ident} was superseded by a newer deployment of {deployment.get('app')}",
        )
    return None


def judge_deletion(name: str, app: Mapping[str, Any] | None, deployment_id: str | None) -> Outcome | None:
    """How a deletion went: done once the app is gone (`app` None), failed if its deployment did."""
    if app is None:
        return Outcome(True, f"{name} deleted")
    last = app.get("last_deployment") or {}
    # Compared as text: docs/api.md shows ids like "d-42", the server sends integers.
    if str(last.get("id")) == deployment_id and last.get("status") == DeploymentStatus.FAILED:
        return judge_deployment(last)
    return None


def wait_for_deployment(api: client.Client, deployment: client.JSON, *, timeout: float) -> Outcome:
    """Poll `deployment` until it ends or `timeout` seconds pass, drawing progress on stderr."""
    deadline = time.monotonic() + timeout
    ident = str(deployment["id"])
    app, project = str(deployment["app"]), str(deployment["project"])
    with _live(_render_deployment(deployment, [])) as live:
        try:
            while True:
                deployment = api.deployment(ident)
                instances = api.instances(app, project)
                live.update(_render_deployment(deployment, instances))
                outcome = judge_deployment(deployment)
                if outcome is not None:
                    return outcome
                if time.monotonic() >= deadline:
                    return Outcome(
                        False,
                        f"timed out after {timeout:g} s waiting for deployment {ident} "
                        f"({deployment.get('status')}, {_healthy_of(deployment)} healthy); "
                        f"it goes on in dkos: see `dkos apps show {app} -p {project}`",
                    )
                time.sleep(POLL_INTERVAL)
        except KeyboardInterrupt:
            return Outcome(False, f"stopped waiting; deployment {ident} goes on in dkos")


def wait_for_deletion(
    api: client.Client, app: str, project: str, deployment: client.JSON | None, *, timeout: float
) -> Outcome:
    """Poll the app until it answers 404 or `timeout` seconds pass, drawing what is left."""
    deadline = time.monotonic() + timeout
    ident = None if deployment is None else str(deployment["id"])
    most = 0  # the most live instances seen: the bar counts down from there
    with _live(Text(f"deleting {app}…")) as live:
        try:
            while True:
                current: client.JSON | None
                try:
                    current = api.get_app(app, project)
                except client.ApiError as exc:
                    if exc.status != 404:
                        raise
                    current = None
                instances = [] if current is None else list(current.get("instances") or [])
                most = max(most, len(instances))
                live.update(_render_deletion(app, instances, most))
                outcome = judge_deletion(app, current, ident)
                if outcome is not None:
                    return outcome
                if time.monotonic() >= deadline:
                    return Outcome(
                        False,
                        f"timed out after {timeout:g} s waiting for {app} to be deleted "
                        f"({len(instances)} instances left); it goes on in dkos",
                    )
                time.sleep(POLL_INTERVAL)
        except KeyboardInterrupt:
            return Outcome(False, f"stopped waiting; the deletion of {app} goes on in dkos")


@contextlib.contextmanager
def _live(first: RenderableType) -> Iterator[Live]:
    """A live display on stderr; redrawn in place on a terminal, drawn once at the end otherwise."""
    console = output.stderr()
    with Live(first, console=console, refresh_per_second=4) as live:
        yield live
    if not console.is_terminal:
        # Rich leaves the final frame in a file or pipe without its line end.
        console.line()


def _healthy_of(deployment: Mapping[str, Any]) -> str:
    return f"{deployment.get('healthy', 0)}/{deployment.get('target_instances', 0)}"


def _render_deployment(deployment: Mapping[str, Any], instances: Sequence[Mapping[str, Any]]) -> RenderableType:
    target = int(deployment.get("target_instances") or 0)
    healthy = int(deployment.get("healthy") or 0)
    status = str(deployment.get("status", ""))
    title = Text(f"deployment {deployment.get('id')}: {deployment.get('kind', '')} {deployment.get('app')}")
    if deployment.get("to_version") is not None:
        # A rollback stores the old template as a new version: "to version 7" would read as the old one.
        title.append(f" {'as' if deployment.get('kind') == 'rollback' else 'to'} version {deployment['to_version']}")
    # A scale to zero is complete with nothing healthy: draw it full rather than empty.
    bar = ProgressBar(total=max(target, 1), completed=healthy if target else 1, width=40)
    line = Table.grid(padding=(0, 1))
    line.add_row(bar, Text(f"{healthy}/{target} healthy"), output.state_text(status))
    steps = list(deployment.get("steps") or [])[-STEPS_SHOWN:]
    parts: list[RenderableType] = [title, line]
    if steps:
        parts.append(output.steps_table(steps, start=deployment.get("created_at"), header=False))
    parts.append(_instances_table(instances))
    return Group(*parts)


def _render_deletion(app: str, instances: Sequence[Mapping[str, Any]], most: int) -> RenderableType:
    bar = ProgressBar(total=max(most, 1), completed=(most - len(instances)) if most else 1, width=40)
    line = Table.grid(padding=(0, 1))
    line.add_row(bar, Text(f"{len(instances)} instances left"))
    return Group(Text(f"deleting {app}"), line, _instances_table(instances))


def _instances_table(instances: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, show_header=bool(instances))
    for column in ("ID", "VERSION", "STATE", "REASON"):
        table.add_column(column, style="dim" if column == "REASON" else "")
    for instance in instances:
        table.add_row(
            Text(str(instance.get("id"))),
            Text(str(instance.get("version"))),
            output.state_text(instance.get("state")),
            Text(str(instance.get("reason") or "")),
        )
    return table
