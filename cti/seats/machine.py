"""The seat state machine: ``transition(state, event, now, policy) -> SeatStep | None``.

Legal transitions are the entries of :data:`TRANSITIONS` (status, event type) -> handler;
anything else is impossible and :func:`transition` returns ``None``. :class:`SeatBoard`
holds every seat's state, applies events, and logs and counts the impossible ones (never
asserts: an unexpected event from the field must not crash the core).

::

    logged_out --login--> not_ready(login) --ready--> ready --reserve--> reserved --ring-->
    ringing --answer--> talking --hangup--> wrap_up --timer/done--> ready (or the pending
    not_ready(reason) / logged_out the agent asked for during the call)

    reserved/ringing --ring_no_answer--> not_ready(rona)      + OfferFailed (call to head)
    reserved/ringing --device UNAVAILABLE--> not_ready(device_unavailable) + OfferFailed
    reserved/ringing --caller gone--> ready (keeps its idle time) or the pending state
    ready --device UNAVAILABLE--> not_ready(device_unavailable)
    not_ready(device_unavailable) --device NOT_INUSE--> ready, only if configured
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final, TypeAlias

from structlog.typing import FilteringBoundLogger

from cti.seats.model import (
    DEAD_DEVICE,
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
    SeatEvent,
    SeatOutput,
    SeatState,
    SeatStateChanged,
    SeatStatus,
    StartTimer,
    WrapupDone,
    WrapupExtend,
    WrapupTimerExpired,
)

__all__ = ["TRANSITIONS", "WRAPUP_TIMER", "SeatBoard", "SeatPolicy", "SeatStep", "transition"]

WRAPUP_TIMER: Final = "wrapup"


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatPolicy:
    """The knobs of the machine (from ``numberplan.queue``)."""

    wrapup_s: float = 30.0
    wrapup_max_s: float = 600.0
    auto_ready_on_device_available: bool = False


@dataclass(frozen=True, slots=True)
class SeatStep:
    """The seat's new state and what the outside world must do about it."""

    state: SeatState
    outputs: tuple[SeatOutput, ...] = ()


_Handler: TypeAlias = Callable[[SeatState, SeatEvent, float, SeatPolicy], SeatStep | None]
S = SeatStatus
_OFFERED: Final = (S.RESERVED, S.RINGING)
_ON_CALL: Final = (S.RESERVED, S.RINGING, S.TALKING)


def _change(state: SeatState, new: SeatState, cause: str) -> SeatStep:
    if new == state:
        return SeatStep(state)
    return SeatStep(new, (SeatStateChanged(state=new, previous=state.status, cause=cause),))


def _enter(
    state: SeatState,
    status: SeatStatus,
    now: float,
    cause: str,
    *,
    reason: Reason | None = None,
    call_id: str | None = None,
    ready_since: float | None = None,
    pending: Pending | None = None,
    wrapup_started: float | None = None,
    wrapup_until: float | None = None,
) -> SeatStep:
    """Enter *status*: every per-status field not given is cleared."""
    new = replace(
        state,
        status=status,
        since=now,
        reason=reason,
        call_id=call_id,
        ready_since=ready_since,
        pending=pending,
        wrapup_started=wrapup_started,
        wrapup_until=wrapup_until,
    )
    return _change(state, new, cause)


def _ready(state: SeatState, now: float, cause: str, ready_since: float | None = None) -> SeatStep:
    if state.device in DEAD_DEVICE:
        return _enter(state, S.NOT_READY, now, cause, reason=Reason.DEVICE_UNAVAILABLE)
    return _enter(
        state, S.READY, now, cause, ready_since=now if ready_since is None else ready_since
    )


def _after_call(
    state: SeatState, now: float, cause: str, ready_since: float | None = None
) -> SeatStep:
    """Where a seat goes when its call (and wrap-up) is over: the pending state or ready."""
    pending = state.pending
    if pending is not None and pending.kind is PendingKind.LOGOUT:
        return _enter(state, S.LOGGED_OUT, now, cause)
    if pending is not None:
        return _enter(state, S.NOT_READY, now, cause, reason=pending.reason)
    return _ready(state, now, cause, ready_since)


def _call_matches(state: SeatState, event: SeatEvent) -> bool:
    return getattr(event, "call_id", None) == state.call_id


# ------------------------------------------------------------------------ handlers


def _login(state: SeatState, event: SeatEvent, now: float, _: SeatPolicy) -> SeatStep:
    if isinstance(event, Login) and event.ready:
        return _ready(state, now, "login")
    return _enter(state, S.NOT_READY, now, "login", reason=Reason.LOGIN)


def _logout(state: SeatState, _e: SeatEvent, now: float, _: SeatPolicy) -> SeatStep:
    return _enter(state, S.LOGGED_OUT, now, "logout")


def _go_ready(state: SeatState, _e: SeatEvent, now: float, _: SeatPolicy) -> SeatStep:
    if state.status is S.READY:
        return SeatStep(state)
    return _ready(state, now, "ready")


def _not_ready(state: SeatState, event: SeatEvent, now: float, _: SeatPolicy) -> SeatStep | None:
    if not isinstance(event, GoNotReady):
        return None
    if state.status is S.NOT_READY and state.reason is event.reason:
        return SeatStep(state)
    return _enter(state, S.NOT_READY, now, "not_ready", reason=event.reason)


def _pend_not_ready(
    state: SeatState, event: SeatEvent, _n: float, _: SeatPolicy
) -> SeatStep | None:
    if not isinstance(event, GoNotReady):
        return None
    pending = Pending(kind=PendingKind.NOT_READY, reason=event.reason)
    return _change(state, replace(state, pending=pending), "pending_not_ready")


def _pend_logout(state: SeatState, _e: SeatEvent, _n: float, _: SeatPolicy) -> SeatStep:
    pending = Pending(kind=PendingKind.LOGOUT)
    return _change(state, replace(state, pending=pending), "pending_logout")


def _clear_pending(state: SeatState, _e: SeatEvent, _n: float, _: SeatPolicy) -> SeatStep:
    return _change(state, replace(state, pending=None), "pending_cleared")


def _reserve(state: SeatState, event: SeatEvent, now: float, _: SeatPolicy) -> SeatStep | None:
    if not isinstance(event, Reserve):
        return None
    return _enter(
        state, S.RESERVED, now, "reserve", call_id=event.call_id, ready_since=state.ready_since
    )


def _ring(state: SeatState, event: SeatEvent, now: float, _: SeatPolicy) -> SeatStep | None:
    if not _call_matches(state, event):
        return None
    return _change(state, replace(state, status=S.RINGING, since=now), "ring")


def _answer(state: SeatState, event: SeatEvent, now: float, _: SeatPolicy) -> SeatStep | None:
    if not _call_matches(state, event):
        return None
    return _change(state, replace(state, status=S.TALKING, since=now, ready_since=None), "answer")


def _offer_cancelled(
    state: SeatState, event: SeatEvent, now: float, _: SeatPolicy
) -> SeatStep | None:
    if not _call_matches(state, event):
        return None
    # The caller left before the seat answered: the seat keeps its place in the idle order.
    return _after_call(state, now, "offer_cancelled", ready_since=state.ready_since)


def _rona(state: SeatState, event: SeatEvent, now: float, _: SeatPolicy) -> SeatStep | None:
    if not isinstance(event, RingNoAnswer) or not _call_matches(state, event):
        return None
    failed = OfferFailed(seat_id=state.seat_id, call_id=event.call_id, reason=Reason.RONA)
    if state.pending is not None and state.pending.kind is PendingKind.LOGOUT:
        step = _enter(state, S.LOGGED_OUT, now, "ring_no_answer")
    else:
        step = _enter(state, S.NOT_READY, now, "ring_no_answer", reason=Reason.RONA)
    return SeatStep(step.state, (*step.outputs, failed))


def _hangup(state: SeatState, event: SeatEvent, now: float, policy: SeatPolicy) -> SeatStep | None:
    if not _call_matches(state, event):
        return None
    if policy.wrapup_s <= 0:
        return _after_call(state, now, "hangup")
    until = now + policy.wrapup_s
    step = _enter(
        state,
        S.WRAP_UP,
        now,
        "hangup",
        call_id=state.call_id,
        pending=state.pending,
        wrapup_started=now,
        wrapup_until=until,
    )
    timer = StartTimer(name=WRAPUP_TIMER, key=state.seat_id, at=until)
    return SeatStep(step.state, (*step.outputs, timer))


def _wrapup_timer(state: SeatState, event: SeatEvent, now: float, _: SeatPolicy) -> SeatStep | None:
    if not isinstance(event, WrapupTimerExpired):
        return None
    if state.status is not S.WRAP_UP or event.deadline != state.wrapup_until:
        return SeatStep(state)  # a stale timer (wrap-up extended or ended): nothing to do
    return _after_call(state, now, "wrapup_expired")


def _wrapup_done(state: SeatState, _e: SeatEvent, now: float, _: SeatPolicy) -> SeatStep:
    return _after_call(state, now, "wrapup_done")


def _wrapup_ready(state: SeatState, _e: SeatEvent, now: float, _: SeatPolicy) -> SeatStep:
    # "Ready" during wrap-up means "done, and ready": it also drops a pending not-ready.
    return _ready(replace(state, pending=None), now, "wrapup_done")


def _wrapup_extend(
    state: SeatState, event: SeatEvent, _n: float, policy: SeatPolicy
) -> SeatStep | None:
    if not isinstance(event, WrapupExtend) or event.seconds <= 0:
        return None
    started = state.wrapup_started if state.wrapup_started is not None else state.since
    current = state.wrapup_until if state.wrapup_until is not None else started
    until = min(current + event.seconds, started + policy.wrapup_max_s)
    if until <= current:
        return SeatStep(state)
    new = replace(state, wrapup_until=until)
    timer = StartTimer(name=WRAPUP_TIMER, key=state.seat_id, at=until)
    return SeatStep(
        new, (SeatStateChanged(state=new, previous=state.status, cause="wrapup_extend"), timer)
    )


def _device(state: SeatState, event: SeatEvent, now: float, policy: SeatPolicy) -> SeatStep | None:
    if not isinstance(event, DeviceState):
        return None
    seen = replace(state, device=event.status)
    dead = event.status in DEAD_DEVICE
    if dead and state.status is S.READY:
        return _enter(
            seen, S.NOT_READY, now, "device_unavailable", reason=Reason.DEVICE_UNAVAILABLE
        )
    if dead and state.status in _OFFERED and state.call_id is not None:
        step = _enter(
            seen, S.NOT_READY, now, "device_unavailable", reason=Reason.DEVICE_UNAVAILABLE
        )
        failed = OfferFailed(
            seat_id=state.seat_id, call_id=state.call_id, reason=Reason.DEVICE_UNAVAILABLE
        )
        return SeatStep(step.state, (*step.outputs, failed))
    if (
        event.status is DeviceStatus.NOT_INUSE
        and state.status is S.NOT_READY
        and state.reason is Reason.DEVICE_UNAVAILABLE
        and policy.auto_ready_on_device_available
    ):
        return _enter(seen, S.READY, now, "device_available", ready_since=now)
    return _change(state, seen, "device_state")


def _ignore(state: SeatState, _e: SeatEvent, _n: float, _: SeatPolicy) -> SeatStep:
    return SeatStep(state)


def _table() -> dict[tuple[SeatStatus, type], _Handler]:
    t: dict[tuple[SeatStatus, type], _Handler] = {}
    for status in SeatStatus:
        t[status, DeviceState] = _device
        t[status, WrapupTimerExpired] = _wrapup_timer
    t[S.LOGGED_OUT, Login] = _login
    for status in (S.READY, S.NOT_READY):
        t[status, Logout] = _logout
        t[status, GoReady] = _go_ready
        t[status, GoNotReady] = _not_ready
    t[S.READY, Reserve] = _reserve
    for status in _ON_CALL:
        t[status, GoNotReady] = _pend_not_ready
        t[status, Logout] = _pend_logout
        t[status, GoReady] = _clear_pending
    for status in _OFFERED:
        t[status, Answer] = _answer
        t[status, RingNoAnswer] = _rona
        t[status, OfferCancelled] = _offer_cancelled
        # A hangup before the answer is the caller leaving during the offer.
        t[status, Hangup] = _offer_cancelled
    t[S.RESERVED, Ring] = _ring
    t[S.RINGING, Ring] = _ignore  # Asterisk may report ringing twice (RINGING, RINGINUSE)
    t[S.TALKING, Hangup] = _hangup
    t[S.WRAP_UP, WrapupDone] = _wrapup_done
    t[S.WRAP_UP, WrapupExtend] = _wrapup_extend
    t[S.WRAP_UP, GoReady] = _wrapup_ready
    t[S.WRAP_UP, GoNotReady] = _pend_not_ready
    t[S.WRAP_UP, Logout] = _logout
    return t


TRANSITIONS: Final[Mapping[tuple[SeatStatus, type], _Handler]] = _table()


def transition(
    state: SeatState, event: SeatEvent, now: float, policy: SeatPolicy
) -> SeatStep | None:
    """The seat's next state and outputs, or ``None`` when *event* is impossible here.

    An event that is possible but changes nothing (ready while ready, a stale wrap-up timer)
    returns the same state and no outputs.
    """
    handler = TRANSITIONS.get((state.status, type(event)))
    if handler is None:
        return None
    return handler(state, event, now, policy)


class SeatBoard:
    """Every configured seat's state. Mutable; owned by the core's single thread.

    Args:
        seat_ids: the seats of the number plan; events for other ids are impossible.
        policy: wrap-up times and device reconciliation.
        log: structlog logger; impossible transitions are logged (warning) and counted in
            :attr:`illegal` by (status, event name), never raised.
    """

    def __init__(
        self, seat_ids: Iterable[str], policy: SeatPolicy, log: FilteringBoundLogger
    ) -> None:
        self.policy = policy
        self._log = log
        self._states: dict[str, SeatState] = {seat: SeatState(seat_id=seat) for seat in seat_ids}
        self.illegal: Counter[tuple[str, str]] = Counter()

    def __contains__(self, seat_id: object) -> bool:
        return seat_id in self._states

    def get(self, seat_id: str) -> SeatState | None:
        return self._states.get(seat_id)

    def states(self) -> Iterable[SeatState]:
        return self._states.values()

    def add(self, seat_id: str) -> SeatState:
        """A seat new in the plan (a configuration reload): logged out until its agent
        logs in. A seat already on the board keeps its state."""
        return self._states.setdefault(seat_id, SeatState(seat_id=seat_id))

    def remove(self, seat_id: str) -> SeatState | None:
        """A seat gone from the plan (a configuration reload): its last state, or ``None``."""
        return self._states.pop(seat_id, None)

    def restore(self, state: SeatState) -> bool:
        """Adopt a persisted snapshot (daemon restart). ``False`` for an unknown seat."""
        if state.seat_id not in self._states:
            self._log.warning("seat_restore_unknown", seat=state.seat_id)
            return False
        self._states[state.seat_id] = state
        return True

    def apply(self, seat_id: str, event: SeatEvent, now: float) -> SeatStep | None:
        """Apply *event* to *seat_id*; ``None`` (logged, counted) if impossible."""
        state = self._states.get(seat_id)
        if state is None:
            self.illegal["unknown_seat", type(event).__name__] += 1
            self._log.warning("seat_unknown", seat=seat_id, seat_event=type(event).__name__)
            return None
        step = transition(state, event, now, self.policy)
        if step is None:
            self.illegal[state.status.value, type(event).__name__] += 1
            self._log.warning(
                "seat_transition_illegal",
                seat=seat_id,
                status=state.status.value,
                seat_event=type(event).__name__,
                call_id=state.call_id,
                event_call_id=getattr(event, "call_id", None),
            )
            return None
        self._states[seat_id] = step.state
        return step
