"""Deciding when a --wait is over: pure judgements over the API's objects."""

from __future__ import annotations

from dkos.cli import wait

from .fakes import app_body, deployment


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
