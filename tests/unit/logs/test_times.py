from __future__ import annotations

import pytest

from dkos.logs import times

NOW = 1_764_097_200.0  # 2025-11-25T19:00:00Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10m", NOW - 600),
        ("90s", NOW - 90),
        ("2h", NOW - 7200),
        ("7d", NOW - 7 * 86_400),
        ("1w", NOW - 7 * 86_400),
        ("1h30m", NOW - 5400),
        ("now", NOW),
        ("1764097200", 1_764_097_200.0),
        ("1764097200.5", 1_764_097_200.5),
        ("2025-11-25T19:00:00Z", NOW),
        ("2025-11-25T20:00:00+01:00", NOW),
        ("2025-11-25 19:00", NOW),
        ("2025-11-25", NOW - 19 * 3600),
    ],
)
def test_accepted_forms(value: str, expected: float) -> None:
    assert times.parse(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["yesterday-ish", "", "10", "10 m", "1h30", "-5m", "2025-13-01"])
def test_anything_else_is_refused_naming_the_accepted_forms(value: str) -> None:
    if value == "10":  # a bare number is a Unix time, not a refusal
        assert times.parse(value, now=NOW) == 10.0
        return
    with pytest.raises(times.BadTime) as caught:
        times.parse(value, now=NOW)
    assert "10m" in str(caught.value) and "RFC 3339" in str(caught.value)
