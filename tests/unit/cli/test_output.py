"""Formatting for people: ages, durations, tables, and text from servers never read as markup."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType

from dkos.cli import output

from .fakes import ROLLING_STEPS, app_body, deployment, event, lb_status, traffic


def rendered(renderable: RenderableType) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def row(text: str, first: str) -> str:
    """The line of a rendered table that starts with `first`, without the padding after its last cell."""
    return next(line.rstrip() for line in text.splitlines() if line.strip().startswith(first))


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (-3, "0s"), (42.9, "42s"), (60, "1m"), (3_599, "59m"), (7_200, "2h"), (86_400 * 12, "12d")],
)
def test_format_age(seconds: float | None, shown: str) -> None:
    assert output.format_age(seconds) == shown


def test_an_event_line_names_the_type_app_instance_and_message() -> None:
    line = output.event_line(event(3, "instance.failed", "exited with code 137", instance="web-7"))

    assert "instance.failed" in line.plain
    assert "web/web-7" in line.plain
    assert line.plain.endswith("exited with code 137")
    assert any("red" in str(span.style) for span in line.spans)


def test_brackets_in_server_text_are_printed_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_renderable(output.event_line(event(1, "instance.failed", "[bold]boom[/bold] [Errno 2]")))

    assert "[bold]boom[/bold] [Errno 2]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (-1, "0.00s"), (0.42, "0.42s"), (12.3, "12.30s"), (125, "2m05s"), (3_720, "1h02m")],
)
def test_format_duration(seconds: float | None, shown: str) -> None:
    assert output.format_duration(seconds) == shown


def test_format_offset_counts_from_the_start() -> None:
    assert output.format_offset(0.42) == "+0.42s"
    assert output.format_offset(None) == "-"


def test_the_deployments_table_shows_versions_progress_age_and_how_long_each_took() -> None:
    deployments = [
        deployment(id=9, kind="rollback", from_version=3, to_version=4, status="running", healthy=1),
        deployment(id=8, status="failed", reason="health check failed 3 times: HTTP 500", finished_at=1700000130.5),
        deployment(id=1, kind="create", from_version=None, to_version=1, status="succeeded", finished_at=1700000101),
    ]

    text = rendered(output.deployments_table(deployments, now=1700000160.0))

    assert row(text, "ID").split() == ["ID", "KIND", "VERSION", "STATUS", "HEALTHY", "STARTED", "TOOK", "REASON"]
    assert row(text, "9").split() == ["9", "rollback", "3→4", "running", "1/2", "1m", "ago", "1m00s", "-"]
    assert row(text, "8").split()[:8] == ["8", "update", "2→3", "failed", "1/2", "1m", "ago", "30.50s"]
    assert "health check failed 3 times: HTTP 500" in row(text, "8")
    assert row(text, "1").split()[:3] == ["1", "create", "1"]
    assert "1.00s" in row(text, "1")


def test_a_deployment_is_shown_with_its_steps_timed_from_its_start() -> None:
    done = deployment(status="succeeded", healthy=2, finished_at=1700000101.91, steps=ROLLING_STEPS)

    text = rendered(output.deployment_detail(done, now=1700000200.0))

    assert "web (project default)" in text
    assert "1.91s" in row(text, "took")
    drained = row(text, "+1.62s")
    assert drained.split()[:3] == ["+1.62s", "instance.stopping", "web-6"]
    assert drained.endswith("drained in 0.31s")
    assert row(text, "+0.01s").split()[:3] == ["+0.01s", "deployment.started", "-"]
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines.index(row(text, "+0.05s")) < lines.index(row(text, "+1.30s")) < lines.index(row(text, "+1.90s"))


def test_a_deployment_without_steps_says_so() -> None:
    assert "no steps yet" in rendered(output.deployment_detail(deployment(steps=[]), now=1700000200.0))


def test_an_app_shows_where_to_reach_it() -> None:
    text = rendered(
        output.app_detail(app_body(urls=["http://web.default.localhost:8080", "tcp://127.0.0.1:10000"]), now=0)
    )

    lines = [line.rstrip() for line in text.splitlines()]
    start = lines.index("reach it at:")
    assert [line.strip() for line in lines[start + 1 : start + 3]] == [
        "http://web.default.localhost:8080",
        "tcp://127.0.0.1:10000",
    ]


def test_an_app_without_urls_has_no_reach_section() -> None:
    assert "reach it at" not in rendered(output.app_detail(app_body(urls=[]), now=0))


def test_the_apps_table_shows_the_first_url() -> None:
    text = rendered(output.apps_table([app_body(), app_body(name="worker", urls=[])], now=1700000200.0))

    assert row(text, "web").endswith("http://web.default.localhost:8080")
    assert "https://" not in text
    assert row(text, "worker").endswith("-")


def test_traffic_has_a_row_per_port_then_one_per_instance() -> None:
    text = rendered(output.traffic_table(traffic()))

    assert row(text, "PORT").split() == [
        "PORT", "/", "INSTANCE", "STATUS", "REQ/S", "REQUESTS", "2XX", "3XX", "4XX", "5XX", "SESSIONS", "AVG", "MS"
    ]  # fmt: skip
    assert row(text, "http").split() == ["http", "3", "41", "40", "0", "0", "1", "0", "12"]
    assert row(text, "web-7").split() == ["web-7", "UP", "3", "20", "19", "0", "0", "1", "0", "12"]
    assert row(text, "web-8").split() == ["web-8", "DRAIN", "3", "21", "20", "0", "0", "1", "0", "57"]
    assert row(text, "web-7").startswith("  web-7")


def test_lb_status_says_whether_haproxy_runs_and_how_the_last_reload_went() -> None:
    text = rendered(output.lb_status_detail(lb_status(), now=1700000042.0))

    assert "running (master pid 4242)" in row(text, "haproxy")
    assert row(text, "generation").split() == ["generation", "19"]
    assert row(text, "config digest").split() == ["config", "digest", "6fa734be7df7"]
    assert "(42s ago, took 0.08s)" in row(text, "last reload")
    assert row(text, "last error").split() == ["last", "error", "none"]


def test_lb_status_shows_a_stopped_haproxy_and_its_error() -> None:
    status = lb_status(running=False, pid=None, last_error="haproxy -c: [ALERT] parsing error", last_reload_at=None)

    text = rendered(output.lb_status_detail(status, now=0))

    assert "not running" in row(text, "haproxy")
    assert "haproxy -c: [ALERT] parsing error" in row(text, "last error")
    assert row(text, "last reload").split() == ["last", "reload", "-"]


def test_a_disabled_lb_says_so() -> None:
    assert rendered(output.lb_status_detail({"enabled": False}, now=0)).strip() == output.LB_DISABLED
