"""Escalation to 110/119/120/122 in the sans-IO core, without Asterisk: the agent's command
in, the effects out (tests/real/test_escalation_real.py runs the same on the testbed)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from cti.adapters.ami_actions import escalation_actions
from cti.core import Core, Effect, Pop, Publish, RedirectToSeat, StoreCall
from cti.core.escalation import leg_ids
from cti.core.messages import AddEmergencyLeg, EscalateBlind, HangupLeg
from cti.dialplan.generate import generate_dialplan
from cti.numberplan import NumberPlan
from cti.settings import DialplanSettings
from tests.routing.plans import make_plan
from tests.test_core import HELD, answer, chan, cmd, ev, hold, start_call

SEAT_CHAN = "PJSIP/1002-00000004"  # what tests.test_core.answer names seat 1002's leg
EMERGENCY: list[dict[str, Any]] = [
    {"number": "110", "name": "公安110", "endpoint": "Local/110@emergency-test"},
    {"number": "119", "name": "消防119", "trunk": "ct"},
    {"number": "122", "name": "交警122", "endpoint": "PJSIP/122@police", "modes": ["threeway"]},
]


def plan(**queue: Any) -> NumberPlan:
    data = make_plan(**queue).model_dump(mode="json")
    return NumberPlan.model_validate({**data, "emergency": EMERGENCY})


def talking_core(**queue: Any) -> Core:
    """Call c1, answered by seat 1002 at 101.1."""
    c = Core(plan(**queue), log=structlog.get_logger("test"))
    start_call(c, "c1", 100.0)
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 101.0)
    answer(c, "c1", "1002", 101.1)
    return c


def replies(out: list[Effect]) -> list[dict[str, Any]]:
    return [e.payload for e in out if isinstance(e, Publish) and e.topic.endswith("/reply")]


def events(out: list[Effect], kind: str) -> list[dict[str, Any]]:
    return [
        e.payload
        for e in out
        if isinstance(e, Publish) and e.topic == "calls/events" and e.payload["type"] == kind
    ]


def seat_states(out: list[Effect]) -> list[str]:
    return [
        e.payload["status"] for e in out if isinstance(e, Publish) and e.topic.endswith("/state")
    ]


def hang_up_caller(c: Core, t: float, *extra: tuple[str, str]) -> list[Effect]:
    first = "Local/12345@cti-inbound-00000001;1"
    out = c.handle(ev("HangupRequest", t, **chan(first, "c1", "c1", Cause="16")))
    for uid, name in (("c1", first), ("c1.2", HELD), *extra):
        out += c.handle(ev("Hangup", t, **chan(name, uid, "c1", Cause="16")))
    return out


def test_blind_redirects_the_caller_and_puts_the_seat_in_wrapup() -> None:
    c = talking_core()
    out = cmd(c, "1002", b'{"cmd":"escalate","target":"110","mode":"blind","request_id":"e1"}', 120)
    assert out[0] == EscalateBlind(node="main", channel=HELD, call_id="c1", number="110")
    assert replies(out) == [{"ok": True, "request_id": "e1", "cmd": "escalate"}]
    assert seat_states(out) == ["wrap_up"]
    [end] = [p for p in out if isinstance(p, Pop)]
    assert (end.kind, end.call["reason"], end.call["to"]) == ("end", "escalated", "110")
    [escalated] = events(out, "escalated")
    assert escalated["event_id"] == "c1:escalation-110-blind-escalated"
    assert (escalated["seat"], escalated["target"], escalated["mode"]) == ("1002", "110", "blind")
    assert (escalated["target_name"], escalated["caller"]) == ("公安110", "13800138000")
    assert escalated["ticket_draft"] == "main:c1"
    assert escalation_actions(out[0]) == [
        {
            "Action": "Redirect",
            "Channel": HELD,
            "Context": "cti-escalate",
            "Exten": "110",
            "Priority": "1",
        }
    ]
    # the seat's leg ends and 110 answers: the call goes on, the dispatcher is not told
    out = c.handle(ev("Hangup", 121, **chan(SEAT_CHAN, "c1.1002", "c1", Cause="16")))
    assert not [e for e in out if isinstance(e, StoreCall)]
    out = hang_up_caller(c, 150)
    [stored] = [e for e in out if isinstance(e, StoreCall)]
    assert stored.summary.answered_by == "1002"
    assert [(t.type, t.by, t.to) for t in stored.summary.transfers] == [
        ("escalation_blind", "1002", "110")
    ]
    [update] = stored.ticket_ops
    assert [(t["type"], t["to"]) for t in update.payload["transfers"]] == [
        ("escalation_blind", "110")
    ]
    assert c.dispatcher.stats["hangup_unknown_call"] == 0
    assert c.dispatcher.stats["answer_unknown_call"] == 0


def test_blind_escalation_that_110_does_not_answer_comes_back_to_the_queue_first() -> None:
    c = talking_core(wrapup_s=0)
    cmd(c, "1002", b'{"cmd":"escalate","target":"110","mode":"blind"}', 120)
    # cti-escalate: DIALSTATUS != ANSWER -> cti-hold; seat 1002 is ready again (wrapup 0)
    out = hold(c, "c1", 181)
    assert events(out, "escalation_failed")[0]["reason"] == "not answered"
    assert [e.seat_id for e in out if isinstance(e, RedirectToSeat)] == ["1002"]


def test_threeway_originates_110_into_the_callers_bridge_then_the_agent_leaves() -> None:
    c = talking_core()
    early = cmd(c, "1002", b'{"cmd":"leave"}', 119)
    assert replies(early)[0]["error"]["code"] == "no_call"
    out = cmd(c, "1002", b'{"cmd":"escalate","target":"110","mode":"threeway"}', 120.0)
    ids = leg_ids("c1", 120.0)
    [leg] = [e for e in out if isinstance(e, AddEmergencyLeg)]
    assert leg == AddEmergencyLeg(
        node="main",
        call_id="c1",
        number="110",
        endpoint="Local/110@emergency-test",
        caller_channel=HELD,
        caller_id="<13800138000>",
        channel_id=ids[0],
        other_channel_id=ids[1],
        timeout_s=60.0,
    )
    no_survey, originate = escalation_actions(leg)
    # the caller is not asked to rate 12345 after a call that ends with 110
    assert (no_survey["Action"], no_survey["Channel"], no_survey["Variable"]) == (
        "Setvar",
        HELD,
        "CTI_NO_SURVEY",
    )
    assert (originate["Application"], originate["Data"]) == ("BridgeAdd", HELD)
    assert (originate["ChannelId"], originate["OtherChannelId"]) == ids
    assert seat_states(out) == []  # the agent stays (the first platform keeps the case)
    assert replies(out)[0]["ok"] is True
    # not yet joined: leaving now would leave the caller alone
    out = cmd(c, "1002", b'{"cmd":"leave"}', 121.0)
    assert replies(out)[0]["error"]["code"] == "rejected"
    # the operator answers; its ;1 half (BridgeAdd) joins the caller's bridge
    op1, op2 = "Local/110@emergency-test-00000009;1", "Local/110@emergency-test-00000009;2"
    out = c.handle(ev("Newchannel", 122, **chan(op1, ids[0], ids[0], Exten="110")))
    out += c.handle(ev("Newchannel", 122, **chan(op2, ids[1], ids[0], Exten="110")))
    # an Originate's DialBegin names no calling channel, only the one it dials
    dial = {"DestChannel": op1, "DestUniqueid": ids[0], "DestLinkedid": ids[0]}
    out += c.handle(ev("DialBegin", 122, **dial))
    out += c.handle(ev("BridgeEnter", 123, **chan(op1, ids[0], ids[0]), BridgeUniqueid="br-1002"))
    assert events(out, "escalation_joined")
    assert not [e for e in out if isinstance(e, Pop)]  # no second "answer" pop
    assert c.tracker.call("main", ids[0]) is not None  # one call, not a call of its own
    assert len(c.tracker.active_calls()) == 1
    out = cmd(c, "1002", b'{"cmd":"leave","request_id":"l1"}', 130.0)
    assert HangupLeg(node="main", call_id="c1", channel=SEAT_CHAN, reason="leave") in out
    assert replies(out) == [{"ok": True, "request_id": "l1", "cmd": "leave"}]
    assert seat_states(out) == ["wrap_up"]
    assert events(out, "escalation_left")
    out = c.handle(
        ev("BridgeLeave", 130.1, **chan(SEAT_CHAN, "c1.1002", "c1"), BridgeUniqueid="br-1002")
    )
    out += c.handle(ev("Hangup", 130.1, **chan(SEAT_CHAN, "c1.1002", "c1", Cause="16")))
    assert not [e for e in out if isinstance(e, StoreCall)]  # caller and 110 talk on
    out = hang_up_caller(c, 150.0, (ids[0], op1), (ids[1], op2))
    [stored] = [e for e in out if isinstance(e, StoreCall)]
    s = stored.summary
    assert (s.answered_by, s.rang, s.hangup_by) == ("1002", ("1002", "110"), "caller")
    assert [(t.type, t.by, t.to) for t in s.transfers] == [("escalation_threeway", "1002", "110")]
    assert c.dispatcher.stats["hangup_unknown_call"] == 0


def test_the_agent_hanging_up_its_phone_in_a_threeway_call_is_leaving() -> None:
    c = talking_core()
    cmd(c, "1002", b'{"cmd":"escalate","target":"122","mode":"threeway"}', 120.0)
    out = c.handle(ev("Hangup", 125.0, **chan(SEAT_CHAN, "c1.1002", "c1", Cause="16")))
    assert seat_states(out) == ["wrap_up"]
    assert events(out, "escalation_left")


def test_an_operator_leg_that_never_answers_is_reported_and_the_agent_keeps_the_call() -> None:
    c = talking_core()
    cmd(c, "1002", b'{"cmd":"escalate","target":"122","mode":"threeway"}', 120.0)
    ids = leg_ids("c1", 120.0)
    out = c.handle(ev("Newchannel", 121, **chan("PJSIP/police-00000001", ids[0], ids[0])))
    out += c.handle(ev("Hangup", 181, **chan("PJSIP/police-00000001", ids[0], ids[0], Cause="19")))
    assert events(out, "escalation_failed")
    assert seat_states(out) == []
    # the agent may try again
    out = cmd(c, "1002", b'{"cmd":"escalate","target":"110","mode":"threeway"}', 190.0)
    assert replies(out)[0]["ok"] is True


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"cmd":"escalate","target":"999","mode":"blind"}', "unknown_target"),
        (b'{"cmd":"escalate","target":"122","mode":"blind"}', "mode_not_allowed"),
        (b'{"cmd":"escalate","target":"110","mode":"conference"}', "invalid_command"),
        (b'{"cmd":"escalate","target":"1 10","mode":"blind"}', "invalid_command"),
        (b'{"cmd":"leave","now":true}', "invalid_command"),
    ],
)
def test_refusals_are_clear_and_change_nothing(payload: bytes, code: str) -> None:
    c = talking_core()
    out = cmd(c, "1002", payload, 120.0)
    assert [r["error"]["code"] for r in replies(out)] == [code]
    assert [type(e).__name__ for e in out] == ["Publish"]


def test_no_call_to_escalate() -> None:
    c = Core(plan(), log=structlog.get_logger("test"))
    cmd(c, "1002", b'{"cmd":"login","ready":true}', 100.0)
    out = cmd(c, "1002", b'{"cmd":"escalate","target":"110","mode":"blind"}', 101.0)
    assert replies(out)[0]["error"]["code"] == "no_call"
    c = talking_core()
    cmd(c, "1002", b'{"cmd":"escalate","target":"110","mode":"threeway"}', 120.0)
    again = cmd(c, "1002", b'{"cmd":"escalate","target":"119","mode":"threeway"}', 121.0)
    assert replies(again)[0]["error"] == {
        "code": "rejected",
        "message": "already escalated to 110",
        "fields": [],
    }


def test_leg_ids_are_never_prefixes_of_each_other_or_of_the_call() -> None:
    ids = [*leg_ids("1795.1", 1.0), *leg_ids("1795.1", 1.001), *leg_ids("1795.12", 1.0)]
    ids.append("1795.1")  # the caller's own Uniqueid is the call id
    for a in ids:
        for b in ids:
            assert a == b or not b.startswith(a), (a, b)


def test_config_errors_name_the_target() -> None:
    data = make_plan().model_dump(mode="json")
    bad = [
        ({"number": "110", "name": "x"}, "exactly one of endpoint or trunk"),
        ({"number": "110", "name": "x", "trunk": "nope"}, r"emergency.0 \(110\): unknown trunk"),
        ({"number": "110", "name": "x", "endpoint": "XMPP/110"}, "unknown endpoint technology"),
        ({"number": "110", "name": "x", "endpoint": "Local/1@x", "notify_url": "u"}, "notify_url"),
        ({"number": "110", "name": "x", "endpoint": "Local/1@x", "modes": []}, "modes"),
    ]
    for target, message in bad:
        with pytest.raises(ValidationError, match=message):
            NumberPlan.model_validate({**data, "emergency": [target]})
    twice = [EMERGENCY[0], EMERGENCY[0]]
    with pytest.raises(ValidationError, match="number '110' listed twice"):
        NumberPlan.model_validate({**data, "emergency": twice})


def test_the_dialplan_dials_blind_targets_and_skips_threeway_only_ones() -> None:
    text = generate_dialplan(plan(), DialplanSettings(), source="t")
    section = text[text.index("[cti-escalate]") :]
    assert "exten => 110,1,NoOp(CTI call ${CTI_CALL_ID} escalated to 110 公安110)" in section
    assert " same => n,Dial(Local/110@emergency-test,60)" in section
    assert " same => n,Dial(PJSIP/119@carrier,60)" in section  # its number over trunk ct
    assert "exten => 122," not in section  # threeway only: no dialplan needed
    assert "[cti-escalate]" not in generate_dialplan(make_plan(), DialplanSettings(), source="t")


def test_the_caller_hanging_up_during_a_threeway_call_ends_every_leg() -> None:
    c = talking_core()
    cmd(c, "1002", b'{"cmd":"escalate","target":"122","mode":"threeway"}', 120.0)
    ids = leg_ids("c1", 120.0)
    op = "PJSIP/police-00000001"
    c.handle(ev("Newchannel", 121, **chan(op, ids[0], ids[0])))
    c.handle(ev("BridgeEnter", 122, **chan(op, ids[0], ids[0]), BridgeUniqueid="br-1002"))
    out = c.handle(ev("Hangup", 130, **chan(HELD, "c1.2", "c1", Cause="16")))
    # Asterisk would keep agent and operator bridged without the citizen
    assert [(e.channel, e.reason) for e in out if isinstance(e, HangupLeg)] == [
        (op, "caller_gone"),
        (SEAT_CHAN, "caller_gone"),
    ]
