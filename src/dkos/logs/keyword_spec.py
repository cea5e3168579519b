"""The keyword alarm forms users fill in: `LogAlarmSpec`, one entry of an app spec's
`log_alarms:` list, and `LogAlarmIn`, the body of `POST /v1/log-alarms` (the same plus its scope).

They sit apart from `keywords` (which counts lines and needs the stores) so that the app
spec (`dkos.apps.spec`) can declare log alarms without importing the log or app stores, as
`alerts.spec.AlarmSpec` / `AlarmIn` do for metric alarms. Rules that need the server — the
shortest window (`alarm_min_period`) and whether FTS5 can parse `query` — are checked by
whoever stores the alarm (`keywords.create`, and `api/alerting.check_declared` for a spec).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from dkos.alerts.model import Comparison, MissingData
from dkos.alerts.spec import NamedAlarm


class LogAlarmSpec(NamedAlarm):
    """Fire when at least `threshold` lines matching `query` were written within `window` seconds."""

    query: str = Field(min_length=1, max_length=1000, description="FTS5 search, as `dkos logs --grep`: `OutOfMemory`.")
    threshold: int = Field(ge=1, le=10_000_000, description="N: matching lines needed within the window.")
    window: int = Field(ge=1, le=86_400, description="W: seconds the lines are counted over.")

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class LogAlarmIn(LogAlarmSpec):
    """`POST /v1/log-alarms`: a keyword alarm on `app`, or (no `app`) on every app of `project`."""

    project: str = "default"
    app: str | None = None

    def definition(self) -> dict[str, Any]:
        """What the alarm store keeps: this form, plus the keys every alarm has."""
        where = f"app {self.app}" if self.app else f"any app of {self.project}"
        return {
            "query": self.query,
            "threshold": self.threshold,
            "window": self.window,
            "comparison": Comparison.GE.value,
            "period": self.window,
            "evaluation_periods": 1,
            "datapoints_to_alarm": 1,
            "missing": MissingData.NOT_BREACHING.value,
            "channels": list(self.channels),
            "repeat_interval": self.repeat_interval,
            "summary": f"{where}: ≥ {self.threshold} log lines matching {self.query!r} within {self.window} s",
        }
