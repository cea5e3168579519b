"""`lb.runtime`: the admin-socket client against a fake socket that answers as HAProxy 2.6 does,
and the parsers on answers captured from HAProxy 2.6.12."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dkos.lb import model, runtime

# Captured from HAProxy 2.6.12: s1 ready, s2 `disabled` in the file then `state ready`
# (CMAINT stays set: still ready), s3 in drain, s4 in maint.
SERVERS_STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight"
    " srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state"
    " srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port"
    " srv_check_addr srv_agent_addr srv_agent_port"
)
SERVERS_STATE = f"""1
{SERVERS_STATE_HEADER}
3 web 1 s1 127.0.0.1 2 0 100 100 1 1 0 2 0 0 0 0 - 19001 - 0 0 - - 0
3 web 2 s2 127.0.0.1 2 4 100 100 0 1 0 0 8 0 0 0 - 19005 - 0 0 - - 0
3 web 3 s3 10.0.0.3 2 8 100 100 0 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0
3 web 4 s4 fd00::4 0 1 100 100 0 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0

"""

STAT_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"
    "act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,"
    "check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,"
    "req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,"
    "rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,"
    "agent_rise,agent_fall,agent_health,addr,cookie,mode,algo\n"
)


def _stat_row(pxname: str, svname: str, *, type_: int, status: str, scur: int, rate: int, req_tot: int) -> str:
    fields = dict.fromkeys(STAT_HEADER.removeprefix("# ").strip().split(","), "")
    fields.update(
        pxname=pxname,
        svname=svname,
        type=str(type_),
        status=status,
        scur=str(scur),
        rate=str(rate),
        req_tot=str(req_tot),
        hrsp_2xx="90",
        hrsp_3xx="1",
        hrsp_4xx="2",
        hrsp_5xx="3",
        rtime="4" if type_ else "",
    )
    return ",".join(fields.values()) + "\n"


SHOW_STAT = (
    STAT_HEADER
    + _stat_row("http", "FRONTEND", type_=0, status="OPEN", scur=5, rate=50, req_tot=100)
    + _stat_row("web", "s1", type_=2, status="no check", scur=2, rate=20, req_tot=60)
    + _stat_row("web", "s3", type_=2, status="DRAIN", scur=1, rate=0, req_tot=40)
    + _stat_row("web", "BACKEND", type_=1, status="UP", scur=3, rate=20, req_tot=100)
    + "\n"
)


def test_parses_servers_state_into_dkos_states() -> None:
    servers = runtime.parse_servers_state(SERVERS_STATE)
    assert [(s.name, s.address, s.port, s.state, s.operational) for s in servers] == [
        ("s1", "127.0.0.1", 19001, model.ServerState.READY, runtime.Operational.RUNNING),
        ("s2", "127.0.0.1", 19005, model.ServerState.READY, runtime.Operational.RUNNING),
        ("s3", "10.0.0.3", 8080, model.ServerState.DRAIN, runtime.Operational.RUNNING),
        ("s4", "fd00::4", 8080, model.ServerState.MAINT, runtime.Operational.STOPPED),
    ]


def test_parses_show_stat_rows() -> None:
    rows = runtime.parse_stat(SHOW_STAT)
    assert [(r.proxy, r.name, r.kind, r.status, r.scur, r.rate, r.req_tot) for r in rows] == [
        ("http", "FRONTEND", runtime.StatKind.FRONTEND, "OPEN", 5, 50, 100),
        ("web", "s1", runtime.StatKind.SERVER, "no check", 2, 20, 60),
        ("web", "s3", runtime.StatKind.SERVER, "DRAIN", 1, 0, 40),
        ("web", "BACKEND", runtime.StatKind.BACKEND, "UP", 3, 20, 100),
    ]
    frontend = rows[0]
    assert (frontend.hrsp_2xx, frontend.hrsp_3xx, frontend.hrsp_4xx, frontend.hrsp_5xx) == (90, 1, 2, 3)
    assert frontend.rtime == 0  # empty field: not measured for a frontend


# --- the client against a fake admin socket ----------------------------------------------------


Answer = Callable[[str], str]


@pytest.fixture
async def fake_socket(tmp_path: Path) -> AsyncIterator[tuple[Path, list[str], dict[str, Answer]]]:
    """A unix socket that records each command and answers like HAProxy: one command, then close."""
    path = tmp_path / "admin.sock"
    received: list[str] = []
    answers: dict[str, Answer] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = (await reader.readline()).decode().strip()
        received.append(command)
        verb = next((prefix for prefix in sorted(answers, key=len, reverse=True) if command.startswith(prefix)), None)
        writer.write((answers[verb](command) if verb else "Unknown command.\n").encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    yield path, received, answers
    server.close()
    await server.wait_closed()


async def test_add_server_passes_every_option_and_sets_state_after(
    fake_socket: tuple[Path, list[str], dict[str, Answer]],
) -> None:
    path, received, answers = fake_socket
    answers["add server"] = lambda _: "New server registered.\n\n"
    answers["set server"] = lambda _: "\n"
    api = runtime.RuntimeApi(path)
    await api.add_server("default.web.http", model.Server("web-3", "172.17.0.3", 8080, model.ServerState.READY))
    await api.set_state("default.web.http", "web-3", model.ServerState.READY)
    assert received == [
        "add server default.web.http/web-3 172.17.0.3:8080 weight 100 pool-max-conn -1 pool-purge-delay 5s",
        "set server default.web.http/web-3 state ready",
    ]


async def test_del_server_goes_to_maint_first(fake_socket: tuple[Path, list[str], dict[str, Answer]]) -> None:
    path, received, answers = fake_socket
    answers["set server"] = lambda _: "\n"
    answers["del server"] = lambda _: "Server deleted.\n"
    await runtime.RuntimeApi(path).del_server("b", "s")
    assert received == ["set server b/s state maint", "del server b/s"]


async def test_haproxys_refusal_becomes_command_failed_with_its_words(
    fake_socket: tuple[Path, list[str], dict[str, Answer]],
) -> None:
    path, _, answers = fake_socket
    answers["set server"] = lambda _: "\n"
    answers["del server"] = lambda _: "Server still has connections attached to it, cannot remove it.\n"
    with pytest.raises(runtime.CommandFailed) as raised:
        await runtime.RuntimeApi(path).del_server("b", "s")
    assert raised.value.command == "del server b/s"
    assert "still has connections" in raised.value.message


async def test_an_unknown_backend_in_show_servers_state_is_an_error(
    fake_socket: tuple[Path, list[str], dict[str, Answer]],
) -> None:
    path, _, answers = fake_socket
    answers["show servers state"] = lambda _: "Can't find backend.\n\n"
    with pytest.raises(runtime.CommandFailed, match="Can't find backend"):
        await runtime.RuntimeApi(path).servers_state("nope")


async def test_show_servers_joins_sessions_from_show_stat(
    fake_socket: tuple[Path, list[str], dict[str, Answer]],
) -> None:
    path, _, answers = fake_socket
    answers["show servers state"] = lambda _: SERVERS_STATE
    answers["show stat"] = lambda _: SHOW_STAT
    servers = await runtime.RuntimeApi(path).show_servers("web")
    assert {s.name: s.sessions for s in servers} == {"s1": 2, "s2": 0, "s3": 1, "s4": 0}


async def test_a_missing_socket_is_haproxy_unavailable(tmp_path: Path) -> None:
    with pytest.raises(runtime.HaproxyUnavailable):
        await runtime.RuntimeApi(tmp_path / "none.sock").execute("show info")


@pytest.mark.parametrize("name", ["s;shutdown sessions", "s 1", "s\nx"])
async def test_names_cannot_smuggle_a_second_command(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        await runtime.RuntimeApi(tmp_path / "admin.sock").set_state("b", name, model.ServerState.READY)
