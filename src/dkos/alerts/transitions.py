"""Pure state machine: what an evaluation does to an alarm — its new state, a history entry, a notification.

The same for every alarm source: a metric alarm and a log keyword alarm both hand an
`Evaluation` to `compute_step`, and the engine stores and sends what it returns.

- A changed state is a transition: one history entry (old → new, value, reason) and one
  notification, "firing" when the new state is ALARM and "resolved" otherwise (so going
  back to OK resolves what fired).
- While the state stays ALARM, a notification is repeated every `repeat_interval`
  seconds (0 never repeats), as Alertmanager's repeat_interval does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from dkos.alerts.evaluate import Evaluation
from dkos.alerts.model import AlarmState


class NotificationReason(enum.StrEnum):
    """Alertmanager's `notification_reason` words (v0.32+)."""

    FIRING = "first notification"
    RESOLVED = "all alerts resolved"
    REPEAT = "repeat interval elapsed"
    TEST = "test notification"


@dataclass(frozen=True)
class AlarmStatus:
    """Where an alarm stands: its state since when, its newest value and why."""

    state: AlarmState = AlarmState.INSUFFICIENT_DATA
    since: float = 0.0
    value: float | None = None
    reason: str = "not evaluated yet"
    fired_at: float | None = None
    """When the current ALARM episode began (Alertmanager's startsAt)."""
    last_notified_at: float | None = None


@dataclass(frozen=True)
class HistoryEntry:
    time: float
    old_state: AlarmState
    new_state: AlarmState
    value: float | None
    reason: str


@dataclass(frozen=True)
class Step:
    status: AlarmStatus
    history: HistoryEntry | None = None
    notify: NotificationReason | None = None


def compute_step(status: AlarmStatus, evaluation: Evaluation, *, now: float, repeat_interval: float) -> Step:
    """The next status, and what to record and send, once `evaluation` is in."""
    current = replace(status, value=evaluation.value, reason=evaluation.reason)
    if evaluation.state is not status.state:
        firing = evaluation.state is AlarmState.ALARM
        entry = HistoryEntry(now, status.state, evaluation.state, evaluation.value, evaluation.reason)
        return Step(
            status=replace(
                current,
                state=evaluation.state,
                since=now,
                fired_at=now if firing else status.fired_at,
                last_notified_at=now,
            ),
            history=entry,
            notify=NotificationReason.FIRING if firing else NotificationReason.RESOLVED,
        )
    if (
        status.state is AlarmState.ALARM
        and repeat_interval > 0
        and now - (status.last_notified_at or status.since) >= repeat_interval
    ):
        return Step(status=replace(current, last_notified_at=now), notify=NotificationReason.REPEAT)
    return Step(status=current)
