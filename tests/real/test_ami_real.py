"""The AMI adapter against the real Asterisk 22 of the testbed."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cti.adapters.ami import AmiClient, AmiLoginError, EventQueue
from cti.calls import VARIABLES_READ
from cti.events import (
    EVENT_TYPES,
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


async def call_to_hold(client: AmiClient, q: EventQueue) -> tuple[str, str, list[Any]]:
    """A call from 张三 into 12345, until its ;2 half waits in the holding loop: its two
    Local ids and the items read from ``q`` until then (the last: that Newexten)."""
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
    seen = await collect_until(
        q,
        lambda e: (
            isinstance(e, AmiEvent)
            and e.name == "Newexten"
            and e.headers.get("Uniqueid") == b
            and e.headers.get("Context") == "hold-wait"
        ),
    )
    return a, b, seen


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
    a, b, seen = await call_to_hold(client, q)
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


async def test_server_filter_sends_only_what_the_daemon_reads() -> None:
    """Two sessions reading the same typed events, one asking Asterisk to filter (the AMI
    Filter action, advanced criteria): one call later, the filtered session saw the same
    typed events of the call, received nothing it had to drop itself, and fewer bytes."""
    clients: list[tuple[AmiClient, EventQueue]] = []
    tasks = []
    for on in (True, False):
        q = EventQueue(100_000)
        c = AmiClient(
            bed_node(),
            q,
            keep_events=EVENT_TYPES,
            keep_variables=VARIABLES_READ,
            filter_on_server=on,
        )
        tasks.append(asyncio.create_task(c.run()))
        await c.wait_connected(10)
        clients.append((c, q))
    (filtered, _), (plain, pq) = clients
    try:
        async with asyncio.timeout(10):
            while not filtered.server_filtered:
                await asyncio.sleep(0.05)
        assert plain.server_filtered is False
        before = {c: (c.wire_stats.filtered_events, c.wire_stats.bytes_in) for c, _ in clients}
        a, b, held = await call_to_hold(plain, pq)
        await plain.action({"Action": "Hangup", "Channel": held[-1].headers["Channel"]})

        def done(uids: set[str]) -> Any:
            def pred(e: Any) -> bool:
                if isinstance(e, Hangup) and e.chan.uniqueid in {a, b}:
                    uids.add(e.chan.uniqueid)
                return uids == {a, b}

            return pred

        seen: dict[AmiClient, list[tuple[str, str | None, str | None]]] = {}
        for c, q in clients:
            # the plain session's items up to the hold were read by call_to_hold
            got = [*(held if c is plain else ()), *await collect_until(q, done(set()), 15)]
            seen[c] = [
                (e.name, e.headers.get("Uniqueid"), e.headers.get("Variable"))
                for e in got
                # unsolicited events only: a session's own resync items (CoreShowChannel,
                # with its ActionID) may list the call if the resync runs late
                if isinstance(e, AmiEvent)
                and e.headers.get("Linkedid") == a
                and "ActionID" not in e.headers
            ]
        assert seen[filtered] == seen[plain]
        assert len(seen[filtered]) > 10
        dropped = {c: c.wire_stats.filtered_events - before[c][0] for c, _ in clients}
        read = {c: c.wire_stats.bytes_in - before[c][1] for c, _ in clients}
        assert dropped[plain] > 0  # the call did bring events nobody reads ...
        assert dropped[filtered] == 0  # ... and Asterisk kept them from the filtered session
        assert read[filtered] < read[plain]
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with pytest.raises(asyncio.CancelledError):
                await t
