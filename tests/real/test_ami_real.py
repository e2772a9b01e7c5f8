"""The AMI adapter against the real Asterisk 22 of the testbed."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cti.adapters.ami import AmiClient, AmiLoginError, EventQueue
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    AmiEvent,
    CoreShowChannel,
    FullyBooted,
    Hangup,
    Newchannel,
)
from tests.conftest import TESTBED, bed_node, unique

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]


@pytest.fixture
async def ami() -> AsyncIterator[tuple[AmiClient, EventQueue]]:
    q = EventQueue(100_000)
    client = AmiClient(bed_node(), q)
    task = asyncio.create_task(client.run())
    await client.wait_connected(10)
    yield client, q
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def collect_until(q: EventQueue, pred: Any, timeout: float = 15.0) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(timeout):
        while True:
            item = await q.get()
            got.append(item)
            if pred(item):
                return got


async def test_login_and_action_with_reply(ami: tuple[AmiClient, EventQueue]) -> None:
    client, q = ami
    reply = await client.action({"Action": "CoreSettings"})
    assert reply.ok
    assert str(reply.response["AsteriskVersion"]).startswith("22.")
    first = await q.get()
    assert isinstance(first, AmiConnected)
    assert first.reconnect is False
    assert isinstance(await q.get(), FullyBooted)


async def test_call_events_in_order_with_chinese_name(ami: tuple[AmiClient, EventQueue]) -> None:
    client, q = ami
    a, b = unique("a"), unique("b")
    await client.action(
        {
            "Action": "Originate",
            "Channel": "Local/12345@inbound",
            "Context": "customer",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
            "ChannelId": a,
            "OtherChannelId": b,
            "CallerID": '"张三" <13800138000>',
            "Variable": "HOLDMODE=wait",
        }
    )
    # the ;2 half reaches the holding loop; then hang the call up
    seen = await collect_until(
        q,
        lambda e: (
            isinstance(e, AmiEvent)
            and e.name == "Newexten"
            and e.headers.get("Uniqueid") == b
            and e.headers.get("Context") == "hold-wait"
        ),
    )
    await client.action({"Action": "Hangup", "Channel": seen[-1].headers["Channel"]})
    hung: set[str] = set()

    def both_hung(e: Any) -> bool:
        if isinstance(e, Hangup) and e.chan.uniqueid in {a, b}:
            hung.add(e.chan.uniqueid)
        return hung == {a, b}

    seen += await collect_until(q, both_hung, timeout=10)
    call = [e for e in seen if isinstance(e, AmiEvent) and e.headers.get("Linkedid") == a]
    # order: every channel's Newchannel comes before anything else of it, Hangup last
    for uid in (a, b):
        mine = [e for e in call if e.headers.get("Uniqueid") == uid]
        assert isinstance(mine[0], Newchannel), [e.name for e in mine]
        assert isinstance(mine[-1], Hangup), [e.name for e in mine]
    # the Chinese caller name arrives whole on every event that carries it
    names = {e.headers.get("CallerIDName") for e in call if "CallerIDName" in e.headers}
    assert "张三" in names
    assert names <= {"张三", "<unknown>", ""}, names
    nums = {e.headers.get("CallerIDNum") for e in call if e.headers.get("CallerIDName") == "张三"}
    assert nums == {"13800138000"}


async def test_wrong_secret_is_a_clear_error() -> None:
    client = AmiClient(bed_node(secret="not-the-secret"), EventQueue(100))
    with pytest.raises(AmiLoginError, match=r"login as 'cti' refused: Authentication failed"):
        async with asyncio.timeout(10):
            await client.run()


async def test_reconnect_and_resync_after_asterisk_restart(
    ami: tuple[AmiClient, EventQueue],
) -> None:
    client, q = ami
    b = unique("b")
    await client.action(
        {
            "Action": "Originate",
            "Channel": "Local/12345@inbound",
            "Context": "customer",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
            "ChannelId": unique("a"),
            "OtherChannelId": b,
            "Variable": "HOLDMODE=wait",
        }
    )
    proc = await asyncio.create_subprocess_exec(
        str(TESTBED), "restart-asterisk", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    down = await collect_until(q, lambda e: isinstance(e, AmiDisconnected), timeout=30)
    assert isinstance(down[-1], AmiDisconnected)
    up = await collect_until(q, lambda e: isinstance(e, AmiConnected), timeout=60)
    assert up[-1].reconnect is True
    # the resync list follows the login, in wire order: the call did not survive a restart
    resync = await collect_until(
        q, lambda e: isinstance(e, AmiEvent) and e.name == "CoreShowChannelsComplete"
    )
    assert not [e for e in resync if isinstance(e, CoreShowChannel) and e.chan.uniqueid == b]
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert client.connected
    assert (await client.action({"Action": "Ping"})).ok
