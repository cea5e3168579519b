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
from typing import Any

from rich.text import Text

from dkos.cli import client, output

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
