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

from .fakes import FakeDkos, app_body, deployment, error, event, health, instance, sse_body

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
