"""`dkos metrics query` and `dkos top` against a scripted OpenTSDB `/api/query`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from typer.testing import Result

from dkos.cli import metrics

from .fakes import FakeDkos, opentsdb_error, series

Cli = Callable[..., Result]

CPU = "avg:1m-avg:dkos.container.cpu.percent{app=web,instance=*}"
T0 = 1_700_000_000


def two_instances() -> list[dict[str, Any]]:
    return [
        series(
            "dkos.container.cpu.percent",
            {"project": "default", "app": "web", "instance": "web-1"},
            {T0: 12.3456, T0 + 60: 40.0, T0 + 120: 0.01234},
        ),
        series(
            "dkos.container.cpu.percent",
            {"project": "default", "app": "web", "instance": "web-2"},
            {T0: 1234.567, T0 + 120: 7},
        ),
    ]


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# -- metrics query ---------------------------------------------------------------------------


def test_query_table_has_a_row_per_timestamp_and_a_column_per_series(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", json=two_instances())

    result = cli("metrics", "query", CPU)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "app=web,instance=web-1" in lines[0]
    assert "app=web,instance=web-2" in lines[0]
    assert "project=default" in lines[0]
    assert len(lines) == 4  # header + 3 timestamps
    assert time.strftime("%Y-%m-%d %H:%M", time.localtime(T0)) in lines[1]
    # Rounded for people: 12.35, 1235, 40, 0.0123, 7.
    assert "12.35" in lines[1] and "1235" in lines[1]
    assert "12.3456" not in result.stdout
    assert "40" in lines[2] and "0.0123" in lines[3] and " 7" in lines[3]
    (request,) = api.sent("GET", "/api/query")
    assert request.url.params["m"] == CPU
    assert request.url.params["start"] == "1h-ago"
    assert "end" not in request.url.params
    assert request.headers["Authorization"] == "Bearer s3cret"


def test_query_json_is_the_api_answer_unchanged(api: FakeDkos, cli: Cli) -> None:
    answer = two_instances()
    api.on("GET", "/api/query", json=answer)

    result = cli("metrics", "query", CPU, "-o", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == answer


@pytest.mark.parametrize(
    ("since", "until", "start", "end"),
    [
        ("10m", None, "10m-ago", None),
        ("2d", "1h", "2d-ago", "1h-ago"),
        ("30s", "now", "30s-ago", "now"),
        ("3h-ago", None, "3h-ago", None),
        ("2024/01/31-12:00", "1706702400", "2024/01/31-12:00", "1706702400"),
    ],
)
def test_query_since_and_until_become_opentsdb_times(
    api: FakeDkos, cli: Cli, since: str, until: str | None, start: str, end: str | None
) -> None:
    api.on("GET", "/api/query", json=two_instances())

    result = cli("metrics", "query", CPU, "--since", since, *(["--until", until] if until else []))

    assert result.exit_code == 0, result.output
    (request,) = api.sent("GET", "/api/query")
    assert request.url.params["start"] == start
    assert request.url.params.get("end") == end


def test_query_refused_by_opentsdb_prints_its_message_and_exits_2(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", opentsdb_error(400, "No such name for 'metrics': 'dkos.nope'"))

    result = cli("metrics", "query", "sum:dkos.nope")

    assert result.exit_code == 2
    assert "No such name for 'metrics': 'dkos.nope'" in result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_query_too_big_is_a_failure(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", opentsdb_error(413, "Sorry, you have attempted to fetch more than 100 points"))

    result = cli("metrics", "query", CPU, "--since", "1y")

    assert result.exit_code == 1
    assert "more than 100 points" in result.stderr
    no_traceback(result)


def test_query_with_no_data_says_so(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", json=[])

    result = cli("metrics", "query", CPU)

    assert result.exit_code == 0, result.output
    assert "no data points" in result.stdout


def test_query_plot_draws_each_series(api: FakeDkos, cli: Cli) -> None:
    answer = two_instances()
    answer[0]["dps"]["1700000180"] = None  # a gap
    answer[1]["dps"]["1700000240"] = "NaN"
    api.on("GET", "/api/query", json=answer)

    result = cli("metrics", "query", CPU, "--plot")

    assert result.exit_code == 0, result.output
    assert "app=web,instance=web-1" in result.stdout
    assert "app=web,instance=web-2" in result.stdout
    assert "█" in result.stdout
    assert "max 1235" in result.stdout
    no_traceback(result)


def test_query_plot_of_many_long_series_uses_sparklines(api: FakeDkos, cli: Cli) -> None:
    answer = [
        series("dkos.app.requests", {"app": f"a{n}"}, {T0 + 10 * i: float(i * n) for i in range(1000)})
        for n in range(5)
    ]
    api.on("GET", "/api/query", json=answer)

    result = cli("metrics", "query", "sum:rate:dkos.app.requests{app=*}", "--plot")

    assert result.exit_code == 0, result.output
    assert all(f"app=a{n}" in result.stdout for n in range(5))
    assert max(len(line) for line in result.stdout.splitlines()) <= 170


def test_query_plot_with_json_is_refused(api: FakeDkos, cli: Cli) -> None:
    result = cli("metrics", "query", CPU, "--plot", "-o", "json")

    assert result.exit_code == 2
    assert api.sent("GET", "/api/query") == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "-"), (3.0, "3"), (1234.56, "1235"), (123.456, "123.5"), (4.567, "4.57"), (0.012345, "0.0123")],
)
def test_values_are_rounded_for_people(value: float | None, shown: str) -> None:
    assert metrics.format_value(value) == shown


# -- top -------------------------------------------------------------------------------------


def top_answers(request: httpx.Request) -> httpx.Response:
    m = request.url.params["m"]
    web = {"project": "default", "app": "web"}
    if "cpu.percent" in m:
        return httpx.Response(
            200,
            json=[
                series(
                    "dkos.container.cpu.percent", {**web, "instance": "web-1", "version": "3"}, {T0: 5, T0 + 10: 30}
                ),
                series("dkos.container.cpu.percent", {**web, "instance": "web-2", "version": "3"}, {T0 + 10: 10}),
            ],
        )
    if "memory.bytes" in m:
        return httpx.Response(
            200,
            json=[
                series("dkos.container.memory.bytes", {**web, "instance": "web-1"}, {T0 + 10: 100 * 1024 * 1024}),
                series("dkos.container.memory.bytes", {**web, "instance": "web-2"}, {T0 + 10: 50 * 1024 * 1024}),
            ],
        )
    if "app.requests" in m:
        return httpx.Response(200, json=[series("dkos.app.requests", web, {T0: 3.5, T0 + 10: 12.25})])
    return opentsdb_error(400, f"unexpected {m}")


def test_top_once_prints_a_row_per_app_and_per_instance(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", top_answers)

    result = cli("top", "--once", "-p", "default")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    app_line = next(line for line in lines if line.startswith("web"))
    assert app_line.split()[1:] == ["default", "20.0", "150.0", "12.25"]  # avg CPU, summed MiB, req/s
    web1 = next(line for line in lines if "web-1" in line)
    assert web1.split() == ["web-1", "3", "30.0", "100.0"]
    sent = api.sent("GET", "/api/query")
    assert len(sent) == 3
    assert all(r.url.params["start"] == "1m-ago" for r in sent)
    ms = [r.url.params["m"] for r in sent]
    assert "sum:dkos.container.cpu.percent{project=default,app=*,instance=*}" in ms
    assert "sum:rate{counter}:dkos.app.requests{project=default,app=*}" in ms


def test_top_json_implies_once_and_carries_the_figures(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", top_answers)

    result = cli("top", "-o", "json")

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    (web,) = figures["apps"]
    assert web["project"] == "default" and web["app"] == "web"
    assert web["cpu_percent"] == 20.0
    assert web["memory_bytes"] == 150 * 1024 * 1024
    assert web["requests_per_second"] == 12.25
    assert [i["instance"] for i in web["instances"]] == ["web-1", "web-2"]
    assert web["instances"][0] == {"instance": "web-1", "version": "3", "cpu_percent": 30.0, "memory_bytes": 104857600}
    # Without --project every project is looked at, grouped by project.
    assert all("project=*" in r.url.params["m"] for r in api.sent("GET", "/api/query"))


def test_top_with_nothing_running_says_so(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", json=[])

    result = cli("top", "--once", "-p", "news")

    assert result.exit_code == 0, result.output
    assert "no figures in the last minute for project news" in result.stdout


def test_top_refreshes_until_ctrl_c_then_exits_0(api: FakeDkos, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    api.on("GET", "/api/query", top_answers)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)

    result = cli("top", "--interval", "5")

    assert result.exit_code == 0, result.output
    assert sleeps == [5, 5]
    assert len(api.sent("GET", "/api/query")) == 6  # the first table and one refresh
    assert "web-1" in result.stdout
    no_traceback(result)


def test_top_refused_query_exits_2(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/api/query", opentsdb_error(400, "No such name for 'tagv': 'nope'"))

    result = cli("top", "--once", "-p", "nope")

    assert result.exit_code == 2
    assert "No such name for 'tagv': 'nope'" in result.stderr
    no_traceback(result)
