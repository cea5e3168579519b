"""Aggregator arithmetic (spec §7.4)."""

from __future__ import annotations

import math

import pytest

from dkos.metrics import aggregators

TEN_TO_FIFTY = [10, 20, 30, 40, 50]


def run(name: str, values: list[int] | list[float], *, integer: bool) -> aggregators.Value:
    agg = aggregators.get(name)
    assert agg is not None
    return aggregators.run(agg, values, integer=integer)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("p50", 30), ("p75", 45), ("p90", 50), ("p999", 50), ("ep50r3", 20), ("ep90r3", 40), ("ep90r7", 46)],
)
def test_percentile_estimations_match_commons_math(name: str, expected: int) -> None:
    assert run(name, TEN_TO_FIFTY, integer=True) == expected


def test_ep99r7_of_integers_truncates_49_6_to_49() -> None:
    assert run("ep99r7", TEN_TO_FIFTY, integer=True) == 49


def test_ep_aggregators_use_legacy_estimation_for_doubles() -> None:
    assert run("ep50r3", [10.0, 20.0, 30.0, 40.0, 50.0], integer=False) == 30.0


def test_integer_avg_truncates() -> None:
    assert run("avg", [7, 8], integer=True) == 7
    assert run("avg", [7.0, 8.0], integer=False) == 7.5


def test_dev_is_the_population_deviation_and_zero_for_one_value() -> None:
    assert run("dev", [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], integer=False) == pytest.approx(2.0)
    assert run("dev", [5], integer=True) == 0


def test_first_and_last_keep_storage_order() -> None:
    assert run("first", [2, 6, 1, 7], integer=True) == 2
    assert run("last", [2, 6, 1, 7], integer=True) == 7


def test_median_is_the_upper_median_and_other_simple_aggregators() -> None:
    assert run("median", [1, 2, 3, 4], integer=True) == 3
    assert run("squareSum", [1, 2, 3], integer=True) == 14
    assert run("mult", [2, 3, 4], integer=True) == 24
    assert run("diff", [2, 9, 5], integer=True) == 3


def test_nan_is_skipped_and_only_nan_gives_nan() -> None:
    assert run("sum", [math.nan, 15.0], integer=False) == 15.0
    assert math.isnan(float(run("sum", [math.nan, math.nan], integer=False)))


def test_integer_lerp_uses_integer_division() -> None:
    assert aggregators.lerp(10_000, 0, 10, 30_000, 20, integer=True) == 13


def test_aggregator_list_holds_every_registered_name() -> None:
    names = aggregators.names()
    for name in ["sum", "zimsum", "pfsum", "mimmin", "mimmax", "count", "dev", "none", "p999", "ep999r7"]:
        assert name in names
