"""`dkos logs`: an app's lines as `docker compose logs` shows them, or as JSON lines.

Pure except `print_history` and `follow`, which page through `GET /v1/apps/{app}/logs` and
follow `GET /v1/apps/{app}/logs/stream`. Each instance gets a stable colour, derived from
its name (the same instance has the same colour in every run and every terminal), and a
prefix padded to the longest instance name shown so far.
"""

from __future__ import annotations

import enum
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer
from rich.text import Text

from dkos.cli import alerts, client, output

COLOURS = (
    "cyan",
    "yellow",
    "green",
    "magenta",
    "blue",
    "bright_cyan",
    "bright_yellow",
    "bright_green",
    "bright_magenta",
    "bright_blue",
)
"""docker compose's rotation of colours; red is left for stderr markers."""
RECONNECT_MAX_DELAY = 10.0


class Stream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


def colour(instance: str) -> str:
    return COLOURS[zlib.crc32(instance.encode()) % len(COLOURS)]


class Formatter:
    """Lines → `instance | text`, the prefix padded to the widest instance seen."""

    def __init__(self, *, timestamps: bool) -> None:
        self.timestamps = timestamps
        self.width = 0

    def widen(self, lines: Iterable[client.JSON]) -> None:
        self.width = max([self.width, *(len(str(line.get("instance", ""))) for line in lines)])

    def render(self, line: client.JSON) -> Text:
        instance = str(line.get("instance", ""))
        self.width = max(self.width, len(instance))
        text = Text()
        text.append(f"{instance:<{self.width}} |", style=colour(instance))
        if self.timestamps:
            text.append(f" {line.get('time', '')}", style="dim")
        if line.get("stream") == "stderr":
            text.append(" !", style="red")
        text.append(" " + str(line.get("text", "")))
        if line.get("more"):
            text.append(" …", style="dim")  # the line goes on in the next piece
        return text


def print_history(
    api: client.Client, app: str, project: str, params: dict[str, str], show: Callable[[list[client.JSON]], None]
) -> int | None:
    """Print the stored lines `params` select, paging forward when reading from `since`;
    the id of the last line printed."""
    last: int | None = None
    page_params = dict(params)
    while True:
        page = api.logs(app, project, page_params)
        lines: list[client.JSON] = page.get("lines") or []
        show(lines)
        if lines:
            last = int(lines[-1]["id"])
        nxt = page.get("next_after")
        if nxt is None:
            return last if last is not None else _newest(page)
        page_params = {**params, "after": str(nxt)}


def _newest(page: client.JSON) -> int | None:
    newest = page.get("newest_id")
    return int(newest) if newest is not None else None


def follow(
    api: client.Client,
    app: str,
    project: str,
    params: dict[str, str],
    show: Callable[[list[client.JSON]], None],
) -> None:
    """Follow the stream until interrupted; after a drop (a server restart), reconnect and
    resume after the last line shown."""
    last_id: str | None = None
    delay = 1.0
    while True:
        try:
            first = params if last_id is None else {k: v for k, v in params.items() if k not in ("tail", "since")}
            for line in api.follow_logs(app, project, first, last_event_id=last_id):
                delay = 1.0
                last_id = str(line.get("id"))
                show([line])
            reason = "dkos closed the log stream"
        except (client.ConnectionLost, client.Unreachable) as exc:
            if last_id is None and isinstance(exc, client.Unreachable):
                raise
            reason = str(exc)
        output.warn(f"{reason}; reconnecting in {delay:g} s")
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_DELAY)


def query_params(**values: Any) -> dict[str, str]:
    """The API's parameters for the options given (None left out)."""
    return {key: str(value) for key, value in values.items() if value is not None}


# -- keyword alarms: a command of `dkos alarms` (cli/alerts.py), where the other alarms live ----


@alerts.alarms_app.command("create-logs")
def alarms_create_logs(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Letters and digits, no spaces.", show_default=False)],
    query: Annotated[
        str, typer.Option(help='What to count, as `dkos logs --grep`: "OutOfMemory".', show_default=False)
    ],
    threshold: Annotated[int, typer.Option(min=1, help="N: matching lines that fire the alarm.", show_default=False)],
    window: Annotated[int, typer.Option(min=1, help="W: seconds the lines are counted over.", show_default=False)],
    app: Annotated[
        str | None, typer.Option("--app", "-a", help="The app (default: every app of the project).", show_default=False)
    ] = None,
    channel: Annotated[list[str] | None, typer.Option(help="A channel to notify (repeatable).")] = None,
    repeat_interval: Annotated[
        float | None, typer.Option(help="Realert: seconds between repeated notifications while in ALARM.")
    ] = None,
    project: Annotated[str, typer.Option("--project", "-p", help="The project.")] = "default",
    output_: Annotated[output.Format, typer.Option("--output", "-o", help="table or json.")] = output.Format.TABLE,
) -> None:
    """Create a keyword alarm: ALARM while ≥ N lines matching QUERY were written within W seconds.

    Example: `dkos alarms create-logs oom --app web --query OutOfMemory --threshold 50 --window 300 --channel ops`
    """
    from dkos.cli import main  # through `main`, so tests that replace `main.new_client` reach this too

    body_json: dict[str, Any] = {
        "name": name,
        "project": project,
        "app": app,
        "query": query,
        "threshold": threshold,
        "window": window,
        "channels": channel or [],
        **({"repeat_interval": repeat_interval} if repeat_interval is not None else {}),
    }
    with main._connect() as api:
        created = api._json("POST", "/v1/log-alarms", json=body_json)
    if output_ is output.Format.JSON:
        output.print_json(created)
    else:
        typer.echo(f"alarm {name} created: {created.get('summary', '')}")
