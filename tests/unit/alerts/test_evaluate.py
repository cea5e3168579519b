"""Pure evaluation: statistics, comparisons, missing-data modes and M of N on synthetic datapoints."""

from __future__ import annotations

import pytest

from dkos.alerts.evaluate import compute_evaluation, compute_statistic
from dkos.alerts.model import AlarmState, Comparison, Condition, MissingData, Statistic

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


@pytest.mark.parametrize(
    ("statistic", "expected"),
    [
        (Statistic.AVG, 25.0),
        (Statistic.MIN, 10.0),
        (Statistic.MAX, 40.0),
        (Statistic.SUM, 100.0),
        (Statistic.P95, 40.0),
    ],
)
def test_each_statistic_combines_instance_values(statistic: Statistic, expected: float) -> None:
    assert compute_statistic(statistic, [10, 20, 30, 40]) == expected


def test_p95_of_twenty_values_is_the_nineteenth() -> None:
    assert compute_statistic(Statistic.P95, list(range(1, 21))) == 19


def test_no_values_make_no_statistic() -> None:
    assert compute_statistic(Statistic.AVG, []) is None


@pytest.mark.parametrize(
    ("comparison", "value", "state"),
    [
        (Comparison.GE, 90, ALARM),
        (Comparison.GE, 89.9, OK),
        (Comparison.GT, 90, OK),
        (Comparison.GT, 90.1, ALARM),
        (Comparison.LE, 90, ALARM),
        (Comparison.LE, 90.1, OK),
        (Comparison.LT, 90, OK),
        (Comparison.LT, 89, ALARM),
    ],
)
def test_each_comparison_at_and_around_the_threshold(comparison: Comparison, value: float, state: AlarmState) -> None:
    condition = Condition(comparison, 90, period=60)
    assert compute_evaluation(condition, [value], OK).state is state


def test_the_evaluation_carries_the_newest_value_and_a_reason() -> None:
    result = compute_evaluation(Condition(Comparison.GE, 90, period=300), [95.5], OK)
    assert result.value == 95.5
    assert "95.5" in result.reason and ">= 90" in result.reason


@pytest.mark.parametrize(
    ("mode", "current", "state"),
    [
        (MissingData.MISSING, OK, INSUFFICIENT),
        (MissingData.MISSING, ALARM, INSUFFICIENT),
        (MissingData.BREACHING, OK, ALARM),
        (MissingData.NOT_BREACHING, ALARM, OK),
        (MissingData.IGNORE, ALARM, ALARM),
        (MissingData.IGNORE, OK, OK),
    ],
)
def test_missing_data_modes_when_every_datapoint_is_missing(
    mode: MissingData, current: AlarmState, state: AlarmState
) -> None:
    condition = Condition(Comparison.GE, 90, period=60, evaluation_periods=3, datapoints_to_alarm=2, missing=mode)
    assert compute_evaluation(condition, [None, None, None], current).state is state


def test_breaching_mode_counts_a_missing_datapoint_towards_alarm() -> None:
    both = {"comparison": Comparison.GE, "threshold": 90, "period": 60, "evaluation_periods": 3}
    values = [95, None, 10]
    assert (
        compute_evaluation(Condition(**both, datapoints_to_alarm=2, missing=MissingData.BREACHING), values, OK).state
        is ALARM
    )  # type: ignore[arg-type]
    assert (
        compute_evaluation(Condition(**both, datapoints_to_alarm=2, missing=MissingData.MISSING), values, OK).state
        is OK
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "state"),
    [
        ([95, 95, 10, 95, 10], ALARM),  # 3 of 5, not consecutive
        ([95, 10, 10, 95, 10], OK),  # 2 of 5
        ([10, 10, 95, 95, 95], ALARM),
        ([95, 95, 95, 95, 95, 10, 10, 10], OK),  # only the last 5 count: 2 breach
    ],
)
def test_m_of_n_datapoints(values: list[float], state: AlarmState) -> None:
    condition = Condition(Comparison.GE, 90, period=60, evaluation_periods=5, datapoints_to_alarm=3)
    assert compute_evaluation(condition, values, OK).state is state


def test_fewer_datapoints_than_n_count_as_missing() -> None:
    condition = Condition(Comparison.GE, 90, period=60, evaluation_periods=3, datapoints_to_alarm=3)
    assert compute_evaluation(condition, [95], OK).state is OK
    assert compute_evaluation(condition, [95, 95, 95], OK).state is ALARM
