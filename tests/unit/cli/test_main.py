"""The `dkos` commands end to end against a scripted API: what they send, print and exit with."""

from __future__ import annotations

import json
import stat
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import Result

from dkos.cli import config

from .fakes import (
    ROLLING_STEPS,
    FakeDkos,
    app_body,
    deployment,
    error,
    event,
    health,
    instance,
    lb_status,
    sse_body,
    traffic,
)

Cli = Callable[..., Result]

SPEC_YAML = "name: web\nimage: dkos-demo:1\ninstances: 2\n"


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "web.yaml"
    path.write_text(SPEC_YAML)
    return path


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# -- instances and listings ------------------------------------------------------------


def test_instances_json_is_an_array_of_the_api_objects(api: FakeDkos, cli: Cli) -> None:
    failed = instance(id="web-6", state="failed", reason="exited with code 137 (out of memory)", exit_code=137)
    api.on("GET", "/v1/apps/web/instances", json={"instances": [instance(), failed]})

    result = cli("instances", "web", "-o", "json")

    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert isinstance(listed, list)
    assert [i["id"] for i in listed] == ["web-7", "web-6"]
    for item in listed:
        assert {"id", "app", "version", "state", "container_id", "address", "reason"} <= item.keys()
    assert listed[1] == failed
    (request,) = api.sent("GET", "/v1/apps/web/instances")
    assert request.url.params["project"] == "default"
    assert request.headers["Authorization"] == "Bearer s3cret"


def test_instances_table_shows_short_container_ids_and_reasons(api: FakeDkos, cli: Cli) -> None:
    failed = instance(id="web-6", state="failed", reason="image not found: foo:1", address=None)
    api.on("GET", "/v1/apps/web/instances", json={"instances": [instance(), failed]})

    result = cli("instances", "web", "--all", "-p", "news")

    assert result.exit_code == 0, result.output
    assert "9f1c0a2b3c4d" in result.stdout
    assert "9f1c0a2b3c4d5" not in result.stdout
    assert "image not found: foo:1" in result.stdout
    (request,) = api.sent("GET", "/v1/apps/web/instances")
    assert request.url.params["all"] == "true"
    assert request.url.params["project"] == "news"


def test_apps_list_warns_on_stderr_when_the_engine_is_unreachable(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/health", json=health(reachable=False, error="connection refused"))
    api.on("GET", "/v1/apps", json={"apps": [app_body()]})

    result = cli("apps", "list", "-o", "json")

    assert result.exit_code == 0, result.output
    assert "container engine unreachable: connection refused" in result.stderr
    assert json.loads(result.stdout) == [app_body()]


def test_apps_list_all_projects_omits_the_project_filter(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/apps", json={"apps": [app_body()]})

    result = cli("apps", "list", "-A")

    assert result.exit_code == 0, result.output
    assert "web" in result.stdout
    assert "project" not in api.sent("GET", "/v1/apps")[0].url.params


def test_apps_show_json_passes_the_app_through(api: FakeDkos, cli: Cli) -> None:
    body = app_body(spec={"name": "web", "image": "dkos-demo:1"}, instances=[instance()])
    api.on("GET", "/v1/apps/web", json=body)

    result = cli("apps", "show", "web", "--output", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == body


def test_app_names_are_quoted_into_the_path(api: FakeDkos, cli: Cli) -> None:
    result = cli("apps", "show", "../deployments/d-1")

    assert result.exit_code == 4
    assert api.requests[-1].url.raw_path.startswith(b"/v1/apps/..%2Fdeployments%2Fd-1")


# -- errors --------------------------------------------------------------------------------


def test_a_rejected_spec_prints_each_field_and_rule_and_exits_2(api: FakeDkos, cli: Cli, spec_file: Path) -> None:
    details = [{"field": "instances", "rule": "must be ≥ 0"}, {"field": "image", "rule": "must not be empty"}]
    api.on("POST", "/v1/apps", error(422, "invalid", "the spec breaks 2 rules", details=details))

    result = cli("apps", "deploy", str(spec_file))

    assert result.exit_code == 2
    assert "invalid spec:" in result.stderr
    assert "instances: must be ≥ 0" in result.stderr
    assert "image: must not be empty" in result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_unauthorized_says_how_to_fix_it_and_exits_3(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/apps/web/instances", error(401, "unauthorized", "a valid bearer token is required"))

    result = cli("instances", "web", "-o", "json")

    assert result.exit_code == 3
    assert "unauthorized: check DKOS_TOKEN or run dkos login" in result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_not_found_prints_the_servers_message_and_exits_4(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/apps/nope", error(404, "not_found", "app 'nope' not found in project 'default'"))

    result = cli("apps", "show", "nope")

    assert result.exit_code == 4
    assert "app 'nope' not found in project 'default'" in result.stderr
    no_traceback(result)


def test_a_refused_connection_asks_whether_the_server_runs_and_exits_5(api: FakeDkos, cli: Cli) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    api.on("GET", "/v1/health", refuse)

    result = cli("apps", "list")

    assert result.exit_code == 5
    assert "cannot reach dkos at http://dkos.test:7700: is `dkos server` running?" in result.stderr
    assert "[Errno 111] Connection refused" in result.stderr
    no_traceback(result)


def test_a_conflict_exits_1_with_the_message(api: FakeDkos, cli: Cli) -> None:
    api.on("POST", "/v1/apps/web/scale", error(409, "conflict", "app 'web' is being deleted"))

    result = cli("apps", "scale", "web", "3")

    assert result.exit_code == 1
    assert "app 'web' is being deleted" in result.stderr
    no_traceback(result)


# -- deploy ----------------------------------------------------------------------------------


def test_deploy_sends_a_yaml_file_as_written_with_the_yaml_content_type(
    api: FakeDkos, cli: Cli, spec_file: Path
) -> None:
    api.on("POST", "/v1/apps", status=201, json={"app": app_body(version=1), "deployment": deployment(kind="create")})

    result = cli("apps", "deploy", str(spec_file))

    assert result.exit_code == 0, result.output
    (request,) = api.sent("POST", "/v1/apps")
    assert request.headers["Content-Type"] == "application/yaml"
    assert request.content.decode() == SPEC_YAML
    assert "created web (project default): version 1, deployment d-42" in result.stdout


def test_deploy_sends_other_files_as_json(api: FakeDkos, cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "web.json"
    spec.write_text('{"name": "web", "image": "dkos-demo:1"}')
    api.on("POST", "/v1/apps", json={"app": app_body(), "deployment": deployment()})

    result = cli("apps", "deploy", str(spec))

    assert result.exit_code == 0, result.output
    assert api.sent("POST", "/v1/apps")[0].headers["Content-Type"] == "application/json"
    assert "updated web (project default): version 3, deployment d-42" in result.stdout


def test_deploying_an_identical_spec_says_no_change(api: FakeDkos, cli: Cli, spec_file: Path) -> None:
    api.on("POST", "/v1/apps", json={"app": app_body(), "deployment": None})

    result = cli("apps", "deploy", str(spec_file), "--wait")

    assert result.exit_code == 0, result.output
    assert "no change" in result.stdout
    assert api.sent("GET", "/v1/deployments/d-42") == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("web.yaml", "name: [web\n", "is not valid YAML"),
        ("web.json", "name: web\n", "is not valid JSON"),
    ],
)
def test_a_spec_file_that_does_not_parse_exits_2_before_any_request(
    api: FakeDkos, cli: Cli, tmp_path: Path, name: str, text: str, expected: str
) -> None:
    spec = tmp_path / name
    spec.write_text(text)

    result = cli("apps", "deploy", str(spec))

    assert result.exit_code == 2
    assert expected in result.stderr
    assert api.requests == []
    no_traceback(result)


def test_a_missing_spec_file_exits_2(api: FakeDkos, cli: Cli, tmp_path: Path) -> None:
    result = cli("apps", "deploy", str(tmp_path / "nope.yaml"))

    assert result.exit_code == 2
    assert "spec file not found" in result.stderr
    assert api.requests == []


# -- --wait ------------------------------------------------------------------------------------


def test_deploy_wait_exits_1_with_the_reason_when_the_deployment_fails(
    api: FakeDkos, cli: Cli, spec_file: Path
) -> None:
    api.on("POST", "/v1/apps", json={"app": app_body(), "deployment": deployment()})
    reason = "health check failed 3 times: HTTP 500"
    api.on("GET", "/v1/deployments/d-42", json=deployment(status="failed", reason=reason, healthy=0))
    api.on("GET", "/v1/apps/web/instances", json={"instances": [instance(state="unhealthy")]})

    result = cli("apps", "deploy", str(spec_file), "--wait")

    assert result.exit_code == 1
    assert f"deployment d-42 failed: {reason}" in result.stderr
    no_traceback(result)


def test_deploy_wait_polls_until_the_deployment_succeeds(api: FakeDkos, cli: Cli, spec_file: Path) -> None:
    api.on("POST", "/v1/apps", json={"app": app_body(), "deployment": deployment()})
    api.on(
        "GET",
        "/v1/deployments/d-42",
        httpx.Response(200, json=deployment(status="running", healthy=1)),
        httpx.Response(200, json=deployment(status="succeeded", healthy=2)),
    )
    api.on("GET", "/v1/apps/web/instances", json={"instances": [instance(), instance(id="web-8")]})

    result = cli("apps", "deploy", str(spec_file), "--wait")

    assert result.exit_code == 0, result.output
    assert "deployment d-42 succeeded: 2/2 instances healthy" in result.stdout
    assert len(api.sent("GET", "/v1/deployments/d-42")) == 2
    assert api.sent("GET", "/v1/apps/web/instances")[0].url.params["project"] == "default"


def test_wait_follows_numeric_deployment_ids(api: FakeDkos, cli: Cli, spec_file: Path) -> None:
    api.on("POST", "/v1/apps", json={"app": app_body(), "deployment": deployment(id=5)})
    api.on("GET", "/v1/deployments/5", json=deployment(id=5, status="succeeded", healthy=2))
    api.on("GET", "/v1/apps/web/instances", json={"instances": []})

    result = cli("apps", "deploy", str(spec_file), "--wait")

    assert result.exit_code == 0, result.output
    assert "deployment 5 succeeded" in result.stdout


def test_wait_exits_1_when_a_newer_deployment_supersedes_it(api: FakeDkos, cli: Cli) -> None:
    api.on("POST", "/v1/apps/web/restart", json={"app": app_body(), "deployment": deployment(kind="restart")})
    api.on("GET", "/v1/deployments/d-42", json=deployment(status="superseded"))
    api.on("GET", "/v1/apps/web/instances", json={"instances": []})

    result = cli("apps", "restart", "web", "--wait")

    assert result.exit_code == 1
    assert "superseded" in result.stderr


def test_wait_gives_up_after_the_timeout_and_says_so(api: FakeDkos, cli: Cli) -> None:
    api.on("POST", "/v1/apps/web/scale", json={"app": app_body(), "deployment": deployment(kind="scale")})
    api.on("GET", "/v1/deployments/d-42", json=deployment(status="running"))
    api.on("GET", "/v1/apps/web/instances", json={"instances": [instance(state="starting")]})

    result = cli("apps", "scale", "web", "2", "--wait", "--timeout", "0")

    assert result.exit_code == 1
    assert "timed out after 0 s waiting for deployment d-42" in result.stderr
    assert json.loads(api.sent("POST", "/v1/apps/web/scale")[0].content) == {"instances": 2}


def test_delete_wait_is_done_when_the_app_answers_404(api: FakeDkos, cli: Cli) -> None:
    api.on("DELETE", "/v1/apps/web", status=202, json={"app": app_body(), "deployment": deployment(kind="delete")})
    api.on(
        "GET",
        "/v1/apps/web",
        httpx.Response(200, json=app_body(state="deleting", instances=[instance(state="stopping")])),
        error(404, "not_found", "app 'web' not found in project 'default'"),
    )

    result = cli("apps", "delete", "web", "--wait")

    assert result.exit_code == 0, result.output
    assert "web deleted" in result.stdout
    assert len(api.sent("GET", "/v1/apps/web")) == 2


def test_wait_shows_the_deployments_latest_steps_under_the_bar(api: FakeDkos, cli: Cli, spec_file: Path) -> None:
    api.on("POST", "/v1/apps", json={"app": app_body(), "deployment": deployment()})
    api.on(
        "GET",
        "/v1/deployments/d-42",
        httpx.Response(200, json=deployment(steps=ROLLING_STEPS[:3])),
        httpx.Response(200, json=deployment(status="succeeded", healthy=2, steps=ROLLING_STEPS)),
    )
    api.on("GET", "/v1/apps/web/instances", json={"instances": [instance(), instance(id="web-8")]})

    result = cli("apps", "deploy", str(spec_file), "--wait")

    assert result.exit_code == 0, result.output
    # Not a terminal: the live display is drawn once, as it ended, on stderr.
    assert "2/2 healthy" in result.stderr
    assert "drained in 0.31s" in result.stderr
    assert "+1.90s" in result.stderr and "instance.stopped" in result.stderr
    assert "deployment.started" not in result.stderr  # only the last few steps stay shown
    assert "drained" not in result.stdout


# -- --force and conflicts ---------------------------------------------------------------------

RUNNING = (
    "deployment 7 (update to version 3) of app 'web' is still running; wait for it, or force this change to replace it"
)


@pytest.mark.parametrize(
    ("args", "method", "path"),
    [
        (("apps", "scale", "web", "3"), "POST", "/v1/apps/web/scale"),
        (("apps", "restart", "web"), "POST", "/v1/apps/web/restart"),
        (("apps", "rollback", "web", "--to", "2"), "POST", "/v1/apps/web/rollback"),
    ],
)
def test_a_change_during_a_running_deployment_says_to_add_force(
    api: FakeDkos, cli: Cli, args: tuple[str, ...], method: str, path: str
) -> None:
    api.on(method, path, error(409, "deployment_running", RUNNING))

    result = cli(*args, "-o", "json")

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [RUNNING, "add --force to replace it"]
    assert result.stdout == ""
    assert "force" not in api.sent(method, path)[0].url.params
    no_traceback(result)


def test_deploy_conflict_hint_and_force(api: FakeDkos, cli: Cli, spec_file: Path) -> None:
    api.on(
        "POST",
        "/v1/apps",
        error(409, "deployment_running", RUNNING),
        httpx.Response(200, json={"app": app_body(version=4), "deployment": deployment(id=8, to_version=4)}),
    )

    refused = cli("apps", "deploy", str(spec_file))
    forced = cli("apps", "deploy", str(spec_file), "--force")

    assert refused.exit_code == 1
    assert "add --force to replace it" in refused.stderr
    assert forced.exit_code == 0, forced.output
    assert "updated web (project default): version 4, deployment 8" in forced.stdout
    first, second = api.sent("POST", "/v1/apps")
    assert "force" not in first.url.params
    assert second.url.params["force"] == "true"
    assert second.content.decode() == SPEC_YAML


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("apps", "scale", "web", "3", "--force"), "/v1/apps/web/scale"),
        (("apps", "restart", "web", "--force", "-p", "news"), "/v1/apps/web/restart"),
    ],
)
def test_force_replaces_the_running_deployment(api: FakeDkos, cli: Cli, args: tuple[str, ...], path: str) -> None:
    api.on("POST", path, json={"app": app_body(), "deployment": deployment(id=8)})

    result = cli(*args)

    assert result.exit_code == 0, result.output
    assert "deployment 8" in result.stdout
    assert api.sent("POST", path)[0].url.params["force"] == "true"


# -- rollback --------------------------------------------------------------------------------


def test_rollback_without_a_version_lets_the_server_choose_and_says_which(api: FakeDkos, cli: Cli) -> None:
    api.on(
        "POST",
        "/v1/apps/web/rollback",
        json={"app": app_body(version=5), "deployment": deployment(id=9, kind="rollback", to_version=5)},
    )
    api.on("GET", "/v1/apps/web/versions", json={"versions": [{"version": 5, "change": "rollback to version 2"}]})

    result = cli("apps", "rollback", "web")

    assert result.exit_code == 0, result.output
    assert "rolling back web (project default) to version 2 as version 5: deployment 9" in result.stdout
    (request,) = api.sent("POST", "/v1/apps/web/rollback")
    assert json.loads(request.content) == {}
    assert request.url.params["project"] == "default"
    assert "force" not in request.url.params


def test_rollback_to_a_version_waits_and_prints_the_answer_as_json(api: FakeDkos, cli: Cli) -> None:
    started = deployment(id=9, kind="rollback", from_version=4, to_version=5)
    api.on("POST", "/v1/apps/web/rollback", json={"app": app_body(version=5), "deployment": started})
    ended = {**started, "status": "succeeded", "healthy": 2, "steps": ROLLING_STEPS}
    api.on("GET", "/v1/deployments/9", json=ended)
    api.on("GET", "/v1/apps/web/instances", json={"instances": [instance(version=5)]})

    result = cli("apps", "rollback", "web", "--to", "2", "--force", "--wait", "-p", "news", "-o", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"app": app_body(version=5), "deployment": ended}
    assert "deployment 9 succeeded" in result.stderr
    assert "rollback web as version 5" in result.stderr
    (request,) = api.sent("POST", "/v1/apps/web/rollback")
    assert json.loads(request.content) == {"to_version": 2}
    assert request.url.params["force"] == "true"
    assert request.url.params["project"] == "news"
    assert api.sent("GET", "/v1/apps/web/versions") == []


def test_rollback_with_nothing_to_roll_back_to_exits_1_without_a_force_hint(api: FakeDkos, cli: Cli) -> None:
    api.on("POST", "/v1/apps/web/rollback", error(409, "conflict", "app 'web' has no earlier version to roll back to"))

    result = cli("apps", "rollback", "web")

    assert result.exit_code == 1
    assert "no earlier version to roll back to" in result.stderr
    assert "--force" not in result.stderr


def test_rollback_to_an_unknown_version_exits_4(api: FakeDkos, cli: Cli) -> None:
    api.on("POST", "/v1/apps/web/rollback", error(404, "not_found", "app 'web' has no version 99"))

    result = cli("apps", "rollback", "web", "--to", "99")

    assert result.exit_code == 4
    assert "app 'web' has no version 99" in result.stderr


# -- deployments ---------------------------------------------------------------------------------


def test_deploys_list_shows_each_deployment_newest_first(api: FakeDkos, cli: Cli) -> None:
    deployments = [
        deployment(id=9, kind="rollback", from_version=3, to_version=4, status="running"),
        deployment(id=8, status="failed", reason="health check failed 3 times: HTTP 500", finished_at=1700000130.0),
    ]
    api.on("GET", "/v1/apps/web/deployments", json={"deployments": deployments})

    result = cli("deploys", "list", "web", "-p", "news")

    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["ID", "KIND", "VERSION", "STATUS", "HEALTHY", "STARTED", "TOOK", "REASON"]
    assert first.split()[:5] == ["9", "rollback", "3→4", "running", "1/2"]
    assert second.split()[:4] == ["8", "update", "2→3", "failed"]
    assert "30.00s" in second and second.rstrip().endswith("health check failed 3 times: HTTP 500")
    assert api.sent("GET", "/v1/apps/web/deployments")[0].url.params["project"] == "news"


def test_deploys_list_json_is_the_array_and_an_empty_list_says_so(api: FakeDkos, cli: Cli) -> None:
    api.on(
        "GET",
        "/v1/apps/web/deployments",
        httpx.Response(200, json={"deployments": [deployment()]}),
        httpx.Response(200, json={"deployments": []}),
    )

    as_json = cli("deploys", "list", "web", "-o", "json")
    empty = cli("deploys", "list", "web")

    assert json.loads(as_json.stdout) == [deployment()]
    assert empty.exit_code == 0
    assert empty.stdout.strip() == "web has no deployments"


def test_deploys_show_prints_the_deployment_then_its_steps(api: FakeDkos, cli: Cli) -> None:
    done = deployment(id=7, status="succeeded", healthy=2, finished_at=1700000101.91, steps=ROLLING_STEPS)
    api.on("GET", "/v1/deployments/7", json=done)

    result = cli("deploys", "show", "7")

    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "7" in lines[0] and lines[0].startswith("deployment")
    steps = lines[lines.index(next(line for line in lines if line.startswith("TIME"))) + 1 :]
    assert [line.split()[0] for line in steps] == [
        "+0.01s", "+0.05s", "+0.42s", "+1.30s", "+1.31s", "+1.62s", "+1.90s", "+1.91s"
    ]  # fmt: skip
    assert steps[5].split()[1:3] == ["instance.stopping", "web-6"]
    assert steps[5].endswith("drained in 0.31s")


def test_deploys_show_json_passes_the_deployment_through(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/deployments/7", json=deployment(id=7, steps=ROLLING_STEPS))

    result = cli("deploys", "show", "7", "-o", "json")

    assert json.loads(result.stdout) == deployment(id=7, steps=ROLLING_STEPS)


def test_deploys_show_of_an_unknown_id_exits_4(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/deployments/999", error(404, "not_found", "deployment 999 not found"))

    result = cli("deploys", "show", "999")

    assert result.exit_code == 4
    assert "deployment 999 not found" in result.stderr


# -- urls, traffic and the load balancer -------------------------------------------------------


def test_apps_show_says_where_to_reach_the_app(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/apps/web", json=app_body(spec={"name": "web"}, instances=[instance()]))

    result = cli("apps", "show", "web")

    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    start = lines.index("reach it at:")
    assert lines[start + 1 : start + 3] == ["http://web.default.localhost:8080", "https://web.default.localhost:8443"]


def test_apps_list_shows_the_first_url(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/apps", json={"apps": [app_body()]})

    result = cli("apps", "list")

    header, web = result.stdout.splitlines()
    assert header.split()[-1] == "URL"
    assert web.rstrip().endswith("http://web.default.localhost:8080")


def test_apps_traffic_shows_each_port_and_instance(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/apps/web/traffic", json=traffic())

    result = cli("apps", "traffic", "web", "-p", "news")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[-4:] == ["5XX", "SESSIONS", "AVG", "MS"]
    assert lines[1].split() == ["http", "3", "41", "40", "0", "0", "1", "0", "12"]
    assert lines[3].split() == ["web-8", "DRAIN", "3", "21", "20", "0", "0", "1", "0", "57"]
    assert api.sent("GET", "/v1/apps/web/traffic")[0].url.params["project"] == "news"


def test_apps_traffic_json_and_an_app_without_ports(api: FakeDkos, cli: Cli) -> None:
    api.on(
        "GET",
        "/v1/apps/web/traffic",
        httpx.Response(200, json=traffic()),
        httpx.Response(200, json=traffic(ports=[])),
    )

    as_json = cli("apps", "traffic", "web", "-o", "json")
    no_ports = cli("apps", "traffic", "web")

    assert json.loads(as_json.stdout) == traffic()
    assert no_ports.exit_code == 0
    assert "web has no ports behind the load balancer" in no_ports.stdout


def test_apps_traffic_with_the_lb_disabled_exits_1_with_the_reason(api: FakeDkos, cli: Cli) -> None:
    message = "the load balancer is disabled on this server (DKOS_LB_ENABLED=false)"
    api.on("GET", "/v1/apps/web/traffic", error(409, "conflict", message))

    result = cli("apps", "traffic", "web")

    assert result.exit_code == 1
    assert message in result.stderr
    assert "--force" not in result.stderr


def test_lb_status_table_and_json(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/lb", json=lb_status())

    table = cli("lb", "status")
    as_json = cli("lb", "status", "-o", "json")

    assert table.exit_code == 0, table.output
    assert "running (master pid 4242)" in table.stdout
    assert "6fa734be7df7" in table.stdout and "6fa734be7df7f" not in table.stdout
    assert json.loads(as_json.stdout) == lb_status()


def test_lb_status_when_disabled(api: FakeDkos, cli: Cli) -> None:
    api.on("GET", "/v1/lb", json={"enabled": False})

    result = cli("lb", "status")

    assert result.exit_code == 0
    assert result.stdout.strip() == "the load balancer is disabled on this server (DKOS_LB_ENABLED=false)"


# -- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("apps", "deploy"),
        ("apps", "scale"),
        ("apps", "restart"),
        ("apps", "rollback"),
        ("apps", "traffic"),
        ("deploys", "list"),
        ("deploys", "show"),
        ("lb", "status"),
    ],
)
def test_every_new_command_has_an_example_and_json_output(cli: Cli, command: tuple[str, ...]) -> None:
    result = cli(*command, "--help")

    assert result.exit_code == 0, result.output
    assert f"Example: dkos {' '.join(command)}" in " ".join(result.stdout.split())
    assert "--output" in result.stdout


# -- events ------------------------------------------------------------------------------------


def test_events_without_follow_prints_the_parsed_stream(api: FakeDkos, cli: Cli) -> None:
    events = [
        event(1, "deployment.started", "update to version 3, 2 instances", deployment="d-42"),
        event(2, "instance.healthy", "health check passed", instance="web-7"),
        event(3, "engine.unreachable", "connection refused", project=None, app=None),
    ]
    api.on(
        "GET",
        "/v1/events",
        httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=sse_body(*events)),
    )

    result = cli("events", "--tail", "5", "--app", "web")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert "instance.healthy" in lines[1] and "web/web-7" in lines[1] and "health check passed" in lines[1]
    assert "engine.unreachable" in lines[2]
    params = api.sent("GET", "/v1/events")[0].url.params
    assert params["follow"] == "false"
    assert params["tail"] == "5"
    assert params["app"] == "web"
    assert "project" not in params


def test_events_json_prints_one_object_per_line(api: FakeDkos, cli: Cli) -> None:
    events = [event(1, "app.created", "version 1 by admin"), event(2, "instance.starting", "started")]
    api.on("GET", "/v1/events", httpx.Response(200, content=sse_body(*events)))

    result = cli("events", "-o", "json")

    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == events
    assert api.sent("GET", "/v1/events")[0].url.params["tail"] == "20"


class _Stream(httpx.SyncByteStream):
    """An event stream that sends `chunks`, then fails the way the test says."""

    def __init__(self, chunks: list[bytes], then: BaseException) -> None:
        self.chunks, self.then = chunks, then

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise self.then


def test_follow_ends_cleanly_on_ctrl_c(api: FakeDkos, cli: Cli) -> None:
    api.on(
        "GET",
        "/v1/events",
        lambda _: httpx.Response(200, stream=_Stream([sse_body(event(1, "app.created", "v1"))], KeyboardInterrupt())),
    )

    result = cli("events", "-f")

    assert result.exit_code == 0, result.output
    assert "app.created" in result.stdout
    assert api.sent("GET", "/v1/events")[0].url.params["follow"] == "true"
    no_traceback(result)


def test_follow_resumes_after_a_dropped_connection_with_last_event_id(
    api: FakeDkos, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "sleep", lambda _: None)
    api.on(
        "GET",
        "/v1/events",
        lambda _: httpx.Response(
            200, stream=_Stream([sse_body(event(7, "app.created", "v1"))], httpx.ReadError("reset"))
        ),
        lambda _: httpx.Response(200, stream=_Stream([sse_body(event(8, "app.updated", "v2"))], KeyboardInterrupt())),
    )

    result = cli("events", "-f", "-o", "json")

    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [7, 8]
    assert "reconnecting" in result.stderr
    first, second = api.sent("GET", "/v1/events")
    assert "Last-Event-ID" not in first.headers
    assert second.headers["Last-Event-ID"] == "7"
    assert second.url.params["tail"] == "0"


# -- login and server --------------------------------------------------------------------------


def test_login_checks_the_token_and_saves_it_for_the_owner_only(
    api: FakeDkos, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DKOS_URL")
    monkeypatch.delenv("DKOS_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")

    result = cli("login", "--server", "http://dkos.internal:7700/", "--token-file", str(token_file))

    assert result.exit_code == 0, result.output
    (request,) = api.sent("GET", "/v1/health")
    assert request.headers["Authorization"] == "Bearer tok-123"
    path = tmp_path / "config" / "dkos" / "config.json"
    assert json.loads(path.read_text()) == {"url": "http://dkos.internal:7700", "token": "tok-123"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "token accepted" in result.stdout
    target = config.resolve({"XDG_CONFIG_HOME": str(tmp_path / "config")}, cwd=tmp_path)
    assert target == config.Target(url="http://dkos.internal:7700", token="tok-123")


def test_login_with_a_refused_token_saves_nothing(api: FakeDkos, cli: Cli, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("wrong")
    api.on("GET", "/v1/health", error(401, "unauthorized", "a valid bearer token is required"))

    result = cli("login", "--server", "http://dkos.internal:7700", "--token-file", str(token_file))

    assert result.exit_code == 3
    assert "refused the token" in result.stderr
    assert not (tmp_path / "config" / "dkos" / "config.json").exists()


def test_server_hands_its_flags_to_dkos_server_run(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("dkos.server")
    fake.run = lambda **kwargs: calls.append(kwargs)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dkos.server", fake)
    monkeypatch.setattr("dkos.server", fake, raising=False)
    monkeypatch.setenv("DKOS_DATA_DIR", str(tmp_path / "data"))

    result = cli("server")
    assert result.exit_code == 0, result.output
    assert calls == [{"data_dir": tmp_path / "data", "listen": "127.0.0.1:7700"}]

    result = cli("server", "--listen", "nope")
    assert result.exit_code == 2
