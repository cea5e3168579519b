"""How a failed command ends: one message on stderr and one exit code, never a traceback.

Commands raise; they never print errors or call `sys.exit` themselves. `describe()` maps
every error the CLI expects — the client's tree (`cli/client.py`) and `Failure`, which
commands raise for problems found on this side (a spec file that does not parse, a
deployment that failed) — to lines and an `ExitCode`. `Group` applies it to every
command at once, so a new command cannot forget to.

Exit codes are part of the CLI's contract, for scripts:

    0 ok · 1 failed (deployment failed, timed out, conflict, engine down, …)
    2 invalid input (spec rejected, spec file unreadable, metrics query refused) · 3 unauthorized
    4 not found · 5 dkos unreachable
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from dkos.cli import client


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    INVALID = 2
    UNAUTHORIZED = 3
    NOT_FOUND = 4
    UNREACHABLE = 5


class Failure(Exception):
    """Raised by commands for a failure the CLI finds itself; the message says what to do next."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class Report:
    """What the user sees when a command fails."""

    lines: list[str]
    exit_code: ExitCode


def describe(exc: client.ClientError | Failure) -> Report:
    """The message and exit code for an error; pure, so every mapping is unit-tested."""
    if isinstance(exc, Failure):
        return Report([exc.message], exc.exit_code)
    if isinstance(exc, client.Unreachable):
        return Report(
            [f"cannot reach dkos at {exc.url}: is `dkos server` running?", f"  ({exc.reason})"],
            ExitCode.UNREACHABLE,
        )
    if isinstance(exc, client.ApiError):
        return _describe_api_error(exc)
    return Report([str(exc)], ExitCode.FAILED)


def _describe_api_error(exc: client.ApiError) -> Report:
    if exc.status == 422:
        if not exc.details:
            return Report([f"invalid spec: {exc.message}"], ExitCode.INVALID)
        return Report(["invalid spec:", *(f"  {d.field}: {d.rule}" for d in exc.details)], ExitCode.INVALID)
    if exc.status == 400:
        # Only the OpenTSDB API answers 400: a query it cannot parse or a name it does not know.
        return Report([exc.message], ExitCode.INVALID)
    if exc.status == 401:
        return Report(["unauthorized: check DKOS_TOKEN or run dkos login"], ExitCode.UNAUTHORIZED)
    if exc.status == 404:
        return Report([exc.message], ExitCode.NOT_FOUND)
    if exc.status == 409 and _replaceable(exc):
        return Report([exc.message, FORCE_HINT], ExitCode.FAILED)
    if exc.status == 503:
        return Report(
            [f"{exc.message} (dkos reconnects to the engine by itself; retry shortly)"],
            ExitCode.FAILED,
        )
    return Report([f"{exc.message} ({exc.status} {exc.error})"], ExitCode.FAILED)


FORCE_HINT = "add --force to replace it"
"""Said under a 409 that a forced retry would get past: deploy, scale, restart and rollback take --force."""


def _replaceable(exc: client.ApiError) -> bool:
    """Whether a 409 is "a deployment of the app is still running", the one conflict --force
    replaces. Other conflicts (an app being deleted, no earlier version to roll back to) get
    no hint: forcing would not help."""
    return exc.error == "deployment_running"


class Group(TyperGroup):
    """The root command group: runs the chosen command and turns expected errors into exits.

    Every subcommand runs inside the root group's `invoke`, so catching here covers them all.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (client.ClientError, Failure) as exc:
            report = describe(exc)
            for line in report.lines:
                # Plain echo, not rich: server text like "[Errno 111]" must not be read as markup.
                typer.echo(line, err=True)
            raise typer.Exit(int(report.exit_code)) from None
