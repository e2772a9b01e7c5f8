"""Unit tests of the tracker's rules that the recorded scenarios do not isolate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cti.calls import CallEnded, CallState, CallTracker, Trigger, next_state, party_name
from cti.events import AmiConnected, AmiDisconnected, AttendedTransfer, Hangup, parse_event
from cti.replay import iter_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"


def ev(name: str, t: float = 100.0, /, **h: str) -> Any:
    return parse_event("main", {"Event": name, "Timestamp": str(t), **h}, 0.0)


def chan(name: str, uid: str, linkedid: str, **extra: str) -> dict[str, str]:
    return {"Channel": name, "Uniqueid": uid, "Linkedid": linkedid, **extra}


def ended(tracker: CallTracker, events: list[Any]) -> list[dict[str, Any]]:
    return [
        n.summary.to_json() for e in events for n in tracker.handle(e) if isinstance(n, CallEnded)
    ]


@pytest.mark.parametrize(
    ("channel", "name"),
    [
        ("Local/1001@seats-00000001;1", "1001"),
        ("PJSIP/1001-0000002a", "1001"),
        ("SIP/trunk-00000001", "trunk"),
        ("odd", "odd"),
    ],
)
def test_party_name(channel: str, name: str) -> None:
    assert party_name(channel) == name


def test_transitions() -> None:
    assert next_state(CallState.WAITING, Trigger.RING) is CallState.RINGING
    assert next_state(CallState.RINGING, Trigger.ANSWER) is CallState.TALKING
    assert next_state(CallState.TALKING, Trigger.UNBRIDGE) is CallState.WAITING
    assert next_state(CallState.ENDED, Trigger.ANSWER) is None


def test_unknown_hangup_is_counted_not_raised() -> None:
    t = CallTracker()
    assert t.handle(ev("Hangup", **chan("PJSIP/x-1", "9.9", "9.9"), Cause="16")) == []
    assert t.anomalies["unknown_channel"] == 1
    assert t.active_calls() == []


def test_unknown_event_types_are_ignored() -> None:
    t = CallTracker()
    assert t.handle(ev("SomethingNew", Foo="bar")) == []
    assert t.handle(object()) == []


def test_newstate_before_newchannel_adopts_with_incomplete_history() -> None:
    t = CallTracker()
    t.handle(ev("Newstate", **chan("PJSIP/trunk-1", "1.1", "1.1", ChannelState="4")))
    [call] = t.active_calls()
    assert not call.history_complete
    [s] = ended(t, [ev("Hangup", 101.0, **chan("PJSIP/trunk-1", "1.1", "1.1"), Cause="16")])
    assert s["history_complete"] is False
    assert s["outcome"] == "failed"
    assert s["hangup_by"] == "system"


def test_resync_ends_vanished_calls_as_of_the_disconnect() -> None:
    t = CallTracker()
    trunk = chan("PJSIP/trunk-1", "1.1", "1.1", CallerIDNum="13800138000", Exten="12345")
    t.handle(ev("Newchannel", 100.0, **trunk))
    t.handle(AmiDisconnected(node="main", time=105.0, reason="eof"))
    assert [c.stale for c in t.active_calls()] == [True]
    t.handle(AmiConnected(node="main", time=120.0, version="x", reconnect=True))
    # a channel born after the reconnect is not killed by the resync's empty list
    t.handle(ev("Newchannel", 120.5, **chan("PJSIP/trunk-2", "2.2", "2.2")))
    [s] = ended(t, [ev("CoreShowChannelsComplete", 121.0, ListItems="0")])
    assert s["call_id"] == "1.1"
    assert s["ended_at"] == 105.0
    assert s["hangup_by"] == "system"
    assert s["caller"] == "13800138000"
    assert [c.call_id for c in t.active_calls()] == ["2.2"]
    assert t.channel_count("main") == 1


def test_core_show_channel_after_its_hangup_is_no_ghost() -> None:
    t = CallTracker()
    c = chan("PJSIP/trunk-1", "1.1", "1.1")
    t.handle(AmiConnected(node="main", time=1.0, version="x", reconnect=False))
    t.handle(ev("Newchannel", 2.0, **c))
    ended(t, [ev("Hangup", 3.0, **c, Cause="16")])
    t.handle(ev("CoreShowChannel", 3.1, **c, Duration="00:00:01"))
    t.handle(ev("CoreShowChannelsComplete", 3.2))
    assert t.active_calls() == []


def test_adopted_call_is_answered_when_bridged() -> None:
    t = CallTracker()
    t.handle(AmiConnected(node="main", time=1.0, version="x", reconnect=True))
    seat = chan("PJSIP/1001-2", "1.2", "1.1", BridgeId="b1", Duration="00:00:30")
    trunk = chan("PJSIP/trunk-1", "1.1", "1.1", BridgeId="b1", Duration="00:01:00")
    trunk["CallerIDNum"] = "13800138000"
    t.handle(ev("CoreShowChannel", 100.0, **seat))  # the callee is listed first
    t.handle(ev("CoreShowChannel", 100.0, **trunk))
    t.handle(ev("CoreShowChannelsComplete", 100.0))
    [call] = t.active_calls()
    assert call.answered_by == "1001"
    assert call.state is CallState.TALKING
    [s] = ended(
        t,
        [
            ev("HangupRequest", 110.0, **chan("PJSIP/trunk-1", "1.1", "1.1"), Cause="16"),
            ev("Hangup", 110.1, **chan("PJSIP/trunk-1", "1.1", "1.1"), Cause="16"),
            ev("Hangup", 110.2, **chan("PJSIP/1001-2", "1.2", "1.1"), Cause="16"),
        ],
    )
    assert s["started_at"] == 40.0
    assert (s["outcome"], s["hangup_by"], s["history_complete"]) == ("answered", "caller", False)
    assert (s["answered_at"], s["wait_s"], s["talk_s"]) == (None, None, None)
    assert s["dialed"] == ""


def test_impossible_transition_is_counted_not_raised() -> None:
    t = CallTracker()
    t.handle(ev("Newchannel", 1.0, **chan("PJSIP/trunk-1", "1.1", "1.1")))
    t.handle(ev("Newchannel", 1.1, **chan("PJSIP/1001-2", "1.2", "1.1")))
    # a transfer of a call that was never answered: Asterisk would not send it
    t.handle(
        ev(
            "BlindTransfer",
            2.0,
            Result="Success",
            TransfererChannel="PJSIP/1001-2",
            TransfererUniqueid="1.2",
            TransfererLinkedid="1.1",
            TransfereeChannel="PJSIP/trunk-1",
            TransfereeUniqueid="1.1",
            TransfereeLinkedid="1.1",
            Extension="1002",
        )
    )
    assert t.anomalies["impossible_transition"] == 1
    [call] = t.active_calls()
    assert call.state is CallState.WAITING


def test_fixtures_have_no_anomalies() -> None:
    for path in sorted(FIXTURES.glob("*/*")):
        t = CallTracker()
        for e in iter_events(path):
            t.handle(e)
        assert t.anomalies["impossible_transition"] == 0, path
        assert t.anomalies["handler_error"] == 0, path


def test_attended_transfer_target_gone_before_the_event_still_names_it() -> None:
    """Live, the transfer target's Local channel sometimes hangs up (is optimised away)
    before Asterisk emits AttendedTransfer: the summary must still say where it went."""
    events = list(iter_events(FIXTURES / "transfer" / "attended.jsonl", node="main"))
    i = next(i for i, e in enumerate(events) if isinstance(e, AttendedTransfer))
    xfer = events[i]
    assert isinstance(xfer, AttendedTransfer)
    assert xfer.transfer_target is not None
    target_uid = xfer.transfer_target.uniqueid
    j = next(
        j for j, e in enumerate(events) if isinstance(e, Hangup) and e.chan.uniqueid == target_uid
    )
    moved = [*events[:i], events[j], *events[i:j], *events[j + 1 :]]
    summaries = ended(CallTracker(), moved)
    transfers = [t for s in summaries for t in s["transfers"]]
    assert [(t["type"], t["by"], t["to"]) for t in transfers] == [("attended", "1001", "1002")]


def test_a_message_taken_after_hours_is_voicemail_not_abandoned() -> None:
    t = CallTracker()
    trunk = chan("PJSIP/trunk-1", "1.1", "1.1", CallerIDNum="13800138000", Exten="12348")
    t.handle(ev("Newchannel", 100.0, **trunk))
    t.handle(ev("VarSet", 101.0, **trunk, Variable="CTI_AFTER_HOURS", Value="1"))
    t.handle(ev("HangupRequest", 110.0, **trunk, Cause="16"))
    [s] = ended(t, [ev("Hangup", 110.0, **trunk, Cause="16")])
    assert (s["outcome"], s["answered_by"]) == ("voicemail", None)
    # without the mark the same call is an abandoned one
    t = CallTracker()
    t.handle(ev("Newchannel", 100.0, **trunk))
    t.handle(ev("HangupRequest", 110.0, **trunk, Cause="16"))
    [s] = ended(t, [ev("Hangup", 110.0, **trunk, Cause="16")])
    assert s["outcome"] == "abandoned"


def _dest(c: dict[str, str]) -> dict[str, str]:
    return {"Dest" + k: v for k, v in c.items()}


def _callback_events(citizen_status: str) -> list[Any]:
    """A callback Originate (ChannelId cb1) of a seat endpoint that dials the seat's phone
    onwards (Local/1001@phones: its ;2 half Dials PJSIP/1001), then the citizen."""
    one = chan("Local/1001@phones-1;1", "cb1", "cb1")
    two = chan("Local/1001@phones-1;2", "cb1b", "cb1")
    phone = chan("PJSIP/1001-01", "p1", "cb1")
    citizen = chan("Local/13900001234@citizen-2;1", "c1", "cb1")
    citizen2 = chan("Local/13900001234@citizen-2;2", "c1b", "cb1")
    events = [
        ev("Newchannel", 100.0, **one),
        ev("Newchannel", 100.0, **two),
        ev("DialBegin", 100.0, **_dest(one)),  # the Originate's own dial: no source
        ev("Newchannel", 100.1, **phone),
        ev("DialBegin", 100.1, **two, **_dest(phone)),
        ev("DialEnd", 101.0, **two, **_dest(phone), DialStatus="ANSWER"),
        ev("BridgeEnter", 101.0, **two, BridgeUniqueid="b1"),
        ev("BridgeEnter", 101.0, **phone, BridgeUniqueid="b1"),
        ev("DialEnd", 101.0, **_dest(one), DialStatus="ANSWER"),
        ev("Newchannel", 101.1, **citizen),
        ev("Newchannel", 101.1, **citizen2),
        ev("DialBegin", 101.1, **one, **_dest(citizen)),
        ev("DialEnd", 103.0, **one, **_dest(citizen), DialStatus=citizen_status),
    ]
    if citizen_status == "ANSWER":
        events += [
            ev("BridgeEnter", 103.0, **one, BridgeUniqueid="b2"),
            ev("BridgeEnter", 103.0, **citizen, BridgeUniqueid="b2"),
            ev("HangupRequest", 110.0, **citizen, Cause="16"),
            ev("Hangup", 110.0, **citizen, Cause="16"),
            ev("Hangup", 110.0, **citizen2, Cause="16"),
        ]
    else:
        events += [ev("Hangup", 103.0, **citizen, Cause="17"), ev("Hangup", 103.0, **citizen2)]
    return [
        *events,
        ev("Hangup", 110.1, **one, Cause="16"),
        ev("Hangup", 110.1, **two, Cause="16"),
        ev("Hangup", 110.1, **phone, Cause="16"),
    ]


@pytest.mark.parametrize(("status", "outcome"), [("BUSY", "busy"), ("NOANSWER", "no_answer")])
def test_an_originated_call_only_its_first_leg_answered_is_not_answered(
    status: str, outcome: str
) -> None:
    t = CallTracker()
    t.expect_originated("main", "cb1")
    notes = [n for e in _callback_events(status) for n in t.handle(e)]
    [s] = [n.summary for n in notes if isinstance(n, CallEnded)]
    assert [type(n).__name__ for n in notes] == ["CallEnded"]  # no CallAnswered/Connected
    assert (s.outcome, s.answered_by, s.answered_at, s.talk_s) == (outcome, None, None, None)
    assert s.rang == ("13900001234",)
    # what the tracker reported before it knew the call was originated seat first
    t = CallTracker()
    [s] = [
        n.summary for e in _callback_events(status) for n in t.handle(e) if isinstance(n, CallEnded)
    ]
    assert (s.outcome, s.answered_by) == ("answered", "1001")


def test_an_originated_call_is_answered_when_its_second_leg_answers() -> None:
    t = CallTracker()
    t.expect_originated("main", "cb1")
    [s] = ended(t, _callback_events("ANSWER"))
    assert (s["outcome"], s["answered_by"], s["answered_at"]) == ("answered", "13900001234", 103.0)
    assert s["talk_s"] == pytest.approx(7.0)  # to the citizen's hangup
    assert t.anomalies["impossible_transition"] == 0


def test_a_county_nodes_call_says_where_it_came_from_and_hostile_values_are_refused() -> None:
    """CTI_VIA_* (set by cti-from-trunk from a county trunk's X-CTI-* headers, already
    filtered there) are checked again: one bad value is refused alone, the others kept;
    the citizen's number dialled at the county becomes the call's dialled number."""
    t = CallTracker()
    trunk = chan("PJSIP/county1-1", "main-1.1", "main-1.1", CallerIDNum="139", Exten="980112345")
    t.handle(ev("Newchannel", 100.0, **trunk))
    for name, value in (
        ("__CTI_VIA_NODE", "county1"),
        ("__CTI_VIA_DIALED", "12345"),
        ("__CTI_VIA_CALL_ID", "county1-1796318229.2\r\nEvent: Forged"),
        ("__CTI_LINE", "980112345"),
    ):
        t.handle(ev("VarSet", 100.1, **trunk, Variable=name, Value=value))
    [active] = t.active_calls()
    assert active.via is not None
    assert (active.via.node, active.via.dialed, active.via.call_id) == ("county1", "12345", "")
    assert (active.dialed, active.line) == ("12345", "980112345")
    assert t.anomalies["via_value_refused"] == 1
    # a seat's leg cannot claim the call came from elsewhere
    seat = chan("PJSIP/6001-2", "main-1.2", "main-1.1")
    t.handle(ev("Newchannel", 101.0, **seat))
    t.handle(ev("VarSet", 101.1, **seat, Variable="__CTI_VIA_CALL_ID", Value="county9-1.1"))
    t.handle(ev("HangupRequest", 110.0, **trunk, Cause="16"))
    t.handle(ev("Hangup", 110.0, **seat, Cause="16"))
    [s] = ended(t, [ev("Hangup", 110.0, **trunk, Cause="16")])
    assert s["via"] == {"node": "county1", "dialed": "12345", "call_id": ""}
    assert s["dialed"] == "12345"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CTI_VIA_DIALED", "1" * 33),  # longer than a dialled number
        ("CTI_VIA_DIALED", "12345;x"),
        ("CTI_VIA_NODE", "County1"),  # not a node name of the configuration
        ("CTI_VIA_CALL_ID", "-1.2"),
        ("CTI_VIA_CALL_ID", "x" * 65),
    ],
)
def test_a_via_value_outside_its_set_is_refused(name: str, value: str) -> None:
    t = CallTracker()
    trunk = chan("PJSIP/county1-1", "main-1.1", "main-1.1", Exten="980112345")
    t.handle(ev("Newchannel", 100.0, **trunk))
    t.handle(ev("VarSet", 100.1, **trunk, Variable=name, Value=value))
    [active] = t.active_calls()
    assert active.via is None
    assert active.dialed == "980112345"
    assert t.anomalies["via_value_refused"] == 1


def test_an_adopted_county_call_gets_its_via_from_its_variables() -> None:
    t = CallTracker()
    trunk = chan("PJSIP/county1-1", "main-1.1", "main-1.1", Exten="s")
    t.handle(ev("CoreShowChannel", 100.0, **trunk, Duration="00:00:05"))
    via = {"CTI_VIA_NODE": "county1", "CTI_VIA_DIALED": "96310", "CTI_VIA_CALL_ID": "bad id"}
    t.note_adopted(
        "main", "main-1.1", line="980196310", dialed="980196310", transfer_id="", via=via
    )
    [active] = t.active_calls()
    assert active.via is not None
    assert (active.via.node, active.via.dialed, active.via.call_id) == ("county1", "96310", "")
    assert (active.dialed, active.line) == ("96310", "980196310")
