"""Tables for people of alarms, their history, channels, notifications, policies and executions.

Pure: plain JSON from the API in, rich renderables out (as `output`), so they are tested
without a server. `app_parts` is what `dkos apps show` adds below the instances.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

_STATE_STYLES = {"OK": "green", "ALARM": "bold red", "INSUFFICIENT_DATA": "yellow"}


def state_text(state: str | None) -> Text:
    return Text(state or "-", style=_STATE_STYLES.get(state or "", ""))


def _value(value: float | None) -> Text:
    return Text("-" if value is None else f"{value:.4g}")


def _time(timestamp: float | None) -> Text:
    return Text("-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)))


def _condition(alarm: Mapping[str, Any]) -> str:
    if alarm.get("source") == "logs":
        return f"≥ {alarm.get('threshold')} lines matching {alarm.get('query')!r} within {alarm.get('window')} s"
    metric = alarm.get("metric", "?")
    filters = alarm.get("filters") or {}
    if filters:
        metric += "{" + ",".join(f"{k}={v}" for k, v in sorted(filters.items())) + "}"
    n = alarm.get("evaluation_periods") or 1
    m = alarm.get("datapoints_to_alarm") or n
    of = f" ({m} of {n})" if n > 1 else ""
    return (
        f"{alarm.get('statistic', 'avg')} {metric} {alarm.get('comparison')} {alarm.get('threshold'):g} "
        f"for {alarm.get('period')} s{of}"
    )


def alarms_table(alarms: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "APP", "STATE", "VALUE", "CONDITION", "CHANNELS", "SINCE"):
        table.add_column(column, no_wrap=column in ("NAME", "STATE"))
    for alarm in alarms:
        table.add_row(
            Text(str(alarm.get("name"))),
            Text(alarm.get("app") or "(every app)"),
            state_text(alarm.get("state")),
            _value(alarm.get("value")),
            Text(_condition(alarm)),
            Text(", ".join(alarm.get("channels") or []) or "-"),
            _time(alarm.get("state_since")),
        )
    return table


def history_table(history: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("TIME", "FROM", "TO", "VALUE", "REASON"):
        table.add_column(column, no_wrap=column != "REASON")
    for entry in history:
        table.add_row(
            _time(entry.get("time")),
            state_text(entry.get("old_state")),
            state_text(entry.get("new_state")),
            _value(entry.get("value")),
            Text(str(entry.get("reason", ""))),
        )
    return table


def alarm_detail(alarm: Mapping[str, Any]) -> RenderableType:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("name", Text(str(alarm.get("name"))))
    summary.add_row("project", Text(str(alarm.get("project"))))
    summary.add_row("app", Text(alarm.get("app") or "(every app of the project)"))
    summary.add_row("condition", Text(_condition(alarm)))
    summary.add_row("missing data", Text(str(alarm.get("missing"))))
    summary.add_row("state", state_text(alarm.get("state")))
    summary.add_row("value", _value(alarm.get("value")))
    summary.add_row("reason", Text(str(alarm.get("reason", ""))))
    summary.add_row("since", _time(alarm.get("state_since")))
    summary.add_row("channels", Text(", ".join(alarm.get("channels") or []) or "-"))
    parts: list[RenderableType] = [summary]
    history = alarm.get("history") or []
    if history:
        parts += [Text(""), Text("history:", style="bold"), history_table(history)]
    notifications = alarm.get("notifications") or []
    if notifications:
        parts += [Text(""), Text("notifications:", style="bold"), notifications_table(notifications)]
    return Group(*parts)


def channels_table(channels: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "TYPE", "URL", "RESOLVED", "UNDELIVERED"):
        table.add_column(column, no_wrap=column != "URL")
    for channel in channels:
        undelivered = int(channel.get("undelivered") or 0)
        table.add_row(
            Text(str(channel.get("name"))),
            Text(str(channel.get("type"))),
            Text(str(channel.get("url"))),
            Text("yes" if channel.get("send_resolved") else "no"),
            Text(str(undelivered), style="bold red" if undelivered else ""),
        )
    return table


def notifications_table(notifications: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "TIME", "ALARM", "CHANNEL", "REASON", "STATUS", "ATTEMPTS", "LAST ERROR"):
        table.add_column(column, no_wrap=column != "LAST ERROR")
    for n in notifications:
        table.add_row(
            Text(str(n.get("id"))),
            _time(n.get("created_at")),
            Text(str(n.get("alarm"))),
            Text(str(n.get("channel"))),
            Text(str(n.get("reason"))),
            Text(str(n.get("status")), style="green" if n.get("status") == "delivered" else "bold red"),
            Text(str(n.get("attempts"))),
            Text(str(n.get("last_error") or "")[:80]),
        )
    return table


def policies_table(policies: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "APP", "TYPE", "TRIGGER", "STEP", "MIN", "MAX", "COOLDOWN", "LIMITED"):
        table.add_column(column, no_wrap=column not in ("TRIGGER",))
    for p in policies:
        if p.get("type") == "target_tracking":
            trigger = f"{p.get('statistic')} {p.get('metric')} near {p.get('target')}"
            step = "proportional"
        else:
            trigger = " OR ".join(p.get("alarms") or [])
            unit = {"percent": " %", "exact": " (exact)"}.get(str(p.get("adjustment")), "")
            step = f"{p.get('step'):+d}{unit}" if p.get("adjustment") != "exact" else f"= {p.get('step')}"
        table.add_row(
            Text(str(p.get("name"))),
            Text(str(p.get("app"))),
            Text(str(p.get("type"))),
            Text(trigger),
            Text(step),
            Text(str(p.get("min"))),
            Text(str(p.get("max"))),
            Text(f"{p.get('cooldown'):g} s"),
            Text(p.get("last_limited") or "-"),
        )
    return table


def executions_table(executions: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("STARTED", "POLICY", "ALARMS", "VALUE", "FROM → TO", "STATUS", "FINISHED", "NOTE"):
        table.add_column(column, no_wrap=column not in ("NOTE",))
    for e in executions:
        table.add_row(
            _time(e.get("started_at")),
            Text(str(e.get("policy"))),
            Text(", ".join(e.get("alarms") or []) or "-"),
            _value(e.get("value")),
            Text(f"{e.get('from_instances')} → {e.get('to_instances')}"),
            Text(str(e.get("status"))),
            _time(e.get("finished_at")),
            Text(e.get("limited") or ""),
        )
    return table


def policy_detail(policy: Mapping[str, Any]) -> RenderableType:
    parts: list[RenderableType] = [policies_table([policy])]
    executions = policy.get("executions") or []
    parts += [Text(""), executions_table(executions) if executions else Text("no executions yet", style="dim")]
    return Group(*parts)


def app_parts(app: Mapping[str, Any]) -> list[RenderableType]:
    """`dkos apps show`: the app's alarms' states and its last scaling executions."""
    parts: list[RenderableType] = []
    alarms = app.get("alarms") or []
    if alarms:
        table = Table(box=None, pad_edge=False)
        for column in ("ALARM", "STATE", "VALUE", "SINCE"):
            table.add_column(column, no_wrap=True)
        for alarm in alarms:
            table.add_row(
                Text(str(alarm.get("name"))),
                state_text(alarm.get("state")),
                _value(alarm.get("value")),
                _time(alarm.get("since")),
            )
        parts += [Text(""), table]
    executions = app.get("scaling_executions") or []
    if executions:
        parts += [Text(""), Text("last scaling executions:", style="bold"), executions_table(executions)]
    return parts
