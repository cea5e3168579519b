"""The alarm and channel forms users fill in (API body, CLI flags, app spec), validated by pydantic.

Rules that need the server's settings (the shortest period allowed) are checked by
`check_period`, called by whoever stores an alarm; everything else is here, so a bad
field is refused with a 422 naming it before anything is stored.
"""

from __future__ import annotations

import re
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dkos.alerts.model import (
    Comparison,
    Condition,
    MetricKind,
    MetricQuery,
    MissingData,
    Statistic,
)
from dkos.core.errors import FieldProblem, InvalidInput

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
"""Letters and digits ('-' and '_' inside); no spaces."""
NAME_RULE = "must be letters and digits ('-' and '_' inside), no spaces, at most 63 characters"
MAX_PERIOD = 1799
_METRIC_NAME = re.compile(r"^[A-Za-z0-9._/-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_name(value: str) -> str:
    if not re.match(NAME, value):
        raise ValueError(NAME_RULE)
    return value


class NamedAlarm(_Strict):
    """What every alarm form has: metric alarms (`AlarmSpec`) and log keyword alarms
    (`logs.keyword_spec.LogAlarmSpec`) share one namespace, channels and realert."""

    name: str = Field(description="Letters and digits, no spaces; unique in the project among all alarms.")
    channels: list[str] = Field(default_factory=list, description="Channels notified on every transition.")
    repeat_interval: float = Field(
        14_400,
        ge=0,
        le=604_800,
        description="Realert: seconds between repeated notifications while in ALARM (0: never).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)


class AlarmSpec(NamedAlarm):
    """One alarm as declared in an app spec (`alarms:`), or the body of `POST /v1/alarms` without its scope."""

    metric: str = Field(
        description="cpu_percent, memory_percent, request_rate, error_rate, response_time, or a stored metric name."
    )
    filters: dict[str, str] = Field(default_factory=dict, description="Tag filters for a stored metric (`*`: any).")
    statistic: Statistic = Statistic.AVG
    comparison: Comparison = Comparison.GE
    threshold: float
    period: int = Field(ge=1, le=MAX_PERIOD, description="Seconds one datapoint covers (60 to 1,799).")
    evaluation_periods: int = Field(1, ge=1, le=100, description="N: the datapoints judged.")
    datapoints_to_alarm: int | None = Field(None, ge=1, le=100, description="M: breaching ones needed (default N).")
    missing: MissingData = MissingData.MISSING

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in {k.value for k in MetricKind if k is not MetricKind.CUSTOM} and not _METRIC_NAME.match(value):
            raise ValueError("must be cpu_percent, memory_percent, request_rate, error_rate, response_time or a metric")
        return value

    @model_validator(mode="after")
    def _m_of_n(self) -> Self:
        if self.datapoints_to_alarm is not None and self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError("datapoints_to_alarm: must be ≤ evaluation_periods")
        return self

    def query(self) -> MetricQuery:
        known = {k.value: k for k in MetricKind}
        kind = known.get(self.metric, MetricKind.CUSTOM)
        if kind is MetricKind.CUSTOM:
            return MetricQuery(kind, self.statistic, metric=self.metric, filters=dict(self.filters))
        return MetricQuery(kind, self.statistic)

    def condition(self) -> Condition:
        return Condition(
            comparison=self.comparison,
            threshold=self.threshold,
            period=self.period,
            evaluation_periods=self.evaluation_periods,
            datapoints_to_alarm=self.datapoints_to_alarm or self.evaluation_periods,
            missing=self.missing,
        )

    def describe(self) -> str:
        return f"{self.query().describe()} {self.condition().describe()}"


class AlarmIn(AlarmSpec):
    """`POST /v1/alarms`: an alarm on one app, or (no `app`) on every app of the project."""

    project: str = "default"
    app: str | None = None


def check_period(period: float, *, minimum: float, field: str = "period") -> None:
    """The shortest period is a server setting (60 s by default, lower for tests and small installations)."""
    if period < minimum:
        raise InvalidInput([FieldProblem(field, f"must be ≥ {minimum:g} (seconds; the server's alarm_min_period)")])


class ChannelIn(_Strict):
    """`POST /v1/channels`: where notifications go."""

    name: str
    project: str = "default"
    type: str = Field("webhook", description="webhook (Alertmanager v4 JSON) or chat (Slack-compatible text).")
    url: str = Field(max_length=2000)
    send_resolved: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in ("webhook", "chat"):
            raise ValueError("must be webhook or chat")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value


_M = TypeVar("_M", bound=BaseModel)
_FIELD_IN_MESSAGE = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$", re.S)


def parse_body(model: type[_M], data: Any) -> _M:
    """A request body as `model`, or `InvalidInput` naming each broken field (cross-field rules say
    `field: rule`, so the field is named even when the rule spans several)."""
    if not isinstance(data, dict):
        raise InvalidInput([FieldProblem("body", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error["loc"])
            rule = str(error["msg"]).removeprefix("Value error, ")
            inner = _FIELD_IN_MESSAGE.match(rule)
            if inner:
                loc = f"{loc}.{inner.group(1)}" if loc else inner.group(1)
                rule = inner.group(2)
            problems.append(FieldProblem(loc or "body", rule))
        raise InvalidInput(problems) from exc
