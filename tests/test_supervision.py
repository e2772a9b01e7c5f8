"""The supervision part of the core (cti/core/supervision.py): who may, the spy's effects
and AMI actions, forced states through the seat command path, the audit entry of each."""

from __future__ import annotations

from typing import Any

from cti.adapters.ami_actions import actions
from cti.core import Core, Effect, Publish, StartSpy, StopSpy, StoreAudit, SwitchSpy
from cti.core.messages import Supervisor, SupervisorAction, SupervisorRequested
from tests.test_core import ev
from tests.test_escalation import SEAT_CHAN, talking_core

BOARD = Supervisor(name="board", lines=frozenset({"12345"}), endpoint="PJSIP/7001")
ELSEWHERE = Supervisor(name="far", lines=frozenset({"99999"}), endpoint="PJSIP/7002")


def act(
    c: Core, action: SupervisorAction, t: float, who: Supervisor = BOARD, **kw: Any
) -> tuple[dict[str, Any], list[Effect]]:
    out = c.handle(SupervisorRequested(supervisor=who, action=action, seat="1002", at=t, **kw))
    [reply] = [
        e.payload
        for e in out
        if isinstance(e, Publish) and e.topic == f"supervisors/{who.name}/reply"
    ]
    [audit] = [e.entry for e in out if isinstance(e, StoreAudit)]
    assert [
        e.payload for e in out if isinstance(e, Publish) and e.topic == "supervision/audit"
    ] == [audit.to_json()]
    assert audit.result == ("ok" if reply["ok"] else "refused")
    return reply, out


def test_listen_originates_the_supervisors_phone_into_chanspy_on_the_agents_channel() -> None:
    c = talking_core()
    reply, out = act(c, "listen", 102.0, request_id="r1")
    assert reply["ok"] is True
    [spy] = [e for e in out if isinstance(e, StartSpy)]
    assert (spy.endpoint, spy.target, spy.mode, spy.call_id) == (
        "PJSIP/7001",
        SEAT_CHAN,
        "listen",
        "c1",
    )
    [originate] = actions(spy)
    assert originate["Context"] == "cti-spy"
    assert originate["Exten"] == "listen"
    assert originate["Variable"] == f"CTI_SPY_TARGET={SEAT_CHAN}"
    assert originate["ChannelId"] == spy.spy_id
    # its channel appears: a switch is a DTMF digit received on it, stop its hangup
    c.handle(
        ev(
            "Newchannel",
            102.1,
            Channel="PJSIP/7001-00000009",
            Uniqueid=spy.spy_id,
            Linkedid=spy.spy_id,
        )
    )
    reply, out = act(c, "whisper", 103.0)
    [switch] = [e for e in out if isinstance(e, SwitchSpy)]
    assert actions(switch) == [
        {
            "Action": "PlayDTMF",
            "Channel": "PJSIP/7001-00000009",
            "Digit": "5",
            "Duration": "120",
            "Receive": "true",
        }
    ]
    _, out = act(c, "barge", 104.0)
    assert [actions(e)[0]["Digit"] for e in out if isinstance(e, SwitchSpy)] == ["6"]
    assert c.supervision.spies()[0]["mode"] == "barge"
    _, out = act(c, "stop", 105.0)
    [stop] = [e for e in out if isinstance(e, StopSpy)]
    assert actions(stop) == [{"Action": "Hangup", "Channel": "PJSIP/7001-00000009"}]
    c.handle(
        ev(
            "Hangup",
            105.1,
            Channel="PJSIP/7001-00000009",
            Uniqueid=spy.spy_id,
            Linkedid=spy.spy_id,
            Cause="16",
        )
    )
    assert c.supervision.spies() == []
    reply, _ = act(c, "stop", 106.0)
    assert reply["error"]["code"] == "no_spy"


def test_a_supervisor_of_other_lines_is_refused_and_nothing_happens() -> None:
    c = talking_core()
    for action in ("listen", "not_ready", "logout"):
        reply, out = act(c, action, 102.0, who=ELSEWHERE, reason="meal")
        assert reply["error"]["code"] == "forbidden"
        assert [type(e) for e in out] == [StoreAudit, Publish, Publish]


def test_refusals_say_why() -> None:
    c = talking_core()
    no_phone = Supervisor(name="nophone", lines=frozenset({"12345"}))
    assert act(c, "listen", 102.0, who=no_phone)[0]["error"]["code"] == "no_phone"
    assert act(c, "not_ready", 102.0, reason="nap")[0]["error"]["code"] == "invalid_reason"
    assert act(c, "whisper", 102.0)[0]["ok"] is True
    # the phone has not come up yet: no channel to switch
    assert act(c, "barge", 102.1)[0]["error"]["code"] == "spy_not_up"


def test_forced_logout_during_a_call_is_pending_and_goes_through_the_seat_path() -> None:
    c = talking_core()
    reply, out = act(c, "logout", 102.0)
    assert reply["ok"] is True
    assert "pending" in reply["detail"]
    assert any(isinstance(e, Publish) and e.topic == "seats/1002/reply" for e in out)
    state = c.seat_state("1002")
    assert state is not None
    assert state.pending is not None
