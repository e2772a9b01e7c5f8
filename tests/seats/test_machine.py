"""cti.seats: every legal transition, a table of impossible ones (logged, counted), wrap-up,
pending not-ready, RONA and device-state reconciliation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import structlog
from structlog.testing import capture_logs

from cti.seats import (
    TRANSITIONS,
    Answer,
    DeviceState,
    DeviceStatus,
    GoNotReady,
    GoReady,
    Hangup,
    Login,
    Logout,
    OfferCancelled,
    OfferFailed,
    Pending,
    PendingKind,
    Reason,
    Reserve,
    Ring,
    RingNoAnswer,
    SeatBoard,
    SeatEvent,
    SeatPolicy,
    SeatState,
    SeatStateChanged,
    SeatStatus,
    StartTimer,
    WrapupDone,
    WrapupExtend,
    WrapupTimerExpired,
    transition,
)

S = SeatStatus
POLICY = SeatPolicy(wrapup_s=30.0, wrapup_max_s=120.0)
CALL = "call-1"


def seat(status: SeatStatus, **kw: object) -> SeatState:
    base = SeatState(seat_id="1001", status=status, since=0.0)
    if status in (S.RESERVED, S.RINGING, S.TALKING, S.WRAP_UP):
        base = replace(base, call_id=CALL)
    if status is S.READY:
        base = replace(base, ready_since=0.0)
    if status is S.NOT_READY:
        base = replace(base, reason=Reason.MEAL)
    if status is S.WRAP_UP:
        base = replace(base, wrapup_started=0.0, wrapup_until=30.0)
    return replace(base, **kw)  # type: ignore[arg-type]


# (from, event, to, reason) for every legal status-changing transition
LEGAL: list[tuple[SeatStatus, SeatEvent, SeatStatus, Reason | None]] = [
    (S.LOGGED_OUT, Login(), S.NOT_READY, Reason.LOGIN),
    (S.LOGGED_OUT, Login(ready=True), S.READY, None),
    (S.READY, GoNotReady(reason=Reason.MEETING), S.NOT_READY, Reason.MEETING),
    (S.READY, Logout(), S.LOGGED_OUT, None),
    (S.READY, Reserve(call_id=CALL), S.RESERVED, None),
    (S.READY, DeviceState(status=DeviceStatus.UNAVAILABLE), S.NOT_READY, Reason.DEVICE_UNAVAILABLE),
    (S.NOT_READY, GoReady(), S.READY, None),
    (S.NOT_READY, GoNotReady(reason=Reason.TRAINING), S.NOT_READY, Reason.TRAINING),
    (S.NOT_READY, Logout(), S.LOGGED_OUT, None),
    (S.RESERVED, Ring(call_id=CALL), S.RINGING, None),
    (S.RESERVED, Answer(call_id=CALL), S.TALKING, None),
    (S.RESERVED, RingNoAnswer(call_id=CALL), S.NOT_READY, Reason.RONA),
    (S.RESERVED, OfferCancelled(call_id=CALL), S.READY, None),
    (S.RESERVED, Hangup(call_id=CALL), S.READY, None),
    (S.RESERVED, DeviceState(status=DeviceStatus.INVALID), S.NOT_READY, Reason.DEVICE_UNAVAILABLE),
    (S.RINGING, Answer(call_id=CALL), S.TALKING, None),
    (S.RINGING, RingNoAnswer(call_id=CALL), S.NOT_READY, Reason.RONA),
    (S.RINGING, OfferCancelled(call_id=CALL), S.READY, None),
    (S.RINGING, Hangup(call_id=CALL), S.READY, None),
    (
        S.RINGING,
        DeviceState(status=DeviceStatus.UNAVAILABLE),
        S.NOT_READY,
        Reason.DEVICE_UNAVAILABLE,
    ),
    (S.TALKING, Hangup(call_id=CALL), S.WRAP_UP, None),
    (S.WRAP_UP, WrapupDone(), S.READY, None),
    (S.WRAP_UP, WrapupTimerExpired(deadline=30.0), S.READY, None),
    (S.WRAP_UP, GoReady(), S.READY, None),
    (S.WRAP_UP, Logout(), S.LOGGED_OUT, None),
]


@pytest.mark.parametrize(("start", "event", "end", "reason"), LEGAL)
def test_legal_transitions(
    start: SeatStatus, event: SeatEvent, end: SeatStatus, reason: Reason | None
) -> None:
    step = transition(seat(start), event, 5.0, POLICY)
    assert step is not None
    assert (step.state.status, step.state.reason) == (end, reason)
    changes = [o for o in step.outputs if isinstance(o, SeatStateChanged)]
    assert len(changes) == 1
    assert changes[0].state == step.state
    assert changes[0].previous is start


def test_every_table_entry_is_covered_by_a_test() -> None:
    covered = {(start, type(event)) for start, event, _, _ in LEGAL}
    covered |= {(start, type(event)) for start, event in NO_CHANGE}
    covered |= {(start, type(event)) for start, event, _ in PENDING}
    missing = set(TRANSITIONS) - covered
    assert not missing, sorted((s.value, t.__name__) for s, t in missing)


# legal, but nothing changes (idempotent or stale)
NO_CHANGE: list[tuple[SeatStatus, SeatEvent]] = [
    (S.READY, GoReady()),
    (S.NOT_READY, GoNotReady(reason=Reason.MEAL)),
    (S.RINGING, Ring(call_id=CALL)),
    (S.WRAP_UP, WrapupTimerExpired(deadline=12.0)),  # stale: wrap-up was extended
    (S.WRAP_UP, WrapupExtend(seconds=500.0)),  # already at wrapup_max_s (set in the test)
    *[(status, WrapupTimerExpired(deadline=30.0)) for status in S if status is not S.WRAP_UP],
    *[(status, DeviceState(status=DeviceStatus.UNKNOWN)) for status in S],
]


@pytest.mark.parametrize(("start", "event"), NO_CHANGE)
def test_legal_without_status_change(start: SeatStatus, event: SeatEvent) -> None:
    state = seat(start)
    if isinstance(event, WrapupExtend):
        state = replace(state, wrapup_until=120.0)  # already at wrapup_max_s
    step = transition(state, event, 5.0, POLICY)
    assert step is not None
    assert step.state == state
    assert step.outputs == ()


# during a call "not ready" / "logout" / "ready" only set or clear what happens afterwards
PENDING: list[tuple[SeatStatus, SeatEvent, Pending | None]] = [
    *[
        (
            status,
            GoNotReady(reason=Reason.REST),
            Pending(kind=PendingKind.NOT_READY, reason=Reason.REST),
        )
        for status in (S.RESERVED, S.RINGING, S.TALKING, S.WRAP_UP)
    ],
    *[
        (status, Logout(), Pending(kind=PendingKind.LOGOUT))
        for status in (S.RESERVED, S.RINGING, S.TALKING)
    ],
    *[(status, GoReady(), None) for status in (S.RESERVED, S.RINGING, S.TALKING)],
]


@pytest.mark.parametrize(("start", "event", "pending"), PENDING)
def test_pending(start: SeatStatus, event: SeatEvent, pending: Pending | None) -> None:
    state = seat(start, pending=Pending(kind=PendingKind.NOT_READY, reason=Reason.MEAL))
    step = transition(state, event, 5.0, POLICY)
    assert step is not None
    assert step.state.status is start
    assert step.state.pending == pending


ILLEGAL: list[tuple[SeatStatus, SeatEvent]] = [
    (S.LOGGED_OUT, Logout()),
    (S.LOGGED_OUT, GoReady()),
    (S.LOGGED_OUT, Reserve(call_id=CALL)),
    (S.LOGGED_OUT, WrapupDone()),
    (S.READY, Login()),
    (S.READY, Answer(call_id=CALL)),
    (S.READY, Hangup(call_id=CALL)),
    (S.READY, RingNoAnswer(call_id=CALL)),
    (S.READY, WrapupDone()),
    (S.NOT_READY, Reserve(call_id=CALL)),
    (S.NOT_READY, Ring(call_id=CALL)),
    (S.NOT_READY, WrapupExtend(seconds=10)),
    (S.RESERVED, Reserve(call_id="other")),  # a seat never gets two calls
    (S.RESERVED, Answer(call_id="other")),  # not the call it was offered
    (S.RESERVED, Login()),
    (S.RINGING, Reserve(call_id="other")),
    (S.RINGING, Hangup(call_id="other")),
    (S.TALKING, Reserve(call_id="other")),
    (S.TALKING, Answer(call_id=CALL)),
    (S.TALKING, RingNoAnswer(call_id=CALL)),
    (S.TALKING, WrapupDone()),
    (S.TALKING, Hangup(call_id="other")),
    (S.WRAP_UP, Reserve(call_id="other")),
    (S.WRAP_UP, Hangup(call_id=CALL)),
    (S.WRAP_UP, WrapupExtend(seconds=0)),
]


@pytest.mark.parametrize(("start", "event"), ILLEGAL)
def test_illegal_transitions_are_none(start: SeatStatus, event: SeatEvent) -> None:
    assert transition(seat(start), event, 5.0, POLICY) is None


def test_board_logs_and_counts_illegal_and_keeps_state() -> None:
    board = SeatBoard(["1001"], POLICY, structlog.get_logger())
    with capture_logs() as logs:
        for _, event in ILLEGAL[:4]:  # all from LOGGED_OUT
            assert board.apply("1001", event, 1.0) is None
        assert board.apply("9999", Login(), 1.0) is None
    assert board.illegal == {
        ("logged_out", "Logout"): 1,
        ("logged_out", "GoReady"): 1,
        ("logged_out", "Reserve"): 1,
        ("logged_out", "WrapupDone"): 1,
        ("unknown_seat", "Login"): 1,
    }
    assert [e["event"] for e in logs].count("seat_transition_illegal") == 4
    state = board.get("1001")
    assert state is not None
    assert state.status is S.LOGGED_OUT


def test_full_cycle_with_wrapup_timer() -> None:
    board = SeatBoard(["1001"], POLICY, structlog.get_logger())
    steps = [
        board.apply("1001", Login(ready=True), 0.0),
        board.apply("1001", Reserve(call_id=CALL), 10.0),
        board.apply("1001", Ring(call_id=CALL), 10.1),
        board.apply("1001", Answer(call_id=CALL), 13.0),
    ]
    assert all(s is not None for s in steps)
    hangup = board.apply("1001", Hangup(call_id=CALL), 100.0)
    assert hangup is not None
    assert hangup.state.status is S.WRAP_UP
    assert StartTimer(name="wrapup", key="1001", at=130.0) in hangup.outputs
    done = board.apply("1001", WrapupTimerExpired(deadline=130.0), 130.0)
    assert done is not None
    assert (done.state.status, done.state.ready_since) == (S.READY, 130.0)


def test_wrapup_extend_capped_and_old_timer_stale() -> None:
    state = seat(S.WRAP_UP)
    step = transition(state, WrapupExtend(seconds=60), 20.0, POLICY)
    assert step is not None
    assert step.state.wrapup_until == 90.0
    assert StartTimer(name="wrapup", key="1001", at=90.0) in step.outputs
    capped = transition(step.state, WrapupExtend(seconds=600), 21.0, POLICY)
    assert capped is not None
    assert capped.state.wrapup_until == 120.0  # wrapup_max_s from wrapup_started
    stale = transition(capped.state, WrapupTimerExpired(deadline=30.0), 30.0, POLICY)
    assert stale is not None
    assert stale.state.status is S.WRAP_UP


def test_pending_not_ready_applied_after_wrapup() -> None:
    state = seat(S.TALKING, pending=Pending(kind=PendingKind.NOT_READY, reason=Reason.MEAL))
    wrap = transition(state, Hangup(call_id=CALL), 50.0, POLICY)
    assert wrap is not None
    assert wrap.state.pending is not None
    end = transition(wrap.state, WrapupDone(), 60.0, POLICY)
    assert end is not None
    assert (end.state.status, end.state.reason, end.state.pending) == (
        S.NOT_READY,
        Reason.MEAL,
        None,
    )


def test_pending_logout_after_call_without_wrapup() -> None:
    policy = SeatPolicy(wrapup_s=0.0)
    state = seat(S.TALKING, pending=Pending(kind=PendingKind.LOGOUT))
    step = transition(state, Hangup(call_id=CALL), 50.0, policy)
    assert step is not None
    assert step.state.status is S.LOGGED_OUT


def test_rona_reports_offer_failed() -> None:
    step = transition(seat(S.RINGING), RingNoAnswer(call_id=CALL), 25.0, POLICY)
    assert step is not None
    assert OfferFailed(seat_id="1001", call_id=CALL, reason=Reason.RONA) in step.outputs
    assert step.state.call_id is None


def test_offer_cancelled_keeps_idle_order() -> None:
    state = seat(S.RINGING, ready_since=3.0)
    step = transition(state, OfferCancelled(call_id=CALL), 25.0, POLICY)
    assert step is not None
    assert (step.state.status, step.state.ready_since) == (S.READY, 3.0)


def test_device_back_does_not_auto_ready_unless_configured() -> None:
    down = seat(S.NOT_READY, reason=Reason.DEVICE_UNAVAILABLE, device=DeviceStatus.UNAVAILABLE)
    back = DeviceState(status=DeviceStatus.NOT_INUSE)
    step = transition(down, back, 9.0, POLICY)
    assert step is not None
    assert (step.state.status, step.state.device) == (S.NOT_READY, DeviceStatus.NOT_INUSE)
    auto = transition(down, back, 9.0, replace(POLICY, auto_ready_on_device_available=True))
    assert auto is not None
    assert auto.state.status is S.READY
    # a seat not-ready for lunch stays so, whatever its phone does
    lunch = seat(S.NOT_READY, device=DeviceStatus.UNAVAILABLE)
    kept = transition(lunch, back, 9.0, replace(POLICY, auto_ready_on_device_available=True))
    assert kept is not None
    assert kept.state.status is S.NOT_READY


def test_ready_with_dead_device_goes_not_ready() -> None:
    state = seat(S.NOT_READY, device=DeviceStatus.UNAVAILABLE)
    step = transition(state, GoReady(), 1.0, POLICY)
    assert step is not None
    assert (step.state.status, step.state.reason) == (S.NOT_READY, Reason.DEVICE_UNAVAILABLE)


def test_routable_needs_idle_device() -> None:
    assert seat(S.READY).routable
    assert not seat(S.READY, device=DeviceStatus.INUSE).routable
    assert DeviceStatus.parse("not_inuse") is DeviceStatus.NOT_INUSE
    assert DeviceStatus.parse("garbage") is DeviceStatus.UNKNOWN
