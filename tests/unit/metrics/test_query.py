"""Parsing and evaluation of OpenTSDB queries, one test per subtle point of the spec (§17)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from dkos import metrics
from dkos.metrics import aggregators
from dkos.metrics import query as q

NOW = 1_700_000_000_000
T0 = 1356998400
T0MS = T0 * 1000


def series(tags: dict[str, str], points: list[tuple[int, int | float]], metric: str = "m") -> q.Series:
    return q.Series(metric, tags, [(T0MS + s * 1000, v) for s, v in points])


def run(body: dict[str, object], data: list[q.Series]) -> list[dict[str, object]]:
    parsed = q.parse_query_json(json.dumps(body), now_ms=NOW)
    return q.render(parsed, q.evaluate(parsed, data, now_ms=NOW))


def body(sub: dict[str, object], *, start: int = T0, end: int = T0 + 600, **top: object) -> dict[str, object]:
    return {"start": start, "end": end, "queries": [{"metric": "m", **sub}], **top}


def dps(result: dict[str, object]) -> dict[str, object]:
    value = result["dps"]
    assert isinstance(value, dict)
    return value


def error_of(call: object) -> metrics.QueryError:
    assert callable(call)
    with pytest.raises(metrics.QueryError) as caught:
        call()
    return caught.value


# --- parsing ----------------------------------------------------------------------------------


def test_m_parses_rate_options_downsample_and_both_brace_sets() -> None:
    sub = q.parse_m("sum:rate{counter,,1000}:1m-avg-zero:m{host=*}{dc=lga|nyc}")
    assert sub.aggregator == "sum"
    assert sub.rate and sub.rate_options == q.RateOptions(True, q.LONG_MAX, 1000, False)
    assert sub.downsample is not None and sub.downsample.interval_ms == 60_000
    assert [(f.tagk, f.group_by) for f in sub.filters] == [("host", True), ("dc", False)]


def test_dropcounter_means_counter_and_drop_resets() -> None:
    assert q.parse_m("sum:rate{dropcounter}:m").rate_options == q.RateOptions(True, q.LONG_MAX, 0, True)


def test_non_numeric_counter_max_is_400() -> None:
    assert error_of(lambda: q.parse_m("sum:rate{counter,x}:m")).status == 400


def test_m_with_too_few_or_too_many_parts_is_400() -> None:
    assert error_of(lambda: q.parse_m("sum")).message == "Invalid parameter m=sum (not enough :-separated parts)"
    assert "too many" in error_of(lambda: q.parse_m("a:b:c:d:e:f")).message


def test_get_requires_start_and_sub_queries() -> None:
    assert error_of(lambda: q.parse_query_string({}, now_ms=NOW)).message == "Missing parameter <code>start</code>"
    assert error_of(lambda: q.parse_query_string({"start": ["1h-ago"]}, now_ms=NOW)).message == "Missing sub queries"


def test_post_errors_carry_opentsdb_messages_in_validation_order() -> None:
    def message(raw: object) -> str:
        return error_of(lambda: q.parse_query_json(json.dumps(raw), now_ms=NOW)).message

    assert message({"queries": [{"metric": "m"}]}) == "Missing start time"
    assert message({"start": 10, "end": 5, "queries": []}) == (
        "End time [5000] must be greater than or equal to the start time [10000]"
    )
    assert message({"start": 1, "queries": []}) == "Missing queries"
    assert message({"start": 1, "queries": [{"metric": "m"}]}) == "Missing the aggregation function"
    assert message({"start": 1, "queries": [{"metric": "m", "aggregator": "Sum"}]}) == (
        "No such aggregation function: Sum"
    )
    assert message({"start": 1, "queries": [{"aggregator": "sum"}]}) == (
        "Missing the metric or tsuids, provide at least one"
    )
    assert message({"start": 1, "queries": [{"aggregator": "sum", "metric": "m", "downsample": "1m-none"}]}) == (
        "cannot use the NONE aggregator for downsampling"
    )
    assert message({"start": 1, "queries": [{"aggregator": "sum", "metric": "m", "downsample": "1m-foo"}]}) == (
        "No such downsampling function: foo"
    )
    assert message({"start": 1, "queries": [{"aggregator": "sum", "metric": "m", "downsample": "1m-avg-x"}]}) == (
        "Unrecognized fill policy: x"
    )


def test_end_equal_to_start_is_allowed() -> None:
    parsed = q.parse_query_json(json.dumps(body({"aggregator": "sum"}, end=T0)), now_ms=NOW)
    assert parsed.start_ms == parsed.end_ms


def test_empty_post_body_and_bad_json() -> None:
    assert error_of(lambda: q.parse_query_json("", now_ms=NOW)).message == "Missing message content"
    bad = error_of(lambda: q.parse_query_json("{", now_ms=NOW))
    assert bad.message == "Unable to parse the given JSON" and bad.to_json()["error"]


def test_unknown_filter_type_is_unable_to_parse_json_with_details() -> None:
    raw = body({"aggregator": "sum", "filters": [{"type": "not_key", "tagk": "host", "filter": ""}]})
    err = error_of(lambda: q.parse_query_json(json.dumps(raw), now_ms=NOW))
    assert err.to_json() == {
        "error": {
            "code": 400,
            "message": "Unable to parse the given JSON",
            "details": "Could not find a tag value filter of the type: not_key",
        }
    }


def test_unknown_rate_option_key_is_rejected_but_unknown_query_keys_are_ignored() -> None:
    bad = body({"aggregator": "sum", "rateOptions": {"counter": True, "bogus": 1}})
    assert error_of(lambda: q.parse_query_json(json.dumps(bad), now_ms=NOW)).message == "Unable to parse the given JSON"
    q.parse_query_json(json.dumps(body({"aggregator": "sum", "whatever": 1}, extra=2)), now_ms=NOW)


def test_scalars_are_coerced() -> None:
    parsed = q.parse_query_json(
        json.dumps({"start": "1356998400", "queries": [{"aggregator": "sum", "metric": "m", "rate": "true"}]}),
        now_ms=NOW,
    )
    assert parsed.queries[0].rate and parsed.end_ms == NOW


def test_identical_sub_queries_are_merged_into_one_result() -> None:
    sub = {"metric": "m", "aggregator": "sum"}
    parsed = q.parse_query_json(json.dumps({"start": T0, "queries": [sub, sub]}), now_ms=NOW)
    assert len(parsed.queries) == 1


def test_the_later_of_tags_and_filters_wins() -> None:
    filters = [{"type": "literal_or", "tagk": "dc", "filter": "lga", "groupBy": False}]
    first = q.parse_query_json(
        '{"start":1,"queries":[{"metric":"m","aggregator":"sum","tags":{"host":"*"},"filters":'
        + json.dumps(filters)
        + "}]}",
        now_ms=NOW,
    )
    assert [f.tagk for f in first.queries[0].filters] == ["dc"]
    second = q.parse_query_json(
        '{"start":1,"queries":[{"metric":"m","aggregator":"sum","filters":'
        + json.dumps(filters)
        + ',"tags":{"host":"*"}}]}',
        now_ms=NOW,
    )
    assert [f.tagk for f in second.queries[0].filters] == ["host"]


# --- filters ----------------------------------------------------------------------------------

HOSTS = [
    series({"host": "web01", "dc": "lga"}, [(0, 1)]),
    series({"host": "WEB02", "dc": "lga"}, [(0, 2)]),
    series({"host": "db01", "dc": "nyc"}, [(0, 4)]),
    series({"dc": "nyc"}, [(0, 8)]),
]


def total(filters: list[dict[str, object]]) -> object:
    out = run(body({"aggregator": "sum", "filters": filters}), HOSTS)
    return dps(out[0])[str(T0)] if out else None


def flt(type_: str, value: str, tagk: str = "host") -> dict[str, object]:
    return {"type": type_, "tagk": tagk, "filter": value}


def test_every_filter_type_matches_as_opentsdb() -> None:
    assert total([flt("literal_or", "web01|db01")]) == 5
    assert total([flt("iliteral_or", "web02")]) == 2
    assert total([flt("wildcard", "web*")]) == 1
    assert total([flt("iwildcard", "web*")]) == 3
    assert total([flt("wildcard", "*")]) == 7


def test_not_literal_or_excludes_series_without_the_key() -> None:
    assert total([flt("not_literal_or", "web01")]) == 6
    assert total([flt("not_iliteral_or", "web02")]) == 5


def test_regexp_is_a_substring_search() -> None:
    assert total([flt("regexp", "b0")]) == 5  # web01 and db01
    assert total([flt("regexp", "^db")]) == 4


def test_filters_on_one_key_are_anded() -> None:
    assert total([flt("wildcard", "*0*"), flt("literal_or", "web01")]) == 1


def test_a_wildcard_filter_needs_an_asterisk() -> None:
    err = error_of(
        lambda: q.parse_query_json(
            json.dumps(body({"aggregator": "sum", "filters": [flt("wildcard", "web")]})), now_ms=NOW
        )
    )
    assert err.details == "Filter must contain an asterisk"


def test_glob_index_advances_by_component_length_not_match_position() -> None:
    f = q.make_filter("wildcard", "host", "a*a*a", group_by=False)
    assert f.matches("aaa")
    assert q.make_filter("wildcard", "host", "*mysite*", group_by=False).matches("www.mysite.com")


def test_tags_globs_are_case_insensitive_although_the_type_says_wildcard() -> None:
    out = run(body({"aggregator": "sum", "tags": {"host": "web*"}}), HOSTS)
    assert [dps(r)[str(T0)] for r in out] == [1, 2]
    assert q.filter_from_expression("host", "web*", group_by=True).type is q.FilterType.WILDCARD


def test_group_by_defaults_to_false_in_filters() -> None:
    out = run(body({"aggregator": "sum", "filters": [flt("wildcard", "*")]}), HOSTS)
    assert len(out) == 1 and out[0]["aggregateTags"] == ["dc", "host"]


def test_tags_star_groups_by_the_key() -> None:
    out = run(body({"aggregator": "sum", "tags": {"dc": "*"}}), HOSTS)
    assert {r["tags"]["dc"]: dps(r)[str(T0)] for r in out} == {"lga": 3, "nyc": 12}  # type: ignore[index]


def test_grouping_on_a_key_is_sticky() -> None:
    filters = [flt("wildcard", "*", "dc") | {"groupBy": True}, flt("literal_or", "lga|nyc", "dc")]
    assert len(run(body({"aggregator": "sum", "filters": filters}), HOSTS)) == 2


def test_explicit_tags_keep_only_series_with_exactly_the_filtered_keys() -> None:
    out = run(body({"aggregator": "sum", "filters": [flt("wildcard", "*", "dc")], "explicitTags": True}), HOSTS)
    assert dps(out[0])[str(T0)] == 8


def test_the_dkos_documented_groupby_spelling_is_accepted() -> None:
    raw = body(
        {"aggregator": "max", "filters": [{"type": "literal_or", "tagk": "dc", "filter": "lga", "groupby": True}]}
    )
    assert q.parse_query_json(json.dumps(raw), now_ms=NOW).queries[0].filters[0].group_by


def test_unknown_names_are_400_with_exact_text() -> None:
    parsed = q.parse_query_json(json.dumps(body({"aggregator": "sum", "tags": {"host": "web01|web09"}})), now_ms=NOW)

    def check(metrics_known: set[str], tagks: set[str], tagvs: set[str]) -> str:
        return error_of(
            lambda: q.check_names(parsed, metrics_known=metrics_known, tagks_known=tagks, tagvs_known=tagvs)
        ).message

    assert check(set(), set(), set()) == "No such name for 'metrics': 'm'"
    assert check({"m"}, set(), set()) == "No such name for 'tagk': 'host'"
    assert check({"m"}, {"host"}, {"web01"}) == "No such name for 'tagv': 'web09'"


def test_a_known_metric_without_matching_data_gives_an_empty_answer() -> None:
    assert run(body({"aggregator": "sum", "tags": {"host": "nothere"}}), HOSTS) == []


# --- tags bookkeeping ---------------------------------------------------------------------------


def test_a_key_with_one_value_stays_in_tags_even_if_only_some_series_have_it() -> None:
    data = [
        series({"host": "web01", "owner": "jdoe", "dc": "lga"}, [(0, 1)]),
        series({"host": "web01", "dc": "nyc"}, [(0, 2)]),
    ]
    out = run(body({"aggregator": "sum", "tags": {"host": "web01"}}), data)
    assert out[0]["tags"] == {"host": "web01", "owner": "jdoe"}
    assert out[0]["aggregateTags"] == ["dc"]


def test_none_aggregator_gives_one_result_per_series() -> None:
    out = run(body({"aggregator": "none"}), HOSTS)
    assert len(out) == 4 and out[0]["aggregateTags"] == []


# --- time window, downsampling and fill ---------------------------------------------------------


def test_raw_output_keeps_exactly_start_to_end_inclusive() -> None:
    data = [series({"h": "a"}, [(-10, 1), (0, 2), (60, 3), (61, 4)])]
    assert dps(run(body({"aggregator": "sum"}, end=T0 + 60), data)[0]) == {str(T0): 2, str(T0 + 60): 3}


def test_first_partial_bucket_is_dropped_and_last_bucket_takes_points_after_end() -> None:
    data = [series({"h": "a"}, [(30, 1), (60, 2), (150, 4), (170, 6)])]
    out = run(body({"aggregator": "sum", "downsample": "1m-avg"}, start=T0 + 45, end=T0 + 125), data)
    assert dps(out[0]) == {str(T0 + 60): 2.0, str(T0 + 120): 5.0}


def test_downsampled_values_are_doubles() -> None:
    data = [series({"h": "a"}, [(0, 2), (10, 3)])]
    value = dps(run(body({"aggregator": "sum", "downsample": "1m-avg"}), data)[0])[str(T0)]
    assert value == 2.5 and isinstance(value, float)


def test_week_buckets_start_on_thursdays() -> None:
    monday = 1357516800  # 2013-01-07
    data = [series({"h": "a"}, [(monday - T0, 1)])]
    out = run(body({"aggregator": "sum", "downsample": "1w-sum"}, start=T0, end=monday + 10), data)
    assert list(dps(out[0])) == [str(1357171200)]  # Thursday 2013-01-03


def test_fill_nan_is_the_string_nan_and_null_is_json_null_over_the_whole_range() -> None:
    data = [series({"h": "a"}, [(60, 1)])]
    nan = dps(run(body({"aggregator": "sum", "downsample": "1m-sum-nan"}, end=T0 + 180), data)[0])
    assert nan == {str(T0): "NaN", str(T0 + 60): 1.0, str(T0 + 120): "NaN", str(T0 + 180): "NaN"}
    null = dps(run(body({"aggregator": "sum", "downsample": "1m-sum-null"}, end=T0 + 120), data)[0])
    assert null == {str(T0): None, str(T0 + 60): 1.0, str(T0 + 120): None}


def test_nan_fill_is_skipped_in_aggregation_and_zero_fill_takes_part() -> None:
    data = [series({"h": "a"}, [(0, 20), (60, 20)]), series({"h": "b"}, [(0, 15)])]
    nan = dps(run(body({"aggregator": "sum", "downsample": "1m-sum-nan"}, end=T0 + 60), data)[0])
    assert nan[str(T0 + 60)] == 20.0
    zero = dps(run(body({"aggregator": "avg", "downsample": "1m-sum-zero"}, end=T0 + 60), data)[0])
    assert zero[str(T0 + 60)] == 10.0


def test_no_data_gives_an_empty_answer_even_with_a_fill_policy() -> None:
    assert run(body({"aggregator": "sum", "downsample": "1m-sum-zero"}), []) == []


def test_0all_is_end_exclusive_and_stamped_with_start() -> None:
    data = [series({"h": "a"}, [(0, 1), (30, 2), (60, 4)])]
    assert dps(run(body({"aggregator": "sum", "downsample": "0all-sum"}, end=T0 + 60), data)[0]) == {str(T0): 3.0}


def test_ms_resolution_keys_are_milliseconds() -> None:
    data = [q.Series("m", {"h": "a"}, [(T0MS + 250, 1)])]
    assert dps(run(body({"aggregator": "sum"}, msResolution=True), data)[0]) == {str(T0MS + 250): 1}


def test_calendar_days_follow_the_query_timezone() -> None:
    data = [series({"h": "a"}, [(3600, 1), (7200, 2)])]
    out = run(
        body({"aggregator": "sum", "downsample": "1dc-sum"}, start=T0 - 3600, end=T0 + 7200, timezone="Europe/Paris"),
        data,
    )
    assert dps(out[0]) == {str(T0 - 3600): 3.0}  # local midnight in Paris is 23:00 UTC


# --- rate ---------------------------------------------------------------------------------------


def test_rate_has_no_value_at_the_first_point_and_is_a_double() -> None:
    data = [series({"h": "a"}, [(0, 10), (10, 30)])]
    assert dps(run(body({"aggregator": "sum", "rate": True}), data)[0]) == {str(T0 + 10): 2.0}


def test_rate_at_the_first_in_range_point_looks_back_before_start() -> None:
    data = [series({"h": "a"}, [(0, 10), (10, 30)])]
    assert dps(run(body({"aggregator": "sum", "rate": True}, start=T0 + 5), data)[0]) == {str(T0 + 10): 2.0}


def test_counter_reset_with_default_options_is_huge() -> None:
    data = [series({"h": "a"}, [(0, 100), (30, 10)])]
    out = run(body({"aggregator": "sum", "rate": True, "rateOptions": {"counter": True}}), data)
    assert dps(out[0])[str(T0 + 30)] == pytest.approx((q.LONG_MAX - 90) / 30)


def test_counter_max_wraps_and_reset_value_zeroes() -> None:
    data = [series({"h": "a"}, [(0, 100), (10, 10)])]
    wrapped = run(body({"aggregator": "sum", "rate": True, "rateOptions": {"counter": True, "counterMax": 110}}), data)
    assert dps(wrapped[0])[str(T0 + 10)] == 2.0
    zeroed = run(body({"aggregator": "sum", "rate": True, "rateOptions": {"counter": True, "resetValue": 1}}), data)
    assert dps(zeroed[0])[str(T0 + 10)] == 0.0


def test_drop_resets_removes_the_point_and_restarts_from_it() -> None:
    data = [series({"h": "a"}, [(0, 100), (10, 10), (20, 30)])]
    out = run(body({"aggregator": "sum", "rate": True, "rateOptions": {"counter": True, "dropResets": True}}), data)
    assert dps(out[0]) == {str(T0 + 20): 2.0}


def test_without_counter_a_decrease_is_a_negative_rate() -> None:
    data = [series({"h": "a"}, [(0, 100), (10, 50)])]
    assert dps(run(body({"aggregator": "sum", "rate": True}), data)[0]) == {str(T0 + 10): -5.0}


def test_rate_deltas_are_exact_for_large_integers() -> None:
    big = 2**62
    assert q.rate([(0, big), (1000, big + 1)], q.RateOptions()) == [(1000, 1.0)]


def test_downsample_happens_before_rate() -> None:
    data = [series({"h": "a"}, [(0, 1), (30, 3), (60, 10), (90, 10)])]
    out = run(body({"aggregator": "sum", "rate": True, "downsample": "1m-sum"}), data)
    assert dps(out[0]) == {str(T0 + 60): (20.0 - 4.0) / 60}


def test_aggregated_rates_use_the_most_recent_rate_without_interpolation() -> None:
    data = [series({"h": "a"}, [(0, 0), (10, 10), (30, 30)]), series({"h": "b"}, [(0, 0), (20, 40), (30, 60)])]
    out = dps(run(body({"aggregator": "sum", "rate": True}), data)[0])
    assert out == {str(T0 + 10): 1.0, str(T0 + 20): 3.0, str(T0 + 30): 3.0}


# --- aggregation across series -------------------------------------------------------------------


def two_series() -> list[q.Series]:
    return [series({"h": "a"}, [(0, 10), (30, 20)]), series({"h": "b"}, [(10, 5), (20, 7), (40, 9)])]


def agg(name: str, data: list[q.Series] | None = None) -> dict[str, object]:
    return dps(run(body({"aggregator": name}), data or two_series())[0])


def test_sum_interpolates_linearly_with_integer_division_and_never_extrapolates() -> None:
    # a at 10 = 10 + 10*10/30 = 13, at 20 = 16; b not yet started at 0; a ended at 40.
    assert agg("sum") == {str(T0): 10, str(T0 + 10): 18, str(T0 + 20): 23, str(T0 + 30): 28, str(T0 + 40): 9}


def test_zimsum_count_and_mim_use_their_own_interpolation() -> None:
    assert agg("zimsum") == {str(T0): 10, str(T0 + 10): 5, str(T0 + 20): 7, str(T0 + 30): 20, str(T0 + 40): 9}
    assert agg("count") == {str(T0): 1, str(T0 + 10): 2, str(T0 + 20): 2, str(T0 + 30): 2, str(T0 + 40): 1}
    assert agg("mimmin")[str(T0 + 10)] == 5
    assert agg("mimmax")[str(T0 + 30)] == 20
    assert agg("pfsum")[str(T0 + 10)] == 15


def test_integer_avg_truncates_across_series() -> None:
    data = [series({"h": "a"}, [(0, 7)]), series({"h": "b"}, [(0, 8)])]
    assert agg("avg", data) == {str(T0): 7}


def test_a_float_anywhere_in_the_step_makes_the_arithmetic_double() -> None:
    data = [series({"h": "a"}, [(0, 7)]), series({"h": "b"}, [(0, 8.0)])]
    assert agg("avg", data) == {str(T0): 7.5}


def test_dev_of_a_single_series_is_zero() -> None:
    assert agg("dev", [series({"h": "a"}, [(0, 7), (10, 9)])]) == {str(T0): 0, str(T0 + 10): 0}


def test_show_query_echoes_the_sub_query_with_its_index() -> None:
    out = run(body({"aggregator": "sum", "tags": {"h": "*"}}, showQuery=True), two_series())
    query = out[0]["query"]
    assert isinstance(query, dict) and query["index"] == 0 and query["aggregator"] == "sum"


def test_results_follow_sub_query_order() -> None:
    raw = {
        "start": T0,
        "end": T0 + 60,
        "queries": [{"metric": "m", "aggregator": "max"}, {"metric": "m", "aggregator": "min"}],
    }
    out = run(raw, two_series())
    assert [dps(r)[str(T0 + 10)] for r in out] == [13, 5]


def test_nan_from_a_rate_over_nan_fill_is_rendered_as_the_string() -> None:
    data = [series({"h": "a"}, [(0, 1), (120, 3)])]
    out = dps(run(body({"aggregator": "sum", "downsample": "1m-sum-nan", "rate": True}, end=T0 + 120), data)[0])
    assert out[str(T0 + 60)] == "NaN" and isinstance(out[str(T0 + 120)], str)


def test_lists_for_aggregators_and_config_filters() -> None:
    assert "sum" in q.aggregator_names()
    described = q.filter_descriptions()
    assert set(described) == {
        "literal_or",
        "iliteral_or",
        "not_literal_or",
        "not_iliteral_or",
        "wildcard",
        "iwildcard",
        "regexp",
    }
    assert all(set(v) == {"description", "examples"} for v in described.values())


@pytest.mark.parametrize("name", ["sum", "avg", "min", "max", "zimsum", "dev", "p95", "count"])
def test_series_at_the_same_timestamps_merge_as_the_interpolating_path_does(name: str) -> None:
    """The one-pass merge of aligned series (every downsampled query takes it) gives exactly what
    the general, interpolating merge gives — including OpenTSDB's int/double choice per timestamp."""
    rng = random.Random(name)
    agg = aggregators.get(name)
    assert agg is not None
    for _ in range(20):
        stamps = sorted(rng.sample(range(0, 10_000, 10), 12))
        group = [
            [(t, rng.randint(-50, 50) if rng.random() < 0.7 else rng.uniform(-50, 50)) for t in stamps]
            for _ in range(rng.randint(1, 6))
        ]
        assert q._merge_aligned(agg, group) == q._merge_interpolating(agg, group, rated=False)
    assert q._merge_aligned(agg, [[(0, 1), (10, 2)], [(0, 1), (20, 2)]]) is None


@pytest.mark.parametrize("name", ["sum", "zimsum", "avg", "min", "mimmax", "count", "dev", "p95", "last"])
def test_series_held_as_arrays_merge_as_the_interpolating_path_does(name: str) -> None:
    """Rollup reads hand the engine arrays; their merge gives what point tuples would give."""
    rng = random.Random(name)
    agg = aggregators.get(name)
    assert agg is not None
    stamps = np.array(sorted(rng.sample(range(0, 10_000, 10), 12)), np.int64)
    group = [q.PointArray(stamps, np.array([rng.uniform(-50, 50) for _ in stamps])) for _ in range(5)]
    merged = q._merge_arrays(agg, group)
    assert merged is not None
    expected = q._merge_interpolating(agg, [list(points) for points in group], rated=False)
    assert [t for t, _ in merged] == [t for t, _ in expected]
    assert [v for _, v in merged] == pytest.approx([v for _, v in expected], rel=1e-12)
    with_nan = [*group, q.PointArray(stamps, np.full(len(stamps), np.nan))]
    assert q._merge_arrays(agg, with_nan) is None
    assert q._merge_arrays(agg, [*group, q.PointArray(stamps + 1, group[0].values)]) is None
