"""Dispatcher.replan: a reloaded number plan; calls in progress keep what they had."""

from __future__ import annotations

from typing import Any

import structlog

from cti.routing import ConnectCall, Dispatcher, IncomingCall, PublishSeatState
from cti.seats import SeatStatus
from tests.routing.plans import make_plan
from tests.routing.test_dispatcher import of, status

A: dict[str, Any] = {
    "id": "1001",
    "endpoint": "Local/1001@seats",
    "skills": {"general": 5, "market": 3},
}
B: dict[str, Any] = {"id": "1002", "endpoint": "PJSIP/1002", "skills": {"general": 5}}
C: dict[str, Any] = {"id": "3001", "endpoint": "PJSIP/3001", "skills": {"general": 1, "market": 5}}


def dispatcher(*seats: dict[str, Any]) -> Dispatcher:
    return Dispatcher(make_plan(list(seats)), structlog.get_logger())


def call(cid: str, line: str, at: float) -> IncomingCall:
    return IncomingCall(call_id=cid, line=line, at=at)


def test_a_new_seat_comes_in_logged_out_and_takes_the_waiting_call_when_ready() -> None:
    d = dispatcher(A)
    d.on_call_waiting(call("w1", "12345", 1.0))
    d.on_call_waiting(call("w2", "12315", 2.0))
    out = d.replan(make_plan([A, C]), 5.0)
    (added,) = of(PublishSeatState, out)
    assert (added.state.seat_id, added.cause, added.state.status) == (
        "3001",
        "config_added",
        SeatStatus.LOGGED_OUT,
    )
    assert of(ConnectCall, out) == []
    assert [c.call_id for c in d.queue] == ["w1", "w2"]  # the places kept
    d.on_login("3001", 6.0)
    (offer,) = of(ConnectCall, d.on_seat_ready("3001", 7.0))
    assert (offer.call_id, offer.seat_id, offer.endpoint) == ("w1", "3001", "PJSIP/3001")
    assert d.seat_for_device("PJSIP/3001") == "3001"


def test_changed_skills_route_a_ready_seat_at_once_and_keep_its_turn() -> None:
    d = dispatcher(A, B)
    d.on_login("1002", 0.0, ready=True)
    d.on_login("1001", 0.0)
    d.on_call_waiting(call("m", "12315", 1.0))  # market: only 1001 has it, not ready
    assert [c.call_id for c in d.queue] == ["m"]
    with_market = {**B, "skills": {"general": 5, "market": 2}}
    out = d.replan(make_plan([A, with_market]), 3.0)
    (offer,) = of(ConnectCall, out)
    assert (offer.call_id, offer.seat_id) == ("m", "1002")


def test_a_removed_seat_talking_stays_on_its_call_and_leaves_when_it_ends() -> None:
    d = dispatcher(A, B)
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(call("t", "12345", 1.0))
    d.on_ringing("t", 1.5)
    d.on_answer("t", 2.0)
    assert status(d, "1002") is SeatStatus.TALKING
    out = d.replan(make_plan([A]), 3.0)
    assert of(PublishSeatState, out) == []
    assert d.retiring() == {"1002"}
    assert status(d, "1002") is SeatStatus.TALKING
    end = d.on_hangup("t", 10.0)
    gone = [c for c in of(PublishSeatState, end) if c.cause == "config_removed"]
    assert len(gone) == 1
    assert gone[0].state.status is SeatStatus.LOGGED_OUT
    assert "1002" not in d.seats
    assert d.retiring() == frozenset()
    assert d.seat_for_device("PJSIP/1002") is None
    assert d.tick(100.0) is not None  # its void wrap-up timer is harmless
    assert d.stats["seat_unknown"] == 0


def test_a_removed_idle_seat_leaves_at_once_and_is_never_offered_again() -> None:
    d = dispatcher(A, B)
    d.on_login("1002", 0.0, ready=True)
    out = d.replan(make_plan([A]), 1.0)
    (gone,) = of(PublishSeatState, out)
    assert (gone.state.seat_id, gone.cause) == ("1002", "config_removed")
    assert of(ConnectCall, d.on_call_waiting(call("x", "12345", 2.0))) == []
    assert d.ready_seat_ids() == []


def test_a_seat_put_back_before_its_call_ended_stays() -> None:
    d = dispatcher(A, B)
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(call("t", "12345", 1.0))
    d.on_answer("t", 2.0)
    d.replan(make_plan([A]), 3.0)
    d.replan(make_plan([A, B]), 4.0)
    d.on_hangup("t", 5.0)
    assert "1002" in d.seats
    assert status(d, "1002") is SeatStatus.WRAP_UP


def test_new_overflow_steps_reach_calls_already_waiting() -> None:
    d = Dispatcher(make_plan([A, B], overflow=[]), structlog.get_logger())
    d.on_login("1002", 0.0, ready=True)  # general only; 1001 (market) logged out
    d.on_call_waiting(call("m", "12315", 1.0))
    assert of(ConnectCall, d.tick(40.0)) == []  # no overflow step: it waits for market
    # "any-general" after 30 s: already due, the ready seat gets it at once
    (offer,) = of(ConnectCall, d.replan(make_plan([A, B]), 41.0))
    assert (offer.call_id, offer.seat_id) == ("m", "1002")
