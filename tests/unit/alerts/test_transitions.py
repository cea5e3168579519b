"""The alarm state machine: history on every transition, firing/resolved notifications, repeats."""

from __future__ import annotations

from dkos.alerts.evaluate import Evaluation
from dkos.alerts.model import AlarmState
from dkos.alerts.transitions import AlarmStatus, NotificationReason, compute_step

ALARM = Evaluation(AlarmState.ALARM, 95.0, "crossed")
OK = Evaluation(AlarmState.OK, 10.0, "fine")


def test_entering_alarm_records_history_and_fires() -> None:
    step = compute_step(AlarmStatus(AlarmState.OK, since=0), ALARM, now=100, repeat_interval=0)
    assert step.status.state is AlarmState.ALARM and step.status.since == 100 and step.status.fired_at == 100
    assert step.history is not None and step.history.old_state is AlarmState.OK and step.history.value == 95.0
    assert step.notify is NotificationReason.FIRING


def test_back_to_ok_resolves() -> None:
    firing = AlarmStatus(AlarmState.ALARM, since=100, fired_at=100, last_notified_at=100)
    step = compute_step(firing, OK, now=160, repeat_interval=0)
    assert step.notify is NotificationReason.RESOLVED
    assert step.status.fired_at == 100  # the resolved message says when the episode began


def test_same_state_updates_the_value_without_history() -> None:
    step = compute_step(AlarmStatus(AlarmState.OK, since=0, value=5), OK, now=10, repeat_interval=0)
    assert step.history is None and step.notify is None and step.status.value == 10.0


def test_repeats_while_in_alarm_every_repeat_interval() -> None:
    firing = AlarmStatus(AlarmState.ALARM, since=100, fired_at=100, last_notified_at=100)
    assert compute_step(firing, ALARM, now=159, repeat_interval=60).notify is None
    step = compute_step(firing, ALARM, now=160, repeat_interval=60)
    assert step.notify is NotificationReason.REPEAT and step.status.last_notified_at == 160
    assert compute_step(firing, ALARM, now=10_000, repeat_interval=0).notify is None
