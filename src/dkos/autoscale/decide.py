"""Pure scaling decisions: how many instances a policy wants, given the time and what it sees.

Step policies (AWS semantics, decided in issue 5):
- any linked alarm in ALARM triggers the policy; several at once make one execution;
- the policy does not run while its previous execution is in flight (its new instances
  not yet healthy or failed) nor before its cooldown, counted from then, ends; once it
  ends, an alarm still in ALARM fires it again;
- `change` adds `step`; `percent` adds `step` % rounded as AWS does (above 1 down, 0..1
  to 1, -1..0 to -1, below -1 up) and at least `min_magnitude`; `exact` sets `step`;
- the result is clamped to [min, max], and a clamped decision says "limited by max/min";
- a scale-out cancels the cooldown of the app's scale-in policies (`compute_cancelled`).

Target tracking (Kubernetes HPA semantics, on every datapoint):
desired = ceil(measured × value ÷ target), no change within the tolerance band; a
scale-out applies at once, a scale-in only to the highest recommendation of the last
`scale_in_window` seconds (stabilisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dkos.autoscale.model import Adjustment, Decision, Direction, Policy, Trigger


def compute_percent_change(current: int, percent: float, *, min_magnitude: int = 0) -> int:
    """The change `percent` % of `current` makes, rounded as AWS' PercentChangeInCapacity."""
    raw = current * percent / 100
    if raw > 1:
        delta = math.floor(raw)
    elif raw > 0:
        delta = 1
    elif raw >= -1 and raw < 0:
        delta = -1
    elif raw < -1:
        delta = math.ceil(raw)
    else:
        delta = 0
    sign = 1 if percent > 0 else -1
    if abs(delta) < min_magnitude:
        delta = sign * min_magnitude
    return delta


def compute_clamped(policy: Policy, wanted: int) -> tuple[int, str | None]:
    if wanted > policy.max_instances:
        return policy.max_instances, "limited by max"
    if wanted < policy.min_instances:
        return policy.min_instances, "limited by min"
    return wanted, None


def compute_wanted(policy: Policy, current: int) -> int:
    match policy.adjustment:
        case Adjustment.CHANGE:
            return current + policy.step
        case Adjustment.PERCENT:
            return current + compute_percent_change(current, policy.step, min_magnitude=policy.min_magnitude)
        case Adjustment.EXACT:
            return policy.step


def policy_direction(policy: Policy) -> Direction:
    """Which way a step policy scales (an `exact` one counts as scale-out: it is a floor)."""
    return Direction.IN if policy.adjustment is not Adjustment.EXACT and policy.step < 0 else Direction.OUT


def compute_step_decision(
    policy: Policy,
    *,
    current: int,
    triggers: Sequence[Trigger],
    in_flight: bool,
    cooldown_until: float | None,
    now: float,
) -> Decision | None:
    """The execution a step policy wants now, or None. A decision that `changes` nothing
    (already at the bound) is returned so the caller can show "limited by max"."""
    if not triggers or in_flight:
        return None
    if cooldown_until is not None and now < cooldown_until:
        return None
    to, limited = compute_clamped(policy, compute_wanted(policy, current))
    names = ", ".join(f"{t.alarm}" + ("" if t.value is None else f" ({t.value:.4g})") for t in triggers)
    return Decision(
        from_instances=current,
        to_instances=to,
        reason=f"alarm {names} in ALARM",
        limited=limited,
        triggers=tuple(triggers),
    )


def compute_cancelled(executed: Decision, others: Sequence[tuple[Policy, Direction | None]]) -> list[str]:
    """The policies whose cooldown `executed` cancels: a scale-out cancels running scale-in cooldowns
    (Application Auto Scaling). `others` pairs each policy with the direction of its running cooldown."""
    if executed.direction is not Direction.OUT:
        return []
    return [policy.name for policy, cooling in others if cooling is Direction.IN]


@dataclass(frozen=True)
class TargetOutcome:
    decision: Decision | None
    recommendations: tuple[tuple[float, int], ...]
    """(time, desired) of the scale-in stabilisation window, to hand back next time."""


def compute_target_decision(
    policy: Policy,
    *,
    value: float | None,
    current: int,
    measured: int,
    recommendations: Sequence[tuple[float, int]],
    now: float,
) -> TargetOutcome:
    """What a target-tracking policy wants now. `measured` is how many instances `value` covers
    (the healthy ones, as the HPA counts ready pods); `current` the app's desired instances."""
    kept = tuple((t, d) for t, d in recommendations if t > now - policy.scale_in_window)
    if value is None or measured <= 0 or policy.target <= 0:
        return TargetOutcome(None, kept)
    ratio = value / policy.target
    raw = current if abs(ratio - 1) <= policy.tolerance else math.ceil(measured * ratio)
    clamped, limited = compute_clamped(policy, raw)
    kept = (*kept, (now, clamped))
    reason = f"{policy.query.describe() if policy.query else 'value'} {value:.4g} vs target {policy.target:g}"
    if clamped > current:
        return TargetOutcome(Decision(current, clamped, f"{reason}: scale out", limited), kept)
    stabilised = max(d for _, d in kept)
    if stabilised < current:
        return TargetOutcome(Decision(current, stabilised, f"{reason}: scale in", limited), kept)
    if limited is not None and clamped == current and raw != current:
        return TargetOutcome(Decision(current, current, reason, limited), kept)
    return TargetOutcome(None, kept)
