from __future__ import annotations

from dkos.logs import caps
from dkos.logs.caps import Caps, Reason, Trim, Usage

NOW = 1_000_000.0
DAY_NS = 86_400 * 10**9


def test_within_every_cap_nothing_is_dropped() -> None:
    limits = Caps(total_bytes=1000, app_bytes=600, max_age=86_400)
    usage = [Usage(1, 500), Usage(2, 400)]
    assert caps.compute(usage, limits, oldest_ns=round(NOW * 1e9) - 1, now=NOW) == []


def test_lines_older_than_the_age_cap_go_first() -> None:
    limits = Caps(max_age=86_400)
    trims = caps.compute([Usage(1, 10)], limits, oldest_ns=round(NOW * 1e9) - 2 * DAY_NS, now=NOW)
    assert trims == [Trim(Reason.AGE, None, before_ns=round(NOW * 1e9) - DAY_NS)]


def test_an_app_over_its_cap_drops_down_to_the_headroom_below_it() -> None:
    limits = Caps(total_bytes=10_000, app_bytes=1000, max_age=None, headroom=0.1)
    assert caps.compute([Usage(1, 1500), Usage(2, 900)], limits, oldest_ns=0, now=NOW) == [
        Trim(Reason.APP_CAP, 1, bytes=600)
    ]


def test_over_the_total_the_oldest_lines_of_the_whole_store_go() -> None:
    limits = Caps(total_bytes=1000, app_bytes=1000, max_age=None, headroom=0.0)
    assert caps.compute([Usage(1, 700), Usage(2, 600)], limits, oldest_ns=0, now=NOW) == [
        Trim(Reason.TOTAL_CAP, None, bytes=300)
    ]


def test_the_total_counts_what_per_app_trims_will_leave() -> None:
    limits = Caps(total_bytes=1000, app_bytes=500, max_age=None, headroom=0.0)
    # app 1 is trimmed to 500; with app 2's 400 the total is then within its cap.
    assert caps.compute([Usage(1, 2000), Usage(2, 400)], limits, oldest_ns=0, now=NOW) == [
        Trim(Reason.APP_CAP, 1, bytes=1500)
    ]


def test_no_age_cap_keeps_old_lines() -> None:
    assert caps.compute([Usage(1, 10)], Caps(max_age=None), oldest_ns=0, now=NOW) == []


def test_a_line_costs_its_text_its_instance_and_the_overhead() -> None:
    assert caps.line_cost("hello", "web-1") == 10 + caps.LINE_OVERHEAD
