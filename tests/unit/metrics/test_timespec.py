"""Time parsing of `start`/`end` and durations (spec §4)."""

from __future__ import annotations

import pytest

from dkos import metrics
from dkos.metrics import timespec

NOW = 1_700_000_000_000
T0 = 1356998400


def test_ten_characters_or_fewer_are_seconds_longer_is_milliseconds() -> None:
    assert timespec.parse_time("1356998400", now_ms=NOW) == T0 * 1000
    assert timespec.parse_time("1356998400000", now_ms=NOW) == T0 * 1000
    assert timespec.parse_time("1356998400.500", now_ms=NOW) == T0 * 1000 + 500


def test_a_short_fraction_just_loses_its_dot() -> None:
    assert timespec.parse_time("1355961603.41", now_ms=NOW) == 135596160341


def test_ms_suffix_and_now() -> None:
    assert timespec.parse_time("1356998400500ms", now_ms=NOW) == T0 * 1000 + 500
    assert timespec.parse_time("now", now_ms=NOW) == NOW


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1h-ago", 3_600_000),
        ("30m-ago", 1_800_000),
        ("1M-ago", 60_000),
        ("1d-ago", 86_400_000),
        ("1w-ago", 7 * 86_400_000),
        ("1n-ago", 30 * 86_400_000),
        ("1y-ago", 365 * 86_400_000),
        ("500ms-ago", 500),
        ("10s-ago", 10_000),
    ],
)
def test_relative_times_count_back_from_now(text: str, ms: int) -> None:
    assert timespec.parse_time(text, now_ms=NOW) == NOW - ms


def test_absolute_dates_in_every_accepted_form() -> None:
    assert timespec.parse_time("2013/01/01", now_ms=NOW) == T0 * 1000
    assert timespec.parse_time("2013/01/01-00:01", now_ms=NOW) == (T0 + 60) * 1000
    assert timespec.parse_time("2013/01/01 00:01", now_ms=NOW) == (T0 + 60) * 1000
    assert timespec.parse_time("2013/01/01-00:00:30", now_ms=NOW) == (T0 + 30) * 1000
    assert timespec.parse_time("2013/01/01 01:00:00", now_ms=NOW, timezone="Europe/Paris") == T0 * 1000


def test_other_absolute_lengths_are_invalid() -> None:
    with pytest.raises(metrics.QueryError) as caught:
        timespec.parse_time("2013/1/1", now_ms=NOW)
    assert caught.value.message == "Invalid absolute date: 2013/1/1"


@pytest.mark.parametrize("text", ["-5", "abc", "13569984.00", "0h-ago"])
def test_garbage_and_negative_times_are_400(text: str) -> None:
    with pytest.raises(metrics.QueryError) as caught:
        timespec.parse_time(text, now_ms=NOW)
    assert caught.value.status == 400


def test_unknown_duration_suffix_names_the_duration() -> None:
    with pytest.raises(metrics.QueryError) as caught:
        timespec.parse_duration("5x")
    assert caught.value.to_json() == {"error": {"code": 400, "message": "Invalid duration (suffix): 5x"}}
