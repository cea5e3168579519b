"""Pure evaluation: from datapoints to the state an alarm should be in, and why.

A datapoint is one value per period (None when there was no data); the newest is last.
Whatever computed the datapoints — a metric statistic over the instances, or a count of
log lines — the judging is the same, CloudWatch's:

- each present datapoint breaches when `value comparison threshold` holds;
- missing datapoints are treated by the alarm's `missing` mode: `breaching`,
  `not_breaching`, `ignore` (all missing → keep the state) or `missing` (the default:
  all missing → INSUFFICIENT_DATA);
- ALARM when at least M of the last N datapoints breach, else OK.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dkos.alerts.model import AlarmState, Condition, MissingData, Statistic


@dataclass(frozen=True)
class Evaluation:
    """What the datapoints say: the state, the newest value (None if missing) and a reason for people."""

    state: AlarmState
    value: float | None
    reason: str


def compute_statistic(statistic: Statistic, values: Sequence[float]) -> float | None:
    """Combine per-instance (or per-series) values; None for no values."""
    if not values:
        return None
    match statistic:
        case Statistic.AVG:
            return sum(values) / len(values)
        case Statistic.MIN:
            return min(values)
        case Statistic.MAX:
            return max(values)
        case Statistic.SUM:
            return float(sum(values))
        case Statistic.P95:
            # Nearest rank, as CloudWatch's pNN on few samples: the smallest value with ≥ 95 % at or below it.
            ordered = sorted(values)
            return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _show(value: float) -> str:
    return f"{value:.4g}"


def compute_evaluation(condition: Condition, datapoints: Sequence[float | None], current: AlarmState) -> Evaluation:
    """The state `datapoints` (the last N, oldest first) put the alarm in."""
    wanted = condition.evaluation_periods
    given: list[float | None] = list(datapoints)[-wanted:]
    recent: list[float | None] = [None] * (wanted - len(given))
    recent += given
    newest = recent[-1]
    present = [v for v in recent if v is not None]
    missing = wanted - len(present)
    mode = condition.missing
    if not present and mode is MissingData.MISSING:
        return Evaluation(AlarmState.INSUFFICIENT_DATA, None, f"no data in the last {wanted * condition.period:g} s")
    if not present and mode is MissingData.IGNORE:
        return Evaluation(current, None, f"no data in the last {wanted * condition.period:g} s (ignored)")
    breaching = sum(1 for v in present if condition.comparison.holds(v, condition.threshold))
    if mode is MissingData.BREACHING:
        breaching += missing
    needed = condition.datapoints_to_alarm
    shown = ", ".join("-" if v is None else _show(v) for v in recent)
    if breaching >= needed:
        return Evaluation(
            AlarmState.ALARM,
            newest,
            f"threshold crossed: {breaching} of the last {wanted} datapoints [{shown}] "
            f"{condition.comparison.value} {condition.threshold:g} (at least {needed} needed)",
        )
    return Evaluation(
        AlarmState.OK,
        newest,
        f"threshold not crossed: {breaching} of the last {wanted} datapoints [{shown}] "
        f"{condition.comparison.value} {condition.threshold:g} ({needed} needed)",
    )
