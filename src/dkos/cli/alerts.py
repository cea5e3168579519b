"""`dkos alarms`, `dkos policies` and `dkos channels`: thin calls of the `/v1` alarm and policy API.

The groups are made here and added to the root command in `main`. Requests go through
`client.Client` like every command (its generic JSON call, so the shared client module
needs no change per resource); tables come from `alerting_tables`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.text import Text

from dkos.cli import alerting_tables, client, errors, output

HELP = {
    "alarms": "Alarms on apps' metrics: states OK / ALARM / INSUFFICIENT_DATA, history, notifications.",
    "policies": "Scaling policies: alarms in ALARM add or remove instances; or keep a metric near a target.",
    "channels": "Where alarm notifications go: an Alertmanager-compatible webhook or a Slack-compatible chat.",
}

alarms_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help=HELP["alarms"])
policies_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help=HELP["policies"])
channels_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help=HELP["channels"])
GROUPS = {"alarms": alarms_app, "policies": policies_app, "channels": channels_app}

OutputOption = Annotated[output.Format, typer.Option("--output", "-o", help="table for people, json for programs.")]
ProjectOption = Annotated[str, typer.Option("--project", "-p", help="The project.")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Letters and digits, no spaces.", show_default=False)]
AppRequired = Annotated[str, typer.Option("--app", "-a", help="The app.", show_default=False)]


def _connect() -> client.Client:
    # Through `main`, so tests that replace `main.new_client` reach these commands too.
    from dkos.cli import main

    return main._connect()


def _call(method: str, path: str, **kwargs: Any) -> client.JSON:
    with _connect() as api:
        return api._json(method, path, **kwargs)


def _q(name: str) -> str:
    return quote(name, safe="")


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    """Options not given are left out, so the server's defaults apply."""
    return {k: v for k, v in body.items() if v is not None}


def _filters(values: list[str]) -> dict[str, str]:
    found = {}
    for value in values:
        key, eq, tag_value = value.partition("=")
        if not eq or not key:
            raise errors.Failure(f"--filter wants TAG=VALUE, not {value!r}", errors.ExitCode.INVALID)
        found[key] = tag_value
    return found


# -- alarms ----------------------------------------------------------------------------------


@alarms_app.command("create")
def alarms_create(
    name: NameArgument,
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="cpu_percent, memory_percent, request_rate (per instance), error_rate (5xx/s), response_time (ms), "
            "or any stored metric name.",
            show_default=False,
        ),
    ],
    threshold: Annotated[float, typer.Option("--threshold", help="The value compared.", show_default=False)],
    period: Annotated[int, typer.Option("--period", help="Seconds one datapoint covers (60-1799).")] = 300,
    app_name: Annotated[
        str | None, typer.Option("--app", "-a", help="The app; without it, every app of the project.")
    ] = None,
    statistic: Annotated[str, typer.Option("--statistic", help="avg, min, max, sum or p95 across instances.")] = "avg",
    comparison: Annotated[str, typer.Option("--comparison", help=">=, >, <= or <.")] = ">=",
    evaluation_periods: Annotated[
        int | None, typer.Option("--evaluation-periods", help="N: datapoints judged (default 1).")
    ] = None,
    datapoints: Annotated[
        int | None, typer.Option("--datapoints-to-alarm", help="M: breaching datapoints needed (default N).")
    ] = None,
    missing: Annotated[
        str | None, typer.Option("--missing", help="missing (default), breaching, not_breaching or ignore.")
    ] = None,
    channel: Annotated[list[str] | None, typer.Option("--channel", help="Notify this channel (repeatable).")] = None,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="TAG=VALUE for a stored metric (repeatable).")
    ] = None,
    repeat_interval: Annotated[
        float | None, typer.Option("--repeat-interval", help="Seconds between repeats while in ALARM (0: never).")
    ] = None,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Create an alarm: STATISTIC(METRIC over PERIOD) COMPARISON THRESHOLD.

    Example: `dkos alarms create cpuhigh --app web --metric cpu_percent --statistic avg
    --comparison '>=' --threshold 90 --period 300 --channel ops`
    """
    body = _drop_none(
        {
            "name": name,
            "project": project,
            "app": app_name,
            "metric": metric,
            "filters": _filters(filter_ or []) or None,
            "statistic": statistic,
            "comparison": comparison,
            "threshold": threshold,
            "period": period,
            "evaluation_periods": evaluation_periods,
            "datapoints_to_alarm": datapoints,
            "missing": missing,
            "channels": channel or None,
            "repeat_interval": repeat_interval,
        }
    )
    created = _call("POST", "/v1/alarms", json=body)
    output.show(created, output_, lambda a: alerting_tables.alarms_table([a]))


@alarms_app.command("list")
def alarms_list(
    app_name: Annotated[
        str | None, typer.Option("--app", "-a", help="Only this app's (and project-wide) alarms.")
    ] = None,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """List alarms with their state and newest value.

    Example: `dkos alarms list --app web -o json`
    """
    params = _drop_none({"project": project, "app": app_name})
    found = _call("GET", "/v1/alarms", params=params)["alarms"]
    output.show(found, output_, alerting_tables.alarms_table, empty=f"no alarms in project {project}")


@alarms_app.command("show")
def alarms_show(
    name: NameArgument, project: ProjectOption = "default", output_: OutputOption = output.Format.TABLE
) -> None:
    """Show an alarm: its condition, state, last transitions and notifications.

    Example: `dkos alarms show cpuhigh`
    """
    found = _call("GET", f"/v1/alarms/{_q(name)}", params={"project": project})
    output.show(found, output_, alerting_tables.alarm_detail)


@alarms_app.command("delete")
def alarms_delete(
    name: NameArgument, project: ProjectOption = "default", output_: OutputOption = output.Format.TABLE
) -> None:
    """Delete an alarm (policies linked to it no longer see it).

    Example: `dkos alarms delete cpuhigh`
    """
    done = _call("DELETE", f"/v1/alarms/{_q(name)}", params={"project": project})
    output.show(done, output_, lambda d: Text(f"alarm {d['deleted']} deleted"))


@alarms_app.command("history")
def alarms_history(
    name: NameArgument, project: ProjectOption = "default", output_: OutputOption = output.Format.TABLE
) -> None:
    """An alarm's state transitions, newest first (kept 14 days).

    Example: `dkos alarms history cpuhigh -o json`
    """
    found = _call("GET", f"/v1/alarms/{_q(name)}/history", params={"project": project})["history"]
    output.show(found, output_, alerting_tables.history_table, empty=f"alarm {name} has not changed state yet")


# -- policies --------------------------------------------------------------------------------


@policies_app.command("create")
def policies_create(
    name: NameArgument,
    app_name: AppRequired,
    alarm: Annotated[list[str] | None, typer.Option("--alarm", help="A linked alarm (repeatable; OR-ed).")] = None,
    step: Annotated[
        int | None, typer.Option("--step", help="Instances per execution (negative removes), or % or exact N.")
    ] = None,
    adjustment: Annotated[str | None, typer.Option("--adjustment", help="change (default), percent or exact.")] = None,
    min_magnitude: Annotated[
        int | None, typer.Option("--min-magnitude", help="Percent steps change at least this many instances.")
    ] = None,
    minimum: Annotated[int | None, typer.Option("--min", help="Never fewer instances (default 1).")] = None,
    maximum: Annotated[int | None, typer.Option("--max", help="Never more instances (default 100).")] = None,
    cooldown: Annotated[
        float | None, typer.Option("--cooldown", help="Seconds after the new instances are healthy (default 60).")
    ] = None,
    target_metric: Annotated[
        str | None,
        typer.Option("--target-metric", help="Target tracking: cpu_percent, memory_percent or request_rate."),
    ] = None,
    target: Annotated[float | None, typer.Option("--target", help="Target tracking: the value to keep.")] = None,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Create a scaling policy: step (linked alarms) or target tracking (--target-metric and --target).

    Examples: `dkos policies create out --app web --alarm cpuhigh --alarm cpuspike --step 2 --max 100 --cooldown 60`;
    `dkos policies create in --app web --alarm cpulow --step -1 --min 2 --cooldown 300`;
    `dkos policies create track --app web --target-metric cpu_percent --target 60 --max 20`
    """
    tracking = target_metric is not None or target is not None
    body = _drop_none(
        {
            "name": name,
            "project": project,
            "app": app_name,
            "type": "target_tracking" if tracking else "step",
            "alarms": alarm or None,
            "step": step,
            "adjustment": adjustment,
            "min_magnitude": min_magnitude,
            "min": minimum,
            "max": maximum,
            "cooldown": cooldown,
            "metric": target_metric,
            "target": target,
        }
    )
    created = _call("POST", "/v1/policies", json=body)
    output.show(created, output_, lambda p: alerting_tables.policies_table([p]))


@policies_app.command("list")
def policies_list(
    app_name: Annotated[str | None, typer.Option("--app", "-a", help="Only this app's policies.")] = None,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """List scaling policies.

    Example: `dkos policies list --app web`
    """
    found = _call("GET", "/v1/policies", params=_drop_none({"project": project, "app": app_name}))["policies"]
    output.show(found, output_, alerting_tables.policies_table, empty=f"no policies in project {project}")


@policies_app.command("show")
def policies_show(
    name: NameArgument,
    app_name: AppRequired,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Show a policy and its last executions.

    Example: `dkos policies show out --app web`
    """
    found = _call("GET", f"/v1/policies/{_q(name)}", params={"project": project, "app": app_name})
    output.show(found, output_, alerting_tables.policy_detail)


@policies_app.command("delete")
def policies_delete(
    name: NameArgument,
    app_name: AppRequired,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Delete a policy.

    Example: `dkos policies delete out --app web`
    """
    done = _call("DELETE", f"/v1/policies/{_q(name)}", params={"project": project, "app": app_name})
    output.show(done, output_, lambda d: Text(f"policy {d['deleted']} deleted"))


@policies_app.command("history")
def policies_history(
    name: NameArgument,
    app_name: AppRequired,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """A policy's executions, newest first: trigger, from → to, outcome.

    Example: `dkos policies history out --app web -o json`
    """
    found = _call("GET", f"/v1/policies/{_q(name)}/executions", params={"project": project, "app": app_name})
    output.show(found["executions"], output_, alerting_tables.executions_table, empty=f"policy {name} has not run yet")


# -- channels --------------------------------------------------------------------------------


@channels_app.command("create")
def channels_create(
    name: NameArgument,
    url: Annotated[str, typer.Option("--url", help="http(s) URL the notifications are POSTed to.", show_default=False)],
    type_: Annotated[
        str, typer.Option("--type", help="webhook (Alertmanager v4 JSON) or chat (Slack-compatible text).")
    ] = "webhook",
    no_resolved: Annotated[bool, typer.Option("--no-resolved", help="Do not send resolved notifications.")] = False,
    project: ProjectOption = "default",
    output_: OutputOption = output.Format.TABLE,
) -> None:
    """Create a channel.

    Example: `dkos channels create ops --url https://hooks.example.com/alerts --type webhook`
    """
    body = {"name": name, "project": project, "url": url, "type": type_, "send_resolved": not no_resolved}
    created = _call("POST", "/v1/channels", json=body)
    output.show(created, output_, lambda c: alerting_tables.channels_table([c]))


@channels_app.command("list")
def channels_list(project: ProjectOption = "default", output_: OutputOption = output.Format.TABLE) -> None:
    """List channels, with how many notifications never got through.

    Example: `dkos channels list -o json`
    """
    found = _call("GET", "/v1/channels", params={"project": project})["channels"]
    output.show(found, output_, alerting_tables.channels_table, empty=f"no channels in project {project}")


@channels_app.command("test")
def channels_test(
    name: NameArgument, project: ProjectOption = "default", output_: OutputOption = output.Format.TABLE
) -> None:
    """Send a test notification (alertname dkos-test) and show how its delivery went.

    Example: `dkos channels test ops`
    """
    sent = _call("POST", f"/v1/channels/{_q(name)}/test", params={"project": project})
    found: list[client.JSON] = []
    for _ in range(50):  # delivery is asynchronous: wait up to 5 s for its outcome
        found = [
            n
            for n in _call("GET", "/v1/notifications", params={"project": project, "channel": name})["notifications"]
            if n["id"] == sent["notification"]
        ]
        if found and found[0]["status"] != "pending":
            break
        time.sleep(0.1)
    output.show(found, output_, alerting_tables.notifications_table, empty="the channel skips this notification")


@channels_app.command("delete")
def channels_delete(
    name: NameArgument, project: ProjectOption = "default", output_: OutputOption = output.Format.TABLE
) -> None:
    """Delete a channel.

    Example: `dkos channels delete ops`
    """
    done = _call("DELETE", f"/v1/channels/{_q(name)}", params={"project": project})
    output.show(done, output_, lambda d: Text(f"channel {d['deleted']} deleted"))
