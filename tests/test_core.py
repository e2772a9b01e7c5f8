"""The sans-IO core (tracker + dispatcher + the dialplan contract), without Asterisk:
events in, effects out."""

from __future__ import annotations

from typing import Any

import structlog

from cti.core import (
    CallbackDone,
    CallbackReply,
    CallbackRequested,
    Core,
    Effect,
    MarkTaken,
    OriginateCallback,
    Pop,
    Publish,
    RedirectToSeat,
    RejectCall,
    RenewLease,
    ReturnToHold,
    SeatCommandReceived,
    StateRestored,
    StoreCall,
    StoreSeatState,
    StoreTicketOp,
    Tick,
    TicketNumberKnown,
)
from cti.core.messages import AdoptedChannelRead, ReadAdoptedChannel
from cti.events import AmiConnected, AmiDisconnected, parse_event
from cti.numberplan import BlockedNumber
from cti.seats.commands import parse_seat_command
from tests.routing.plans import make_plan

HELD = "Local/12345@cti-inbound-00000001;2"


def ev(name: str, t: float, **h: str) -> Any:
    return parse_event("main", {"Event": name, "Timestamp": str(t), **h}, 0.0)


def chan(channel: str, uid: str, linkedid: str, **extra: str) -> dict[str, str]:
    base = {
        "Channel": channel,
        "Uniqueid": uid,
        "Linkedid": linkedid,
        "CallerIDNum": "13800138000",
        "CallerIDName": "张三",
        "Exten": "12345",
    }
    return {**base, **extra}


def core(**queue: Any) -> Core:
    return Core(make_plan(**queue), log=structlog.get_logger("test"))


def cmd(c: Core, seat: str, payload: bytes, t: float) -> list[Effect]:
    return c.handle(SeatCommandReceived(seat=seat, command=parse_seat_command(payload), at=t))


def hold(c: Core, call: str, t: float, priority: str = "1") -> list[Effect]:
    return c.handle(
        ev(
            "Newexten",
            t,
            **chan(
                HELD,
                f"{call}.2",
                call,
                Context="cti-hold",
                Priority=priority,
                Application="StartMusicOnHold",
            ),
        )
    )


def kinds(effects: list[Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


def start_call(c: Core, call: str, t: float) -> list[Effect]:
    c.handle(ev("Newchannel", t, **chan("Local/12345@cti-inbound-00000001;1", call, call)))
    c.handle(ev("Newchannel", t, **chan(HELD, f"{call}.2", call)))
    c.handle(ev("VarSet", t, **chan(HELD, f"{call}.2", call, Variable="__CTI_LINE", Value="12345")))
    return hold(c, call, t + 0.1)


def test_a_held_call_is_taken_then_offered_when_a_seat_is_ready() -> None:
    c = core(wrapup_s=0)
    c.handle(AmiConnected(node="main", time=100.0, version="11.0.0", reconnect=False))
    out = start_call(c, "c1", 100.0)
    assert out[0] == MarkTaken(node="main", channel=HELD, call_id="c1")
    assert not [e for e in out if isinstance(e, RedirectToSeat)]  # nobody is ready
    out = cmd(c, "1002", b'{"cmd":"login","ready":true,"request_id":"r1"}', 101.0)
    [redirect] = [e for e in out if isinstance(e, RedirectToSeat)]
    assert (redirect.channel, redirect.seat_id, redirect.endpoint) == (HELD, "1002", "PJSIP/1002")
    replies = [e for e in out if isinstance(e, Publish) and e.topic == "seats/1002/reply"]
    assert replies == [
        Publish(topic="seats/1002/reply", payload={"ok": True, "request_id": "r1", "cmd": "login"})
    ]
    states = [
        e.payload["status"] for e in out if isinstance(e, Publish) and e.topic == "seats/1002/state"
    ]
    assert states == ["ready", "reserved"]
    assert [e.status for e in out if isinstance(e, StoreSeatState)] == ["ready", "reserved"]


def test_return_to_hold_while_offered_is_ring_no_answer() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    c.handle(
        ev(
            "Newexten",
            101.1,
            **chan(HELD, "c1.2", "c1", Context="cti-connect", Priority="1", Exten="1002"),
        )
    )
    out = c.handle(
        ev(
            "DialBegin",
            101.2,
            **chan(HELD, "c1.2", "c1"),
            DestChannel="PJSIP/1002-00000001",
            DestUniqueid="d1",
            DestLinkedid="c1",
        )
    )
    assert [
        e.payload["status"] for e in out if isinstance(e, Publish) and e.topic == "seats/1002/state"
    ] == ["ringing"]
    out = hold(c, "c1", 116.3)  # the dialplan's Dial gave up: back in cti-hold
    assert ("not_ready", "rona") in [
        (e.status, e.reason) for e in out if isinstance(e, StoreSeatState)
    ]
    assert not [e for e in out if isinstance(e, ReturnToHold)]  # it is in hold already
    # the next ready seat gets it at once
    out = cmd(c, "1001", b'{"cmd":"login","ready":true}', 117.0)
    assert [e.seat_id for e in out if isinstance(e, RedirectToSeat)] == ["1001"]


def test_the_dispatchers_own_rona_returns_the_caller_to_hold_and_expects_it() -> None:
    c = core(wrapup_s=0, ring_timeout_s=5)
    start_call(c, "c1", 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    c.handle(
        ev(
            "Newexten",
            101.1,
            **chan(HELD, "c1.2", "c1", Context="cti-connect", Priority="1", Exten="1002"),
        )
    )
    out = c.handle(Tick(at=106.5))  # the ring timer fires before the dialplan gives up
    assert [e.reason for e in out if isinstance(e, ReturnToHold)] != []
    out = hold(c, "c1", 106.6)  # our own Redirect arriving: not a second RONA
    assert not [e for e in out if isinstance(e, StoreSeatState)]


def test_hangup_ends_the_call_everywhere_and_stores_it() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    first = "Local/12345@cti-inbound-00000001;1"
    out = c.handle(ev("HangupRequest", 104.0, **chan(first, "c1", "c1", Cause="16")))
    for uid, name in (("c1", first), ("c1.2", HELD)):
        out += c.handle(ev("Hangup", 104.0, **chan(name, uid, "c1", Cause="16")))
    [stored] = [e for e in out if isinstance(e, StoreCall)]
    assert stored.summary.outcome == "abandoned"
    assert stored.summary.line == "12345"
    ended = [e for e in out if isinstance(e, Publish) and e.topic == "calls/events"]
    assert ended[0].payload["type"] == "ended"
    assert c.dispatcher.queue.get("c1") is None
    snapshot = [
        e
        for e in c.handle(Tick(at=105.0))
        if isinstance(e, Publish) and e.topic == "queue/snapshot"
    ]
    assert snapshot[-1].payload["waiting"] == 0


def test_calls_already_holding_are_adopted_at_resync() -> None:
    c = core()
    c.handle(AmiConnected(node="main", time=100.0, version="11.0.0", reconnect=False))
    out = c.handle(
        ev(
            "CoreShowChannel",
            100.1,
            **chan(HELD, "c9.2", "c9", Context="cti-hold", Priority="8", Application="Wait"),
        )
    )
    # its line is on the channel only: read first (tests/test_adoption.py), then take
    assert out == [
        MarkTaken(node="main", channel=HELD, call_id="c9"),
        ReadAdoptedChannel(node="main", channel=HELD, call_id="c9"),
    ]
    c.handle(AdoptedChannelRead(node="main", call_id="c9", channel=HELD, at=100.2))
    assert c.counts["adopted"] == 1
    assert c.dispatcher.queue.get("c9") is not None
    # a channel in the fallback queue talking to a queue member is left alone
    out = c.handle(
        ev(
            "CoreShowChannel",
            100.2,
            **chan("Local/12345@cti-inbound-00000002;2", "c8.2", "c8", Context="cti-fallback"),
            BridgeId="br-queue",
        )
    )
    assert not [e for e in out if isinstance(e, MarkTaken)]


def test_lease_is_renewed_on_connect_and_on_ticks() -> None:
    c = core()
    out = c.handle(AmiConnected(node="main", time=100.0, version="11.0.0", reconnect=False))
    assert out == [RenewLease(node="main", until=115.0)]
    assert [e for e in c.handle(Tick(at=100.5)) if isinstance(e, RenewLease)] == [
        RenewLease(node="main", until=115.5)
    ]
    assert not [e for e in c.handle(Tick(at=102.0)) if isinstance(e, RenewLease)]
    assert [e for e in c.handle(Tick(at=105.6)) if isinstance(e, RenewLease)] == [
        RenewLease(node="main", until=120.6)
    ]
    assert c.next_deadline() <= 110.6


def test_bad_and_unknown_seat_commands_are_replied_and_change_nothing() -> None:
    c = core()
    out = cmd(c, "1001", b'{"cmd":"not_ready","reason":"nap","request_id":"x"}', 100.0)
    assert kinds(out) == ["Publish"]
    assert out[0].payload["error"]["code"] == "invalid_command"  # type: ignore[union-attr]
    out = cmd(c, "9999", b'{"cmd":"ready"}', 100.0)
    assert out[0].payload["error"]["code"] == "unknown_seat"  # type: ignore[union-attr]
    out = cmd(c, "1001", b'{"cmd":"wrapup_done"}', 100.0)  # not in wrap-up: rejected
    [reply] = [e for e in out if isinstance(e, Publish) and e.topic.endswith("/reply")]
    assert reply.payload["ok"] is False
    assert reply.payload["error"]["code"] == "rejected"


def test_seats_come_back_after_a_restart() -> None:
    c = core()
    out = c.handle(
        StateRestored(
            seats={
                "1001": ("ready", None, 90.0),
                "1002": ("not_ready", "meal", 80.0),
                "2001": ("talking", None, 95.0),  # its call may still be going on
                "7777": ("ready", None, 90.0),  # no longer in the plan
            },
            at=100.0,
        )
    )
    states = {e.seat_id: (e.status, e.reason) for e in out if isinstance(e, StoreSeatState)}
    assert states == {
        "1001": ("ready", None),
        "1002": ("not_ready", "meal"),
        "2001": ("not_ready", "restart"),
    }
    assert c.dispatcher.ready_seat_ids() == ["1001"]
    # a waiting call goes to the restored ready seat at once
    out = start_call(c, "c1", 101.0)
    assert [e.seat_id for e in out if isinstance(e, RedirectToSeat)] == ["1001"]


def answer(c: Core, call: str, seat: str, t: float) -> list[Effect]:
    """The seat's channel appears and is bridged with the held caller."""
    seat_chan = f"PJSIP/{seat}-0000000{len(seat)}"
    out = c.handle(ev("Newchannel", t, **chan(seat_chan, f"{call}.{seat}", call)))
    out += c.handle(
        ev(
            "DialBegin",
            t,
            **chan(HELD, f"{call}.2", call),
            DestChannel=seat_chan,
            DestUniqueid=f"{call}.{seat}",
            DestLinkedid=call,
        )
    )
    for ch, uid in ((HELD, f"{call}.2"), (seat_chan, f"{call}.{seat}")):
        out += c.handle(
            ev(
                "BridgeEnter",
                t + 0.5,
                **chan(ch, uid, call),
                BridgeUniqueid=f"br-{seat}",
                BridgeType="basic",
            )
        )
    return out


def test_transfer_to_a_department_requeues_the_call_for_that_skill() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    out = answer(c, "c1", "1002", 101.1)
    assert [
        e.payload["type"] for e in out if isinstance(e, Publish) and e.topic == "calls/events"
    ] == ["answered"]
    assert c.dispatcher.seats.get("1002").status.value == "talking"  # type: ignore[union-attr]
    # 1002 sends the caller to the market department (12315); 1001 has the skill
    cmd(c, "1001", b'{"cmd":"login","ready":false}', 102.0)
    out = cmd(c, "1002", b'{"cmd":"transfer","target":"12315","request_id":"t1"}', 110.0)
    assert kinds(out)[0] == "ReturnToHold"  # the caller leaves the seat first
    assert [e.payload for e in out if isinstance(e, Publish) and e.topic.endswith("/reply")] == [
        {"ok": True, "request_id": "t1", "cmd": "transfer"}
    ]
    assert c.dispatcher.queue.get("c1") is not None  # waiting for a market seat
    hold(c, "c1", 110.2)  # our own ReturnToHold arriving: expected, no RONA
    out = cmd(c, "1001", b'{"cmd":"ready"}', 111.0)
    assert [e.seat_id for e in out if isinstance(e, RedirectToSeat)] == ["1001"]
    out = answer(c, "c1", "1001", 111.5)  # a second answer: the dispatcher hears of it
    assert c.dispatcher.seats.get("1001").status.value == "talking"  # type: ignore[union-attr]
    assert not [e for e in out if isinstance(e, Publish) and e.topic == "calls/events"]


def test_transfer_refusals() -> None:
    c = core()
    out = cmd(c, "1002", b'{"cmd":"transfer","target":"99999"}', 100.0)
    assert out[-1].payload["error"]["message"].startswith("unknown target")  # type: ignore[union-attr]
    out = cmd(c, "1002", b'{"cmd":"transfer","target":"12315"}', 100.0)
    assert "no call" in out[-1].payload["error"]["message"]  # type: ignore[union-attr]
    out = cmd(c, "1002", b'{"cmd":"transfer","target":"12 315"}', 100.0)
    assert out[-1].payload["error"]["code"] == "invalid_command"  # type: ignore[union-attr]


def test_a_taken_call_opens_a_ticket_and_its_end_updates_it() -> None:
    c = core(wrapup_s=0)
    out = start_call(c, "c1", 100.0)
    [draft] = [e.op for e in out if isinstance(e, StoreTicketOp)]
    assert draft.key == "main:c1:create"
    assert draft.payload["caller"] == "13800138000"
    assert draft.payload["caller_name"] == "张三"
    assert (draft.payload["line"], draft.payload["origin"]) == ("12345", "direct")
    first = "Local/12345@cti-inbound-00000001;1"
    out = c.handle(ev("HangupRequest", 104.0, **chan(first, "c1", "c1", Cause="16")))
    for uid, name in (("c1", first), ("c1.2", HELD)):
        out += c.handle(ev("Hangup", 104.0, **chan(name, uid, "c1", Cause="16")))
    [stored] = [e for e in out if isinstance(e, StoreCall)]
    [update] = stored.ticket_ops
    assert update.key == "main:c1:update"
    assert update.payload["outcome"] == "abandoned"
    assert update.payload["recording"] is None  # never answered: nothing was recorded


def test_pops_follow_the_offer_answer_and_transfer() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    out = cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    [offer] = [e for e in out if isinstance(e, Pop)]
    assert (offer.seat, offer.kind, offer.attempt) == ("1002", "offer", 1)
    assert offer.call["caller_name"] == "张三"
    # it waited alone in the line until 1002 logged in
    assert [(m["event"], m["position"], m["waiting"]) for m in offer.call["queue_positions"]] == [
        ("queued", 1, 1),
        ("offered", 1, 1),
    ]
    assert "recording" not in offer.call  # nothing recorded before the answer
    out = answer(c, "c1", "1002", 101.1)
    [answered] = [e for e in out if isinstance(e, Pop)]
    assert (answered.seat, answered.kind) == ("1002", "answer")
    assert answered.call["recording"] == "/var/spool/asterisk/monitor/hotline-cti/c1.wav"
    assert answered.call["queue_positions"] == offer.call["queue_positions"]
    cmd(c, "1001", b'{"cmd":"login","ready":true}', 102.0)
    out = cmd(c, "1002", b'{"cmd":"transfer","target":"12315"}', 110.0)
    pops = [(e.seat, e.kind, e.call.get("reason")) for e in out if isinstance(e, Pop)]
    assert pops == [("1002", "end", "transferred"), ("1001", "offer", None)]
    # the second offer shows the whole wait: first queued, offered, put back by the transfer
    [second] = [e for e in out if isinstance(e, Pop) and e.kind == "offer"]
    assert [m["event"] for m in second.call["queue_positions"]] == [
        "queued",
        "offered",
        "requeued",
        "offered",
    ]


def test_device_states_listed_at_resync_reconcile_the_seats() -> None:
    c = core()
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 100.0)  # a PJSIP/1002 phone
    out = c.handle(
        ev("DeviceStateChange", 101.0, ActionID="a1", Device="PJSIP/1002", State="UNAVAILABLE")
    )
    assert [(e.status, e.reason) for e in out if isinstance(e, StoreSeatState)] == [
        ("not_ready", "device_unavailable")
    ]
    assert c.dispatcher.ready_seat_ids() == []


def test_a_callback_rings_the_seat_first_and_gives_it_back_when_done() -> None:
    c = core(wrapup_s=0)
    ask = CallbackRequested(
        callback_id="main:m1", node="main", seat="1002", number="13900000001", at=200.0
    )
    [refused] = [e for e in c.handle(ask) if isinstance(e, CallbackReply)]
    assert (refused.ok, refused.code) == (False, "seat_busy")  # logged out
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 201.0)
    out = c.handle(ask)
    [orig] = [e for e in out if isinstance(e, OriginateCallback)]
    assert (orig.endpoint, orig.number, orig.callback_id) == (
        "PJSIP/1002",
        "13900000001",
        "main:m1",
    )
    assert [(e.status, e.reason) for e in out if isinstance(e, StoreSeatState)] == [
        ("not_ready", "callback")
    ]
    [again] = [e for e in c.handle(ask) if isinstance(e, CallbackReply)]
    assert again.code == "already_calling"  # one callback of a citizen at a time
    # the callback call (its linkedid is the originated channel's id) rings and ends
    seat_chan = "PJSIP/1002-00000042"
    c.handle(ev("Newchannel", 202.0, **chan(seat_chan, orig.channel_id, orig.channel_id)))
    out = c.handle(
        ev("Hangup", 210.0, **chan(seat_chan, orig.channel_id, orig.channel_id, Cause="16"))
    )
    [done] = [e for e in out if isinstance(e, CallbackDone)]
    assert (done.callback_id, done.seat_id, done.call_id) == ("main:m1", "1002", orig.channel_id)
    assert [(e.status, e.reason) for e in out if isinstance(e, StoreSeatState)] == [("ready", None)]


def test_blacklisted_callers_are_rejected_or_served_last() -> None:
    plan = make_plan(wrapup_s=0)
    blocked = plan.model_copy(
        update={
            "blacklist": (
                BlockedNumber(number="+8613800138000", treatment="reject", reason="骚扰"),
            )
        }
    )
    c = Core(blocked, log=structlog.get_logger("test"))
    out = start_call(c, "c1", 100.0)  # the caller of start_call is 13800138000
    # taken (the fallback must not answer it either), then sent to cti-blocked
    assert [type(e).__name__ for e in out] == ["MarkTaken", "RejectCall"]
    assert isinstance(out[1], RejectCall)
    assert out[1].channel == HELD
    assert len(c.dispatcher.queue) == 0  # never queued, no ticket draft
    last = plan.model_copy(
        update={"blacklist": (BlockedNumber(number="13800138000", treatment="last"),)}
    )
    c = Core(last, log=structlog.get_logger("test"))
    start_call(c, "c2", 100.0)
    queued = c.dispatcher.queue.get("c2")
    assert queued is not None
    lowest = min(plan.priority_classes, key=lambda p: p.priority).name
    assert queued.priority_class == lowest


def test_the_ticket_number_reaches_the_seat_in_an_update_pop_from_the_core() -> None:
    """The core is the one owner of the ticket number a pop shows (issue 11): the number
    arrives, the seat showing the call gets an update pop with it, and later pops of the
    call carry it too."""
    c = core(wrapup_s=0)
    c.handle(AmiConnected(node="main", time=100.0, version="11.0.0", reconnect=False))
    cmd(c, "1001", b'{"cmd": "login", "ready": true}', 100.0)
    out = start_call(c, "c1", 100.0)
    [offer] = [e for e in out if isinstance(e, Pop)]
    assert (offer.kind, offer.ticket) == ("offer", None)
    out = c.handle(TicketNumberKnown(call_id="main:c1", number="N1", at=100.5))
    [update] = [e for e in out if isinstance(e, Pop)]
    assert (update.seat, update.kind, update.ticket) == ("1001", "update", "N1")
    out = answer(c, "c1", "1001", 101.0)
    assert [(p.kind, p.ticket) for p in out if isinstance(p, Pop)] == [("answer", "N1")]
    # a number for a call nobody is shown (or a malformed id) changes nothing
    assert c.handle(TicketNumberKnown(call_id="main:zz", number="N2", at=102.0)) == []
    assert c.handle(TicketNumberKnown(call_id="nocolon", number="N3", at=102.0)) == []


def test_an_offer_made_while_the_link_was_down_is_withdrawn_at_the_resync_not_rona() -> None:
    """Issue 15, Asterisk frozen: the offer's Redirect never reached Asterisk, and the
    resync lists the call still in cti-hold. Its seat never rang: it stays ready (no RONA)
    and the call is offered again."""
    c = core(wrapup_s=0)
    c.handle(AmiConnected(node="main", time=100.0, version="11.0.0", reconnect=False))
    start_call(c, "c1", 100.0)
    c.handle(AmiDisconnected(node="main", time=100.5, reason="ping timeout"))
    out = cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    assert [e.seat_id for e in out if isinstance(e, RedirectToSeat)] == ["1002"]  # not sent
    c.handle(AmiConnected(node="main", time=108.0, version="11.0.0", reconnect=True))
    out = c.handle(
        ev(
            "CoreShowChannel",
            108.1,
            **chan(HELD, "c1.2", "c1", Context="cti-hold", Priority="8", Application="Wait"),
        )
    )
    states = [(e.status, e.reason) for e in out if isinstance(e, StoreSeatState)]
    assert ("not_ready", "rona") not in states
    assert states == [("ready", None), ("reserved", None)]  # withdrawn, offered again
    assert [e.seat_id for e in out if isinstance(e, RedirectToSeat)] == ["1002"]
    assert c.counts["offer_undelivered"] == 1
    # a seat that did ring (DialBegin seen) and a call back in hold: still ring-no-answer
    assert c.dispatcher.stats["offer_failed_rona"] == 0
