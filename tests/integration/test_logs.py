"""Logs on a real server: captured from the real engine into logs.db, read back through the
API and the CLI, kept across a SIGKILL of the server, trimmed by the caps, followed live."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dkos_server import DkosServer, docker, wait_until

from dkos.core.settings import Settings
from dkos.engines.docker import DockerEngine
from dkos.logs import caps
from dkos.logs.capture import Capture
from dkos.logs.store import LogStore, Query

pytestmark = pytest.mark.docker

LINE = re.compile(r"^(\S+) line (\d+)$")


def app_spec(name: str, env: dict[str, str], *, instances: int = 1) -> dict[str, Any]:
    """The demo image without a health check; a long restart backoff, so a container that
    exits is not replaced while the test looks at its lines."""
    return {
        "name": name,
        "image": "dkos-demo:1",
        "instances": instances,
        "env": env,
        "resources": {"memory": 32},
        "restart": {"initial_delay": 300, "max_delay": 300},
    }


def all_lines(server: DkosServer, app: str, **params: Any) -> list[dict[str, Any]]:
    """Every stored line of the app, oldest first, paged through `after`."""
    lines: list[dict[str, Any]] = []
    after = 0
    while True:
        answer = server.get(f"/v1/apps/{app}/logs", params={"after": after, "limit": 5000, **params})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        lines += page["lines"]
        if page["next_after"] is None:
            return lines
        after = page["next_after"]


def numbers(lines: list[dict[str, Any]], instance: str) -> list[int]:
    found = []
    for line in lines:
        match = LINE.match(line["text"])
        if line["instance"] == instance and match and match.group(1) == instance:
            found.append(int(match.group(2)))
    return found


def test_keeps_all_10000_lines_of_a_container_that_prints_them_and_exits_at_once(server: DkosServer) -> None:
    server.deploy(app_spec("burst", {"LOG_LINES": "10000", "EXIT_AFTER_LOG": "1"}))

    def stored() -> list[int]:
        got = numbers(all_lines(server, "burst"), "burst-1")
        return got if len(got) >= 10_000 else []

    got = wait_until(stored, timeout=30, interval=0.5, what="10,000 lines of burst-1")
    assert got == list(range(1, 10_001)), "every line, in order, none twice"
    # The container is gone (the reconciler removed it) and its lines stay.
    wait_until(lambda: not server.containers(), timeout=20, what="the exited container to be removed")
    assert numbers(all_lines(server, "burst"), "burst-1") == list(range(1, 10_001))


def test_a_server_killed_with_sigkill_resumes_capture_with_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    server = DkosServer(tmp_path / "data").start()
    try:
        server.deploy(app_spec("steady", {"LOG_EVERY": "0.01"}))
        wait_until(lambda: len(all_lines(server, "steady")) > 100, timeout=30, what="the first lines")
        server.kill()
        time.sleep(2)  # the app goes on printing while no server reads it
        server.start()
        before = len(numbers(all_lines(server, "steady"), "steady-1"))
        wait_until(
            lambda: len(numbers(all_lines(server, "steady"), "steady-1")) > before + 300,
            timeout=30,
            what="capture to go on after the restart",
        )
        server.kill()
        server.start()
        time.sleep(1)
        got = numbers(all_lines(server, "steady"), "steady-1")
        assert got == list(range(1, len(got) + 1)), "a gap or a duplicate"
        assert len(got) > 400
    finally:
        server.cleanup()


def test_a_chatty_app_past_its_cap_loses_its_oldest_lines_and_keeps_the_newest(tmp_path: Path) -> None:
    # 20,000 lines of ≈ 100 accounted bytes: ≈ 2 MB against a 500 kB cap per app.
    server = DkosServer(tmp_path / "data", env={"DKOS_LOGS_APP_BYTES": "500000"}).start()
    try:
        server.deploy(app_spec("chatty", {"LOG_LINES": "20000"}))  # prints, then serves on

        def trimmed() -> list[int]:
            # Read once the last line is in and the trim after it has run: pages read while
            # a trim runs would see it half-way.
            got = numbers(all_lines(server, "chatty"), "chatty-1")
            return got if got and got[-1] == 20_000 and len(got) < 6_000 else []

        got = wait_until(trimmed, timeout=30, interval=0.5, what="the newest line, the oldest gone")
        assert got == list(range(got[0], 20_001)), "what stays is the newest, contiguous"
        assert len(got) > 3_000  # 500 kB of ≈ 100-byte lines, less the headroom
        page = server.get("/v1/apps/chatty/logs", params={"tail": 1}).json()
        assert page["dropped"]["lines"] >= got[0] - 1
        assert page["dropped"]["by_reason"].get("app_cap", 0) > 0
    finally:
        server.cleanup()


def test_follow_shows_a_new_line_within_one_second(server: DkosServer) -> None:
    server.deploy(app_spec("live", {}))
    wait_until(lambda: server.containers(all=False), timeout=20, what="the container")
    container = server.containers(all=False)[0]["ID"]
    env = {"DKOS_URL": server.url, "DKOS_TOKEN": server.token, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    follower = subprocess.Popen(
        [sys.executable, "-m", "dkos", "logs", "live", "-f", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    delay: dict[str, float] = {}

    def read() -> None:
        assert follower.stdout is not None
        for raw in follower.stdout:
            line = json.loads(raw)
            # From the engine's own time of the line (when dockerd read it from the container)
            # to the moment `dkos logs -f` printed it; `docker exec`'s start-up is not counted.
            delay.setdefault(line["text"], (time.time_ns() - line["ts"]) / 1e9)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(1.5)  # the follower is connected
        tokens = []
        for n in range(3):
            tokens.append(f"marker-{n}-{time.time_ns()}")
            docker("exec", container, "sh", "-c", f"echo {tokens[-1]} > /proc/1/fd/1")
            wait_until(lambda token=tokens[-1]: token in delay, timeout=5, interval=0.01, what=tokens[-1])
        delays = [delay[token] for token in tokens]
        assert max(delays) < 1.0, delays
        # A connected follower does not hold up the server's stop.
        began = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - began < 4
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_bad_requests_say_what_is_wrong(server: DkosServer) -> None:
    server.deploy(app_spec("web", {"LOG_LINES": "5", "EXIT_AFTER_LOG": "1"}))
    for path in ("/v1/apps/nope/logs", "/v1/apps/nope/logs/stream"):
        answer = server.get(path)
        assert answer.status_code == 404, answer.text
    answer = server.get("/v1/apps/web/logs", params={"since": "yesterday-ish"})
    assert answer.status_code == 422
    assert "yesterday-ish" in answer.text and "10m" in answer.text and "RFC 3339" in answer.text
    for query in ('"unterminated', "foo-bar", "AND"):
        answer = server.get("/v1/apps/web/logs", params={"q": query})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "bad_query"
    cli = server.cli("logs", "web", "--since", "yesterday-ish")
    assert cli.returncode != 0 and "10m" in cli.stderr
    cli = server.cli("logs", "nope")
    assert cli.returncode != 0 and "not found" in cli.stderr


def test_cli_reads_searches_and_filters_the_lines(server: DkosServer) -> None:
    server.deploy(app_spec("web", {"LOG_LINES": "50", "EXIT_AFTER_LOG": "1"}, instances=2))
    wait_until(lambda: len(all_lines(server, "web")) >= 100, timeout=30, what="both instances' lines")
    shown = server.cli("logs", "web", "--tail", "5")
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 5
    found = server.cli("logs", "web", "--grep", "42", "--output", "json")
    assert found.returncode == 0, found.stderr
    texts = {json.loads(line)["text"] for line in found.stdout.splitlines()}
    # Exited instances are replaced (web-3, …): each prints its own line 42.
    assert {"web-1 line 42", "web-2 line 42"} <= texts
    assert all(text.endswith(" line 42") for text in texts)
    one = server.cli("logs", "web", "--instance", "web-2", "--since", "1h", "--output", "json")
    assert one.returncode == 0, one.stderr
    assert [json.loads(line)["text"] for line in one.stdout.splitlines()][-1] == "web-2 line 50"
    assert {json.loads(line)["instance"] for line in one.stdout.splitlines()} == {"web-2"}
    err = server.cli("logs", "web", "--stream", "stderr", "--output", "json")
    assert err.returncode == 0 and err.stdout == ""
    human = server.cli("logs", "web", "--instance", "web-1", "--tail", "1")
    assert human.stdout.rstrip().endswith("web-1 | web-1 line 50"), human.stdout


@pytest.fixture
def bulk_receiver() -> Iterator[Any]:
    """A small `_bulk`-speaking HTTP server: it refuses the first two requests with 503, then
    takes every document (keyed by `_id`, as Elasticsearch does)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Receiver(ThreadingHTTPServer):
        docs: dict[str, dict[str, Any]]
        requests: int

    class Handler(BaseHTTPRequestHandler):
        server: Receiver

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            self.server.requests += 1
            if self.path != "/_bulk" or self.server.requests <= 2:
                self.send_response(503)
                self.end_headers()
                return
            rows = body.splitlines()
            items = []
            for action, doc in zip(rows[::2], rows[1::2], strict=True):
                meta = json.loads(action)["index"]
                self.server.docs[meta["_id"]] = json.loads(doc)
                items.append({"index": {"_id": meta["_id"], "status": 201}})
            out = json.dumps({"took": 1, "errors": False, "items": items}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    receiver = Receiver(("127.0.0.1", 0), Handler)
    receiver.docs, receiver.requests = {}, 0
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def test_ships_every_line_to_a_bulk_endpoint_that_fails_at_first(tmp_path: Path, bulk_receiver: Any) -> None:
    url = f"http://127.0.0.1:{bulk_receiver.server_address[1]}"
    server = DkosServer(tmp_path / "data", env={"DKOS_LOGS_SHIP_URL": url, "DKOS_LOGS_SHIP_BATCH": "700"}).start()
    try:
        server.deploy(app_spec("shipped", {"LOG_LINES": "3000", "EXIT_AFTER_LOG": "1"}))

        def shipped() -> list[int]:
            docs = [d for d in list(bulk_receiver.docs.values()) if d["instance"] == "shipped-1"]
            got = sorted(numbers([{"text": d["message"], "instance": d["instance"]} for d in docs], "shipped-1"))
            return got if len(got) >= 3000 else []

        got = wait_until(shipped, timeout=60, interval=0.5, what="3,000 shipped lines")
        assert got == list(range(1, 3001))
        assert bulk_receiver.requests > 2, "the refused requests were retried"
        doc = next(iter(bulk_receiver.docs.values()))
        assert {"@timestamp", "message", "project", "app", "instance", "stream"} <= doc.keys()
    finally:
        server.cleanup()


def test_capture_resumes_with_no_gap_when_the_engine_comes_back(tmp_path: Path) -> None:
    from test_engine_outage import engine_relay

    relay_path = tmp_path / "engine.sock"
    server = DkosServer(tmp_path / "data", env={"DKOS_DOCKER_URL": f"unix://{relay_path}"}).start()
    try:
        with engine_relay(relay_path):
            server.deploy(app_spec("steady", {"LOG_EVERY": "0.01"}))
            wait_until(lambda: len(all_lines(server, "steady")) > 50, timeout=30, what="the first lines")
        # The engine is away: the app goes on printing into its json-file log.
        stalled = len(numbers(all_lines(server, "steady"), "steady-1"))
        time.sleep(2)
        with engine_relay(relay_path):
            wait_until(
                lambda: len(numbers(all_lines(server, "steady"), "steady-1")) > stalled + 300,
                timeout=30,
                what="capture to resume",
            )
            got = numbers(all_lines(server, "steady"), "steady-1")
            assert got == list(range(1, len(got) + 1)), "a gap or a duplicate across the outage"
            server.stop()
    finally:
        server.cleanup()


def test_a_keyword_alarm_fires_on_the_nth_matching_line_in_its_window_and_resolves_after(tmp_path: Path) -> None:
    from webhook_receiver import Receiver

    env = {"DKOS_ALARM_MIN_PERIOD": "1", "DKOS_LB_ENABLED": "false"}
    server = DkosServer(tmp_path / "data", env=env).start()
    try:
        with Receiver() as hook:
            server.deploy(app_spec("web", {}))
            container = wait_until(lambda: server.containers(all=False), timeout=20, what="the container")[0]["ID"]
            assert server.post("/v1/channels", json={"name": "ops", "url": hook.url}).status_code == 201
            alarm = {"name": "oom", "app": "web", "query": "OutOfMemory", "threshold": 3, "window": 6}
            refused = server.post("/v1/log-alarms", json={**alarm, "query": "foo-bar"})
            assert refused.status_code == 400 and refused.json()["error"] == "bad_query"
            assert server.post("/v1/log-alarms", json={**alarm, "window": 0}).status_code == 422
            assert server.post("/v1/log-alarms", json={**alarm, "app": "nope"}).status_code == 404
            created = server.cli(
                "alarms", "create-logs", "oom", "--app", "web", "--query", "OutOfMemory", "--threshold", "3",
                "--window", "6", "--channel", "ops", "--repeat-interval", "3600", "-o", "json",
            )  # fmt: skip
            assert created.returncode == 0, created.stderr
            assert json.loads(created.stdout)["source"] == "logs"

            def state() -> str:
                return str(server.get("/v1/alarms/oom").json()["state"])

            def say(text: str) -> None:
                docker("exec", container, "sh", "-c", f"echo '{text}' > /proc/1/fd/1")

            wait_until(lambda: state() == "OK", timeout=10, what="the alarm to be judged OK")
            say("java.lang.OutOfMemory 1")
            say("java.lang.OutOfMemory 2")
            say("all fine here")
            time.sleep(1.5)
            assert state() == "OK", "two matching lines are not three"
            say("java.lang.OutOfMemory 3")
            written = time.monotonic()
            wait_until(lambda: state() == "ALARM", timeout=5, interval=0.05, what="the alarm to fire")
            assert time.monotonic() - written < 2, "evaluated as the line arrives"
            for n in range(4, 20):  # a storm: still one notification (realert 1 h)
                say(f"java.lang.OutOfMemory {n}")
            wait_until(lambda: state() == "OK", timeout=20, what="the lines to leave the window")
            states = [a["status"] for a in wait_until(lambda: len(hook.received()) >= 2 and hook.received(),
                                                      timeout=10, what="two notifications")]  # fmt: skip
            firing = [b for b in hook.received() if b["status"] == "firing"]
            assert len(firing) == 1 and states[-1] == "resolved"
            assert firing[0]["alerts"][0]["labels"]["alertname"] == "oom"
            history = server.get("/v1/alarms/oom/history").json()["history"]
            assert [h["new_state"] for h in history][:2] == ["OK", "ALARM"]
    finally:
        server.cleanup()


def test_a_log_alarm_declared_in_the_app_spec_fires_and_a_deploy_without_it_removes_it(tmp_path: Path) -> None:
    env = {"DKOS_ALARM_MIN_PERIOD": "2", "DKOS_LB_ENABLED": "false"}
    server = DkosServer(tmp_path / "data", env=env).start()
    try:
        oom = {"name": "oom", "query": "OutOfMemory", "threshold": 2, "window": 30}
        plain = app_spec("web", {})
        spec = {**plain, "log_alarms": [oom]}
        cpu = {"name": "oom", "metric": "cpu_percent", "threshold": 90, "period": 60}
        for bad, field in [
            ({**spec, "log_alarms": [{**oom, "query": " "}]}, "log_alarms.0.query"),
            ({**spec, "log_alarms": [{**oom, "query": "foo-bar"}]}, "log_alarms.0.query"),  # FTS5 cannot parse it
            ({**spec, "log_alarms": [{**oom, "threshold": 0}]}, "log_alarms.0.threshold"),
            ({**spec, "log_alarms": [{**oom, "window": 1}]}, "log_alarms.0.window"),  # under the server's minimum
            ({**spec, "alarms": [cpu]}, "log_alarms.0.name"),  # one name for two alarms
        ]:
            answer = server.post("/v1/apps", json=bad)
            assert answer.status_code == 422, answer.text
            assert field in [d["field"] for d in answer.json()["details"]], answer.text
        assert server.get("/v1/apps/web").status_code == 404, "a refused spec stores nothing"
        assert server.get("/v1/alarms").json()["alarms"] == []

        def settled() -> list[dict[str, Any]]:
            server.wait_healthy("web", 1)
            return server.instances("web", all=True)

        server.deploy(spec)
        (instance,) = settled()
        declared = server.get("/v1/alarms/oom").json()
        assert (declared["source"], declared["origin"], declared["app"]) == ("logs", "spec", "web")
        assert (declared["query"], declared["threshold"], declared["window"]) == ("OutOfMemory", 2, 30)
        # An alarm made through the API: the spec may not take its name, and a deploy leaves it alone.
        api_alarm = {"name": "panic", "app": "web", "query": "panic", "threshold": 1, "window": 30}
        assert server.post("/v1/log-alarms", json=api_alarm).status_code == 201
        taken = server.post("/v1/apps", json={**spec, "log_alarms": [oom, {**oom, "name": "panic"}]})
        assert taken.status_code == 422 and "log_alarms.1.name" in taken.text, taken.text

        def state() -> str:
            return str(server.get("/v1/alarms/oom").json()["state"])

        wait_until(lambda: state() == "OK", timeout=10, what="the declared alarm to be judged OK")
        for n in (1, 2):
            docker("exec", instance["container_id"], "sh", "-c", f"echo 'java.lang.OutOfMemory {n}' > /proc/1/fd/1")
        wait_until(lambda: state() == "ALARM", timeout=10, what="the declared alarm to fire")
        shown = server.get("/v1/apps/web").json()
        assert {a["name"]: a["state"] for a in shown["alarms"]} == {"oom": "ALARM", "panic": "OK"}
        cli = server.cli("apps", "show", "web")
        assert cli.returncode == 0 and re.search(r"oom\s+ALARM", cli.stdout), cli.stdout + cli.stderr

        # A changed alarm is changed in place (its history kept), and no instance is replaced.
        server.deploy({**spec, "log_alarms": [{**oom, "threshold": 100}]})
        assert [(i["id"], i["container_id"]) for i in settled()] == [(instance["id"], instance["container_id"])]
        assert server.get("/v1/alarms/oom").json()["threshold"] == 100
        wait_until(lambda: state() == "OK", timeout=10, what="2 lines to be under the new threshold of 100")
        assert [h["new_state"] for h in server.get("/v1/alarms/oom/history").json()["history"]][:2] == ["OK", "ALARM"]

        # Deployed again without it: the declared alarm goes, the API's stays, the instance stays.
        server.deploy(plain)
        assert [(i["id"], i["container_id"]) for i in settled()] == [(instance["id"], instance["container_id"])]
        assert server.get("/v1/alarms/oom").status_code == 404
        assert [a["name"] for a in server.get("/v1/alarms").json()["alarms"]] == ["panic"]
    finally:
        server.cleanup()


def test_an_over_long_line_is_stored_in_marked_pieces_and_binary_junk_escaped(server: DkosServer) -> None:
    script = "head -c 70000 /dev/zero | tr '\\0' x; echo; printf 'junk \\377\\001 end\\n'; echo done; sleep 300"
    spec = {**app_spec("odd", {}), "command": ["sh", "-c", script]}
    server.deploy(spec)

    def stored() -> list[dict[str, Any]]:
        got = all_lines(server, "odd")
        return got if got and got[-1]["text"] == "done" else []

    got = wait_until(stored, timeout=30, what="the lines of odd")
    pieces, junk = got[:-2], got[-2]
    assert [p["part"] for p in pieces] == [1, 2, 3], "70,000 bytes in pieces of at most 32 KiB"
    assert [p["more"] for p in pieces] == [True, True, False]
    assert "".join(p["text"] for p in pieces) == "x" * 70_000, "nothing dropped"
    # Docker's json-file driver has already turned the invalid byte into U+FFFD; the control
    # character reaches dkos and is escaped.
    assert junk["text"] == "junk \ufffd\\x01 end" and junk["escaped"] is True
    shown = server.cli("logs", "odd", "--grep", "junk")
    assert shown.returncode == 0 and "\\x01 end" in shown.stdout


async def test_a_container_found_before_it_starts_is_captured_once_it_runs(tmp_path: Path) -> None:
    # Discovery lists created containers too: one seen in the moment between the engine's
    # create and start must not be taken for one that already ran and ended.
    owner = f"logtest-{time.time_ns()}"
    labels = [f"--label=dkos.{key}={value}" for key, value in {"owner": owner, "project": "p", "app": "late"}.items()]
    cid = docker("create", *labels, "dkos-demo:1", "sh", "-c", "echo one; echo two").strip()
    store = LogStore(tmp_path / "logs.db", limits=caps.Caps(total_bytes=1 << 30, app_bytes=1 << 30, max_age=None))
    engine = DockerEngine()
    try:
        settings = Settings(data_dir=tmp_path, logs_discover_interval=0.2)
        async with Capture(store, engine, owner=owner, settings=settings):
            await asyncio.sleep(1.0)  # found, and looked at, while created
            docker("start", cid)
            deadline = time.monotonic() + 20
            while store.newest_id < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        assert [line.text for line in await store.read(Query(project="p", app="late"))] == ["one", "two"]
    finally:
        docker("rm", "-f", cid)
        await engine.close()
        await store.close()


async def test_reading_a_long_backlog_leaves_the_event_loop_free(tmp_path: Path) -> None:
    # Capture shares the server's event loop with the API and the health checks: 300,000
    # lines already written must be read a chunk at a time, not in one go.
    owner = f"logtest-{time.time_ns()}"
    labels = [f"--label=dkos.{key}={value}" for key, value in {"owner": owner, "project": "p", "app": "big"}.items()]
    cid = docker("run", "-d", *labels, "dkos-demo:1", "sh", "-c", "seq 300000 | sed 's/^/backlog line /'")
    docker("wait", cid)
    store = LogStore(tmp_path / "logs.db", limits=caps.Caps(total_bytes=1 << 30, app_bytes=1 << 30, max_age=None))
    engine = DockerEngine()
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - began - 0.01)

    try:
        async with Capture(store, engine, owner=owner, settings=Settings(data_dir=tmp_path)):
            ticking = asyncio.create_task(ticker())
            deadline = time.monotonic() + 120
            while store.newest_id < 300_000 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            ticking.cancel()
        assert store.newest_id == 300_000
        assert max(lags) < 0.3, f"the event loop was held for {max(lags):.2f} s"
    finally:
        docker("rm", "-f", cid)
        await engine.close()
        await store.close()
