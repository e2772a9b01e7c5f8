"""A channel name with a bare CR (issue 16, item 2): the core does not take the call, and
an AMI action that cannot be encoded costs that action only, never the node's queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from cti.adapters.ami import AmiClient, EventQueue
from cti.adapters.ami_executor import AmiExecutor
from cti.core import Core, MarkTaken, RedirectToSeat, StoreCall, StoreTicketOp
from cti.events import AmiConnected, parse_event
from tests.adapters.test_ami_client import node
from tests.fakeami import FakeAmi
from tests.routing.plans import make_plan

BAD = "PJSIP/carrier-0000\rx"
GOOD = "PJSIP/carrier-00000002"


def ev(name: str, t: float, channel: str, call: str, **h: str) -> Any:
    headers = {
        "Event": name,
        "Timestamp": str(t),
        "Channel": channel,
        "Uniqueid": call,
        "Linkedid": call,
        "CallerIDNum": "13800138000",
        "Exten": "12345",
        **h,
    }
    return parse_event("main", headers, 0.0)


def arrive(c: Core, channel: str, call: str, t: float) -> list[Any]:
    c.handle(ev("Newchannel", t, channel, call))
    c.handle(ev("VarSet", t, channel, call, Variable="__CTI_LINE", Value="12345"))
    return c.handle(ev("Newexten", t + 0.1, channel, call, Context="cti-hold", Priority="1"))


def test_a_call_whose_channel_name_has_a_cr_is_not_taken_but_still_recorded() -> None:
    c = Core(make_plan(wrapup_s=0), log=structlog.get_logger("test"))
    c.handle(AmiConnected(node="main", time=100.0, version="22.0.0", reconnect=False))
    with capture_logs() as logs:
        out = arrive(c, BAD, "bad1", 100.0)
        out += c.handle(ev("Newexten", 103.0, BAD, "bad1", Context="cti-hold", Priority="1"))
    # nothing that would go to Asterisk with the name in it, no ticket, not queued
    assert not [e for e in out if isinstance(e, MarkTaken | RedirectToSeat | StoreTicketOp)]
    assert c.position("bad1") is None
    # the loop came round twice: counted once
    assert c.counters()["core"]["refused_channel_name"] == 1
    assert [r["linkedid"] for r in logs if r["event"] == "call_refused"] == ["bad1"]
    # the call record is still written when it ends (it went to the plain Queue())
    out = c.handle(ev("Hangup", 110.0, BAD, "bad1", Cause="16"))
    [stored] = [e for e in out if isinstance(e, StoreCall)]
    assert stored.summary.call_id == "bad1"
    # a normal call right after is taken as ever
    out = arrive(c, GOOD, "good1", 111.0)
    assert MarkTaken(node="main", channel=GOOD, call_id="good1") in out


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    srv = await FakeAmi().start()
    srv.on_action("Setvar", lambda _msg: [{"Response": "Success", "Message": "Variable Set"}])
    yield srv
    await srv.stop()


async def test_an_action_that_cannot_be_encoded_costs_only_itself(fake: FakeAmi) -> None:
    client = AmiClient(node(fake.port), EventQueue(100))
    conn = asyncio.create_task(client.run())
    await client.wait_connected(3)
    executor = AmiExecutor({"test": client}, log=structlog.get_logger("test"))
    queue = asyncio.create_task(executor.run("test"))
    try:
        with capture_logs() as logs:
            executor.submit(MarkTaken(node="test", channel=BAD, call_id="bad1"))
            executor.submit(MarkTaken(node="test", channel=GOOD, call_id="good1"))
            async with asyncio.timeout(3):
                while not fake.actions("Setvar"):
                    await asyncio.sleep(0.01)
        assert not queue.done()  # the node's queue goes on
        assert [a["Channel"] for a in fake.actions("Setvar")] == [GOOD]  # nothing of BAD sent
        assert executor.failed == 1
        [failed] = [r for r in logs if r["event"] == "ami_effect_failed"]
        assert (failed["linkedid"], failed["refused"]) == ("bad1", True)
        assert "line break" in failed["error"]
    finally:
        queue.cancel()
        conn.cancel()
        await asyncio.gather(queue, conn, return_exceptions=True)


async def test_a_bug_in_one_action_costs_only_itself(
    fake: FakeAmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever an action raises (here: a bug), the next action still goes out."""
    client = AmiClient(node(fake.port), EventQueue(100))
    conn = asyncio.create_task(client.run())
    await client.wait_connected(3)
    executor = AmiExecutor({"test": client}, log=structlog.get_logger("test"))
    real = client.action

    async def action(headers: Any, **kw: Any) -> Any:
        if headers.get("Channel") == "PJSIP/buggy":
            raise KeyError("a bug")
        return await real(headers, **kw)

    monkeypatch.setattr(client, "action", action)
    queue = asyncio.create_task(executor.run("test"))
    try:
        executor.submit(MarkTaken(node="test", channel="PJSIP/buggy", call_id="b"))
        executor.submit(MarkTaken(node="test", channel=GOOD, call_id="g"))
        async with asyncio.timeout(3):
            while not fake.actions("Setvar"):
                await asyncio.sleep(0.01)
        assert not queue.done()
        assert executor.failed == 1
    finally:
        queue.cancel()
        conn.cancel()
        await asyncio.gather(queue, conn, return_exceptions=True)
