"""Deciding when a --wait is over (pure judgements over the API's objects), and what it draws."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType

from dkos.cli import wait

from .fakes import ROLLING_STEPS, app_body, deployment, instance


def test_a_running_deployment_is_not_over() -> None:
    assert wait.judge_deployment(deployment(status="running")) is None


def test_succeeded_is_ok_and_failed_or_superseded_are_not() -> None:
    assert wait.judge_deployment(deployment(status="succeeded", healthy=2)) == wait.Outcome(
        True, "deployment d-42 succeeded: 2/2 instances healthy"
    )
    failed = wait.judge_deployment(deployment(status="failed", reason="image not found: foo:1"))
    assert failed is not None and not failed.ok and "image not found: foo:1" in failed.message
    superseded = wait.judge_deployment(deployment(status="superseded"))
    assert superseded is not None and not superseded.ok


def test_a_deletion_is_over_when_the_app_is_gone_or_its_deployment_failed() -> None:
    assert wait.judge_deletion("web", None, "d-42") == wait.Outcome(True, "web deleted")
    assert wait.judge_deletion("web", app_body(last_deployment=deployment(kind="delete")), "d-42") is None
    failed = app_body(last_deployment=deployment(kind="delete", status="failed", reason="engine down"))
    outcome = wait.judge_deletion("web", failed, "d-42")
    assert outcome is not None and not outcome.ok
    # Another deployment's failure is not this deletion's.
    assert wait.judge_deletion("web", failed, "d-99") is None


def test_deployment_ids_match_whether_the_server_sends_text_or_numbers() -> None:
    failed = app_body(last_deployment=deployment(id=7, kind="delete", status="failed", reason="engine down"))

    outcome = wait.judge_deletion("web", failed, "7")

    assert outcome is not None and not outcome.ok


def rendered(renderable: RenderableType) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_the_live_display_shows_the_latest_steps_under_the_bar() -> None:
    running = deployment(steps=ROLLING_STEPS[:-1])

    text = rendered(wait._render_deployment(running, [instance(), instance(id="web-8", state="starting")]))

    lines = text.splitlines()
    bar = next(i for i, line in enumerate(lines) if "1/2 healthy" in line)
    shown = lines[bar + 1 : bar + 1 + wait.STEPS_SHOWN]
    # The oldest step scrolled off: only the last STEPS_SHOWN stay, oldest first.
    assert "deployment.started" not in text
    assert "+0.05s" in shown[0] and "instance.pending" in shown[0]
    assert "+1.62s" in shown[-2] and "drained in 0.31s" in shown[-2] and "web-6" in shown[-2]
    assert "+1.90s" in shown[-1] and "instance.stopped" in shown[-1]
    assert "web-8" in text.split("ID", 1)[1]  # the instances table still follows


def test_without_steps_the_display_is_the_bar_and_the_instances() -> None:
    text = rendered(wait._render_deployment(deployment(kind="rollback", to_version=7), []))

    assert "rollback web as version 7" in text
    assert "+" not in text
