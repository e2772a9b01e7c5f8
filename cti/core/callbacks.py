"""Calling citizens back (docs/callbacks.md): from the missed-call list (漏接电话回拨, a seat's
one-click callback) and for a waiting caller who chose to be called back keeping its place.

Both ring the seat's phone first (:class:`~cti.core.messages.OriginateCallback`); once it
answers, the generated ``cti-callback`` context dials the citizen. A kept place is a call
that stays in the line without a channel ("virtual"): when routing offers it, the seat's
callback call stands in for it, and for the dispatcher and the pops it *is* that waiting
call (answered = the citizen picked up).
"""

from __future__ import annotations

from collections import Counter

from structlog.typing import FilteringBoundLogger

from cti.calls.model import CallConnected, CallEnded, CallNotification, CallSummary
from cti.calls.tracker import CallTracker
from cti.core.hold import Holding
from cti.core.messages import (
    CallbackDone,
    CallbackKeepPlace,
    CallbackReply,
    CallbackRequested,
    Effect,
    OriginateCallback,
    StoreCall,
)
from cti.core.parts import Route
from cti.core.screen import Screen, call_event
from cti.numberplan import NumberPlan
from cti.routing import commands as rc
from cti.routing.dispatcher import Dispatcher
from cti.seats.model import Reason, SeatStatus

__all__ = ["Callbacks", "note_call_id"]


def note_call_id(note: CallNotification) -> str:
    return note.summary.call_id if isinstance(note, CallEnded) else note.call_id


class Callbacks:
    """Callbacks in progress and the places kept, with the calls placed for them."""

    def __init__(
        self,
        *,
        plan: NumberPlan,
        dispatcher: Dispatcher,
        hold: Holding,
        screen: Screen,
        route: Route,
        log: FilteringBoundLogger,
        counts: Counter[str],
        tracker: CallTracker | None = None,
    ) -> None:
        self._plan = plan
        # told of each callback call before its Originate: the seat's leg answering first
        # does not answer the call, the citizen's does (CallTracker.expect_originated)
        self._tracker = tracker
        self._dispatcher = dispatcher
        self._hold = hold
        self._screen = screen
        self._route = route
        self._log = log
        self._counts = counts
        # callbacks in progress: the callback call's linkedid -> (list entry, seat, was ready)
        self._callbacks: dict[str, tuple[str, str, bool]] = {}
        self._seq = 0
        # callers who asked to be called back keeping their place: call id -> (node, number);
        # and the callback call placed for one, by its linkedid -> the waiting call's id
        self._virtual: dict[str, tuple[str, str]] = {}
        self._virtual_cb: dict[str, str] = {}

    # ---- the missed-call list

    def replan(self, plan: NumberPlan) -> None:
        """A reloaded number plan holds from now on (cti/core/core.py, PlanReloaded)."""
        self._plan = plan

    def requested(self, item: CallbackRequested, out: list[Effect]) -> None:
        """The seat goes not-ready (callback) and its phone rings first; when the callback
        call ends, a seat that was ready is ready again."""
        state = self._dispatcher.seats.get(item.seat)
        profile = next((p for p in self._plan.seats if p.id == item.seat), None)
        refuse = None
        if profile is None or state is None:
            refuse = ("unknown_seat", f"no seat {item.seat!r} in the number plan")
        elif state.status not in (SeatStatus.READY, SeatStatus.NOT_READY):
            refuse = ("seat_busy", f"seat {item.seat} is {state.status.value}")
        elif any(cb[0] == item.callback_id for cb in self._callbacks.values()):
            refuse = ("already_calling", "this citizen is being called back")
        if refuse is not None or profile is None or state is None:
            code, message = refuse or ("unknown_seat", "")
            out.append(
                CallbackReply(callback_id=item.callback_id, ok=False, code=code, message=message)
            )
            return
        was_ready = state.status is SeatStatus.READY
        self._route(self._dispatcher.on_seat_not_ready(item.seat, Reason.CALLBACK, item.at), out)
        self._seq += 1
        channel_id = f"cb{int(item.at * 1000):x}{self._seq:04x}"
        self._callbacks[channel_id] = (item.callback_id, item.seat, was_ready)
        self._log.info(
            "callback_started", linkedid=channel_id, seat=item.seat, missed=item.callback_id
        )
        self._expect(item.node, channel_id)
        out.append(
            OriginateCallback(
                node=item.node,
                seat_id=item.seat,
                endpoint=profile.endpoint,
                number=item.number,
                callback_id=item.callback_id,
                channel_id=channel_id,
                other_channel_id=channel_id + "b",
            )
        )
        out.append(
            call_event(
                "callback",
                channel_id,
                seat=item.seat,
                missed_call=item.callback_id,
                number=item.number,
                at=item.at,
            )
        )
        out.append(CallbackReply(callback_id=item.callback_id, ok=True))

    def _expect(self, node: str, channel_id: str) -> None:
        if self._tracker is not None:
            self._tracker.expect_originated(node, channel_id)

    def ended(self, s: CallSummary, out: list[Effect]) -> None:
        """A call ended: if it was a callback from the list, close or reopen the entry."""
        cb = self._callbacks.pop(s.call_id, None)
        if cb is None:
            return
        callback_id, seat, was_ready = cb
        # the seat's phone is the "caller" of this call: answered = the citizen picked up
        out.append(
            CallbackDone(
                callback_id=callback_id,
                seat_id=seat,
                call_id=s.call_id,
                outcome=s.outcome,
                at=s.ended_at,
            )
        )
        state = self._dispatcher.seats.get(seat)
        if was_ready and state is not None and state.reason is Reason.CALLBACK:
            self._route(self._dispatcher.on_seat_ready(seat, s.ended_at), out)

    # ---- keeping the place

    def keep_place(self, item: CallbackKeepPlace, out: list[Effect]) -> None:
        """The caller will hang up; its call stays in the line, and the seat that picks it
        calls the citizen back (seat first), like a callback from the missed-call list."""
        held = self._hold.get(item.call_id)
        draft = self._screen.draft(item.call_id)
        if held is None or draft is None or not draft.caller:
            self._counts["keep_place_unknown_call"] += 1
            return
        if self._dispatcher.offered_to(item.call_id) is not None:
            return  # a seat is already ringing for it: no need
        self._virtual[item.call_id] = (held.node, draft.caller)
        self._counts["callback_kept_place"] += 1
        self._log.info("callback_kept_place", linkedid=item.call_id, caller=draft.caller)
        out.append(call_event("callback_requested", item.call_id, node=held.node, at=item.at))

    def is_virtual(self, call_id: str) -> bool:
        """Hung up to be called back: the call keeps its place in the line."""
        return call_id in self._virtual

    def connect(self, c: rc.ConnectCall, out: list[Effect]) -> bool:
        """Routing offers a kept place: the seat's callback call stands in for it (False:
        not a kept place)."""
        virtual = self._virtual.get(c.call_id)
        if virtual is None:
            return False
        node, number = virtual
        self._seq += 1
        channel_id = f"cb{int(c.ring_timeout_s * 1000):x}{self._seq:06x}{c.call_id[-6:]}"
        channel_id = "".join(ch for ch in channel_id if ch.isalnum())
        self._virtual_cb[channel_id] = c.call_id
        self._log.info(
            "call_offered_callback", linkedid=c.call_id, seat=c.seat_id, callback=channel_id
        )
        self._expect(node, channel_id)
        out.append(
            OriginateCallback(
                node=node,
                seat_id=c.seat_id,
                endpoint=c.endpoint,
                number=number,
                callback_id=f"{node}:{c.call_id}",
                channel_id=channel_id,
                other_channel_id=channel_id + "b",
                timeout_s=c.ring_timeout_s,
            )
        )
        out.append(self._screen.offered(c, callback=True))
        return True

    def ring_cancelled(self, call_id: str) -> None:
        """The seat did not answer the callback in time: that attempt is no longer this
        call's (the waiting call is back in the line for the next seat)."""
        if call_id in self._virtual:
            for cb_id in [k for k, v in self._virtual_cb.items() if v == call_id]:
                del self._virtual_cb[cb_id]

    def owns(self, note: CallNotification) -> bool:
        """A notification of a callback call placed for a kept place."""
        return note_call_id(note) in self._virtual_cb

    def note(self, note: CallNotification, out: list[Effect]) -> None:
        """The callback call of a kept place answered or ended: so did that waiting call."""
        cb_id = note_call_id(note)
        call_id = self._virtual_cb[cb_id]
        if isinstance(note, CallConnected):
            self._route(self._dispatcher.on_answer(call_id, note.at), out)
            pop = self._screen.answered(call_id, note.at)
            if pop is not None:
                out.append(pop)
        elif isinstance(note, CallEnded):
            s = note.summary
            del self._virtual_cb[cb_id]
            # answered: the agent talked to the citizen; not: the citizen did not pick up —
            # either way this caller's wait is over
            self._virtual.pop(call_id, None)
            pop = self._screen.withdraw(call_id, outcome=s.outcome, talk_s=s.talk_s)
            if pop is not None:
                out.append(pop)
            self._screen.ended(call_id, keep_draft=False)
            self._route(self._dispatcher.on_hangup(call_id, s.ended_at), out)
            out.append(StoreCall(summary=s))
            body = s.to_json()
            del body["call_id"]
            out.append(call_event("ended", s.call_id, callback_of=call_id, **body))
