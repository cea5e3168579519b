from __future__ import annotations

import time
from pathlib import Path

import pytest

from dkos.alerts.evaluate import Evaluation, compute_evaluation
from dkos.alerts.model import AlarmSource, AlarmState, Comparison
from dkos.alerts.store import AlarmRecord, Origin
from dkos.alerts.transitions import AlarmStatus
from dkos.core.errors import BadQuery
from dkos.logs import caps, keyword_spec, keywords
from dkos.logs.store import LogStore

FORM = keyword_spec.LogAlarmIn(name="oom", app="web", query="OutOfMemory", threshold=3, window=60)


def record(state: AlarmState, value: float | None, evaluated_at: float | None) -> AlarmRecord:
    return AlarmRecord(
        id=1, project="default", app="web", name="oom", source=AlarmSource.LOGS, definition=FORM.definition(),
        origin=Origin.API, status=AlarmStatus(state=state, value=value), evaluated_at=evaluated_at, created_at=0.0,
    )  # fmt: skip


def test_the_condition_is_at_least_n_lines_within_the_window() -> None:
    judged = keywords.condition(FORM.definition())
    assert judged.comparison is Comparison.GE and judged.threshold == 3 and judged.period == 60
    assert compute_evaluation(judged, [2.0], AlarmState.OK).state is AlarmState.OK
    assert compute_evaluation(judged, [3.0], AlarmState.OK).state is AlarmState.ALARM
    assert compute_evaluation(judged, [0.0], AlarmState.INSUFFICIENT_DATA).state is AlarmState.OK


def test_the_definition_carries_what_every_alarm_has_and_a_summary() -> None:
    definition = FORM.definition()
    assert {"comparison", "threshold", "period", "channels", "repeat_interval", "missing"} <= definition.keys()
    assert "OutOfMemory" in definition["summary"] and "app web" in definition["summary"]


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="letters and digits"):
        keyword_spec.LogAlarmIn(name="o o m", query="x", threshold=1, window=1)


def test_an_unchanged_evaluation_is_stored_only_once_in_a_while() -> None:
    now = 1000.0
    same = Evaluation(AlarmState.OK, 0.0, "")
    assert not keywords.needs_observing(record(AlarmState.OK, 0.0, now - 1), same, now=now, resync=30)
    assert keywords.needs_observing(record(AlarmState.OK, 0.0, now - 31), same, now=now, resync=30)
    assert keywords.needs_observing(record(AlarmState.OK, 1.0, now - 1), same, now=now, resync=30)
    assert keywords.needs_observing(record(AlarmState.ALARM, 0.0, now - 1), same, now=now, resync=30)
    assert keywords.needs_observing(record(AlarmState.OK, 0.0, None), same, now=now, resync=30)


async def test_the_store_counts_matching_lines_of_an_app_or_a_project_since_a_time(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", limits=caps.Caps(max_age=None))
    now = time.time_ns()
    rows = [("default", app, f"{app}-1", 1, now - age * 10**9, 0, 0, 0, text)
            for app, age, text in [("web", 100, "OutOfMemory old"), ("web", 5, "OutOfMemory"), ("web", 4, "fine"),
                                   ("api", 3, "OutOfMemory"), ("web", 1, "outofmemory again")]]  # fmt: skip
    await store.write(rows, {})
    since = now - 60 * 10**9
    assert await store.count("default", "web", "OutOfMemory", since_ns=since) == 2
    assert await store.count("default", None, "OutOfMemory", since_ns=since) == 3
    assert await store.count("default", "web", "OutOfMemory", since_ns=now - 200 * 10**9) == 3
    assert await store.count("other", None, "OutOfMemory", since_ns=since) == 0
    with pytest.raises(BadQuery):
        await store.count("default", "web", "foo-bar", since_ns=since)
    with pytest.raises(BadQuery):
        await store.count("default", "web", "foo-bar", since_ns=now + 10**12)
    await store.check_search('"connection-refused" OR time*')
    for bad in ("foo-bar", '"unterminated', "AND"):
        with pytest.raises(BadQuery):
            await store.check_search(bad)
    await store.close()
