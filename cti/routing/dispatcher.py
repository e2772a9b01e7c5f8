"""The dispatcher: queue + seats + routing behind one sans-IO facade.

Events in (a call starts waiting, an agent command, ringing, answer, hangup, a device state,
time passing), a list of frozen :mod:`cti.routing.commands` out. Synchronous, no I/O; time
is passed in. One instance per CTI node, driven from one task.

Guarantees (checked by the property tests in ``tests/routing/test_properties.py``):

- a seat is offered one call at a time: it is reserved (``SeatStatus.RESERVED``) by the
  state machine before ``ConnectCall`` leaves, and only ``READY`` seats can be reserved;
- a call rings one seat at a time: it leaves the waiting line when offered and only comes
  back (at the head of its class) when that offer has failed;
- a waiting call is offered as soon as an eligible seat is ready: every change that can
  make a seat or a call eligible (seat ready, wrap-up over, RONA, overflow step reached)
  routes again.

Timers: the dispatcher keeps its own deadlines (ring timeout, wrap-up, overflow steps) and
returns ``StartTimer(at=...)`` hints; the driver calls :meth:`Dispatcher.tick` at those times
(or simply every 0.25 s). :meth:`Dispatcher.next_deadline` tells when the next one is due.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final

from structlog.typing import FilteringBoundLogger

from cti.numberplan import Line, LineMode, NumberPlan
from cti.queue.ewt import HandleTimeEstimator, expected_wait
from cti.queue.model import Abandonment, Position, PositionMark, WaitingCall
from cti.queue.waiting import WaitingLine
from cti.routing.commands import (
    CallAnswered,
    CancelRing,
    Command,
    CommandRejected,
    ConnectCall,
    PublishQueueSnapshot,
    PublishSeatState,
    QueueSnapshot,
    RecordAbandonment,
    StartTimer,
    TransferOut,
)
from cti.routing.policy import Decision, match, pick_call, pick_seat
from cti.routing.rules import RoutingRules, SeatCandidate, SeatProfile
from cti.seats.machine import WRAPUP_TIMER, SeatBoard, SeatPolicy
from cti.seats.model import (
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
    Reason,
    Reserve,
    Ring,
    RingNoAnswer,
    SeatEvent,
    SeatState,
    SeatStateChanged,
    SeatStatus,
    WrapupDone,
    WrapupExtend,
    WrapupTimerExpired,
)
from cti.seats.model import StartTimer as SeatTimer

__all__ = ["RING_TIMER", "Dispatcher", "IncomingCall"]

RING_TIMER: Final = "ring"
OVERFLOW_TIMER: Final = "overflow"
MAX_POSITION_MARKS: Final = 16  # per call, in the pop's queue-position history
_BUSY: Final = frozenset({"reserved", "ringing", "talking", "wrap_up"})
_STAFFED: Final = frozenset(
    {
        SeatStatus.READY,
        SeatStatus.RESERVED,
        SeatStatus.RINGING,
        SeatStatus.TALKING,
        SeatStatus.WRAP_UP,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingCall:
    """A call that reached the holding loop and wants a seat.

    Attributes:
        line: the dialled number (``CTI_LINE``).
        skill: a skill chosen on the way (IVR, 110 push data) instead of the line's.
        escalated: an escalation (督办/urgent); served in the 110 class.
        entered_at: when the call really joined the line, when that was before `at`: a
            call adopted after a restart keeps the place its wait gives it (its channel's
            ``CTI_ENTERED``), instead of going behind the calls that came after it.
    """

    call_id: str
    line: str
    at: float
    caller: str = ""
    language: str | None = None
    skill: str | None = None
    repeat_caller: bool = False
    callback: bool = False
    escalated: bool = False
    demoted: bool = False  # a blacklisted caller treated "last": the lowest class
    entered_at: float | None = None


@dataclass(slots=True)
class _Offer:
    call: WaitingCall
    seat_id: str
    at: float
    step: str


@dataclass(slots=True)
class _Talk:
    call: WaitingCall
    seat_id: str
    answered_at: float


class Dispatcher:
    """One queue, every seat, the routing policy. See the module docstring.

    Args:
        plan: the validated number plan.
        log: structlog logger (bind ``component="dispatcher"`` if you like).
    """

    def __init__(self, plan: NumberPlan, log: FilteringBoundLogger) -> None:
        q = plan.queue
        self.plan = plan
        self.rules = RoutingRules.from_plan(plan)
        self._log = log
        self._lines: dict[str, Line] = {line.number: line for line in plan.lines}
        self._profiles = {seat.id: SeatProfile.from_config(seat) for seat in plan.seats}
        self._by_device = {p.endpoint.lower(): p.seat_id for p in self._profiles.values()}
        self._trunks = {t.name: t.endpoint for t in plan.trunks}
        self.queue = WaitingLine(aging_per_s=q.aging_per_s, log=log)
        self.seats = SeatBoard(
            self._profiles,
            SeatPolicy(
                wrapup_s=q.wrapup_s,
                wrapup_max_s=q.wrapup_max_s,
                auto_ready_on_device_available=q.auto_ready_on_device_available,
            ),
            log,
        )
        self.handle_times = HandleTimeEstimator(alpha=q.ewt_alpha, default_s=q.ewt_default_handle_s)
        # ready (routable) seats, longest idle first: (ready_since, seat_id) sorted
        self._ready_order: list[tuple[float, str]] = []
        self._ready: dict[str, SeatCandidate] = {}
        self._offers: dict[str, _Offer] = {}
        self._seat_offer: dict[str, str] = {}
        self._talks: dict[str, _Talk] = {}
        # call -> where it stood at each moment of its wait (queued, requeued, overflow,
        # offered); bounded per call, kept across a transfer, dropped when the call ends
        self._marks: dict[str, list[PositionMark]] = {}
        self._wrapups: dict[str, _Talk] = {}
        self._sticky: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._timers: list[tuple[float, int, str, str]] = []
        self._timer_at: dict[tuple[str, str], float] = {}
        self._timer_seq = 0
        self._dirty = True
        self.stats: Counter[str] = Counter()
        # after a restart: seats restored on a call (seat -> call) until the first channel
        # list says whether it is up; then the calls still talked (call -> seat)
        self._resuming: dict[str, str] = {}
        self._restored_talks: dict[str, str] = {}
        # seats gone from a reloaded plan while on a call: they leave when it ends (replan)
        self._retiring: set[str] = set()

    # ================================================================ calls

    def on_call_waiting(self, incoming: IncomingCall) -> list[Command]:
        """A call is in the holding loop: classify it, then offer it or queue it."""
        now = incoming.at
        cid = incoming.call_id
        if cid in self.queue or cid in self._offers or cid in self._talks:
            self._anomaly("call_duplicate", call_id=cid)
            return []
        line = self._lines.get(incoming.line)
        if line is None:
            # Never lose a citizen to a config gap: answer it as a general call.
            self._anomaly("call_unknown_line", call_id=cid, line=incoming.line)
        elif line.mode is LineMode.SUBCENTRE and line.transfer_to is not None:
            self.stats["transferred_out"] += 1
            trunk = self._trunks.get(line.trunk) if line.trunk else None
            self._log.info("call_transfer_out", call_id=cid, line=line.number)
            return [
                TransferOut(
                    call_id=cid, line=line.number, number=line.transfer_to, trunk_endpoint=trunk
                )
            ]
        call = self._classify(incoming, line)
        self.stats["calls_waiting"] += 1
        out: list[Command] = []
        decision = pick_seat(call, self._ready_seats(), self.rules, now, ready_by_id=self._ready)
        if decision.matched:
            self._offer(decision, now, out)
            return out
        self.queue.add(call)
        self._mark(cid, "queued", now)
        self._dirty = True
        for at in self.rules.boundaries(call.enqueued_at):
            self._schedule(OVERFLOW_TIMER, cid, at, out, unique=False)
        self._log.info(
            "call_queued",
            call_id=cid,
            line=call.line,
            priority_class=call.priority_class,
            waiting=len(self.queue),
        )
        return out

    def on_ringing(self, call_id: str, now: float) -> list[Command]:
        """The seat's phone is ringing for *call_id* (DialBegin / Newstate Ringing)."""
        offer = self._offers.get(call_id)
        if offer is None:
            self._anomaly("ringing_unknown_call", call_id=call_id)
            return []
        out: list[Command] = []
        self._apply(offer.seat_id, Ring(call_id=call_id), now, out)
        return out

    def on_answer(self, call_id: str, now: float) -> list[Command]:
        """The seat answered *call_id*."""
        offer = self._offers.get(call_id)
        if offer is None:
            self._anomaly("answer_unknown_call", call_id=call_id)
            return []
        out: list[Command] = []
        if not self._apply(offer.seat_id, Answer(call_id=call_id), now, out):
            return out
        del self._offers[call_id]
        self._seat_offer.pop(offer.seat_id, None)
        self._timer_at.pop((RING_TIMER, call_id), None)
        call = offer.call
        self._talks[call_id] = _Talk(call=call, seat_id=offer.seat_id, answered_at=now)
        if call.caller:
            self._sticky[call.caller] = (offer.seat_id, now)
            self._sticky.move_to_end(call.caller)
        self._dirty = True
        self.stats["answered"] += 1
        out.append(
            CallAnswered(
                call_id=call_id,
                seat_id=offer.seat_id,
                line=call.line,
                priority_class=call.priority_class,
                waited_s=call.waited(now),
                step=offer.step,
            )
        )
        return out

    def on_offer_undelivered(self, call_id: str, now: float) -> list[Command]:
        """The offer of *call_id* never reached Asterisk (its Redirect was sent while the AMI
        link was down: a frozen or restarting Asterisk); a resync finds the call still in
        the holding loop and its seat never rang. Not a ring-no-answer: the seat keeps its
        place in the idle order and stays ready, the call goes back to the head of its class
        and is offered again. Empty when the seat already rang (the ring timer / RONA rule
        that)."""
        offer = self._offers.get(call_id)
        state = self.seats.get(offer.seat_id) if offer is not None else None
        out: list[Command] = []
        if offer is None or state is None or state.status is not SeatStatus.RESERVED:
            return out
        self._drop_offer(call_id)
        self._apply(offer.seat_id, OfferCancelled(call_id=call_id), now, out)
        self.stats["offer_undelivered"] += 1
        self._log.info("offer_undelivered", call_id=call_id, seat=offer.seat_id)
        call = self.queue.requeue_at_head(offer.call)
        self._mark(call_id, "requeued", now)
        self._dirty = True
        self._route_waiting(call, now, out)
        self._route_seat(offer.seat_id, now, out)
        return out

    def on_ring_timeout(self, call_id: str, now: float) -> list[Command]:
        """Ring no answer: the seat goes not-ready (RONA), the call back to the head."""
        offer = self._offers.get(call_id)
        if offer is None:
            return []  # answered or gone meanwhile: a stale timer
        out: list[Command] = []
        self._apply(offer.seat_id, RingNoAnswer(call_id=call_id), now, out)
        return out

    def on_hangup(self, call_id: str, now: float) -> list[Command]:
        """The call ended, wherever it is: waiting (abandoned), offered (abandoned while
        ringing) or talking (the seat goes to wrap-up). Unknown calls are ignored."""
        out: list[Command] = []
        self._marks.pop(call_id, None)
        if call_id in self.queue:
            self._abandon_waiting(call_id, now, out)
        elif call_id in self._offers:
            offer = self._offers[call_id]
            self._apply(offer.seat_id, OfferCancelled(call_id=call_id), now, out)
            self._drop_offer(call_id)
            call = offer.call
            self.stats["abandoned"] += 1
            self.stats["abandoned_during_offer"] += 1
            out.append(
                RecordAbandonment(
                    outcome=Abandonment(
                        call_id=call_id,
                        line=call.line,
                        caller=call.caller,
                        priority_class=call.priority_class,
                        enqueued_at=call.enqueued_at,
                        abandoned_at=now,
                        waited_s=call.waited(now),
                        position=0,
                        during_offer=True,
                        seat_id=offer.seat_id,
                    )
                )
            )
            self._route_seat(offer.seat_id, now, out)
        elif call_id in self._talks:
            talk = self._talks.pop(call_id)
            self._wrapups[talk.seat_id] = talk
            self._apply(talk.seat_id, Hangup(call_id=call_id), now, out)
            self._route_seat(talk.seat_id, now, out)  # ready at once when wrapup_s is 0
        elif call_id in self._restored_talks:  # talked before a restart, ended after it
            seat_id = self._restored_talks.pop(call_id)
            self._apply(seat_id, Hangup(call_id=call_id), now, out)
            self._route_seat(seat_id, now, out)
        else:
            self.stats["hangup_unknown_call"] += 1
        return out

    def on_transfer(
        self, call_id: str, skill: str, now: float, *, min_level: int = 1
    ) -> list[Command]:
        """The agent transfers a call it is talking to another skill (一键转接 to a
        department): the seat's part ends (wrap-up) and the call goes back to the head of
        its class, now needing `skill`. Its original enqueue time is kept. Empty (and
        counted) when the call is not being talked to."""
        talk = self._talks.pop(call_id, None)
        if talk is None:
            self._anomaly("transfer_unknown_call", call_id=call_id)
            return []
        out: list[Command] = []
        self._wrapups[talk.seat_id] = talk
        self._apply(talk.seat_id, Hangup(call_id=call_id), now, out)
        # not back to the same seat by stickiness: the agent sent it away on purpose
        moved = replace(talk.call, skills=frozenset({skill}), min_level=min_level, last_seat=None)
        call = self.queue.requeue_at_head(moved)
        self._mark(call_id, "requeued", now)
        self._dirty = True
        self.stats["transferred"] += 1
        self._route_waiting(call, now, out)
        self._route_seat(talk.seat_id, now, out)
        return out

    def on_seat_released(self, call_id: str, now: float) -> list[Command]:
        """The seat's part of a call it talks to ends while the call goes on without it
        (escalated to 110 blind, or the agent left a three-way call): the seat goes to
        wrap-up; the call leaves the dispatcher for good (its later end is not the seat's).
        Empty (and counted) when the call is not being talked to."""
        talk = self._talks.pop(call_id, None)
        if talk is None:
            self._anomaly("release_unknown_call", call_id=call_id)
            return []
        out: list[Command] = []
        self._marks.pop(call_id, None)
        self._wrapups[talk.seat_id] = talk
        self._apply(talk.seat_id, Hangup(call_id=call_id), now, out)
        self.stats["released"] += 1
        self._route_seat(talk.seat_id, now, out)
        return out

    def on_abandon(self, call_id: str, now: float) -> list[Command]:
        """The caller hung up while waiting (same as :meth:`on_hangup`)."""
        return self.on_hangup(call_id, now)

    # ================================================================ seats (agent commands)

    def on_login(self, seat_id: str, now: float, *, ready: bool = False) -> list[Command]:
        return self._command(seat_id, Login(ready=ready), now)

    def on_logout(self, seat_id: str, now: float) -> list[Command]:
        return self._command(seat_id, Logout(), now)

    def on_seat_ready(self, seat_id: str, now: float) -> list[Command]:
        """示闲 (also ends wrap-up, and cancels a pending not-ready during a call)."""
        return self._command(seat_id, GoReady(), now)

    def on_seat_not_ready(self, seat_id: str, reason: Reason, now: float) -> list[Command]:
        """示忙 with a reason; during a call it takes effect when the call is over."""
        return self._command(seat_id, GoNotReady(reason=reason), now)

    def on_wrapup_done(self, seat_id: str, now: float) -> list[Command]:
        return self._command(seat_id, WrapupDone(), now)

    def on_wrapup_extend(self, seat_id: str, seconds: float, now: float) -> list[Command]:
        return self._command(seat_id, WrapupExtend(seconds=seconds), now)

    def on_device_state(self, device: str, status: str, now: float) -> list[Command]:
        """Asterisk's ``DeviceStateChange`` for *device* (e.g. ``PJSIP/1001``)."""
        seat_id = self.seat_for_device(device)
        if seat_id is None:
            return []  # trunks, other phones
        out: list[Command] = []
        self._apply(seat_id, DeviceState(status=DeviceStatus.parse(status)), now, out)
        self._route_seat(seat_id, now, out)
        return out

    def restore_seats(
        self, saved: dict[str, tuple[str, str | None, float]], now: float
    ) -> list[Command]:
        """Seats' last states from before a restart: `seat -> (status, reason, since)`.

        Ready, not-ready (with its reason) and logged-out come back as they were. A seat that
        was reserved, ringing, talking or in wrap-up comes back not ready (`restart`): its
        call may still be going on and the daemon lost track of it. Unknown seats and
        statuses are ignored (logged). Returns the state publications.
        """
        out: list[Command] = []
        for seat_id, (status, reason, since) in saved.items():
            state = self.seats.get(seat_id)
            if state is None:
                self._anomaly("restore_unknown_seat", seat=seat_id)
                continue
            restored = _restored(state, status, reason, since, now)
            if restored is None:
                self._anomaly("restore_unknown_status", seat=seat_id, status=status)
                continue
            self.seats.restore(restored)
            self._sync_ready(restored)
            self._dirty = True
            out.append(PublishSeatState(state=restored, previous=status, cause="restart"))
        return out

    # ========================================================== restart (cti/core/recovery.py)

    def restore_busy_seats(
        self, busy: dict[str, tuple[str, str | None, float, str, Pending | None]]
    ) -> list[Command]:
        """Seats that were on a call when the daemon stopped: `seat -> (status, reason,
        since, call_id, pending)` from the stored state changes. Unless
        `numberplan.queue.after_restart` is `not_ready` (then :meth:`restore_seats` made
        them not ready, reason `restart`), each comes back in its status, on its call, until
        :meth:`resume_seat` says whether that call is still up. Returns the publications."""
        out: list[Command] = []
        if self.plan.queue.after_restart == "not_ready":
            return out
        for seat_id, (status, _reason, since, call_id, pending) in busy.items():
            state = self.seats.get(seat_id)
            if state is None or status not in _BUSY:
                continue
            was = SeatStatus(status)
            restored = replace(
                state,
                status=was,
                since=since,
                reason=None,
                call_id=call_id,
                pending=pending,
                ready_since=None,
                wrapup_started=since if was is SeatStatus.WRAP_UP else None,
                wrapup_until=since + self.plan.queue.wrapup_s
                if was is SeatStatus.WRAP_UP
                else None,
            )
            self.seats.restore(restored)
            self._sync_ready(restored)
            self._resuming[seat_id] = call_id
            self._dirty = True
            out.append(PublishSeatState(state=restored, previous=status, cause="restart"))
        return out

    def resuming(self) -> dict[str, str]:
        """Seats restored on a call not yet looked at: `seat -> call_id` (a copy)."""
        return dict(self._resuming)

    def resume_seat(
        self, seat_id: str, *, talking: bool, now: float, answered_here: bool = False
    ) -> list[Command]:
        """The restart's first channel list is in: the call `seat_id` was restored on is
        still being talked (`talking`: the seat stays on it; the call's end brings its
        wrap-up) or is over for the seat (it goes on as if the call had just ended: wrap-up
        unless `after_restart` is `ready`, then what the agent last chose).

        `answered_here`: the call is talking with *this* seat, which was restored reserved
        or ringing — it answered while the daemon was down. The seat is talking now (not
        ready for another call), and the call's end brings its wrap-up."""
        call_id = self._resuming.pop(seat_id, None)
        state = self.seats.get(seat_id)
        out: list[Command] = []
        if call_id is None or state is None or state.call_id != call_id:
            return out
        if talking and state.status is SeatStatus.TALKING:
            self._restored_talks[call_id] = seat_id
            return out
        offered = state.status in (SeatStatus.RESERVED, SeatStatus.RINGING)
        if (
            talking
            and answered_here
            and offered
            and self._apply(seat_id, Answer(call_id=call_id), now, out)
        ):
            self._restored_talks[call_id] = seat_id
            self.stats["seat_answered_while_down"] += 1
            return out
        skip_wrapup = self.plan.queue.after_restart == "ready"
        if state.status is SeatStatus.TALKING:
            self._apply(seat_id, Hangup(call_id=call_id), now, out)
        elif state.status in (SeatStatus.RESERVED, SeatStatus.RINGING):
            self._apply(seat_id, OfferCancelled(call_id=call_id), now, out)
        elif state.status is SeatStatus.WRAP_UP and not skip_wrapup:
            until = state.wrapup_until if state.wrapup_until is not None else now
            if until > now:
                self._schedule(WRAPUP_TIMER, seat_id, until, out)
            else:
                self._apply(seat_id, WrapupTimerExpired(deadline=until), now, out)
        current = self.seats.get(seat_id)
        if skip_wrapup and current is not None and current.status is SeatStatus.WRAP_UP:
            self._apply(seat_id, WrapupDone(), now, out)
        self.stats["seat_resumed_after_restart"] += 1
        self._route_seat(seat_id, now, out)
        return out

    def seat_for_device(self, device: str) -> str | None:
        return self._by_device.get(device.lower())

    # ================================================================ reload (cti/core/replan.py)

    def replan(self, plan: NumberPlan, now: float) -> list[Command]:
        """A reloaded number plan holds from now on; calls in progress keep what they had.

        Lines, trunks, overflow steps, ring and wrap-up times are the new plan's for what
        happens next. A waiting call keeps its place, its class and the skill it was
        queued for; an offer rings on; a talking seat stays on its call. A new seat comes
        in logged out; a seat whose skills, endpoint, team or languages changed is routed
        by them at once (a ready one keeps its turn); a removed seat leaves now when it is
        not on a call, else when its call ends (no wrap-up: it is no longer a seat). Then
        every ready seat is given the first waiting call it can now take.
        """
        out: list[Command] = []
        q = plan.queue
        self.plan = plan
        self.rules = RoutingRules.from_plan(plan)
        self._lines = {line.number: line for line in plan.lines}
        self._trunks = {t.name: t.endpoint for t in plan.trunks}
        self.seats.policy = SeatPolicy(
            wrapup_s=q.wrapup_s,
            wrapup_max_s=q.wrapup_max_s,
            auto_ready_on_device_available=q.auto_ready_on_device_available,
        )
        profiles = {seat.id: SeatProfile.from_config(seat) for seat in plan.seats}
        self._retiring.update(seat for seat in self._profiles if seat not in profiles)
        for seat_id, profile in profiles.items():
            self._retiring.discard(seat_id)  # removed by an earlier reload, back now
            self._profiles[seat_id] = profile
            if seat_id not in self.seats:
                state = self.seats.add(seat_id)
                self.stats["seat_added"] += 1
                out.append(
                    PublishSeatState(state=state, previous=state.status.value, cause="config_added")
                )
            ready = self._ready.get(seat_id)
            if ready is not None:
                self._ready[seat_id] = SeatCandidate(profile=profile, ready_since=ready.ready_since)
        self._index_devices()
        for seat_id in sorted(self._retiring):
            self._retire_if_free(seat_id, now, out)
        for call in list(self.queue):  # the new plan's overflow steps for calls waiting
            for at in self.rules.boundaries(call.enqueued_at):
                self._schedule(OVERFLOW_TIMER, call.call_id, max(at, now), out, unique=False)
        for seat_id in self.ready_seat_ids():
            self._route_seat(seat_id, now, out)
        self._dirty = True
        self.stats["replanned"] += 1
        return out

    def retiring(self) -> frozenset[str]:
        """Seats gone from the plan that are still on a call (they leave when it ends)."""
        return frozenset(self._retiring)

    def _retire_if_free(self, seat_id: str, now: float, out: list[Command]) -> None:
        state = self.seats.get(seat_id)
        if state is None:
            self._retiring.discard(seat_id)
            return
        on_call = state.status in {SeatStatus.RESERVED, SeatStatus.RINGING, SeatStatus.TALKING}
        if on_call or seat_id in self._resuming:
            return
        self._retiring.discard(seat_id)
        self._finish_wrapup(seat_id, now)
        self._timer_at.pop((WRAPUP_TIMER, seat_id), None)  # its wrap-up timer is void
        gone = replace(
            state,
            status=SeatStatus.LOGGED_OUT,
            since=now,
            reason=None,
            call_id=None,
            pending=None,
            ready_since=None,
            wrapup_started=None,
            wrapup_until=None,
        )
        self._sync_ready(gone)
        self.seats.remove(seat_id)
        del self._profiles[seat_id]
        self._index_devices()
        self.stats["seat_removed"] += 1
        self._dirty = True
        self._log.info("seat_removed", seat=seat_id, was=state.status.value)
        out.append(
            PublishSeatState(state=gone, previous=state.status.value, cause="config_removed")
        )

    def _index_devices(self) -> None:
        # a seat of the plan wins over a retiring one on the same endpoint
        ordered = sorted(self._profiles.values(), key=lambda p: p.seat_id not in self._retiring)
        self._by_device = {p.endpoint.lower(): p.seat_id for p in ordered}

    # ================================================================ time

    def tick(self, now: float) -> list[Command]:
        """Fire every deadline due at *now*; publish the queue snapshot if it changed."""
        out: list[Command] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, name, key = heapq.heappop(timers)
            if name == OVERFLOW_TIMER:
                call = self.queue.get(key)
                if call is not None:
                    self._mark(key, "overflow", now)
                    self._route_waiting(call, now, out)
                continue
            if self._timer_at.get((name, key)) != at:
                continue  # replaced or cancelled
            del self._timer_at[name, key]
            if name == RING_TIMER:
                out.extend(self.on_ring_timeout(key, now))
            elif name == WRAPUP_TIMER:
                self._apply(key, WrapupTimerExpired(deadline=at), now, out)
                self._route_seat(key, now, out)
        self._forget_old_callers(now)
        if self._dirty:
            self._dirty = False
            out.append(PublishQueueSnapshot(snapshot=self.snapshot(now)))
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (``None``: nothing scheduled)."""
        return self._timers[0][0] if self._timers else None

    # ================================================================ reading

    def position(self, call_id: str) -> Position | None:
        return self.queue.position(call_id)

    def expected_wait(self, call_id: str, now: float) -> float | None:
        """EWT of a waiting call, seconds (formula in :mod:`cti.queue.ewt`); ``None`` when
        unknown (not waiting, or no staffed seat can take it)."""
        call = self.queue.get(call_id)
        position = self.queue.position(call_id)
        if call is None or position is None:
            return None
        ready = sum(
            1 for seat in self._ready.values() if match(call, seat.profile, self.rules, now)
        )
        staffed = sum(
            1
            for state in self.seats.states()
            if state.status in _STAFFED
            and match(call, self._profiles[state.seat_id], self.rules, now)
        )
        skill = min(call.skills) if call.skills else None
        return expected_wait(
            ahead=position.in_skill - 1,
            ready=ready,
            staffed=staffed,
            aht_s=self.handle_times.aht(skill),
        )

    def snapshot(self, now: float) -> QueueSnapshot:
        oldest = self.queue.oldest_enqueued_at()
        general = self.plan.general_skill
        staffed = sum(1 for state in self.seats.states() if state.status in _STAFFED)
        aht = self.handle_times.aht(general)
        return QueueSnapshot(
            at=now,
            waiting=len(self.queue),
            offered=len(self._offers),
            by_class=self.queue.count_by_class(),
            by_skill=self.queue.count_by_skill(),
            longest_wait_s=max(0.0, now - oldest) if oldest is not None else 0.0,
            ready_seats=len(self._ready),
            staffed_seats=staffed,
            aht_s=aht,
            ewt_new_call_s=expected_wait(
                ahead=self.queue.count_by_skill().get(general, 0),
                ready=len(self._ready),
                staffed=staffed,
                aht_s=aht,
            ),
        )

    def offered_to(self, call_id: str) -> str | None:
        """The seat *call_id* is being offered to, if any."""
        offer = self._offers.get(call_id)
        return offer.seat_id if offer is not None else None

    def seat_call(self, seat_id: str) -> str | None:
        """The call a seat is reserved/ringing for, if any."""
        return self._seat_offer.get(seat_id)

    def ready_seat_ids(self) -> list[str]:
        """Routable ready seats, longest idle first."""
        return [seat for _, seat in self._ready_order]

    # ================================================================ internals

    def _classify(self, incoming: IncomingCall, line: Line | None) -> WaitingCall:
        q = self.plan.queue
        classes = self.rules.class_priority
        names = [line.priority_class if line is not None else q.default_class]
        dispatch110 = line is not None and line.dispatch110
        if dispatch110 or incoming.escalated:
            names.append(q.dispatch110_class)
        if incoming.repeat_caller:
            names.append(q.repeat_class)
        if incoming.callback:
            names.append(q.callback_class)
        name = max(names, key=lambda n: classes.get(n, 0))
        if incoming.demoted:  # behind every other call, whatever its line
            name = min(classes, key=lambda n: classes[n])
        skill = (
            incoming.skill or (line.skill if line is not None else None) or self.plan.general_skill
        )
        last = self._sticky.get(incoming.caller) if incoming.caller else None
        return WaitingCall(
            call_id=incoming.call_id,
            line=incoming.line,
            skills=frozenset({skill}),
            min_level=line.min_level if line is not None else 1,
            language=incoming.language or (line.language if line is not None else None),
            priority_class=name,
            priority=classes.get(name, 0),
            enqueued_at=_entered(incoming),
            caller=incoming.caller,
            repeat_caller=incoming.repeat_caller,
            callback=incoming.callback,
            dispatch110=dispatch110 or incoming.escalated,
            last_seat=last[0] if last is not None else None,
            last_seen_at=last[1] if last is not None else None,
        )

    def _ready_seats(self) -> Iterator[SeatCandidate]:
        ready = self._ready
        return (ready[seat] for _, seat in self._ready_order)

    def _command(self, seat_id: str, event: SeatEvent, now: float) -> list[Command]:
        out: list[Command] = []
        if seat_id not in self.seats:
            self._anomaly("command_unknown_seat", seat=seat_id)
            return [CommandRejected(seat_id=seat_id, command=_name(event), reason="unknown seat")]
        if not self._apply(seat_id, event, now, out):
            state = self.seats.get(seat_id)
            status = state.status.value if state is not None else "?"
            return [
                CommandRejected(
                    seat_id=seat_id, command=_name(event), reason=f"not possible while {status}"
                )
            ]
        self._route_seat(seat_id, now, out)
        return out

    def _apply(self, seat_id: str, event: SeatEvent, now: float, out: list[Command]) -> bool:
        """Apply a seat event; turn its outputs into commands. ``False`` if impossible."""
        step = self.seats.apply(seat_id, event, now)
        if step is None:
            return False
        for output in step.outputs:
            if isinstance(output, SeatStateChanged):
                self._dirty = True
                out.append(
                    PublishSeatState(
                        state=output.state, previous=output.previous.value, cause=output.cause
                    )
                )
            elif isinstance(output, SeatTimer):
                self._schedule(output.name, output.key, output.at, out)
            elif isinstance(output, OfferFailed):
                self._offer_failed(output, now, out)
        self._sync_ready(step.state)
        if step.state.status in {SeatStatus.READY, SeatStatus.NOT_READY, SeatStatus.LOGGED_OUT}:
            self._finish_wrapup(seat_id, now)
        if seat_id in self._retiring:
            self._retire_if_free(seat_id, now, out)
        return True

    def _finish_wrapup(self, seat_id: str, now: float) -> None:
        talk = self._wrapups.pop(seat_id, None)
        if talk is not None:
            self.handle_times.observe(talk.call.skills, now - talk.answered_at)

    def _sync_ready(self, state: SeatState) -> None:
        seat_id = state.seat_id
        current = self._ready.get(seat_id)
        if current is not None and (not state.routable or current.ready_since != state.ready_since):
            del self._ready[seat_id]
            key = (current.ready_since, seat_id)
            index = bisect.bisect_left(self._ready_order, key)
            if index < len(self._ready_order) and self._ready_order[index] == key:
                del self._ready_order[index]
            current = None
        if current is None and state.routable:
            since = state.ready_since if state.ready_since is not None else state.since
            self._ready[seat_id] = SeatCandidate(profile=self._profiles[seat_id], ready_since=since)
            bisect.insort(self._ready_order, (since, seat_id))

    def _route_seat(self, seat_id: str, now: float, out: list[Command]) -> None:
        """If *seat_id* is ready, give it the first waiting call it can take."""
        seat = self._ready.get(seat_id)
        if seat is None or not len(self.queue):
            return
        decision = pick_call(seat, self.queue, self.rules, now)
        if decision.matched and decision.call is not None:
            self._mark(decision.call.call_id, "offered", now)
            self.queue.remove(decision.call.call_id)
            self._offer(decision, now, out)

    def _route_waiting(self, call: WaitingCall, now: float, out: list[Command]) -> None:
        """Try to place a call that is already in the line (RONA, overflow step reached)."""
        if not self._ready:
            return
        decision = pick_seat(call, self._ready_seats(), self.rules, now, ready_by_id=self._ready)
        if decision.matched:
            self._mark(call.call_id, "offered", now)
            self.queue.remove(call.call_id)
            self._offer(decision, now, out)

    def _offer(self, decision: Decision, now: float, out: list[Command]) -> None:
        call, seat = decision.call, decision.seat
        if call is None or seat is None or decision.step is None:
            return
        seat_id = seat.seat_id
        if call.call_id in self._offers:
            self._anomaly("offer_twice", call_id=call.call_id, seat=seat_id)
            return
        if not self._apply(seat_id, Reserve(call_id=call.call_id), now, out):
            # Cannot happen while _ready mirrors the board; keep the call rather than lose it.
            self._anomaly("reserve_failed", call_id=call.call_id, seat=seat_id)
            self.queue.add(call)
            return
        self._offers[call.call_id] = _Offer(call=call, seat_id=seat_id, at=now, step=decision.step)
        self._seat_offer[seat_id] = call.call_id
        self._dirty = True
        self.stats["offered"] += 1
        self._log.debug(  # the daemon logs it at info with the linkedid (cti/core/core.py)
            "call_offered",
            call_id=call.call_id,
            seat=seat_id,
            step=decision.step,
            reason=decision.reason,
            sticky=decision.sticky,
            attempt=call.offers + 1,
        )
        out.append(
            ConnectCall(
                call_id=call.call_id,
                seat_id=seat_id,
                endpoint=seat.profile.endpoint,
                line=call.line,
                ring_timeout_s=self.rules.ring_timeout_s,
                step=decision.step,
                reason=decision.reason,
                attempt=call.offers + 1,
                queue_positions=tuple(self._marks.get(call.call_id, ())),
            )
        )
        self._schedule(RING_TIMER, call.call_id, now + self.rules.ring_timeout_s, out)

    def _offer_failed(self, failed: OfferFailed, now: float, out: list[Command]) -> None:
        offer = self._drop_offer(failed.call_id)
        if offer is None:
            return
        self.stats["offer_failed_" + failed.reason.value] += 1
        self._log.info(
            "offer_failed", call_id=failed.call_id, seat=failed.seat_id, reason=failed.reason.value
        )
        out.append(
            CancelRing(call_id=failed.call_id, seat_id=failed.seat_id, reason=failed.reason.value)
        )
        call = self.queue.requeue_at_head(offer.call)
        self._mark(failed.call_id, "requeued", now)
        self._dirty = True
        # The failed seat left the ready set when it was reserved, so it cannot get the
        # call back; the next eligible ready seat (if any) is rung right away.
        self._route_waiting(call, now, out)

    def _mark(self, call_id: str, event: str, now: float) -> None:
        """Note where a waiting call stands now (O(log n)); the first mark and the last
        ones are kept, so a call that bounced many times still shows where it started."""
        pos = self.queue.position(call_id)
        if pos is None:
            return
        marks = self._marks.setdefault(call_id, [])
        if len(marks) >= MAX_POSITION_MARKS:
            del marks[1]
        marks.append(
            PositionMark(at=now, event=event, position=pos.overall, waiting=len(self.queue))
        )

    def _drop_offer(self, call_id: str) -> _Offer | None:
        offer = self._offers.pop(call_id, None)
        if offer is not None:
            self._seat_offer.pop(offer.seat_id, None)
            self._timer_at.pop((RING_TIMER, call_id), None)
        return offer

    def _abandon_waiting(self, call_id: str, now: float, out: list[Command]) -> None:
        outcome = self.queue.abandon(call_id, now)
        if outcome is None:
            return
        self._dirty = True
        self.stats["abandoned"] += 1
        # debug: the daemon logs it at info with the linkedid and position (cti/core/core.py)
        self._log.debug("call_abandoned", call_id=call_id, waited_s=round(outcome.waited_s, 3))
        out.append(RecordAbandonment(outcome=outcome))

    def _schedule(
        self, name: str, key: str, at: float, out: list[Command], *, unique: bool = True
    ) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (at, self._timer_seq, name, key))
        if unique:
            self._timer_at[name, key] = at
        out.append(StartTimer(name=name, key=key, at=at))

    def _forget_old_callers(self, now: float) -> None:
        window = self.rules.sticky_window_s
        sticky = self._sticky
        while sticky:
            caller, (_, seen) = next(iter(sticky.items()))
            if now - seen <= window:
                break
            del sticky[caller]

    def _anomaly(self, what: str, **facts: object) -> None:
        self.stats[what] += 1
        self._log.warning(what, **facts)


def _restored(
    state: SeatState, status: str, reason: str | None, since: float, now: float
) -> SeatState | None:
    try:
        was = SeatStatus(status)
    except ValueError:
        return None
    if was is SeatStatus.READY:
        return replace(state, status=SeatStatus.READY, since=since, reason=None, ready_since=since)
    if was is SeatStatus.LOGGED_OUT:
        return replace(state, status=SeatStatus.LOGGED_OUT, since=since, reason=None)
    if was is SeatStatus.NOT_READY:
        try:
            why = Reason(reason) if reason else Reason.OTHER
        except ValueError:
            why = Reason.OTHER
        return replace(state, status=SeatStatus.NOT_READY, since=since, reason=why)
    return replace(state, status=SeatStatus.NOT_READY, since=now, reason=Reason.RESTART)


def _entered(incoming: IncomingCall) -> float:
    """The call's place in the line: `entered_at` when it is a sane time before `at`."""
    entered = incoming.entered_at
    if entered is None or not entered <= incoming.at:  # not a number, or in the future
        return incoming.at
    return entered


def _name(event: SeatEvent) -> str:
    return type(event).__name__
