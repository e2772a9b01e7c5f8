"""The generated dialplan (asterisk-sample/extensions_cti.conf) on the real Asterisk 22.

No daemon runs here: the tests play the daemon's part with AMI actions (Setvar, Redirect)
and watch the AMI events of the held call. The hold timeout is the sample config's
(config/cti.yaml `dialplan.hold_timeout_s`, 8 s for the testbed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cti.adapters.ami import AmiClient, EventQueue
from cti.dialplan.contract import CONTEXT_CONNECT, CONTEXT_FALLBACK, CONTEXT_HOLD, LEASE_VARIABLE
from cti.events import AmiEvent
from cti.settings import Settings, load_settings
from tests.conftest import PROJECT, bed_cli, bed_node, unique

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

CHROOT = Path("/var/tmp/hotline-cti-testbed/root")
SETTINGS: Settings = load_settings(PROJECT / "config" / "cti.yaml", env={})
HOLD_S = SETTINGS.dialplan.hold_timeout_s


@dataclass
class Bed:
    client: AmiClient
    queue: EventQueue
    seen: list[AmiEvent]

    async def until(
        self,
        pred: Callable[[AmiEvent], bool],
        timeout: float = 15.0,
        *,
        after: AmiEvent | None = None,
    ) -> AmiEvent:
        """The first event (already seen or coming) that matches *pred*; with *after*,
        the first one that came after that event."""
        start = 0 if after is None else self.seen.index(after) + 1
        for ev in self.seen[start:]:
            if pred(ev):
                return ev
        async with asyncio.timeout(timeout):
            while True:
                item = await self.queue.get()
                if not isinstance(item, AmiEvent):
                    continue
                self.seen.append(item)
                if pred(item):
                    return item

    async def absent(self, pred: Callable[[AmiEvent], bool], seconds: float) -> None:
        """Fail if an event matching *pred* was seen or arrives within *seconds*."""
        try:
            ev = await self.until(pred, timeout=seconds)
        except TimeoutError:
            return
        pytest.fail(f"unexpected {ev.name}: {dict(ev.headers)}")

    async def getvar(self, channel: str, variable: str) -> str:
        reply = await self.client.action(
            {"Action": "Getvar", "Channel": channel, "Variable": variable}
        )
        return str(reply.response.get("Value") or "")

    async def setvar(self, variable: str, value: str, channel: str | None = None) -> None:
        headers = {"Action": "Setvar", "Variable": variable, "Value": value}
        if channel is not None:
            headers["Channel"] = channel
        await self.client.action(headers)


@pytest.fixture
async def bed() -> AsyncIterator[Bed]:
    q = EventQueue(100_000)
    client = AmiClient(bed_node(), q)
    task = asyncio.create_task(client.run())
    await client.wait_connected(10)
    yield Bed(client, q, [])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@dataclass
class Call:
    a: str  # uniqueid of the ;1 half = the linkedid = the call id
    b: str  # uniqueid of the ;2 half, which runs the dialplan: the leg to Redirect
    channel: str  # channel name of the ;2 half
    started: float


def in_context(uniqueid: str, context: str, exten: str | None = None) -> Callable[..., bool]:
    def pred(ev: AmiEvent) -> bool:
        return (
            ev.name == "Newexten"
            and ev.headers.get("Uniqueid") == uniqueid
            and ev.headers.get("Context") == context
            and (exten is None or ev.headers.get("Extension") == exten)
        )

    return pred


@asynccontextmanager
async def call(bed: Bed, number: str) -> AsyncIterator[Call]:
    """A citizen calling *number*: Local/<number>@cti-inbound, the ;1 half waits."""
    a, b = unique("a"), unique("b")
    started = time.monotonic()
    await bed.client.action(
        {
            "Action": "Originate",
            "Channel": f"Local/{number}@cti-inbound",
            "Context": "customer",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
            "ChannelId": a,
            "OtherChannelId": b,
            "CallerID": '"李四" <13900139000>',
        }
    )
    held = await bed.until(in_context(b, CONTEXT_HOLD))
    try:
        yield Call(a, b, held.headers["Channel"], started)
    finally:
        await bed.client.action(
            {"Action": "Hangup", "Channel": held.headers["Channel"]}, check=False
        )


@pytest.fixture
async def call_12345(bed: Bed) -> AsyncIterator[Call]:
    async with call(bed, "12345") as c:
        yield c


async def redirect(bed: Bed, c: Call, seat: str) -> None:
    await bed.client.action(
        {
            "Action": "Redirect",
            "Channel": c.channel,
            "Context": CONTEXT_CONNECT,
            "Exten": seat,
            "Priority": "1",
        }
    )


def dial_end(uniqueid: str) -> Callable[[AmiEvent], bool]:
    return lambda ev: ev.name == "DialEnd" and ev.headers.get("Uniqueid") == uniqueid


# --------------------------------------------------------------------------- tests


def test_every_number_of_the_plan_is_in_cti_inbound() -> None:
    shown = bed_cli("dialplan show cti-inbound")
    for line in SETTINGS.numberplan.lines:
        assert f"'{line.number}' =>" in shown, line.number
    # and the connect context knows every seat
    connect = bed_cli("dialplan show cti-connect")
    for seat in SETTINGS.numberplan.seats:
        assert f"'{seat.id}' =>" in connect, seat.id


async def test_line_variables_are_set_and_inherited(bed: Bed, call_12345: Call) -> None:
    c = call_12345
    assert await bed.getvar(c.channel, "CTI_LINE") == "12345"
    assert await bed.getvar(c.channel, "CTI_DNIS") == "12345"
    assert await bed.getvar(c.channel, "CTI_LINE_MODE") == "merged"
    assert await bed.getvar(c.channel, "CTI_SKILL") == "general"
    assert await bed.getvar(c.channel, "CTI_DEPARTMENT") == "市政府热线办"
    # the call id is the linkedid: the ;1 half's uniqueid (what the call tracker uses)
    assert await bed.getvar(c.channel, "CTI_CALL_ID") == c.a


async def test_110_line_on_a_local_channel_skips_the_sip_header(bed: Bed) -> None:
    async with call(bed, "12345110") as c:
        assert await bed.getvar(c.channel, "CTI_DISPATCH110") == "1"
        assert await bed.getvar(c.channel, "CTI_PRIORITY_CLASS") == "emergency-transfer"
        assert await bed.getvar(c.channel, "QUEUE_PRIO") == "600"
        assert await bed.getvar(c.channel, "CTI_TRANSFER_ID") == ""
        # the guard jumped over PJSIP_HEADER: no such Newexten on this channel
        await bed.absent(
            lambda ev: (
                ev.name == "Newexten"
                and ev.headers.get("Uniqueid") == c.b
                and "PJSIP_HEADER" in ev.headers.get("AppData", "")
            ),
            0.1,
        )


async def test_unreachable_subcentre_is_answered_by_12345(bed: Bed) -> None:
    """12366 goes to the tax sub-centre over trunk `carrier`; the testbed has no such PJSIP
    endpoint, so the Dial fails at once and the call joins the 12345 holding loop."""
    async with call(bed, "12366") as c:
        status = await bed.getvar(c.channel, "CTI_SUBCENTRE_STATUS")
        assert status not in {"", "ANSWER"}, status
        assert await bed.getvar(c.channel, "CTI_LINE_MODE") == "subcentre"
        assert await bed.getvar(c.channel, "CTI_SKILL") == "general"


async def test_without_daemon_the_fallback_queue_answers(bed: Bed, call_12345: Call) -> None:
    c = call_12345
    connect = await bed.until(
        lambda ev: ev.name == "AgentConnect" and ev.headers.get("Linkedid") == c.a,
        timeout=HOLD_S + 10,
    )
    waited = time.monotonic() - c.started
    assert connect.headers["Queue"] == "cti-general"
    seat_ids = {seat.id for seat in SETTINGS.numberplan.seats}
    assert connect.headers["MemberName"] in seat_ids
    # the holding loop kept it for the hold timeout (EPOCH has 1 s resolution) ...
    assert waited >= HOLD_S - 1.5, waited
    fallback = await bed.until(in_context(c.b, CONTEXT_FALLBACK))
    assert fallback.headers["Channel"] == c.channel
    # ... and the fallback records the call too
    assert await bed.getvar(c.channel, "CTI_FALLBACK") == "1"
    await _recording_exists(c.a)


async def test_redirect_to_connect_rings_and_records(bed: Bed, call_12345: Call) -> None:
    c = call_12345
    await bed.setvar("__CTI_TICKET", "T-20261126-0001", c.channel)
    await redirect(bed, c, "1001")
    begin = await bed.until(lambda ev: ev.name == "DialBegin" and ev.headers.get("Uniqueid") == c.b)
    assert begin.headers["DestChannel"].startswith("Local/1001@seats-")
    end = await bed.until(dial_end(c.b))
    assert end.headers["DialStatus"] == "ANSWER"
    seat_leg = begin.headers["DestChannel"]
    await bed.until(lambda ev: ev.name == "BridgeEnter" and ev.headers.get("Channel") == seat_leg)
    # the seat's leg inherits what the daemon and the pop need
    assert await bed.getvar(seat_leg, "CTI_CALL_ID") == c.a
    assert await bed.getvar(seat_leg, "CTI_LINE") == "12345"
    assert await bed.getvar(seat_leg, "CTI_TICKET") == "T-20261126-0001"
    assert await bed.getvar(seat_leg, "CTI_SEAT") == "1001"
    assert await bed.getvar(c.channel, "CTI_TAKEN") == "1"
    await _recording_exists(c.a)


async def test_ring_no_answer_returns_the_caller_to_holding(bed: Bed, call_12345: Call) -> None:
    c = call_12345
    # a seat that is not in the plan, reached by its endpoint, that never answers
    await bed.setvar("CTI_SEAT_ENDPOINT", "Local/9901@seats-noanswer", c.channel)
    await bed.setvar("CTI_RING_TIMEOUT", "2", c.channel)
    await redirect(bed, c, "9901")
    end = await bed.until(dial_end(c.b), timeout=10)
    assert end.headers["DialStatus"] == "NOANSWER"
    await bed.until(in_context(c.b, CONTEXT_HOLD, "s"), after=end)
    assert await bed.getvar(c.channel, "CTI_CONNECT_STATUS") == "NOANSWER"
    # per-attempt variables do not leak into the next attempt
    assert await bed.getvar(c.channel, "CTI_SEAT_ENDPOINT") == ""
    # the daemon offers it to the next seat, which answers: one recording for the call
    await redirect(bed, c, "1002")
    end = await bed.until(dial_end(c.b), after=end)
    assert end.headers["DialStatus"] == "ANSWER"
    recording = await bed.getvar(c.channel, "CTI_RECORDING")
    assert recording.endswith(f"/{c.a}.{SETTINGS.dialplan.recording_format}")
    await _recording_exists(c.a)


async def test_a_taken_call_stays_held_while_the_lease_is_valid(bed: Bed) -> None:
    # play a running daemon: a lease a little longer than the hold timeout
    lease_s = HOLD_S + 6
    await bed.setvar(LEASE_VARIABLE, str(int(time.time()) + lease_s))
    try:
        async with call(bed, "12345") as c:
            await bed.setvar("CTI_TAKEN", "1", c.channel)
            # past the hold timeout the taken call is still held ...
            await bed.absent(
                in_context(c.b, CONTEXT_FALLBACK), HOLD_S + 2 - (time.monotonic() - c.started)
            )
            # ... and goes to the fallback once the lease has run out (the daemon died)
            await bed.until(in_context(c.b, CONTEXT_FALLBACK), timeout=lease_s)
            assert time.monotonic() - c.started >= lease_s - 2
    finally:
        await bed.setvar(LEASE_VARIABLE, "0")


# ---- the fallback keeps the 15 s answer target (GB/T 33358) without breaking the skills

ANSWER_TARGET_S = 15.0
SKILL_WAIT_S = SETTINGS.dialplan.fallback_skill_wait_s
WRAPUP_S = SETTINGS.numberplan.queue.wrapup_s


async def _seat_rested(bed: Bed, queue: str, seat: str) -> None:
    """Wait until *seat* is out of app_queue's wrap-up (shared_lastcall: a fallback call in
    any queue counts), so the test sees the penalty rule and not an earlier test's call."""
    deadline = time.monotonic() + WRAPUP_S + 10
    while time.monotonic() < deadline:
        reply = await bed.client.action({"Action": "QueueStatus", "Queue": queue, "Member": seat})
        members = [ev for ev in reply.items if ev.name == "QueueMember"]
        assert members, f"{seat} is not a member of {queue}"
        last = float(members[0].headers.get("LastCall") or 0)
        if members[0].headers.get("InCall") != "1" and time.time() - last > WRAPUP_S + 1:
            return
        await asyncio.sleep(1)
    pytest.fail(f"seat {seat} still in a call or wrap-up")


@asynccontextmanager
async def busy_seat(bed: Bed, seat: str) -> AsyncIterator[None]:
    """The seat's phone in another call: its Local channel exists, device state INUSE."""
    leg = unique("busy")
    await bed.client.action(
        {
            "Action": "Originate",
            "Channel": f"Local/{seat}@seats",
            "Context": "customer",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
            "ChannelId": leg,
        }
    )
    up = await bed.until(
        lambda ev: (
            ev.name == "Newstate"
            and ev.headers.get("Uniqueid") == leg
            and ev.headers.get("ChannelStateDesc") == "Up"
        )
    )
    try:
        yield
    finally:
        await bed.client.action({"Action": "Hangup", "Channel": up.headers["Channel"]}, check=False)


async def _fallback_answer(bed: Bed, c: Call) -> tuple[AmiEvent, float]:
    """The AgentConnect of the call and the seconds it waited in the fallback."""
    entered = await bed.until(in_context(c.b, CONTEXT_FALLBACK), timeout=HOLD_S + 5)
    t0 = time.monotonic()
    connect = await bed.until(
        lambda ev: ev.name == "AgentConnect" and ev.headers.get("Linkedid") == c.a,
        timeout=ANSWER_TARGET_S + 10,
        after=entered,
    )
    return connect, time.monotonic() - t0


async def test_fallback_skilled_seat_busy_an_idle_other_seat_answers(bed: Bed) -> None:
    # 12315 needs `market`: seat 1001 only. It is busy; 1002..2001 (general) are idle.
    async with busy_seat(bed, "1001"), call(bed, "12315") as c:
        connect, waited = await _fallback_answer(bed, c)
    assert connect.headers["Queue"] == "cti-market"
    assert connect.headers["MemberName"] != "1001"
    # within the answer target, after the skilled-only phase (QUEUE_MAX_PENALTY=0 holds)
    assert waited < ANSWER_TARGET_S, waited
    assert waited >= SKILL_WAIT_S - 1.5, waited


async def test_fallback_skilled_seat_idle_gets_the_call(bed: Bed) -> None:
    await _seat_rested(bed, "cti-market", "1001")
    async with call(bed, "12315") as c:
        connect, waited = await _fallback_answer(bed, c)
    assert connect.headers["Queue"] == "cti-market"
    assert connect.headers["MemberName"] == "1001"  # not one of the idle general seats
    assert waited < SKILL_WAIT_S, waited


async def _recording_exists(call_id: str) -> None:
    rec = SETTINGS.dialplan
    path = CHROOT / rec.recording_dir.lstrip("/") / f"{call_id}.{rec.recording_format}"
    async with asyncio.timeout(5):
        while not path.exists():
            await asyncio.sleep(0.1)
