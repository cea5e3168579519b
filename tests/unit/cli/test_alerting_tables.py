"""Tables of alarms, policies, executions and channels, and what `dkos apps show` adds."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType

from dkos.cli import alerting_tables


def rendered(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


ALARM = {
    "name": "cpuhigh",
    "app": "web",
    "metric": "cpu_percent",
    "statistic": "avg",
    "comparison": ">=",
    "threshold": 90.0,
    "period": 300,
    "evaluation_periods": 5,
    "datapoints_to_alarm": 3,
    "channels": ["ops"],
    "state": "ALARM",
    "value": 97.25,
    "state_since": 1_700_000_000.0,
}
EXECUTION = {
    "policy": "out",
    "alarms": ["cpuhigh"],
    "value": 97.25,
    "from_instances": 4,
    "to_instances": 5,
    "status": "succeeded",
    "started_at": 1_700_000_000.0,
    "finished_at": 1_700_000_007.0,
    "limited": "limited by max",
}


def test_an_alarm_row_says_its_condition_state_and_value() -> None:
    text = rendered(alerting_tables.alarms_table([ALARM]))
    assert "avg cpu_percent >= 90 for 300 s (3 of 5)" in text
    assert "ALARM" in text and "97.25" in text and "ops" in text


def test_a_log_alarm_row_says_its_query_threshold_and_window() -> None:
    oom = {"name": "oom", "app": "web", "source": "logs", "query": "OutOfMemory", "threshold": 3, "window": 60,
           "comparison": ">=", "period": 60, "state": "ALARM", "value": 4.0, "channels": []}  # fmt: skip
    text = rendered(alerting_tables.alarms_table([oom]))
    assert "≥ 3 lines matching 'OutOfMemory' within 60 s" in text and "ALARM" in text


def test_a_step_policy_and_a_target_tracking_one() -> None:
    step = {"name": "in", "app": "web", "type": "step", "alarms": ["cpulow"], "adjustment": "change", "step": -1}
    track = {"name": "t", "app": "web", "type": "target_tracking", "metric": "cpu_percent", "statistic": "avg"}
    common = {"min": 2, "max": 20, "cooldown": 300.0, "last_limited": None, "target": 60.0}
    text = rendered(alerting_tables.policies_table([{**step, **common}, {**track, **common}]))
    assert "cpulow" in text and "-1" in text and "avg cpu_percent near 60.0" in text


def test_apps_show_adds_alarm_states_and_last_executions() -> None:
    app = {"alarms": [{"name": "cpuhigh", "state": "OK", "value": 3.5, "since": 1_700_000_000.0}]}
    text = rendered(Group(*alerting_tables.app_parts({**app, "scaling_executions": [EXECUTION]})))
    assert "cpuhigh" in text and "OK" in text and "4 → 5" in text and "limited by max" in text
    assert alerting_tables.app_parts({}) == []
