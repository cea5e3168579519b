"""Notification bodies: Alertmanager's webhook version 4, and a Slack-compatible text."""

from __future__ import annotations

from dkos.alerts import payloads
from dkos.alerts.model import AlarmState
from dkos.alerts.transitions import NotificationReason


def notice(state: AlarmState, why: NotificationReason) -> payloads.Notice:
    return payloads.Notice(
        alarm="cpuhigh",
        project="news",
        app="web",
        state=state,
        old_state=AlarmState.OK if state is AlarmState.ALARM else AlarmState.ALARM,
        value=97.25,
        reason="threshold crossed",
        summary="web: avg cpu_percent >= 90 for 300 s",
        why=why,
        time=1_700_000_060.0,
        fired_at=1_700_000_000.0,
        receiver="ops",
        external_url="http://127.0.0.1:7700",
    )


def test_firing_is_alertmanager_v4() -> None:
    body = payloads.render_alertmanager(notice(AlarmState.ALARM, NotificationReason.FIRING))
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "ops"
    assert set(body) >= {
        "groupKey",
        "truncatedAlerts",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
    }
    alert = body["alerts"][0]
    assert alert["labels"] == {"alertname": "cpuhigh", "project": "news", "app": "web", "source": "dkos"}
    assert alert["startsAt"] == "2023-11-14T22:13:20.000Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert len(alert["fingerprint"]) == 16 and body["notification_reason"] == "first notification"


def test_resolved_has_a_real_end_and_the_same_fingerprint() -> None:
    firing = payloads.render_alertmanager(notice(AlarmState.ALARM, NotificationReason.FIRING))["alerts"][0]
    resolved = payloads.render_alertmanager(notice(AlarmState.OK, NotificationReason.RESOLVED))
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == "2023-11-14T22:14:20.000Z"
    assert resolved["alerts"][0]["fingerprint"] == firing["fingerprint"]


def test_chat_is_one_text_line() -> None:
    text = payloads.render_chat(notice(AlarmState.ALARM, NotificationReason.REPEAT))["text"]
    assert "cpuhigh" in text and "news/web" in text and "97.25" in text and "still in ALARM" in text
