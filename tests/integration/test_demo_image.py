"""The demo image (images/demo) behaves as dkos' tests expect it to.

These tests drive the real Docker engine through the `docker` CLI, not through
dkos, so that a failure here points at the image. They assume `make setup` has
built dkos-demo:1; a Docker engine that does not answer fails them (it is
never a reason to skip).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.docker

IMAGE = "dkos-demo:1"
TEST_LABEL = "dkos.test=demo-image"


def docker(*args: str, timeout: float = 30) -> str:
    """Runs a docker CLI command and returns its stdout; raises on failure."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Response:
    status: int
    body: str


@dataclass(frozen=True)
class Container:
    id: str
    ip: str

    def get(self, path: str, *, timeout: float = 10) -> Response:
        url = f"http://{self.ip}:8080{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return Response(response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode())

    def wait_until_serving(self, *, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                self.get("/health", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def wait_for_exit(self, *, within: float = 10) -> int:
        """The container's exit code, once it has stopped."""
        return int(docker("wait", self.id, timeout=within).strip())

    def stop(self) -> float:
        """`docker stop` (SIGTERM, 10 s before SIGKILL); returns how long it took."""
        start = time.monotonic()
        docker("stop", self.id)
        return time.monotonic() - start

    def exit_code(self) -> int:
        return int(docker("inspect", "-f", "{{.State.ExitCode}}", self.id).strip())

    def stdout_lines(self) -> list[str]:
        done = subprocess.run(["docker", "logs", self.id], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.splitlines()


RunDemo = Callable[..., Container]


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    """Fails every test when the engine or the image is missing."""
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=10)
    except (AssertionError, OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"no Docker engine answers ({error}); run `make setup`", pytrace=False)
    try:
        docker("image", "inspect", IMAGE)
    except AssertionError:
        pytest.fail(f"image {IMAGE} is missing; run `make setup`", pytrace=False)


@pytest.fixture
def run_demo() -> Iterator[RunDemo]:
    """Starts demo containers (detached, labelled) and removes them afterwards."""
    started: list[str] = []

    def run(
        *,
        env: dict[str, str] | None = None,
        image: str = IMAGE,
        init: bool = True,
        wait: bool = True,
    ) -> Container:
        args = ["run", "-d", "--label", TEST_LABEL]
        if init:
            args.append("--init")  # as dkos runs its containers
        for name, value in (env or {}).items():
            args += ["-e", f"{name}={value}"]
        container_id = docker(*args, image).strip()
        started.append(container_id)
        ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container_id).strip()
        container = Container(container_id, ip)
        if wait:
            container.wait_until_serving()
        return container

    yield run
    if started:
        subprocess.run(["docker", "rm", "-f", *started], capture_output=True, check=False)


def test_answers_its_instance_id_and_version(run_demo: RunDemo) -> None:
    container = run_demo(env={"DKOS_INSTANCE": "web-3", "DKOS_VERSION": "7", "DKOS_APP": "web"})

    text = container.get("/")
    as_json = container.get("/?format=json")

    assert text.status == 200
    assert text.body.startswith("hello from web-3 version 7")
    document = json.loads(as_json.body)
    assert document["instance"] == "web-3"
    assert document["version"] == "7"
    assert document["image_version"] == "1"
    assert document["app"] == "web"


def test_version_2_image_reports_its_own_version(run_demo: RunDemo) -> None:
    container = run_demo(image="dkos-demo:2", env={"DKOS_INSTANCE": "web-1"})

    assert container.get("/").body.startswith("hello from web-1 version 2 image_version 2")


def test_greeting_replaces_hello(run_demo: RunDemo) -> None:
    container = run_demo(env={"GREETING": "hi", "DKOS_INSTANCE": "web-1"})

    assert container.get("/").body.startswith("hi from web-1 version 1")


def test_health_turns_500_after_control_unhealthy_and_back(run_demo: RunDemo) -> None:
    container = run_demo()

    assert container.get("/health") == Response(200, "ok\n")
    assert container.get("/control/unhealthy").status == 200
    assert container.get("/health").status == 500
    assert container.get("/control/healthy").status == 200
    assert container.get("/health").status == 200


def test_unhealthy_env_makes_health_fail_from_the_start(run_demo: RunDemo) -> None:
    container = run_demo(env={"UNHEALTHY": "1"})

    assert container.get("/health").status == 500


def test_unhealthy_after_turns_health_500_after_that_many_seconds(run_demo: RunDemo) -> None:
    container = run_demo(env={"UNHEALTHY_AFTER": "2"})

    assert container.get("/health").status == 200
    time.sleep(2.5)
    assert container.get("/health").status == 500


def test_crash_env_exits_at_once_with_code_1(run_demo: RunDemo) -> None:
    start = time.monotonic()
    container = run_demo(env={"CRASH": "1"}, wait=False)

    assert container.wait_for_exit(within=5) == 1
    assert time.monotonic() - start < 3


def test_exit_code_env_exits_at_once_with_that_code(run_demo: RunDemo) -> None:
    container = run_demo(env={"EXIT_CODE": "4"}, wait=False)

    assert container.wait_for_exit(within=5) == 4


def test_control_crash_exits_with_the_given_code(run_demo: RunDemo) -> None:
    container = run_demo()

    # The connection may die with the container; the exit code is what counts.
    with contextlib.suppress(OSError):
        container.get("/control/crash?code=3")
    assert container.wait_for_exit(within=5) == 3


@pytest.mark.parametrize("init", [True, False], ids=["with-init", "as-pid-1"])
def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(run_demo: RunDemo, init: bool) -> None:
    container = run_demo(init=init)
    answers: list[Response] = []
    request = threading.Thread(target=lambda: answers.append(container.get("/slow?seconds=3")))
    request.start()
    time.sleep(0.5)

    took = container.stop()
    request.join(timeout=10)

    assert answers and answers[0].status == 200
    assert "slow answer after 3 s" in answers[0].body
    assert 2.0 < took < 4.5  # the rest of the request, not docker's 10 s SIGKILL
    assert container.exit_code() == 0


@pytest.mark.parametrize("init", [True, False], ids=["with-init", "as-pid-1"])
def test_sigterm_with_nothing_in_flight_stops_at_once(run_demo: RunDemo, init: bool) -> None:
    container = run_demo(init=init)

    took = container.stop()

    assert took < 1
    assert container.exit_code() == 0


def test_control_log_prints_numbered_lines_to_stdout(run_demo: RunDemo) -> None:
    container = run_demo(env={"DKOS_INSTANCE": "web-2"})

    response = container.get("/control/log?n=5")

    assert response == Response(200, "web-2 printed 5 lines\n")  # the lines go to the log
    expected = [f"web-2 line {n}" for n in range(1, 6)]
    deadline = time.monotonic() + 5
    while [line for line in container.stdout_lines() if " line " in line] != expected:
        assert time.monotonic() < deadline, container.stdout_lines()
        time.sleep(0.1)


def test_log_lines_at_start_then_exit_after_log(run_demo: RunDemo) -> None:
    container = run_demo(env={"DKOS_INSTANCE": "job-1", "LOG_LINES": "3", "EXIT_AFTER_LOG": "1"}, wait=False)

    assert container.wait_for_exit(within=5) == 0
    assert [line for line in container.stdout_lines() if " line " in line] == [
        "job-1 line 1",
        "job-1 line 2",
        "job-1 line 3",
    ]


def test_log_every_prints_a_steady_stream(run_demo: RunDemo) -> None:
    container = run_demo(env={"DKOS_INSTANCE": "web-9", "LOG_EVERY": "0.2"})

    time.sleep(1.5)

    lines = [line for line in container.stdout_lines() if " line " in line]
    assert len(lines) >= 4
    assert lines[:4] == [f"web-9 line {n}" for n in range(1, 5)]


def test_slow_answers_after_the_given_seconds(run_demo: RunDemo) -> None:
    container = run_demo()
    start = time.monotonic()

    response = container.get("/slow?seconds=1")

    assert response.status == 200
    assert 1 <= time.monotonic() - start < 2


def test_control_burn_keeps_a_core_busy(run_demo: RunDemo) -> None:
    container = run_demo()

    assert container.get("/control/burn?seconds=5").status == 200
    # docker stats samples over about a second.
    cpu = docker("stats", "--no-stream", "--format", "{{.CPUPerc}}", container.id)

    assert float(cpu.strip().rstrip("%")) > 50
