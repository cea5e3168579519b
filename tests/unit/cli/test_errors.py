"""Every expected failure maps to one message and one exit code."""

from __future__ import annotations

import pytest

from dkos.cli import client, errors
from dkos.cli.errors import ExitCode


@pytest.mark.parametrize(
    ("exc", "first_line", "code"),
    [
        (
            client.ApiError(401, "unauthorized", "x"),
            "unauthorized: check DKOS_TOKEN or run dkos login",
            ExitCode.UNAUTHORIZED,
        ),
        (client.ApiError(404, "not_found", "app 'web' not found"), "app 'web' not found", ExitCode.NOT_FOUND),
        (client.ApiError(422, "invalid", "body is bad"), "invalid spec: body is bad", ExitCode.INVALID),
        (client.ApiError(409, "conflict", "name taken"), "name taken (409 conflict)", ExitCode.FAILED),
        (client.ApiError(503, "engine_unavailable", "engine down"), "engine down", ExitCode.FAILED),
        (
            client.Unreachable("http://h:1", "refused"),
            "cannot reach dkos at http://h:1: is `dkos server` running?",
            ExitCode.UNREACHABLE,
        ),
        (client.ConnectionLost("cut off"), "cut off", ExitCode.FAILED),
        (errors.Failure("spec file not found: x", ExitCode.INVALID), "spec file not found: x", ExitCode.INVALID),
    ],
)
def test_describe(exc: client.ClientError | errors.Failure, first_line: str, code: ExitCode) -> None:
    report = errors.describe(exc)

    assert report.lines[0].startswith(first_line)
    assert report.exit_code is code


def test_a_422_lists_every_field_and_rule() -> None:
    exc = client.ApiError(
        422, "invalid", "2 problems", [client.FieldProblem("name", "is required"), client.FieldProblem("ports.0", "x")]
    )

    assert errors.describe(exc).lines == ["invalid spec:", "  name: is required", "  ports.0: x"]


def test_a_conflict_with_a_running_deployment_says_to_add_force() -> None:
    message = (
        "deployment 7 (update to version 3) of app 'web' is still running; "
        "wait for it, or force this change to replace it"
    )

    report = errors.describe(client.ApiError(409, "deployment_running", message))

    assert report.lines == [message, "add --force to replace it"]
    assert report.exit_code is ExitCode.FAILED


@pytest.mark.parametrize(
    "message",
    [
        "app 'web' is being deleted",
        "app 'web' has no earlier version to roll back to",
        "the load balancer is disabled on this server (DKOS_LB_ENABLED=false)",
    ],
)
def test_other_conflicts_get_no_force_hint(message: str) -> None:
    report = errors.describe(client.ApiError(409, "conflict", message))

    assert report.lines == [f"{message} (409 conflict)"]
