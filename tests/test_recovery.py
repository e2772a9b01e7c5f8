"""After a restart (cti/core/recovery.py): calls that ended in the outage are reconstructed, calls
still up are followed, seats that were on a call go on (pure, no I/O)."""

from __future__ import annotations

from cti.core import Core, Pop, Publish, StoreCall, StoreSeatState, Tick
from cti.core.messages import SeatMark, StateRestored, TakenCall
from cti.core.recovery import reconstruct
from cti.seats.model import Pending, PendingKind, Reason
from cti.workorders.model import TicketCallFacts, TicketDraft
from tests.test_core import chan, core, ev


def draft(linkedid: str, at: float = 100.0) -> TicketDraft:
    return TicketDraft(
        call_id=f"main:{linkedid}",
        node="main",
        caller="13800138000",
        caller_name="张三",
        line="12345",
        line_name="12345热线",
        department="",
        origin="direct",
        skill="general",
        created_at=at,
    )


def taken(linkedid: str, seat: str | None = "1001") -> TakenCall:
    marks = (
        ()
        if seat is None
        else (
            SeatMark(seat_id=seat, status="reserved", at=101.0),
            SeatMark(seat_id=seat, status="ringing", at=101.5),
            SeatMark(seat_id=seat, status="talking", at=103.0),
        )
    )
    return TakenCall(draft=draft(linkedid), marks=marks)


def test_reconstruct_an_answered_call_bounded_by_the_outage() -> None:
    summary, facts = reconstruct(taken("c1"), ended_after=120.0, ended_before=135.0, recording="r")
    assert (summary.answered_by, summary.answered_at, summary.ended_at) == ("1001", 103.0, 120.0)
    assert (summary.wait_s, summary.talk_s, summary.rang) == (3.0, 17.0, ("1001",))
    assert (summary.outcome, summary.hangup_by, summary.history_complete) == (
        "answered",
        "system",
        False,
    )
    assert (facts.reconstructed, facts.ended_at, facts.ended_before) == (True, 120.0, 135.0)
    assert facts.recording == "r"
    back = TicketCallFacts.from_json(facts.to_json())
    assert back == facts


def test_reconstruct_an_unanswered_call() -> None:
    summary, facts = reconstruct(taken("c2", None), ended_after=90.0, ended_before=95.0)
    # the lower bound is never before the call's own last sign
    assert (summary.outcome, summary.ended_at, summary.talk_s) == ("abandoned", 100.0, None)
    assert facts.ended_before == 100.0
    assert facts.recording is None


def test_facts_of_a_live_call_keep_their_shape() -> None:
    live = TicketCallFacts(
        call_id="main:c1", seat="1001", wait_s=1.0, talk_s=2.0, outcome="answered", ended_at=1.0
    )
    assert "reconstructed" not in live.to_json()
    assert TicketCallFacts.from_json(live.to_json()).reconstructed is False


def restarted(after_restart: str = "wrap_up") -> Core:
    c = core(wrapup_s=10.0, after_restart=after_restart)
    c.handle(
        StateRestored(
            seats={},
            taken=(taken("gone"), taken("up", "1002")),
            last_alive={"main": 118.0},
            at=118.0,
            busy={
                "1001": ("talking", None, 103.0, "gone", None),
                "1002": ("talking", None, 103.0, "up", None),
                "2001": (
                    "talking",
                    None,
                    103.0,
                    "gone2",
                    Pending(kind=PendingKind.NOT_READY, reason=Reason.MEAL),
                ),
            },
        )
    )
    return c


def first_list(c: Core, t: float) -> list[object]:
    """The restart's CoreShowChannels: only call "up" is listed, talking with seat 1002."""
    out: list[object] = []
    for uid, channel, bridge in (("up", "PJSIP/trunk-1", "b1"), ("up.s", "PJSIP/1002-1", "b1")):
        out += c.handle(
            ev(
                "CoreShowChannel",
                t,
                **chan(channel, uid, "up", Context="cti-connect"),
                BridgeId=bridge,
                Duration="00:00:30",
                Application="Dial",
            )
        )
    out += c.handle(ev("CoreShowChannelsComplete", t, ListItems="2"))
    return out


def test_calls_gone_are_reconstructed_and_their_seats_wrap_up() -> None:
    c = restarted()
    out = first_list(c, 130.0)
    stored = [e for e in out if isinstance(e, StoreCall)]
    assert [s.summary.call_id for s in stored] == ["gone"]
    [op] = stored[0].ticket_ops
    assert op.kind == "update"
    assert op.payload["reconstructed"] is True
    assert op.payload["ended_at"] == 118.0
    ended = [
        e
        for e in out
        if isinstance(e, Publish) and e.topic == "calls/events" and e.payload["type"] == "ended"
    ]
    assert ended[0].payload["reconstructed"] is True
    seats = {e.seat_id: (e.status, e.reason) for e in out if isinstance(e, StoreSeatState)}
    assert seats["1001"] == ("wrap_up", None)  # its call is over: wrap-up first
    assert seats["2001"] == ("wrap_up", None)
    assert "1002" not in seats  # still talking on "up"
    assert c.dispatcher.seats.get("1002").status == "talking"  # type: ignore[union-attr]
    # after one wrap-up: 1001 ready, 2001 what its agent asked for during the call
    later = c.handle(Tick(at=141.0))
    seats = {e.seat_id: (e.status, e.reason) for e in later if isinstance(e, StoreSeatState)}
    assert seats == {"1001": ("ready", None), "2001": ("not_ready", "meal")}


def test_after_restart_ready_skips_the_wrap_up() -> None:
    c = restarted("ready")
    out = first_list(c, 130.0)
    seats = {e.seat_id: (e.status, e.reason) for e in out if isinstance(e, StoreSeatState)}
    assert seats["1001"] == ("ready", None)
    assert seats["2001"] == ("not_ready", "meal")


def test_a_seat_restored_ringing_on_a_call_answered_while_down_talks_and_gets_a_late_pop() -> None:
    """Issue 15: the daemon died while 1002 rang; 1002 answered before it came back. The
    seat is talking (not offered another call), and gets the answer pop, marked late."""
    c = core(wrapup_s=10.0)
    c.handle(
        StateRestored(
            seats={},
            taken=(
                TakenCall(
                    draft=draft("up"),
                    marks=(SeatMark(seat_id="1002", status="reserved", at=101.0),),
                ),
            ),
            last_alive={"main": 118.0},
            at=118.0,
            busy={"1002": ("ringing", None, 101.5, "up", None)},
        )
    )
    out = first_list(c, 130.0)
    assert c.dispatcher.seats.get("1002").status == "talking"  # type: ignore[union-attr]
    pops = [e for e in out if isinstance(e, Pop)]
    assert [(p.seat, p.kind, p.attempt) for p in pops] == [("1002", "answer", 1)]
    assert pops[0].call["late"] is True
    assert pops[0].call["caller"] == "13800138000"  # the card shows the caller
    # the call's end: the end pop and the seat's wrap-up
    end = c.handle(ev("Hangup", 140.0, **chan("PJSIP/1002-1", "up.s", "up")))
    end += c.handle(ev("Hangup", 140.1, **chan("PJSIP/trunk-1", "up", "up")))
    assert [p.kind for p in end if isinstance(p, Pop)] == ["end"]
    states = [e.status for e in end if isinstance(e, StoreSeatState) and e.seat_id == "1002"]
    assert states[-1] == "wrap_up"


def test_a_seat_restored_talking_gets_its_answer_pop_again_late() -> None:
    c = restarted()
    out = first_list(c, 130.0)
    pops = [(e.seat, e.kind, e.call["late"]) for e in out if isinstance(e, Pop)]
    assert ("1002", "answer", True) in pops


def test_a_seat_on_a_call_that_ended_while_down_gets_a_late_reconstructed_end_pop() -> None:
    c = restarted()
    out = first_list(c, 130.0)
    [end] = [e for e in out if isinstance(e, Pop) and e.kind == "end"]
    assert (end.seat, end.call_id, end.call["late"], end.call["reconstructed"]) == (
        "1001",
        "gone",
        True,
        True,
    )
    assert end.call["caller"] == "13800138000"  # who the agent talked to
    assert end.call["outcome"] == "answered"  # its talking mark was stored
