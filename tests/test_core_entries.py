"""Queue-entry facts (issue 17): the core emits one QueueEntry per stay in the line, on the
call's StoreCall, with the fate, the wait, the RONAs and a transfer's second entry."""

from __future__ import annotations

from cti.core import Core, Effect, Publish, StoreCall, StoreSeatState
from cti.kpis import Origin, Outcome, QueueEntry
from tests.test_core import HELD, answer, chan, cmd, core, ev, hold, start_call

FIRST = "Local/12345@cti-inbound-00000001;1"


def hang_up(c: Core, call: str, t: float, *seats: str) -> list[Effect]:
    out = c.handle(ev("HangupRequest", t, **chan(FIRST, call, call, Cause="16")))
    names = [(call, FIRST), (f"{call}.2", HELD)]
    names += [(f"{call}.{seat}", f"PJSIP/{seat}-0000000{len(seat)}") for seat in seats]
    for uid, name in names:
        out += c.handle(ev("Hangup", t, **chan(name, uid, call, Cause="16")))
    return out


def stored(out: list[Effect]) -> StoreCall:
    [s] = [e for e in out if isinstance(e, StoreCall)]
    return s


def test_an_answered_call_has_one_answered_entry_with_its_wait_and_talk() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)  # taken at 100.1
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 103.0)
    answer(c, "c1", "1002", 104.0)  # bridged at 104.5
    s = stored(hang_up(c, "c1", 130.5, "1002"))
    [e] = s.entries
    assert e.outcome is Outcome.ANSWERED
    assert (e.line, e.seat, e.entry_seq, e.origin) == ("12345", "1002", 1, Origin.DIRECT)
    assert e.entered_at == 100.1
    assert e.first_offered_at == 103.0
    assert abs(e.wait_s - 4.4) < 1e-9  # entered 100.1 -> connected 104.5, ringing included
    assert abs(e.talk_s - 26.0) < 1e-9
    assert abs(e.ring_s - 1.5) < 1e-9  # offered 103.0 -> answered 104.5
    assert e.offers == 0


def test_an_abandoned_call_is_abandoned_with_its_wait() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    s = stored(hang_up(c, "c1", 102.1))
    [e] = s.entries
    assert e.outcome is Outcome.ABANDONED
    assert abs(e.wait_s - 2.0) < 1e-9
    assert e.offered
    assert not e.answered


def test_a_rona_put_back_stays_the_same_entry_and_counts_an_offer() -> None:
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
    hold(c, "c1", 116.0)  # the Dial gave up: RONA, back in the line
    cmd(c, "1001", b'{"cmd":"login","ready":true}', 117.0)
    answer(c, "c1", "1001", 117.1)
    [e] = stored(hang_up(c, "c1", 150.0, "1001")).entries
    assert (e.outcome, e.seat, e.offers, e.entry_seq) == (Outcome.ANSWERED, "1001", 1, 1)
    assert abs(e.wait_s - 17.5) < 1e-9  # 100.1 -> 117.6: the RONA's ringing included


def test_a_transfer_to_a_department_is_a_second_entry_linked_to_the_first() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    answer(c, "c1", "1002", 101.1)
    cmd(c, "1001", b'{"cmd":"login","ready":false}', 102.0)
    cmd(c, "1002", b'{"cmd":"transfer","target":"12315"}', 110.0)
    hold(c, "c1", 110.2)
    cmd(c, "1001", b'{"cmd":"ready"}', 111.0)
    answer(c, "c1", "1001", 111.5)
    first, second = stored(hang_up(c, "c1", 140.0, "1002", "1001")).entries
    assert (first.entry_seq, first.outcome, first.seat) == (1, Outcome.ANSWERED, "1002")
    assert first.transferred_to is not None
    assert abs(first.talk_s - 8.4) < 1e-9  # 101.6 -> 110.0
    assert (second.entry_seq, second.origin, second.outcome) == (
        2,
        Origin.TRANSFER,
        Outcome.ANSWERED,
    )
    assert second.department == first.transferred_to
    assert (second.call_id, second.node) == (first.call_id, first.node)
    assert abs(second.wait_s - 2.0) < 1e-9  # 110.0 -> 112.0
    assert second.seat == "1001"


def test_a_call_that_never_entered_the_line_is_ivr_only_not_abandoned() -> None:
    """The progress query on its own: the tracker alone would store it as abandoned."""
    c = core(wrapup_s=0)
    c.handle(ev("Newchannel", 100.0, **chan(FIRST, "c1", "c1")))
    c.handle(ev("VarSet", 100.0, **chan(FIRST, "c1", "c1", Variable="__CTI_LINE", Value="12345")))
    out = c.handle(ev("HangupRequest", 130.0, **chan(FIRST, "c1", "c1", Cause="16")))
    out += c.handle(ev("Hangup", 130.0, **chan(FIRST, "c1", "c1", Cause="16")))
    s = stored(out)
    assert s.summary.outcome == "ivr_only"
    assert s.summary.wait_s is None
    assert not s.missed
    [e] = s.entries
    assert e.outcome is Outcome.IVR_ONLY
    assert not e.offered


def test_a_call_on_no_line_of_ours_has_no_entry() -> None:
    c = core(wrapup_s=0)
    c.handle(ev("Newchannel", 100.0, **chan("PJSIP/1001-00000009", "x1", "x1", Exten="1002")))
    out = c.handle(ev("Hangup", 101.0, **chan("PJSIP/1001-00000009", "x1", "x1", Cause="16")))
    assert stored(out).entries == ()


def test_entries_are_valid_kpi_facts() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    [e] = stored(hang_up(c, "c1", 101.0)).entries
    assert isinstance(e, QueueEntry)
    assert e.left_at == 101.0


def test_talk_ends_when_the_agent_leg_ends_not_after_the_survey() -> None:
    """The seat hangs up first and the caller stays for the survey (3.5 s of talk, then
    3.7 s rating): talk_s is 3.5 in the call record and in the queue entry."""
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 103.0)
    answer(c, "c1", "1002", 104.0)  # bridged at 104.5
    seat = chan("PJSIP/1002-00000004", "c1.1002", "c1", Cause="16")
    c.handle(ev("HangupRequest", 108.0, **seat))
    c.handle(ev("Hangup", 108.0, **seat))
    s = stored(hang_up(c, "c1", 111.7))  # the caller, after the survey
    assert s.summary.talk_s is not None
    assert abs(s.summary.talk_s - 3.5) < 1e-9
    assert s.summary.ended_at == 111.7
    [e] = s.entries
    assert abs(e.talk_s - 3.5) < 1e-9


def test_a_device_state_change_while_talking_stores_no_second_talking_row() -> None:
    c = core(wrapup_s=0)
    start_call(c, "c1", 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 103.0)
    answer(c, "c1", "1002", 104.0)
    out = c.handle(ev("DeviceStateChange", 105.0, Device="PJSIP/1002", State="INUSE"))
    assert [e for e in out if isinstance(e, StoreSeatState)] == []
    assert [e for e in out if isinstance(e, Publish)]  # the published state still changes
    stored_rows = [e for e in hang_up(c, "c1", 110.0, "1002") if isinstance(e, StoreSeatState)]
    assert [(e.status, e.reason) for e in stored_rows] == [("ready", None)]
