"""Adopting waiting calls the daemon did not see arrive (issue 18, items 1 and 4): their
line read back from the channel, their place in the line from their entry time, the ones
in a fallback Queue() taken back. Sans-IO: events in, effects out."""

from __future__ import annotations

from cti.adapters.chanvars import parse_status_variables
from cti.core import Core, Effect, MarkTaken, RedirectToSeat, ReturnToHold, StoreCall, StoreTicketOp
from cti.core.adoption import AdoptedFacts
from cti.core.messages import AdoptedChannelRead, ReadAdoptedChannel
from cti.events import AmiConnected
from tests.test_core import HELD, answer, chan, cmd, core, ev, hold, start_call


def listed(c: Core, call: str, t: float, *, context: str, age: str = "00:00:20") -> list[Effect]:
    name = f"Local/12345@cti-inbound-{call};2"
    return c.handle(
        ev(
            "CoreShowChannel",
            t,
            **chan(name, f"{call}.2", call, Context=context, Application="Queue"),
            Duration=age,
        )
    )


def read(c: Core, call: str, t: float, **variables: str) -> list[Effect]:
    name = f"Local/12345@cti-inbound-{call};2"
    return c.handle(
        AdoptedChannelRead(node="main", call_id=call, channel=name, variables=variables, at=t)
    )


def connected(c: Core, t: float) -> None:
    c.handle(AmiConnected(node="main", time=t, version="11.0.0", reconnect=False))


def test_status_variables_and_facts_are_checked() -> None:
    got = parse_status_variables("CTI_LINE=12315\nCTI_DNIS=12315\nCTI_ENTERED=(null)\nX=a=b")
    assert got == {"CTI_LINE": "12315", "CTI_DNIS": "12315", "X": "a=b"}
    facts = AdoptedFacts.from_variables(
        {"CTI_LINE": "12315", "CTI_ENTERED": "95.250", "CTI_TRANSFER_ID": "T-1"}, now=100.0
    )
    assert (facts.line, facts.entered_at, facts.transfer_id) == ("12315", 95.25, "T-1")
    hostile = AdoptedFacts.from_variables(
        {"CTI_LINE": "1;Hangup()", "CTI_ENTERED": "nan", "CTI_TRANSFER_ID": "a b"}, now=100.0
    )
    assert hostile == AdoptedFacts()
    assert AdoptedFacts.from_variables({"CTI_ENTERED": "1e12"}, now=100.0).entered_at is None


def test_an_adopted_call_gets_its_line_and_its_place_before_newer_calls() -> None:
    c = core(wrapup_s=0)
    connected(c, 100.0)
    start_call(c, "new", 99.0)  # seen arriving, at 99
    assert listed(c, "old", 100.1, context="cti-hold")[1] == ReadAdoptedChannel(
        node="main", channel="Local/12345@cti-inbound-old;2", call_id="old"
    )
    assert c.dispatcher.queue.get("old") is None  # not before its line is known
    out = read(c, "old", 100.2, CTI_LINE="12315", CTI_DNIS="12315", CTI_ENTERED="90.5")
    draft = next(e for e in out if isinstance(e, StoreTicketOp)).op
    assert draft.payload["line"] == "12315"
    waiting = c.dispatcher.queue.get("old")
    assert waiting is not None
    assert (waiting.line, waiting.enqueued_at) == ("12315", 90.5)
    active = c.tracker.call("main", "old")
    assert active is not None
    assert (active.line, active.dialed) == ("12315", "12315")
    # the first ready seat with the skill takes the older call, not the newer one
    out = cmd(c, "1001", b'{"cmd":"login","ready":true}', 101.0)
    assert [e.call_id for e in out if isinstance(e, RedirectToSeat)] == ["old"]


def test_without_cti_entered_the_channel_age_is_its_wait() -> None:
    c = core()
    connected(c, 100.0)
    listed(c, "old", 100.0, context="cti-hold", age="00:00:30")
    read(c, "old", 100.1, CTI_LINE="12345")
    waiting = c.dispatcher.queue.get("old")
    assert waiting is not None
    assert waiting.enqueued_at == 70.0


def test_a_fallback_call_is_taken_back_to_hold_and_served_first() -> None:
    c = core(wrapup_s=0)
    connected(c, 100.0)
    out = listed(c, "fb", 100.1, context="cti-fallback")
    assert isinstance(out[0], MarkTaken)
    out = read(c, "fb", 100.2, CTI_LINE="12345", CTI_ENTERED="80")
    back = [e for e in out if isinstance(e, ReturnToHold)]
    assert [(e.call_id, e.reason) for e in back] == [("fb", "fallback")]
    hold(c, "fb", 100.3)  # our own Redirect arriving in cti-hold: no RONA, still waiting
    assert c.dispatcher.queue.get("fb") is not None
    start_call(c, "new", 101.0)
    out = cmd(c, "1002", b'{"cmd":"login","ready":true}', 102.0)
    assert [e.call_id for e in out if isinstance(e, RedirectToSeat)] == ["fb"]


def test_a_fallback_call_with_a_ready_seat_goes_straight_to_it() -> None:
    c = core()
    connected(c, 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 100.0)
    listed(c, "fb", 100.1, context="cti-fallback")
    out = read(c, "fb", 100.2, CTI_LINE="12345", CTI_ENTERED="80")
    assert [e.seat_id for e in out if isinstance(e, RedirectToSeat)] == ["1002"]
    assert not [e for e in out if isinstance(e, ReturnToHold)]  # the Redirect leaves Queue()


def test_a_fallback_member_answering_first_is_left_answered() -> None:
    c = core()
    connected(c, 100.0)
    listed(c, "fb", 100.1, context="cti-fallback")
    # app_queue's member answers before the variables are back
    caller = "Local/12345@cti-inbound-fb;2"
    member = "Local/1001@seats-00000009;1"
    c.handle(ev("Newchannel", 100.15, **chan(member, "fb.m", "fb")))
    for ch, uid in ((caller, "fb.2"), (member, "fb.m")):
        c.handle(ev("BridgeEnter", 100.16, **chan(ch, uid, "fb"), BridgeUniqueid="br-q"))
    out = read(c, "fb", 100.2, CTI_LINE="12345")
    assert not [e for e in out if isinstance(e, ReturnToHold | RedirectToSeat)]
    assert c.dispatcher.queue.get("fb") is None
    assert c.counts["adopted_answered_in_fallback"] == 1


def test_a_held_call_that_fell_back_during_an_ami_outage_is_taken_back() -> None:
    c = core()
    connected(c, 100.0)
    start_call(c, "c1", 100.5)
    # the lease ran out while the AMI link was down: the holding loop gave it to Queue()
    out = c.handle(
        ev("Newexten", 120.0, **chan(HELD, "c1.2", "c1", Context="cti-fallback", Priority="1"))
    )
    assert [(e.call_id, e.reason) for e in out if isinstance(e, ReturnToHold)] == [
        ("c1", "fallback")
    ]
    assert c.counts["fallback_taken_back"] == 1
    assert c.dispatcher.queue.get("c1") is not None  # its place in the line is kept


def test_an_adopted_call_answered_by_the_daemon_records_its_answer() -> None:
    c = core(wrapup_s=0)
    connected(c, 100.0)
    c.handle(
        ev(
            "CoreShowChannel",
            100.0,
            **chan(HELD, "c9.2", "c9", Context="cti-hold", Application="Wait"),
            Duration="00:00:10",
        )
    )
    read_out = c.handle(
        AdoptedChannelRead(
            node="main", call_id="c9", channel=HELD, variables={"CTI_LINE": "12345"}, at=100.1
        )
    )
    assert read_out
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    answer(c, "c9", "1002", 102.0)
    out = c.handle(ev("Hangup", 112.5, **chan(HELD, "c9.2", "c9"), Cause="16"))
    out += c.handle(ev("Hangup", 112.5, **chan("PJSIP/1002-00000004", "c9.1002", "c9")))
    stored = next(e for e in out if isinstance(e, StoreCall)).summary
    assert stored.line == "12345"
    assert stored.answered_at == 102.5
    assert stored.wait_s == 12.5  # from the channel's birth (its age when listed)
    assert stored.talk_s == 10.0
    assert stored.history_complete is False


def test_a_call_bounced_back_to_fallback_again_and_again_is_left_in_queue() -> None:
    """A brake: the holding loop handing the same call to Queue() over and over (its lease
    check failing for a reason the daemon cannot see) must not become a Redirect loop."""
    c = core()
    connected(c, 100.0)
    start_call(c, "c1", 100.5)
    backs = []
    for k in range(6):
        out = c.handle(
            ev(
                "Newexten",
                120.0 + k,
                **chan(HELD, "c1.2", "c1", Context="cti-fallback", Priority="1"),
            )
        )
        backs.append(len([e for e in out if isinstance(e, ReturnToHold)]))
    assert backs == [1, 1, 1, 0, 0, 0]
    assert c.counts["fallback_taken_back"] == 3
    assert c.counts["fallback_left_in_queue"] == 1
    assert c.dispatcher.queue.get("c1") is not None  # still in the line: a seat may take it
    out = cmd(c, "1001", b'{"cmd":"login","ready":true}', 130.0)
    assert [e.call_id for e in out if isinstance(e, RedirectToSeat)] == ["c1"]
