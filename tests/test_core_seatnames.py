"""Issue 18 item 6: a seat on a SIP phone (seat 1001, endpoint PJSIP/6001) is recorded as
seat 1001 everywhere: call record, calls/events and the ticket, not as the phone `6001`."""

from __future__ import annotations

import structlog

from cti.core import Core, Effect, Publish, RedirectToSeat, StoreCall
from tests.routing.plans import make_plan
from tests.test_core import HELD, chan, cmd, ev, start_call

PHONE = "PJSIP/6001-0000002a"


def sip_seat_core() -> Core:
    seats = [
        {"id": "1001", "endpoint": "PJSIP/6001", "skills": {"general": 5}},
        {"id": "1002", "endpoint": "Local/1002@seats", "skills": {"general": 5}},
    ]
    return Core(make_plan(seats, wrapup_s=0), log=structlog.get_logger("test"))


def test_a_sip_phones_call_is_recorded_under_its_seat() -> None:
    c = sip_seat_core()
    start_call(c, "c1", 100.0)
    out = cmd(c, "1001", b'{"cmd":"login","ready":true}', 101.0)
    [redirect] = [e for e in out if isinstance(e, RedirectToSeat)]
    assert (redirect.seat_id, redirect.endpoint) == ("1001", "PJSIP/6001")
    out = c.handle(ev("Newchannel", 101.2, **chan(PHONE, "c1.s", "c1")))
    out += c.handle(
        ev(
            "DialBegin",
            101.2,
            **chan(HELD, "c1.2", "c1"),
            DestChannel=PHONE,
            DestUniqueid="c1.s",
            DestLinkedid="c1",
        )
    )
    for ch, uid in ((HELD, "c1.2"), (PHONE, "c1.s")):
        out += c.handle(
            ev("BridgeEnter", 102.0, **chan(ch, uid, "c1"), BridgeUniqueid="br", BridgeType="basic")
        )
    first = "Local/12345@cti-inbound-00000001;1"
    out += c.handle(ev("HangupRequest", 110.0, **chan(first, "c1", "c1", Cause="16")))
    for uid, name in (("c1", first), ("c1.2", HELD), ("c1.s", PHONE)):
        out += c.handle(ev("Hangup", 110.0, **chan(name, uid, "c1", Cause="16")))

    [stored] = [e for e in out if isinstance(e, StoreCall)]
    assert stored.summary.answered_by == "1001"
    assert stored.summary.rang == ("1001",)
    [update] = stored.ticket_ops
    assert update.payload["seat"] == "1001"
    events = events_of(out)
    assert [e["answered_by"] for e in events if e["type"] == "answered"] == ["1001"]
    [ended] = [e for e in events if e["type"] == "ended"]
    assert (ended["answered_by"], ended["rang"]) == ("1001", ["1001"])


def events_of(out: list[Effect]) -> list[dict[str, object]]:
    return [e.payload for e in out if isinstance(e, Publish) and e.topic == "calls/events"]
