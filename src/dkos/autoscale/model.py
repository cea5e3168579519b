"""What a scaling policy is: plain frozen data shared by the pure decisions and the store.

Two types: `step` (AWS step/simple scaling: linked alarms OR-ed, an adjustment per
execution, a cooldown) and `target_tracking` (Kubernetes HPA: keep a metric near a
target). The enums' values are the public spelling (API, CLI, app spec).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dkos.alerts.model import MetricQuery


class PolicyType(enum.StrEnum):
    STEP = "step"
    TARGET_TRACKING = "target_tracking"


class Adjustment(enum.StrEnum):
    """AWS' adjustment types."""

    CHANGE = "change"
    """Add (or with a negative step remove) `step` instances."""
    PERCENT = "percent"
    """Add `step` % of the current instances, at least `min_magnitude`."""
    EXACT = "exact"
    """Set the instances to `step`."""


class Direction(enum.StrEnum):
    OUT = "out"
    IN = "in"


class ExecutionStatus(enum.StrEnum):
    RUNNING = "running"
    """The scale deployment runs; the policy's cooldown has not started."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Policy:
    name: str
    type: PolicyType = PolicyType.STEP
    alarms: tuple[str, ...] = ()
    adjustment: Adjustment = Adjustment.CHANGE
    step: int = 1
    min_magnitude: int = 0
    min_instances: int = 1
    max_instances: int = 100
    cooldown: float = 60.0
    # target tracking
    query: MetricQuery | None = None
    target: float = 0.0
    period: float = 60.0
    tolerance: float = 0.1
    scale_in_window: float = 300.0


@dataclass(frozen=True)
class Trigger:
    """A linked alarm found in ALARM, with the value that put it there."""

    alarm: str
    value: float | None


@dataclass(frozen=True)
class Decision:
    """One execution to carry out: from → to, and why."""

    from_instances: int
    to_instances: int
    reason: str
    limited: str | None = None
    """`limited by max` or `limited by min` when the result was clamped (the HPA's ScalingLimited)."""
    triggers: tuple[Trigger, ...] = field(default_factory=tuple)

    @property
    def direction(self) -> Direction:
        return Direction.OUT if self.to_instances > self.from_instances else Direction.IN

    @property
    def changes(self) -> bool:
        return self.to_instances != self.from_instances
