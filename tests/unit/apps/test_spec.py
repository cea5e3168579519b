"""The spec validation table: every broken rule names its field, and good specs keep their values."""

from __future__ import annotations

import pytest

from dkos.apps import spec
from dkos.core.errors import InvalidInput

EXAMPLE = """
name: web
project: default
image: dkos-demo:1
command: ["/bin/sh", "/app/run.sh"]
env: {GREETING: hello}
instances: 2
resources: {cpus: 0.5, memory: 128}
ports:
  - {name: http, container_port: 8080, protocol: http}
health_check: {type: http, port: http, path: /health, grace_period: 10, interval: 2, timeout: 1,
               max_consecutive_failures: 3}
stop_grace_period: 10
restart: {initial_delay: 1, factor: 2, max_delay: 300}
labels: {team: news}
"""


def test_the_documented_example_is_valid() -> None:
    parsed = spec.parse(EXAMPLE)
    assert parsed.instances == 2
    assert parsed.resources.memory == 128
    assert parsed.health_check is not None and parsed.health_check.path == "/health"
    assert parsed.checked_port() == parsed.ports[0]


def test_json_is_accepted_and_defaults_fill_in() -> None:
    parsed = spec.parse('{"name": "api", "image": "x:1"}')
    assert parsed.project == "default"
    assert parsed.instances == 1
    assert parsed.restart.max_delay == 300
    assert parsed.health_check is None


def test_env_values_written_as_numbers_become_text() -> None:
    assert spec.parse("name: a\nimage: x\nenv: {PORT: 8080, DEBUG: true}").env == {
        "PORT": "8080",
        "DEBUG": "true",
    }


@pytest.mark.parametrize(
    ("text", "field", "rule"),
    [
        ("name: web\nimage: x\ninstances: -1", "instances", "must be ≥ 0"),
        ("name: web\nimage: x\ninstances: 1.5", "instances", "must be a whole number"),
        ("name: Web\nimage: x", "name", "lowercase"),
        ("image: x", "name", "is required"),
        ("name: web", "image", "is required"),
        ("name: web\nimage: ''", "image", "must not be empty"),
        ("name: web\nimage: x\ninstance: 3", "instance", "is not a known field"),
        ("name: web\nimage: x\nresources: {memory: 2}", "resources.memory", "must be ≥ 6"),
        ("name: web\nimage: x\nresources: {cpus: 0}", "resources.cpus", "must be > 0"),
        (
            "name: web\nimage: x\nports: [{name: http, container_port: 70000}]",
            "ports.0.container_port",
            "≤ 65535",
        ),
        (
            "name: web\nimage: x\nports: [{name: a, container_port: 80, protocol: udp}]",
            "ports.0.protocol",
            "one of",
        ),
        (
            "name: web\nimage: x\nports: [{name: a, container_port: 80}, {name: a, container_port: 81}]",
            "ports",
            "port names must be unique",
        ),
        ("name: web\nimage: x\nhealth_check: {type: http}", "ports", "needs at least one port"),
        (
            "name: web\nimage: x\nports: [{name: http, container_port: 80}]\nhealth_check: {port: admin}",
            "health_check.port",
            "must name one of the app's ports",
        ),
        (
            "name: web\nimage: x\nports: [{name: http, container_port: 80}]\nhealth_check: {interval: 1, timeout: 5}",
            "health_check.timeout",
            "must be ≤ interval",
        ),
        (
            "name: web\nimage: x\nhealth_check: {type: command}",
            "health_check.command",
            "is required",
        ),
        (
            "name: web\nimage: x\nports: [{name: h, container_port: 80}]\nhealth_check: {path: health}",
            "health_check.path",
            "must start with '/'",
        ),
        ("name: web\nimage: x\nenv: {DKOS_APP: x}", "env", "set by dkos"),
        ("name: web\nimage: x\nenv: {'1BAD': x}", "env", "not a valid variable name"),
        ("name: web\nimage: x\nlabels: {dkos.app: x}", "labels", "set by dkos"),
        (
            "name: web\nimage: x\nrestart: {initial_delay: 10, max_delay: 5}",
            "restart.max_delay",
            "must be ≥ initial_delay",
        ),
        ("name: web\nimage: x\nrestart: {factor: 0.5}", "restart.factor", "must be ≥ 1"),
        ("name: web\nimage: x\nstop_grace_period: -1", "stop_grace_period", "must be ≥ 0"),
        ("- just\n- a list", "spec", "must be a mapping"),
        ("name: [unclosed", "spec", "not valid YAML"),
    ],
)
def test_an_invalid_spec_names_the_field_and_the_rule(text: str, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        spec.parse(text)
    problems = caught.value.problems
    assert any(p.field == field and rule in p.rule for p in problems), problems


@pytest.mark.parametrize(
    ("surge", "unavailable", "instances", "expected"),
    [
        ("25%", "25%", 10, (3, 2)),  # Kubernetes: surge rounds up, unavailable rounds down
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 2, (1, 0)),
        (0, "10%", 5, (0, 1)),  # both 0 after rounding: one may be unavailable
        (2, 0, 3, (2, 0)),
    ],
)
def test_strategy_bounds_follow_the_kubernetes_rounding(
    surge: int | str, unavailable: int | str, instances: int, expected: tuple[int, int]
) -> None:
    strategy = spec.Strategy(max_surge=surge, max_unavailable=unavailable)
    assert strategy.bounds(instances) == expected


@pytest.mark.parametrize(
    ("text", "field", "rule"),
    [
        ("strategy: {max_surge: 0, max_unavailable: 0}", "strategy.max_unavailable", "cannot both be 0"),
        ("strategy: {max_surge: 150%}", "strategy.max_surge", "percentage from 0% to 100%"),
        ("strategy: {drain_timeout: -1}", "strategy.drain_timeout", "must be ≥ 0"),
        ("domains: [not_a_host]", "domains.0", "must be a host name"),
        ("domains: [a.example.com, A.example.com]", "domains", "listed once"),
    ],
)
def test_strategy_and_domain_rules(text: str, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        spec.parse(f"name: web\nimage: x\nports: [{{name: http, container_port: 80}}]\n{text}")
    assert any(p.field == field and rule in p.rule for p in caught.value.problems), caught.value.problems


def test_domains_need_an_http_port() -> None:
    with pytest.raises(InvalidInput) as caught:
        spec.parse("name: web\nimage: x\nports: [{name: db, container_port: 5432, protocol: tcp}]\ndomains: [a.b.c]")
    assert caught.value.problems[0].field == "ports"


OOM = "{name: oom, query: OutOfMemory, threshold: 3, window: 60}"
CPU = "{name: cpuhigh, metric: cpu_percent, threshold: 90, period: 300}"


def test_log_alarms_are_declared_beside_metric_alarms_and_keep_their_values() -> None:
    parsed = spec.parse(f"name: web\nimage: x\nalarms: [{CPU}]\nlog_alarms:\n  - {OOM}\n")
    (oom,) = parsed.log_alarms
    assert (oom.name, oom.query, oom.threshold, oom.window) == ("oom", "OutOfMemory", 3, 60)
    assert oom.channels == [] and oom.repeat_interval == 14_400
    assert parsed.alarm_names() == {"cpuhigh", "oom"}
    assert spec.parse("name: web\nimage: x").log_alarms == []


@pytest.mark.parametrize(
    ("log_alarms", "field", "rule"),
    [
        ("[{name: oom, query: '', threshold: 3, window: 60}]", "log_alarms.0.query", "must not be empty"),
        ("[{name: oom, query: '  ', threshold: 3, window: 60}]", "log_alarms.0.query", "must not be empty"),
        ("[{name: oom, threshold: 3, window: 60}]", "log_alarms.0.query", "is required"),
        ("[{name: oom, query: x, threshold: 0, window: 60}]", "log_alarms.0.threshold", "must be ≥ 1"),
        ("[{name: oom, query: x, threshold: 2.5, window: 60}]", "log_alarms.0.threshold", "whole number"),
        ("[{name: oom, query: x, threshold: 3}]", "log_alarms.0.window", "is required"),
        ("[{name: oom, query: x, threshold: 3, window: 0}]", "log_alarms.0.window", "must be ≥ 1"),
        ("[{name: o o m, query: x, threshold: 3, window: 60}]", "log_alarms.0.name", "letters and digits"),
        ("[{name: oom, query: x, threshold: 3, window: 60, metric: cpu}]", "log_alarms.0.metric", "not a known"),
        ("[{name: oom, query: x, threshold: 3, window: 60, app: api}]", "log_alarms.0.app", "not a known"),
        (f"[{OOM}, {OOM}]", "log_alarms.1.name", "declared twice"),
        ("[{name: cpuhigh, query: x, threshold: 3, window: 60}]", "log_alarms.0.name", "declared twice"),
    ],
)
def test_a_bad_log_alarm_names_its_field(log_alarms: str, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        spec.parse(f"name: web\nimage: x\nalarms: [{CPU}]\nlog_alarms: {log_alarms}")
    assert any(p.field == field and rule in p.rule for p in caught.value.problems), caught.value.problems


def test_metric_alarm_names_are_unique_too() -> None:
    with pytest.raises(InvalidInput) as caught:
        spec.parse(f"name: web\nimage: x\nalarms: [{CPU}, {CPU}]")
    assert [p.field for p in caught.value.problems] == ["alarms.1.name"]
