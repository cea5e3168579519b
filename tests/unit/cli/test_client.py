"""The API client: one method per call, and every failure mapped into one error tree."""

from __future__ import annotations

import json

import httpx
import pytest

from dkos.cli import client


def client_answering(handler: httpx.MockTransport | None = None, **response: object) -> client.Client:
    transport = handler or httpx.MockTransport(lambda request: httpx.Response(**response))  # type: ignore[arg-type]
    return client.Client("http://dkos.test", "tok", transport=transport)


def test_a_422_becomes_an_api_error_with_its_field_problems() -> None:
    body = {"error": "invalid", "message": "bad", "details": [{"field": "instances", "rule": "must be ≥ 0"}]}
    api = client_answering(status_code=422, json=body)

    with pytest.raises(client.ApiError) as raised:
        api.scale("web", "default", 1)

    assert (raised.value.status, raised.value.error, raised.value.message) == (422, "invalid", "bad")
    assert raised.value.details == [client.FieldProblem("instances", "must be ≥ 0")]


def test_an_error_that_is_not_json_still_becomes_an_api_error() -> None:
    api = client_answering(status_code=502, text="<html>Bad Gateway</html>")

    with pytest.raises(client.ApiError) as raised:
        api.health()

    assert raised.value.status == 502
    assert raised.value.error == "http_502"
    assert "Bad Gateway" in raised.value.message


def test_a_success_that_is_not_json_is_a_client_error() -> None:
    with pytest.raises(client.ClientError, match="not JSON"):
        client_answering(status_code=200, text="hello").health()


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectError("refused"), client.Unreachable),
        (httpx.ConnectTimeout("slow"), client.Unreachable),
        (httpx.ReadTimeout("slow"), client.ConnectionLost),
        (httpx.RemoteProtocolError("eof"), client.ConnectionLost),
    ],
)
def test_transport_failures_are_mapped(raised: httpx.HTTPError, expected: type[client.ClientError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    with pytest.raises(expected):
        client_answering(httpx.MockTransport(fail)).list_apps("default")


def test_deploy_reports_whether_the_app_is_new() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"app": {"name": "web"}, "deployment": {"id": "d-1"}})

    result = client_answering(httpx.MockTransport(answer)).deploy("name: web\n", content_type="application/yaml")

    assert result == client.DeployResult(created=True, app={"name": "web"}, deployment={"id": "d-1"})
    assert seen[0].headers["Content-Type"] == "application/yaml"
    assert seen[0].headers["Authorization"] == "Bearer tok"


def test_without_a_token_no_authorization_header_is_sent() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"projects": []})

    client.Client("http://dkos.test", None, transport=httpx.MockTransport(answer)).list_projects()

    assert "Authorization" not in seen[0].headers


def test_an_event_whose_data_is_not_json_is_a_client_error() -> None:
    api = client_answering(status_code=200, content=b"event: x\ndata: {oops\n\n")

    with pytest.raises(client.ClientError, match="not JSON"):
        list(api.events(follow=False))


def test_an_event_stream_error_status_is_an_api_error() -> None:
    api = client_answering(status_code=401, json={"error": "unauthorized", "message": "token required"})

    with pytest.raises(client.ApiError) as raised:
        list(api.events(follow=False))

    assert raised.value.status == 401


def recording(answer: dict[str, object]) -> tuple[client.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    return client_answering(httpx.MockTransport(handle)), seen


def test_force_is_sent_only_when_asked_for() -> None:
    api, seen = recording({"app": {}, "deployment": None})

    api.deploy("name: web\n", content_type="application/yaml")
    api.deploy("name: web\n", content_type="application/yaml", force=True)
    api.scale("web", "default", 3, force=True)
    api.restart("web", "news", force=True)

    assert "force" not in seen[0].url.params
    assert [r.url.params.get("force") for r in seen[1:]] == ["true", "true", "true"]
    assert seen[3].url.params["project"] == "news"


def test_rollback_names_the_version_only_when_given() -> None:
    api, seen = recording({"app": {}, "deployment": {"id": 9}})

    api.rollback("web", "default")
    api.rollback("web", "default", to_version=3, force=True)

    assert [r.url.path for r in seen] == ["/v1/apps/web/rollback"] * 2
    assert json.loads(seen[0].content) == {}
    assert "force" not in seen[0].url.params
    assert json.loads(seen[1].content) == {"to_version": 3}
    assert seen[1].url.params["force"] == "true"


def test_traffic_and_lb_status_are_plain_gets() -> None:
    api, seen = recording({"enabled": False})

    api.traffic("web", "news")
    assert api.lb_status() == {"enabled": False}

    assert [(r.method, r.url.path) for r in seen] == [("GET", "/v1/apps/web/traffic"), ("GET", "/v1/lb")]
    assert seen[0].url.params["project"] == "news"


def test_an_opentsdb_error_body_gives_its_nested_message() -> None:
    api = client_answering(status_code=400, json={"error": {"code": 400, "message": "Missing start time"}})

    with pytest.raises(client.ApiError) as raised:
        api.query("sum:dkos.app.requests", start="")

    assert (raised.value.status, raised.value.error, raised.value.message) == (400, "http_400", "Missing start time")


def test_a_query_answer_that_is_not_an_array_of_series_is_a_client_error() -> None:
    api = client_answering(status_code=200, json={"not": "a list"})

    with pytest.raises(client.ClientError, match="not an array of series"):
        api.query("sum:dkos.app.requests", start="1h-ago")
