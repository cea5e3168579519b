"""What an alarm is: its condition, its states, and the words users write for them.

Plain frozen data shared by the pure evaluation (`evaluate`), the metric source
(`metric_source`), the state machine (`transitions`) and the store. The enums' values
are the public spelling (API, CLI, app spec), so they are a contract.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AlarmState(enum.StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class Comparison(enum.StrEnum):
    GE = ">="
    GT = ">"
    LE = "<="
    LT = "<"

    def holds(self, value: float, threshold: float) -> bool:
        match self:
            case Comparison.GE:
                return value >= threshold
            case Comparison.GT:
                return value > threshold
            case Comparison.LE:
                return value <= threshold
            case Comparison.LT:
                return value < threshold


class Statistic(enum.StrEnum):
    """How the instances' values combine into the alarm's value."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    P95 = "p95"


class MissingData(enum.StrEnum):
    """CloudWatch's TreatMissingData, with its default."""

    MISSING = "missing"
    """All datapoints missing → INSUFFICIENT_DATA (no scaling); otherwise judged on the present ones."""
    BREACHING = "breaching"
    NOT_BREACHING = "not_breaching"
    IGNORE = "ignore"
    """All datapoints missing → the state stays as it is."""


class MetricKind(enum.StrEnum):
    """The metrics an alarm names by a short word; `custom` is any stored metric with tag filters."""

    CPU_PERCENT = "cpu_percent"
    MEMORY_PERCENT = "memory_percent"
    REQUEST_RATE = "request_rate"
    """Requests per second through the load balancer, per healthy instance."""
    ERROR_RATE = "error_rate"
    """5xx responses per second through the load balancer (the app's total)."""
    RESPONSE_TIME = "response_time"
    """Average response time in ms as HAProxy measures it."""
    CUSTOM = "custom"


class AlarmSource(enum.StrEnum):
    """What computes an alarm's value. The states, history and channels are the same for every source."""

    METRIC = "metric"
    LOGS = "logs"


@dataclass(frozen=True)
class Condition:
    """`statistic(value over period) comparison threshold`, judged on the last `evaluation_periods`
    datapoints of which `datapoints_to_alarm` must breach (CloudWatch's M of N)."""

    comparison: Comparison
    threshold: float
    period: float
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    missing: MissingData = MissingData.MISSING

    def describe(self) -> str:
        of = (
            f" ({self.datapoints_to_alarm} of {self.evaluation_periods} datapoints)"
            if self.evaluation_periods > 1
            else ""
        )
        return f"{self.comparison.value} {self.threshold:g} for {self.period:g} s{of}"


@dataclass(frozen=True)
class MetricQuery:
    """Which figures an alarm (or a target-tracking policy) reads from the metrics store."""

    kind: MetricKind
    statistic: Statistic = Statistic.AVG
    metric: str | None = None
    """The stored metric name, for `custom`."""
    filters: dict[str, str] = field(default_factory=dict)
    """Tag filters, for `custom` (`*` matches any value)."""

    def describe(self) -> str:
        what = self.metric if self.kind is MetricKind.CUSTOM else self.kind.value
        where = ",".join(f"{k}={v}" for k, v in sorted(self.filters.items()))
        return f"{self.statistic.value} {what}" + (f"{{{where}}}" if where else "")
