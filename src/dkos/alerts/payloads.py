"""Pure rendering of notification bodies: Alertmanager's webhook (version 4) and a Slack-style chat message.

The webhook body is the one Alertmanager POSTs to its `webhook_configs` receivers, so
receivers and tools written for Alertmanager accept dkos' notifications unchanged: one
alert per message (the group is the alarm), `status` firing or resolved, `startsAt` when
the ALARM episode began, `endsAt` the zero time while firing and the resolve time after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from dkos.alerts.model import AlarmState
from dkos.alerts.transitions import NotificationReason

ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Notice:
    """Everything a notification says about one alarm at one moment."""

    alarm: str
    project: str
    app: str | None
    state: AlarmState
    old_state: AlarmState
    value: float | None
    reason: str
    summary: str
    """The condition for people, e.g. `web avg cpu_percent >= 90 for 300 s`."""
    why: NotificationReason
    time: float
    fired_at: float | None
    receiver: str
    external_url: str

    @property
    def firing(self) -> bool:
        return self.state is AlarmState.ALARM


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def labels(notice: Notice) -> dict[str, str]:
    found = {"alertname": notice.alarm, "project": notice.project, "source": "dkos"}
    if notice.app is not None:
        found["app"] = notice.app
    return found


def fingerprint(label_set: dict[str, str]) -> str:
    """16 hex characters from the sorted labels, stable for one alarm (Alertmanager's is a hash of labels too)."""
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(label_set.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def render_alertmanager(notice: Notice) -> dict[str, Any]:
    label_set = labels(notice)
    status = "firing" if notice.firing else "resolved"
    value = "no data" if notice.value is None else f"{notice.value:.4g}"
    annotations = {
        "summary": notice.summary,
        "description": f"{notice.old_state.value} → {notice.state.value}: {notice.reason}",
        "value": value,
        "state": notice.state.value,
    }
    starts = notice.fired_at if notice.fired_at is not None else notice.time
    group = {"alertname": notice.alarm}
    return {
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": notice.receiver,
        "groupLabels": group,
        "commonLabels": label_set,
        "commonAnnotations": annotations,
        "externalURL": notice.external_url,
        "notification_reason": notice.why.value,
        "alerts": [
            {
                "status": status,
                "labels": label_set,
                "annotations": annotations,
                "startsAt": _iso(starts),
                "endsAt": ZERO_TIME if notice.firing else _iso(notice.time),
                "generatorURL": f"{notice.external_url}/v1/alarms/{notice.alarm}?project={notice.project}",
                "fingerprint": fingerprint(label_set),
            }
        ],
    }


def render_chat(notice: Notice) -> dict[str, Any]:
    """Slack's incoming-webhook body (`text`), which Mattermost, Rocket.Chat and others accept too."""
    mark = "🔥 ALARM" if notice.firing else f"✅ {notice.state.value}"
    where = f"{notice.project}/{notice.app}" if notice.app else notice.project
    value = "no data" if notice.value is None else f"{notice.value:.4g}"
    again = " (still in ALARM)" if notice.why is NotificationReason.REPEAT else ""
    return {
        "text": f"{mark}{again} *{notice.alarm}* on {where}: {notice.summary}; value {value}. {notice.reason}",
    }
