"""cti.routing.Dispatcher: the issue's acceptance scenarios, without Asterisk."""

from __future__ import annotations

from typing import TypeVar

import structlog
from structlog.testing import capture_logs

from cti.routing import (
    CallAnswered,
    CancelRing,
    Command,
    CommandRejected,
    ConnectCall,
    Dispatcher,
    IncomingCall,
    PublishQueueSnapshot,
    PublishSeatState,
    RecordAbandonment,
    StartTimer,
    TransferOut,
)
from cti.seats import Reason, SeatStatus
from tests.routing.plans import make_plan

T = TypeVar("T")


def of(kind: type[T], out: list[Command]) -> list[T]:
    return [c for c in out if isinstance(c, kind)]


def dispatcher(**kw: object) -> Dispatcher:
    return Dispatcher(make_plan(**kw), structlog.get_logger())  # type: ignore[arg-type]


def incoming(cid: str, line: str, at: float, **kw: object) -> IncomingCall:
    return IncomingCall(call_id=cid, line=line, at=at, **kw)  # type: ignore[arg-type]


def status(d: Dispatcher, seat: str) -> SeatStatus:
    state = d.seats.get(seat)
    assert state is not None
    return state.status


def test_one_seat_110_first_even_if_last() -> None:
    d = dispatcher()
    assert d.on_login("1002", 0.0) != []  # not ready after login
    assert of(ConnectCall, d.on_call_waiting(incoming("a", "12345", 1.0))) == []
    d.on_call_waiting(incoming("b", "12315", 2.0))
    d.on_call_waiting(incoming("c", "12345110", 3.0))
    assert len(d.queue) == 3
    out = d.on_seat_ready("1002", 4.0)
    (connect,) = of(ConnectCall, out)
    assert (connect.call_id, connect.seat_id, connect.endpoint) == ("c", "1002", "PJSIP/1002")
    assert status(d, "1002") is SeatStatus.RESERVED
    assert StartTimer(name="ring", key="c", at=19.0) in out


def test_12315_goes_to_market_seat() -> None:
    d = dispatcher()
    d.on_login("1002", 0.0, ready=True)  # general only, longest idle
    d.on_login("1001", 1.0, ready=True)  # general + market
    (connect,) = of(ConnectCall, d.on_call_waiting(incoming("m", "12315", 5.0)))
    assert (connect.seat_id, connect.step) == ("1001", "base")


def test_rona_seat_not_ready_call_to_next_seat() -> None:
    d = dispatcher()
    d.on_login("1001", 0.0, ready=True)
    d.on_login("1002", 1.0, ready=True)
    (first,) = of(ConnectCall, d.on_call_waiting(incoming("x", "12345", 10.0)))
    assert first.seat_id == "1001"
    d.on_ringing("x", 10.2)
    out = d.tick(25.0)  # ring timeout 15 s
    assert CancelRing(call_id="x", seat_id="1001", reason="rona") in out
    state = d.seats.get("1001")
    assert state is not None
    assert (state.status, state.reason) == (SeatStatus.NOT_READY, Reason.RONA)
    (second,) = of(ConnectCall, out)
    assert (second.call_id, second.seat_id, second.attempt) == ("x", "1002", 2)
    answered = of(CallAnswered, d.on_answer("x", 27.0))
    assert answered[0].waited_s == 17.0  # original enqueue time kept


def test_rona_without_other_seat_goes_back_to_head() -> None:
    d = dispatcher()
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(incoming("x", "12345", 10.0))
    d.on_call_waiting(incoming("y", "12345", 5.0))  # enqueued earlier, but x was offered first
    d.on_ring_timeout("x", 25.0)
    assert [c.call_id for c in d.queue] == ["x", "y"]
    queued = d.queue.get("x")
    assert queued is not None
    assert (queued.enqueued_at, queued.offers) == (10.0, 1)
    # the stale ring timer later does nothing
    assert of(CancelRing, d.tick(26.0)) == []


def test_abandon_while_waiting_recorded_with_wait() -> None:
    d = dispatcher()
    d.on_call_waiting(incoming("x", "12345", 100.0, caller="13800138000"))
    (record,) = of(RecordAbandonment, d.on_hangup("x", 147.5))
    assert (record.outcome.waited_s, record.outcome.position, record.outcome.during_offer) == (
        47.5,
        1,
        False,
    )
    assert len(d.queue) == 0
    assert d.stats["abandoned"] == 1


def test_abandon_while_ringing_frees_seat_keeps_its_turn() -> None:
    d = dispatcher()
    d.on_login("1001", 0.0, ready=True)
    d.on_login("1002", 1.0, ready=True)
    d.on_call_waiting(incoming("x", "12345", 10.0))
    (record,) = of(RecordAbandonment, d.on_hangup("x", 12.0))
    assert (record.outcome.during_offer, record.outcome.seat_id, record.outcome.waited_s) == (
        True,
        "1001",
        2.0,
    )
    assert d.ready_seat_ids() == ["1001", "1002"]  # 1001 is still the longest idle


def test_subcentre_line_transfers_out() -> None:
    d = dispatcher()
    out = d.on_call_waiting(incoming("t", "12366", 1.0))
    assert out == [
        TransferOut(call_id="t", line="12366", number="12366", trunk_endpoint="PJSIP/carrier")
    ]
    assert len(d.queue) == 0


def test_unknown_line_is_still_answered() -> None:
    d = dispatcher()
    d.on_login("1002", 0.0, ready=True)
    with capture_logs() as logs:
        out = d.on_call_waiting(incoming("u", "99999", 1.0))
    assert of(ConnectCall, out)
    assert any(e["event"] == "call_unknown_line" for e in logs)


def test_talk_wrapup_then_next_call() -> None:
    d = dispatcher(wrapup_s=30)
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(incoming("a", "12345", 1.0))
    d.on_answer("a", 3.0)
    d.on_call_waiting(incoming("b", "12345", 4.0))
    out = d.on_hangup("a", 100.0)
    assert status(d, "1002") is SeatStatus.WRAP_UP
    assert StartTimer(name="wrapup", key="1002", at=130.0) in out
    assert of(ConnectCall, d.tick(129.9)) == []
    (connect,) = of(ConnectCall, d.tick(130.0))
    assert connect.call_id == "b"
    assert d.handle_times.samples == 1
    assert d.handle_times.aht("general") == 127.0  # answer 3.0 -> wrap-up end 130.0


def test_wrapup_done_early_and_extend() -> None:
    d = dispatcher(wrapup_s=30)
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(incoming("a", "12345", 1.0))
    d.on_answer("a", 3.0)
    d.on_hangup("a", 10.0)
    assert StartTimer(name="wrapup", key="1002", at=70.0) in d.on_wrapup_extend("1002", 30, 11.0)
    assert of(PublishSeatState, d.tick(40.0)) == []  # the first (replaced) timer does nothing
    d.on_wrapup_done("1002", 45.0)
    assert status(d, "1002") is SeatStatus.READY


def test_sticky_agent_for_repeat_caller() -> None:
    d = dispatcher(wrapup_s=0)
    d.on_login("1001", 0.0, ready=True)
    d.on_login("1002", 1.0, ready=True)
    d.on_call_waiting(incoming("a", "12345", 2.0, caller="13900001111"))  # -> 1001
    d.on_answer("a", 3.0)
    d.on_hangup("a", 60.0)  # 1001 ready again, now the most recently idle
    assert d.ready_seat_ids() == ["1002", "1001"]
    (connect,) = of(
        ConnectCall, d.on_call_waiting(incoming("b", "12345", 70.0, caller="13900001111"))
    )
    assert connect.seat_id == "1001"
    assert "sticky" in connect.reason


def test_overflow_on_tick() -> None:
    d = dispatcher(
        seats=[
            {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"market": 3}},
            {"id": "1002", "endpoint": "Local/1002@seats", "skills": {"general": 5}},
        ]
    )
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(incoming("m", "12315", 10.0))  # market seat logged out
    assert len(d.queue) == 1
    assert of(ConnectCall, d.tick(39.9)) == []
    (connect,) = of(ConnectCall, d.tick(40.0))
    assert (connect.seat_id, connect.step) == ("1002", "any-general")


def test_bad_command_rejected_and_nothing_changes() -> None:
    d = dispatcher()
    out = d.on_seat_ready("1001", 1.0)
    assert out == [
        CommandRejected(seat_id="1001", command="GoReady", reason="not possible while logged_out")
    ]
    assert d.on_logout("nope", 1.0) == [
        CommandRejected(seat_id="nope", command="Logout", reason="unknown seat")
    ]
    assert status(d, "1001") is SeatStatus.LOGGED_OUT
    assert d.seats.illegal[("logged_out", "GoReady")] == 1


def test_pending_not_ready_during_call() -> None:
    d = dispatcher(wrapup_s=0)
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(incoming("a", "12345", 1.0))
    d.on_answer("a", 2.0)
    d.on_seat_not_ready("1002", Reason.MEAL, 3.0)
    d.on_call_waiting(incoming("b", "12345", 4.0))
    out = d.on_hangup("a", 50.0)
    assert of(ConnectCall, out) == []
    state = d.seats.get("1002")
    assert state is not None
    assert (state.status, state.reason) == (SeatStatus.NOT_READY, Reason.MEAL)


def test_device_unavailable_while_ringing() -> None:
    d = dispatcher()
    d.on_login("1002", 0.0, ready=True)
    d.on_login("1001", 1.0, ready=True)
    d.on_call_waiting(incoming("a", "12345", 5.0))  # -> 1002
    out = d.on_device_state("pjsip/1002", "UNAVAILABLE", 6.0)
    assert CancelRing(call_id="a", seat_id="1002", reason="device_unavailable") in out
    (connect,) = of(ConnectCall, out)
    assert connect.seat_id == "1001"
    # back online: not ready until the agent says so (auto_ready_on_device_available false)
    d.on_device_state("PJSIP/1002", "NOT_INUSE", 7.0)
    assert status(d, "1002") is SeatStatus.NOT_READY


def test_busy_device_is_not_offered() -> None:
    d = dispatcher()
    d.on_login("1002", 0.0, ready=True)
    d.on_device_state("PJSIP/1002", "INUSE", 1.0)  # agent on a private call
    assert of(ConnectCall, d.on_call_waiting(incoming("a", "12345", 2.0))) == []
    (connect,) = of(ConnectCall, d.on_device_state("PJSIP/1002", "NOT_INUSE", 3.0))
    assert connect.call_id == "a"


def test_snapshot_position_and_ewt() -> None:
    d = dispatcher()
    d.on_login("1002", 0.0, ready=True)
    d.on_call_waiting(incoming("a", "12345", 1.0))  # offered to 1002 -> staffed 1
    d.on_call_waiting(incoming("b", "12345", 2.0))
    d.on_call_waiting(incoming("c", "12345", 3.0))
    pos = d.position("c")
    assert pos is not None
    assert pos.overall == 2
    assert d.expected_wait("c", 4.0) == 2 * 180.0  # 1 ahead, 0 ready, 1 staffed, AHT 180
    (snap,) = of(PublishQueueSnapshot, d.tick(5.0))
    assert (snap.snapshot.waiting, snap.snapshot.offered, snap.snapshot.longest_wait_s) == (
        2,
        1,
        3.0,
    )
    assert d.tick(6.0) == []  # unchanged: not published again


def test_duplicate_call_ignored_and_counted() -> None:
    d = dispatcher()
    d.on_call_waiting(incoming("a", "12345", 1.0))
    assert d.on_call_waiting(incoming("a", "12345", 2.0)) == []
    assert d.stats["call_duplicate"] == 1


def test_the_offer_carries_where_the_call_stood_while_it_waited() -> None:
    d = dispatcher()
    d.on_login("1002", 0.0)
    d.on_call_waiting(incoming("a", "12345", 1.0))
    d.on_call_waiting(incoming("b", "12345", 2.0))
    d.on_call_waiting(incoming("c", "12345110", 3.0))  # 110 goes to the head
    (first,) = of(ConnectCall, d.on_seat_ready("1002", 4.0))
    assert first.call_id == "c"
    assert [(m.event, m.position, m.waiting) for m in first.queue_positions] == [
        ("queued", 1, 3),
        ("offered", 1, 3),
    ]
    # ring no answer: "c" goes back to the head; then a seat takes it
    d.on_ringing("c", 4.5)
    d.tick(19.0)
    (again,) = of(ConnectCall, d.on_login("1001", 20.0, ready=True))
    assert again.call_id == "c"
    assert [(m.at, m.event, m.position) for m in again.queue_positions] == [
        (3.0, "queued", 1),
        (4.0, "offered", 1),
        (19.0, "requeued", 1),
        (20.0, "offered", 1),
    ]
    # "a" still waits: its history so far is where it joined
    d.on_answer("c", 22.0)
    assert d.position("a") is not None
    assert d._marks["a"][0].position == 1
    d.on_hangup("a", 23.0)
    d.on_hangup("c", 24.0)
    assert list(d._marks) == ["b"]


def test_position_history_is_bounded() -> None:
    d = dispatcher()
    d.on_login("1001", 0.0, ready=True)
    d.on_call_waiting(incoming("x", "12345", 1.0))  # offered at once: no queue history
    now = 1.0
    for _ in range(40):  # bounce between ring-no-answer and ready
        now += 20.0
        d.tick(now)
        d.on_seat_ready("1001", now + 1)
    marks = d._marks["x"]
    assert len(marks) == 16
    assert marks[0].event == "requeued"  # the first mark is kept
