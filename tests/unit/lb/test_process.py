"""`lb.process`: reading the master CLI's `show proc` (captured from HAProxy 2.6.12) and its
half-close protocol, against a fake master socket that answers only once the client shuts
its write side, as HAProxy's does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dkos.lb import process, runtime

AFTER_RELOAD_WITH_AN_OLD_WORKER = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
23135           master          1 [failed: 0]   0d00h00m00s     2.6.12-1+deb12u4
# workers
23141           worker          0               0d00h00m00s     2.6.12-1+deb12u4
# old workers
23137           worker          1               0d00h00m00s     2.6.12-1+deb12u4
# programs

"""

AFTER_A_FAILED_RELOAD = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
20853           master          2 [failed: 1]   0d00h00m18s     2.6.12-1+deb12u4
# workers
21261           worker          1               0d00h00m06s     2.6.12-1+deb12u4
# programs

"""


def test_parses_workers_and_old_workers() -> None:
    info = process.parse_show_proc(AFTER_RELOAD_WITH_AN_OLD_WORKER)
    assert info == process.ProcInfo(
        master_pid=23135,
        reloads=1,
        failed_reloads=0,
        workers=(process.Worker(23141, 0),),
        old_workers=(process.Worker(23137, 1),),
    )


def test_a_failed_reload_keeps_the_old_worker_as_current() -> None:
    info = process.parse_show_proc(AFTER_A_FAILED_RELOAD)
    assert (info.reloads, info.failed_reloads, info.workers) == (2, 1, (process.Worker(21261, 1),))


def test_an_unexpected_answer_is_an_error() -> None:
    with pytest.raises(process.HaproxyFailed):
        process.parse_show_proc("Unknown command.\n")


async def test_master_command_half_closes_so_the_master_answers(tmp_path: Path) -> None:
    path = tmp_path / "master.sock"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Like the master CLI: read until the client's EOF, only then answer.
        command = (await reader.read()).decode().strip()
        writer.write(f"you said {command}\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        assert await process.master_command(path, "show proc", timeout=2) == "you said show proc\n"
    finally:
        server.close()
        await server.wait_closed()


async def test_master_command_retries_while_the_socket_is_not_there_yet(tmp_path: Path) -> None:
    path = tmp_path / "master.sock"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.write(b"ok\n")
        writer.close()

    async def late_server() -> asyncio.Server:
        await asyncio.sleep(0.1)
        return await asyncio.start_unix_server(handle, path=str(path))

    starting = asyncio.create_task(late_server())
    answer = await process.master_command(path, "show proc", timeout=2)
    server = await starting
    server.close()
    await server.wait_closed()
    assert answer == "ok\n"


async def test_master_command_gives_up_after_its_timeout(tmp_path: Path) -> None:
    with pytest.raises(runtime.HaproxyUnavailable):
        await process.master_command(tmp_path / "none.sock", "show proc", timeout=0.05)
