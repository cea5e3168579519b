"""The `dkos` command against a real server: what a user types and reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dkos_server import DkosServer

pytestmark = pytest.mark.docker

SPEC = """\
name: web
image: dkos-demo:1
instances: 2
resources: {cpus: 0.25, memory: 32}
ports: [{name: http, container_port: 8080}]
health_check: {path: /health, interval: 1, timeout: 1}
stop_grace_period: 5
"""


def test_deploy_wait_then_list_instances_as_json(server: DkosServer, tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(SPEC)
    deployed = server.cli("apps", "deploy", str(spec), "--wait")
    assert deployed.returncode == 0, deployed.stderr
    assert "created web (project default): version 1" in deployed.stdout
    assert "succeeded" in deployed.stdout

    listed = server.cli("instances", "web", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    instances = json.loads(listed.stdout)
    assert isinstance(instances, list) and len(instances) == 2
    for instance in instances:
        assert {"id", "app", "version", "state", "container_id", "address", "reason"} <= instance.keys()
        assert instance["state"] == "healthy" and instance["address"].endswith(":8080")

    table = server.cli("instances", "web")
    assert all(i["id"] in table.stdout for i in instances)

    scaled = server.cli("apps", "scale", "web", "3", "--wait", "-o", "json")
    assert scaled.returncode == 0, scaled.stderr
    assert json.loads(scaled.stdout)["deployment"]["status"] == "succeeded"

    again = server.cli("apps", "deploy", str(spec))
    assert "no change" not in again.stdout  # the file says 2 instances: this is a scale back
    versions = json.loads(server.cli("apps", "versions", "web", "-o", "json").stdout)
    assert [v["change"] for v in versions][:2] == ["instances 3 → 2", "instances 2 → 3"]


def test_an_invalid_spec_prints_the_field_and_the_rule_without_a_traceback(server: DkosServer, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("instances: 2", "instances: -1"))
    refused = server.cli("apps", "deploy", str(spec))
    assert refused.returncode == 2
    assert "instances: must be ≥ 0" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout


def test_a_wrong_token_is_refused_with_a_hint(server: DkosServer) -> None:
    refused = server.cli("apps", "list", token="dkos_wrong")
    assert refused.returncode == 3
    assert "unauthorized" in refused.stderr and "Traceback" not in refused.stderr


def test_a_failing_deploy_wait_exits_non_zero_with_the_reason(server: DkosServer, tmp_path: Path) -> None:
    spec = tmp_path / "ghost.yaml"
    spec.write_text(SPEC.replace("dkos-demo:1", "no-such-image:7"))
    failed = server.cli("apps", "deploy", str(spec), "--wait", "--timeout", "30")
    assert failed.returncode == 1
    assert "image not found: no-such-image:7" in failed.stderr


def test_login_saves_the_server_and_token_for_later_commands(server: DkosServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    token_file = tmp_path / "token"
    token_file.write_text(server.token + "\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def dkos(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dkos", *args], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
        )

    logged_in = dkos("login", "--server", server.url, "--token-file", str(token_file))
    assert logged_in.returncode == 0, logged_in.stderr
    saved = tmp_path / "config" / "dkos" / "config.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    listed = dkos("apps", "list", "-o", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    token_file.write_text("dkos_wrong\n")
    refused = dkos("login", "--server", server.url, "--token-file", str(token_file))
    assert refused.returncode == 3 and "Traceback" not in refused.stderr
