"""The hardened FastAGI server on a real loopback socket (no Asterisk needed): a port
probe, a half-sent header and a silent client never delay another caller's session, and
every AGI answer is checked."""

from __future__ import annotations

import asyncio
import time

import pytest

from cti.adapters.fastagi import Agi, AgiError, AgiHangup, FastAgiServer, Flow

HEADERS = (
    b"agi_network: yes\nagi_network_script: echo\nagi_request: agi://127.0.0.1/echo\n"
    b"agi_channel: Local/1@x-0001;2\nagi_uniqueid: 1795.1\nagi_arg_1: 1795.1\n\n"
)


async def start(
    flows: dict[str, Flow], **kw: float
) -> tuple[FastAgiServer, int, asyncio.Task[None]]:
    server = FastAgiServer(
        flows, header_timeout_s=kw.get("header", 1.0), command_timeout_s=kw.get("command", 1.0)
    )
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(server.serve("127.0.0.1", 0, on_listening=ready.set_result))
    return server, await ready, task


async def asterisk_side(port: int, answers: list[bytes]) -> list[bytes]:
    """Play Asterisk: send the headers, answer each command line with the next answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEADERS)
    got = []
    for answer in answers:
        got.append(await reader.readline())
        writer.write(answer)
        await writer.drain()
    writer.close()
    return got


async def test_probes_and_half_headers_do_not_delay_a_real_session() -> None:
    seen: list[str | None] = []

    async def echo(agi: Agi) -> None:
        seen.append(await agi.get_digits("beep", timeout_s=1, max_digits=1))

    server, port, task = await start({"echo": echo}, header=3.0)
    try:
        # a port probe (connect, close), a header cut short, a client that says nothing
        _, probe = await asyncio.open_connection("127.0.0.1", port)
        probe.close()
        _, half = await asyncio.open_connection("127.0.0.1", port)
        half.write(b"agi_network: yes\nagi_network_scr")
        await half.drain()
        _, silent = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        got = await asyncio.wait_for(asterisk_side(port, [b"200 result=51\n"]), 2)
        took = time.monotonic() - t0
        assert got == [b"GET DATA beep 1000 1\n"]
        await asyncio.sleep(0.05)
        assert seen == ["51"]  # GET DATA answers with the digits themselves
        assert took < 0.5, f"the real session waited {took:.2f} s behind the others"
        half.close()
        silent.close()
    finally:
        task.cancel()
    assert server.sessions == 1


async def test_every_answer_is_checked() -> None:
    outcomes: list[str] = []

    async def flow(agi: Agi) -> None:
        for _ in range(4):
            try:
                await agi.stream("beep")
                outcomes.append("ok")
            except AgiHangup:
                outcomes.append("hangup")
                return
            except AgiError as exc:
                outcomes.append(f"error {exc}")

    _, port, task = await start({"echo": flow})
    try:
        await asterisk_side(
            port,
            [
                b"200 result=0 endpos=1234\n",
                b"510 Invalid or unknown command\n",
                b"100 result=0 Trying...\n200 result=0 endpos=9\n",
                b"HANGUP\n",
            ],
        )
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert outcomes[0] == "ok"
    assert outcomes[1].startswith("error STREAM: AGIInvalidCommand")
    assert outcomes[2:] == ["ok", "hangup"]


async def test_a_silent_asterisk_times_out_and_an_unknown_route_is_refused() -> None:
    errors: list[str] = []

    async def flow(agi: Agi) -> None:
        try:
            await agi.answer()
        except AgiError as exc:
            errors.append(str(exc))

    server, port, task = await start({"echo": flow}, command=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEADERS)
        assert await reader.readline() == b"ANSWER\n"
        await asyncio.sleep(0.6)  # never answers
        assert errors == ["ANSWER: no answer within 0.3 s"]
        writer.close()
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(HEADERS.replace(b"script: echo", b"script: nowhere"))
        assert await asyncio.wait_for(r2.read(), 2) == b""  # closed, nothing run
        w2.close()
    finally:
        task.cancel()
    assert server.refused == 1


@pytest.mark.parametrize("bad", ["a b", "x\ny", ""])
async def test_unsafe_arguments_are_refused_before_sending(bad: str) -> None:
    errors: list[str] = []

    async def flow(agi: Agi) -> None:
        try:
            await agi.stream(bad)
        except AgiError as exc:
            errors.append(str(exc))

    _, port, task = await start({"echo": flow})
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEADERS)
        await asyncio.sleep(0.2)
        writer.close()
    finally:
        task.cancel()
    assert len(errors) == 1
    assert "not a safe AGI argument" in errors[0]
