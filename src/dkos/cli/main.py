"""The `dkos` command: every subcommand is one or a few calls of the REST API.

This module only wires arguments to `client.Client` calls and results to `output`;
finding the server is `config`, waiting is `wait`, and failures become exit codes in
`errors` (the root group applies it to every command). It never imports server code —
except `dkos server`, which imports `dkos.server` inside the command so the client
works where the server's dependencies are not installed.

Tests replace `new_client` to plug an `httpx.MockTransport` into every command.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.text import Text

from dkos import __version__
from dkos.cli import alerts, client, config, errors, metrics, output, specfile, wait
from dkos.cli import logs as logs_cli

app = typer.Typer(
    name="dkos",
    cls=errors.Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Markdown: help prose is rewrapped to the terminal, and `[` in it is not rich markup.
    rich_markup_mode="markdown",
)


def _group(name: str, help: str) -> typer.Typer:
    """A command group under `dkos`, e.g. `dkos apps …`."""
    group = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help=help)
    app.add_typer(group, name=name)
    return group


apps_app = _group("apps", "Deploy, inspect, scale, restart, roll back and delete apps.")
deploys_app = _group(
    "deploys", "Look at deployments: each rollout, scale, restart, rollback or deletion, step by step."
)
lb_app = _group("lb", "The load balancer (HAProxy) that routes to every app's healthy instances.")
metrics_app = _group("metrics", "Query the figures dkos collects (docs/metrics.md) through its OpenTSDB API.")
for _name, _alerts_group in alerts.GROUPS.items():  # dkos alarms|policies|channels (cli/alerts.py)
    app.add_typer(_alerts_group, name=_name)

DEFAULT_LISTEN = "127.0.0.1:7700"
DEFAULT_WAIT_TIMEOUT = 300.0
RECONNECT_MAX_DELAY = 10.0
"""Seconds between attempts, at most, to reconnect a followed event stream."""


def new_client(url: str, token: str | None) -> client.Client:
    """Every command's `Client` comes from here, so tests replace this one function."""
    return client.Client(url, token)


def _connect() -> client.Client:
    target = config.resolve(os.environ, cwd=Path.cwd())
    return new_client(target.url, target.token)


# -- options shared by commands ---------------------------------------------------------

OutputOption = Annotated[output.Format, typer.Option("--output", "-o", help="table for people, json for programs.")]
ProjectOption = Annotated[str, typer.Option("--project", "-p", help="The app's project.")]
WaitOption = Annotated[
    bool,
    typer.Option("--wait", help="Show progress until the deployment ends; exit 1 if it fails or times out."),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0, help="Seconds --wait waits; the deployment goes on after it gives up."),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace a deployment of the app that is still running (without it dkos refuses, exit 1).",
    ),
]
AppArgument = Annotated[str, typer.Argument(metavar="APP", help="The app's name.", show_default=False)]


def _finish(outcome: wait.Outcome, *, quiet_stdout: bool = False) -> None:
    """Exit 1 on a failed wait; else say how it ended (on stderr when stdout carries JSON)."""
    if not outcome.ok:
        raise errors.Failure(outcome.message)
    typer.echo(outcome.message, err=quiet_stdout)


def _report(
    api: client.Client,
    answer: client.JSON,
    *,
    said: str,
    output_: output.Format,
    follow: Callable[[], wait.Outcome] | None,
) -> None:
    """What every write command prints: a line (or the API's answer as JSON), then, with
    --wait, the live progress on stderr and the outcome. JSON output carries the
    deployment as it ended, so scripts need no second call."""
    if output_ is output.Format.TABLE:
        typer.echo(said)
    outcome = follow() if follow is not None else None
    if output_ is output.Format.JSON:
        deployment = answer.get("deployment")
        if outcome is not None and deployment is not None and outcome.ok:
            with contextlib.suppress(client.ApiError):  # a deleted app's deployment may be gone
                answer = {**answer, "deployment": api.deployment(str(deployment["id"]))}
        output.print_json(answer)
    if outcome is not None:
        _finish(outcome, quiet_stdout=output_ is output.Format.JSON)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dkos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """dkos: run containers as apps on your own machines.

    The CLI talks to a dkos server: DKOS_URL and DKOS_TOKEN, else the login saved by
    `dkos login`, else http://127.0.0.1:7700 with ./.dkos/admin.token.

    Example: `dkos apps deploy web.yaml --wait`
    """


# -- server and login ---------------------------------------------------------------------


def _check_listen(value: str) -> str:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise typer.BadParameter(f"expected HOST:PORT such as {DEFAULT_LISTEN}, not {value!r}")
    return value


@app.command()
def server(
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="DKOS_DATA_DIR", help="Where state and the admin token live."),
    ] = Path(config.DEFAULT_DATA_DIR),
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            envvar="DKOS_LISTEN",
            callback=_check_listen,
            help="HOST:PORT the API listens on.",
        ),
    ] = DEFAULT_LISTEN,
) -> None:
    """Run the dkos server in the foreground (API, reconciler, health checks).

    It writes an admin token to DATA_DIR/admin.token on first start.

    Example: `dkos server --data-dir /var/lib/dkos --listen 0.0.0.0:7700`
    """
    try:
        # Imported here, not at the top: the server's dependencies (FastAPI, SQLAlchemy,
        # the Docker client) are not needed to use the CLI against a remote server.
        from dkos import server as server_module
    except ImportError as exc:
        raise errors.Failure(
            f"dkos server cannot start: {exc.name or exc} is not installed (pip install dkos)"
        ) from exc
    server_module.run(data_dir=data_dir, listen=listen)


@app.command()
def login(
    server_url: Annotated[
        str,
        typer.Option("--server", help="The server's URL, e.g. https://dkos.example.com.", show_default=False),
    ],
    token_file: Annotated[
        Path,
        typer.Option("--token-file", help="A file holding the token (keeps it out of shell history)."),
    ],
) -> None:
    """Save a server URL and token for later commands, after checking the server accepts the token.

    The login goes to $XDG_CONFIG_HOME/dkos/config.json (default ~/.config/dkos/), readable
    only by you. DKOS_URL and DKOS_TOKEN, when set, still win over it.

    Example: `dkos login --server http://dkos.internal:7700 --token-file ~/dkos.token`
    """
    url = config.normalize_url(server_url)
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise errors.Failure(f"cannot read token file {token_file}: {exc.strerror}", errors.ExitCode.INVALID) from exc
    if not token:
        raise errors.Failure(f"token file {token_file} is empty", errors.ExitCode.INVALID)
    with new_client(url, token) as api:
        try:
            health = api.health()
        except client.ApiError as exc:
            if exc.status != 401:
                raise
            # The generic 401 advice ("run dkos login") would send the user in a circle.
            raise errors.Failure(
                f"{url} refused the token in {token_file}; nothing was saved",
                errors.ExitCode.UNAUTHORIZED,
            ) from exc
    path = config.config_path(os.environ)
    config.save(path, config.Login(url=url, token=token))
    typer.echo(f"token accepted by dkos {health.get('version', '?')} at {url}; saved to {path}")
    _warn_if_engine_down(health)
    for name in ("DKOS_URL", "DKOS_TOKEN"):
        if os.environ.get(name):
            output.warn(f"{name} is set and wins over the saved login; unset it to use {url}")


def _warn_if_engine_down(health: client.JSON) -> None:
    engine = health.get("engine") or {}
    if engine.get("reachable") is False:
        output.warn(f"container engine unreachable: {engine.get('error') or 'no reason given'}")


# -- apps -----------------------------------------------------------------------------------


@apps_app.command("deploy")
def apps_deploy(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The app spec, YAML (.yaml, .yml) or JSON.", show_default=False)
    ],
    wait_: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    force: ForceOption = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Create an app, or roll out a new version of it, from a spec file.

    The spec names the app and its project. Deploying a spec identical to the current
    version changes nothing. While an earlier deployment of the app still runs, dkos
    refuses unless you add `--force`, which replaces it.

    Example: `dkos apps deploy web.yaml --wait --timeout 600`
    """
    spec = specfile.read(file)
    with _connect() as api:
        result = api.deploy(spec.text, content_type=spec.content_type, force=force)
        name, project, version = (
            result.app.get("name"),
            result.app.get("project"),
            result.app.get("version"),
        )
        deployment = result.deployment
        if deployment is None:
            said = f"no change: {name} (project {project}) is already at version {version}"
        else:
            verb = "created" if result.created else "updated"
            said = f"{verb} {name} (project {project}): version {version}, deployment {deployment['id']}"
        _report(
            api,
            {"app": result.app, "deployment": deployment},
            said=said,
            output_=output_,
            follow=functools.partial(wait.wait_for_deployment, api, deployment, timeout=timeout)
            if wait_ and deployment is not None
            else None,
        )


@apps_app.command("list")
def apps_list(
    project: ProjectOption = "default",
    all_projects: Annotated[bool, typer.Option("--all-projects", "-A", help="List the apps of every project.")] = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """List apps with their state, version and healthy instances.

    Example: `dkos apps list -p news -o json`
    """
    with _connect() as api:
        # Apps look stuck when the engine is down; say why before the listing, not after.
        _warn_if_engine_down(api.health())
        apps = api.list_apps(None if all_projects else project)
    where = "any project" if all_projects else f"project {project}"
    output.show(
        apps,
        output_,
        lambda data: output.apps_table(data, now=time.time()),
        empty=f"no apps in {where}; create one with `dkos apps deploy FILE`",
    )


@apps_app.command("show")
def apps_show(
    app_name: AppArgument,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Show one app: state, version, where to reach it, live instances and its full spec.

    Example: `dkos apps show web -p news`
    """
    with _connect() as api:
        found = api.get_app(app_name, project)
    output.show(found, output_, lambda app: output.app_detail(app, now=time.time()))


@apps_app.command("scale")
def apps_scale(
    app_name: AppArgument,
    instances: Annotated[
        int, typer.Argument(min=0, metavar="N", help="How many instances to run.", show_default=False)
    ],
    project: ProjectOption = "default",
    wait_: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    force: ForceOption = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Run N instances of an app (0 stops them all but keeps the app).

    Example: `dkos apps scale web 5 --wait`
    """
    with _connect() as api:
        answer = api.scale(app_name, project, instances, force=force)
        _report_change(
            api,
            answer,
            doing=f"scaling {app_name} to {instances} instances",
            wait_=wait_,
            timeout=timeout,
            output_=output_,
        )


@apps_app.command("restart")
def apps_restart(
    app_name: AppArgument,
    project: ProjectOption = "default",
    wait_: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    force: ForceOption = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Replace every instance, one at a time, each new one healthy before an old one stops.

    Example: `dkos apps restart web --wait`
    """
    with _connect() as api:
        answer = api.restart(app_name, project, force=force)
        _report_change(api, answer, doing=f"restarting {app_name}", wait_=wait_, timeout=timeout, output_=output_)


@apps_app.command("rollback")
def apps_rollback(
    app_name: AppArgument,
    to_version: Annotated[
        int | None,
        typer.Option(
            "--to",
            min=1,
            metavar="VERSION",
            help="The version to bring back (default: the newest earlier one that differs from the current).",
            show_default=False,
        ),
    ] = None,
    project: ProjectOption = "default",
    wait_: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    force: ForceOption = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Bring back an earlier version of an app, rolled out like any deploy.

    The earlier version's template (image, command, environment, …) comes back as a new
    version; the number of instances stays as it is. `dkos apps versions APP` lists the
    versions to choose from.

    Example: `dkos apps rollback web --to 3 --wait`
    """
    with _connect() as api:
        answer = api.rollback(app_name, project, to_version=to_version, force=force)
        target = to_version
        if target is None and output_ is output.Format.TABLE:
            target = _rolled_back_to(api, app_name, project)
        version = (answer.get("app") or {}).get("version")
        doing = f"rolling back {app_name} (project {project})"
        if target is not None:
            doing += f" to version {target}"
        _report_change(
            api, answer, doing=f"{doing} as version {version}", wait_=wait_, timeout=timeout, output_=output_
        )


def _rolled_back_to(api: client.Client, app_name: str, project: str) -> int | None:
    """Which version the server chose to bring back: its newest version records it as
    `rollback to version N`. None when that cannot be read; the rollback is done either way."""
    try:
        versions = api.versions(app_name, project)
    except client.ClientError:
        return None
    change = str(versions[0].get("change") or "") if versions else ""
    prefix = "rollback to version "
    number = change.removeprefix(prefix).partition(":")[0]
    return int(number) if change.startswith(prefix) and number.isdigit() else None


def _report_change(
    api: client.Client, answer: client.JSON, *, doing: str, wait_: bool, timeout: float, output_: output.Format
) -> None:
    """Say which deployment a scale or restart started, and follow it with --wait."""
    deployment = answer.get("deployment")
    _report(
        api,
        answer,
        said=f"{doing}: deployment {deployment['id']}" if deployment else f"{doing}: no change needed",
        output_=output_,
        follow=functools.partial(wait.wait_for_deployment, api, deployment, timeout=timeout)
        if wait_ and deployment is not None
        else None,
    )


@apps_app.command("delete")
def apps_delete(
    app_name: AppArgument,
    project: ProjectOption = "default",
    wait_: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Delete an app: stop its instances gracefully (SIGTERM, then SIGKILL), then forget it.

    Example: `dkos apps delete web --wait`
    """
    with _connect() as api:
        answer = api.delete_app(app_name, project)
        deployment = answer.get("deployment")
        suffix = f": deployment {deployment['id']}" if deployment else ""
        _report(
            api,
            answer,
            said=f"deleting {app_name} (project {project}){suffix}",
            output_=output_,
            follow=functools.partial(wait.wait_for_deletion, api, app_name, project, deployment, timeout=timeout)
            if wait_
            else None,
        )


@apps_app.command("versions")
def apps_versions(
    app_name: AppArgument,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """List an app's versions, newest first, with what changed in each.

    Example: `dkos apps versions web -o json`
    """
    with _connect() as api:
        versions = api.versions(app_name, project)
    output.show(versions, output_, lambda rows: output.versions_table(rows, now=time.time()))


@apps_app.command("traffic")
def apps_traffic(
    app_name: AppArgument,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Show an app's traffic through the load balancer, per port and per instance.

    Requests per second, requests and responses by class (2xx to 5xx) since HAProxy last
    reloaded, sessions open now, and the average response time in milliseconds.

    Example: `dkos apps traffic web -o json`
    """
    with _connect() as api:
        traffic = api.traffic(app_name, project)
    if output_ is output.Format.TABLE and not traffic.get("ports"):
        typer.echo(f"{app_name} has no ports behind the load balancer; add `ports` to its spec")
        return
    output.show(traffic, output_, output.traffic_table)


# -- deployments and the load balancer ------------------------------------------------------


@deploys_app.command("list")
def deploys_list(
    app_name: AppArgument,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """List an app's deployments, newest first: kind, versions, status, how long each took and why.

    Example: `dkos deploys list web -p news`
    """
    with _connect() as api:
        found = api.deployments(app_name, project)
    output.show(
        found,
        output_,
        lambda data: output.deployments_table(data, now=time.time()),
        empty=f"{app_name} has no deployments",
    )


@deploys_app.command("show")
def deploys_show(
    deployment_id: Annotated[
        str, typer.Argument(metavar="ID", help="The deployment's id (see `dkos deploys list`).", show_default=False)
    ],
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Show one deployment, then each step it took: instances started, healthy, drained, stopped.

    Each step is timed from the start of the deployment (+0.42s).

    Example: `dkos deploys show 7`
    """
    with _connect() as api:
        found = api.deployment(deployment_id)
    output.show(found, output_, lambda deployment: output.deployment_detail(deployment, now=time.time()))


@lb_app.command("status")
def lb_status(output_: OutputOption = output.Format.TABLE) -> None:
    """Show whether HAProxy runs, its configuration generation, and how the last reload went.

    Example: `dkos lb status -o json`
    """
    with _connect() as api:
        status = api.lb_status()
    output.show(status, output_, lambda found: output.lb_status_detail(found, now=time.time()))


# -- instances and events -------------------------------------------------------------------


@app.command("instances")
def instances_command(
    app_name: AppArgument,
    project: ProjectOption = "default",
    include_ended: Annotated[
        bool,
        typer.Option("--all", "-a", help="Include stopped and failed instances, with why they ended."),
    ] = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """List an app's instances: state, address, container and why any failed.

    Example: `dkos instances web --all`
    """
    with _connect() as api:
        found = api.instances(app_name, project, include_ended=include_ended)
    output.show(
        found,
        output_,
        lambda data: output.instances_table(data, now=time.time()),
        empty=f"{app_name} has no {'' if include_ended else 'live '}instances",
    )


@app.command("events")
def events_command(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")] = False,
    tail: Annotated[int, typer.Option("--tail", "-n", min=0, help="How many past events to print first.")] = 20,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Only this project's events (default: all)."),
    ] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app's events.")] = None,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Print recent events (deployments, instances, engine), or follow them live.

    With -o json, each event is one JSON object on its own line.

    Example: `dkos events -f --app web`
    """
    printer = output.stdout()

    def show_line(event: client.JSON) -> None:
        # soft_wrap: a long message stays one line, so `dkos events | grep` sees whole events.
        printer.print(output.event_line(event), soft_wrap=True)

    show = output.print_json_line if output_ is output.Format.JSON else show_line
    # Ctrl-C is how a follow ends: a normal exit, not an error.
    with _connect() as api, contextlib.suppress(KeyboardInterrupt):
        _stream_events(api, show, follow=follow, tail=tail, project=project, app=app_name)


def _stream_events(
    api: client.Client,
    show: Callable[[client.JSON], Any],
    *,
    follow: bool,
    tail: int,
    project: str | None,
    app: str | None,
) -> None:
    """Print events; when following, reconnect after a drop and resume with Last-Event-ID."""
    last_id: str | None = None
    connected = False
    delay = 1.0
    while True:
        try:
            for event in api.events(
                project=project,
                app=app,
                tail=tail if last_id is None else 0,
                follow=follow,
                last_event_id=last_id,
            ):
                connected, delay = True, 1.0
                if event.get("id") is not None:
                    last_id = str(event["id"])
                show(event)
            if not follow:
                return
            connected = True
            reason = "dkos closed the event stream"
        except (client.ConnectionLost, client.Unreachable) as exc:
            # A server that was never reached is an error; one that went away (a restart)
            # is waited for, since the user asked to follow.
            if not follow or not (connected or isinstance(exc, client.ConnectionLost)):
                raise
            connected = True
            reason = str(exc)
        output.warn(f"{reason}; reconnecting in {delay:g} s")
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_DELAY)


# -- logs ------------------------------------------------------------------------------------


@app.command("logs")
def logs_command(
    app_name: AppArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (every instance, across deploys).")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="From this time: 10m, 2h, 7d, 2026-11-25T19:00:00Z, a Unix time.", show_default=False),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to this time, written as --since.", show_default=False)] = None,
    tail: Annotated[
        int | None,
        typer.Option(
            "--tail", "-n", min=0, max=5000, help="The last N lines (default 100 unless --since).", show_default=False
        ),
    ] = None,
    instance: Annotated[str | None, typer.Option(help="Only this instance, e.g. web-3.", show_default=False)] = None,
    stream: Annotated[logs_cli.Stream | None, typer.Option(help="Only stdout or stderr.", show_default=False)] = None,
    grep: Annotated[
        str | None,
        typer.Option(help='Full-text search: error, "out of memory", "panic OR fatal", time*.', show_default=False),
    ] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Show each line's time.")] = False,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Print an app's log lines, prefixed by instance (a colour each), or follow them live.

    Lines of every instance are kept, also after it exits (docs/logs.md). With -o json each
    line is one JSON object. Stderr lines are marked `!`.

    Example: `dkos logs web -f --grep "error OR timeout"`
    """
    formatter = logs_cli.Formatter(timestamps=timestamps)
    printer = output.stdout()

    def show(lines: list[client.JSON]) -> None:
        if output_ is output.Format.JSON:
            for line in lines:
                output.print_json_line(line)
            return
        formatter.widen(lines)
        for line in lines:
            printer.print(formatter.render(line), soft_wrap=True)

    filters = logs_cli.query_params(
        instance=instance, stream=stream.value if stream else None, q=grep, since=since, until=until
    )
    try:
        with _connect() as api, contextlib.suppress(KeyboardInterrupt):
            if follow:
                filters.pop("until", None)
                logs_cli.follow(api, app_name, project, {**filters, "tail": str(100 if tail is None else tail)}, show)
            else:
                history = {**filters, **logs_cli.query_params(tail=tail)}
                logs_cli.print_history(api, app_name, project, history, show)
    except client.ApiError as exc:
        if exc.status != 422 or not exc.details:
            raise
        problems = "; ".join(f"--{d.field}: {d.rule}" for d in exc.details)
        raise errors.Failure(problems, errors.ExitCode.INVALID) from exc


# -- metrics ---------------------------------------------------------------------------------


@metrics_app.command("query")
def metrics_query(
    expression: Annotated[
        str,
        typer.Argument(
            metavar="EXPRESSION",
            help="OpenTSDB's `m`: AGG:[DOWNSAMPLE:][rate:]METRIC{TAG=VALUE,…}.",
            show_default=False,
        ),
    ],
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Start: a duration back from now (10m, 1h, 2d) or an OpenTSDB time (2024/01/31-12:00, a Unix time).",
        ),
    ] = "1h",
    until: Annotated[
        str | None,
        typer.Option("--until", help="End, written as --since (default: now).", show_default=False),
    ] = None,
    plot: Annotated[bool, typer.Option("--plot", help="Draw each series as a chart instead of a table.")] = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Query the metrics store: a row per timestamp, a column per series (named by its tags).

    Metric names and tags are in docs/metrics.md. `-o json` prints the API's answer as is.
    A query the server refuses prints its message and exits 2.

    Example: `dkos metrics query 'avg:1m-avg:dkos.container.cpu.percent{app=web}' --since 3h --plot`
    """
    if plot and output_ is output.Format.JSON:
        raise errors.Failure("--plot draws for people; leave it out with -o json", errors.ExitCode.INVALID)
    start = metrics.opentsdb_time(since)
    end = None if until is None else metrics.opentsdb_time(until)
    with _connect() as api:
        results = api.query(expression, start=start, end=end)
    if output_ is output.Format.JSON:
        output.print_json(results)
        return
    series = metrics.parse_series(results)
    if not any(one.points for one in series):
        typer.echo(f"no data points for {expression} since {start}")
        return
    if plot:
        console = output.stdout()
        console.print(metrics.chart(series, width=min(console.width, 160)))
    else:
        output.print_renderable(metrics.series_table(series))


@app.command("top")
def top_command(
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Only this project's apps (default: all)."),
    ] = None,
    interval: Annotated[float, typer.Option("--interval", "-n", min=0.5, help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print the table once and exit.")] = False,
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Show CPU, memory and request rate per app and per instance, refreshed until Ctrl-C.

    Each figure is the latest of the last minute: CPU in percent of one core (an app's row
    averages its instances), memory in MiB (an app's row sums them), requests per second
    through the load balancer (per app). `-o json` implies `--once`.

    Example: `dkos top -p news --interval 5`
    """
    with _connect() as api:
        if once or output_ is output.Format.JSON:
            figures = metrics.gather_top(api, project)
            output.show(figures, output_, lambda found: metrics.top_table(found, now=time.time()))
            return
        _live_top(api, project, interval)


def _live_top(api: client.Client, project: str | None, interval: float) -> None:
    """Redraw the table every `interval` seconds until Ctrl-C; a server that goes away is waited for."""
    figures = metrics.gather_top(api, project)  # a first failure is an error, as for any command
    with (
        contextlib.suppress(KeyboardInterrupt),
        Live(metrics.top_table(figures, now=time.time()), console=output.stdout(), auto_refresh=False) as live,
    ):
        while True:
            time.sleep(interval)
            try:
                live.update(metrics.top_table(metrics.gather_top(api, project), now=time.time()), refresh=True)
            except (client.ConnectionLost, client.Unreachable) as exc:
                live.update(Text(f"{exc}; retrying every {interval:g} s", style="yellow"), refresh=True)
