"""Scaling decisions: cooldown, clamping, percent rounding, re-triggering, cancelled cooldowns, target tracking."""

from __future__ import annotations

import pytest

from dkos.alerts.model import MetricKind, MetricQuery
from dkos.autoscale.decide import (
    compute_cancelled,
    compute_percent_change,
    compute_step_decision,
    compute_target_decision,
)
from dkos.autoscale.model import Adjustment, Decision, Direction, Policy, PolicyType, Trigger

HIGH = (Trigger("cpuhigh", 97.0),)
OUT = Policy("out", alarms=("cpuhigh",), step=2, max_instances=100, cooldown=60)
IN = Policy("in", alarms=("cpulow",), step=-1, min_instances=2, cooldown=300)


def decide(policy: Policy, current: int, **kwargs: object) -> Decision | None:
    defaults: dict[str, object] = {"triggers": HIGH, "in_flight": False, "cooldown_until": None, "now": 1000.0}
    return compute_step_decision(policy, current=current, **{**defaults, **kwargs})  # type: ignore[arg-type]


def test_an_alarm_in_alarm_adds_the_step() -> None:
    decision = decide(OUT, 2)
    assert decision is not None and (decision.from_instances, decision.to_instances) == (2, 4)
    assert "cpuhigh (97)" in decision.reason and decision.limited is None


def test_no_alarm_no_decision() -> None:
    assert decide(OUT, 2, triggers=()) is None


def test_several_alarms_at_once_make_one_execution_of_one_step() -> None:
    decision = decide(OUT, 2, triggers=(Trigger("cpuhigh", 97.0), Trigger("cpuspike", 99.0)))
    assert decision is not None and decision.to_instances == 4 and len(decision.triggers) == 2


def test_cooldown_blocks_then_the_alarm_still_in_alarm_fires_again() -> None:
    assert decide(OUT, 4, cooldown_until=1060.0, now=1059.9) is None
    again = decide(OUT, 4, cooldown_until=1060.0, now=1060.0)
    assert again is not None and again.to_instances == 6


def test_nothing_while_the_previous_execution_is_in_flight() -> None:
    assert decide(OUT, 4, in_flight=True) is None


def test_clamped_to_max_says_limited_by_max() -> None:
    decision = decide(Policy("out", step=2, max_instances=5), 4)
    assert decision is not None and decision.to_instances == 5 and decision.limited == "limited by max"
    at_max = decide(Policy("out", step=2, max_instances=5), 5)
    assert at_max is not None and not at_max.changes and at_max.limited == "limited by max"


def test_scale_in_is_clamped_to_min() -> None:
    decision = decide(IN, 2)
    assert decision is not None and not decision.changes and decision.limited == "limited by min"
    three = decide(IN, 3)
    assert three is not None and three.to_instances == 2 and three.direction is Direction.IN


@pytest.mark.parametrize(
    ("current", "percent", "minimum", "delta"),
    [
        (10, 127, 0, 12),  # 12.7 rounds down
        (2, 100, 0, 2),
        (3, 10, 0, 1),  # 0.3 → 1
        (3, -10, 0, -1),  # -0.3 → -1
        (100, -6.67, 0, -6),  # -6.67 rounds up
        (4, 25, 2, 2),  # 1 → at least the minimum magnitude 2
        (4, -25, 2, -2),
    ],
)
def test_percent_rounding_as_aws(current: int, percent: float, minimum: int, delta: int) -> None:
    assert compute_percent_change(current, percent, min_magnitude=minimum) == delta


def test_percent_policy_doubles_with_plus_100() -> None:
    policy = Policy("out", adjustment=Adjustment.PERCENT, step=100, max_instances=20)
    assert [(d.from_instances, d.to_instances) for d in [decide(policy, 2), decide(policy, 16)] if d] == [
        (2, 4),
        (16, 20),
    ]


def test_exact_sets_the_count() -> None:
    decision = decide(Policy("pin", adjustment=Adjustment.EXACT, step=7), 2)
    assert decision is not None and decision.to_instances == 7


def test_a_scale_out_cancels_running_scale_in_cooldowns_only() -> None:
    out = Decision(2, 4, "x")
    others = [(IN, Direction.IN), (OUT, Direction.OUT), (Policy("idle"), None)]
    assert compute_cancelled(out, others) == ["in"]
    assert compute_cancelled(Decision(4, 3, "x"), others) == []


CPU60 = Policy(
    "track",
    type=PolicyType.TARGET_TRACKING,
    query=MetricQuery(MetricKind.CPU_PERCENT),
    target=60,
    min_instances=1,
    max_instances=20,
)


def test_target_tracking_scales_out_at_once_proportionally() -> None:
    outcome = compute_target_decision(CPU60, value=90, current=4, measured=4, recommendations=(), now=0)
    assert outcome.decision is not None and outcome.decision.to_instances == 6  # ceil(4 × 90/60)


def test_target_tracking_tolerance_band() -> None:
    outcome = compute_target_decision(CPU60, value=65, current=4, measured=4, recommendations=(), now=0)
    assert outcome.decision is None


def test_target_tracking_scale_in_waits_for_the_stabilisation_window() -> None:
    recommendations: tuple[tuple[float, int], ...] = ()
    first = compute_target_decision(CPU60, value=90, current=4, measured=4, recommendations=(), now=0)
    recommendations = first.recommendations  # 6 recommended at t=0
    low = compute_target_decision(CPU60, value=30, current=6, measured=6, recommendations=recommendations, now=100)
    assert low.decision is None  # 6 within the last 300 s holds it
    later = compute_target_decision(
        CPU60, value=30, current=6, measured=6, recommendations=low.recommendations, now=301
    )
    assert later.decision is not None and later.decision.to_instances == 3


def test_target_tracking_clamps_to_max() -> None:
    outcome = compute_target_decision(CPU60, value=600, current=4, measured=4, recommendations=(), now=0)
    assert outcome.decision is not None and outcome.decision.to_instances == 20
    assert outcome.decision.limited == "limited by max"
