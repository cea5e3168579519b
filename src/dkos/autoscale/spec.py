"""The scaling-policy form users fill in (API body, CLI flags, app spec), validated by pydantic.

The project's instance limit (`autoscale_max_instances`) and the linked alarms' existence
are checked by the service when it stores a policy; everything else is here.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dkos.alerts.model import MetricKind, MetricQuery, Statistic
from dkos.alerts.spec import MAX_PERIOD, check_name
from dkos.autoscale.model import Adjustment, Policy, PolicyType


class PolicySpec(BaseModel):
    """One policy as declared in an app spec (`scaling_policies:`), or `POST /v1/policies` without its scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: PolicyType = PolicyType.STEP
    alarms: list[str] = Field(default_factory=list, description="Linked alarms, OR-ed (step policies).")
    adjustment: Adjustment = Adjustment.CHANGE
    step: int | None = Field(None, ge=-10_000, le=10_000, description="Instances (or %) per execution; not 0.")
    min_magnitude: int = Field(0, ge=0, le=10_000, description="Percent steps change at least this many instances.")
    min: int = Field(1, ge=0, le=10_000, description="Never fewer instances than this.")
    max: int = Field(100, ge=1, le=10_000, description="Never more instances than this (the project limit at most).")
    cooldown: float = Field(60, ge=0, le=86_400, description="Seconds after an execution's instances are healthy.")
    metric: str | None = Field(None, description="Target tracking: cpu_percent, memory_percent or request_rate.")
    statistic: Statistic = Statistic.AVG
    target: float | None = Field(None, gt=0, description="Target tracking: the value to keep the metric near.")
    period: int = Field(60, ge=1, le=MAX_PERIOD, description="Target tracking: seconds the metric is averaged over.")
    tolerance: float = Field(0.1, ge=0, le=1, description="Target tracking: no change within this band.")
    scale_in_window: float = Field(300, ge=0, le=3_600, description="Target tracking: scale-in stabilisation.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.min > self.max:
            raise ValueError("min: must be ≤ max")
        if self.type is PolicyType.STEP:
            if not self.alarms:
                raise ValueError("alarms: a step policy needs at least one alarm")
            if self.step is None:
                raise ValueError("step: is required for a step policy")
            if self.adjustment is Adjustment.EXACT and self.step < 0:
                raise ValueError("step: must be ≥ 0 for an exact adjustment")
            if self.adjustment is not Adjustment.EXACT and self.step == 0:
                raise ValueError("step: must not be 0")
        else:
            if self.metric not in (MetricKind.CPU_PERCENT, MetricKind.MEMORY_PERCENT, MetricKind.REQUEST_RATE):
                raise ValueError("metric: target tracking needs cpu_percent, memory_percent or request_rate")
            if self.target is None:
                raise ValueError("target: is required for target tracking")
        return self

    def policy(self) -> Policy:
        query = MetricQuery(MetricKind(self.metric), self.statistic) if self.metric else None
        return Policy(
            name=self.name,
            type=self.type,
            alarms=tuple(self.alarms),
            adjustment=self.adjustment,
            step=self.step or 0,
            min_magnitude=self.min_magnitude,
            min_instances=self.min,
            max_instances=self.max,
            cooldown=self.cooldown,
            query=query,
            target=self.target or 0.0,
            period=self.period,
            tolerance=self.tolerance,
            scale_in_window=self.scale_in_window,
        )


class PolicyIn(PolicySpec):
    """`POST /v1/policies`: a policy of one app."""

    project: str = "default"
    app: str
