"""Intake (受理): a call entering the holding loop is taken — marked, checked against the
blacklist, its ticket draft written before the agent says a word, queued for a seat — or,
when it is one of ours coming back, recognised as a ring-no-answer or our own return."""

from __future__ import annotations

from collections import Counter

from structlog.typing import FilteringBoundLogger

from cti.calls.ids import CallRef
from cti.calls.tracker import CallTracker
from cti.core.entries import EntryBook
from cti.core.escalation import Escalations
from cti.core.hold import Holding
from cti.core.messages import Effect, RejectCall, StoreTicketOp
from cti.core.parts import Route
from cti.core.screen import Screen
from cti.core.tickets import TicketBook, draft_for
from cti.core.transfers110 import Transfers110
from cti.events import ChannelSnapshot
from cti.numberplan import NumberPlan
from cti.routing.dispatcher import Dispatcher, IncomingCall
from cti.workorders.model import OutboxOp

__all__ = ["Intake"]


class Intake:
    """Takes waiting calls; remembers the ones refused at the door (logged once)."""

    def __init__(
        self,
        *,
        plan: NumberPlan,
        dispatcher: Dispatcher,
        tracker: CallTracker,
        hold: Holding,
        screen: Screen,
        tickets: TicketBook,
        transfers: Transfers110,
        escalations: Escalations,
        route: Route,
        log: FilteringBoundLogger,
        counts: Counter[str],
        entries: EntryBook | None = None,
    ) -> None:
        self._plan = plan
        self._entries = entries
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._hold = hold
        self._screen = screen
        self._tickets = tickets
        self._transfers = transfers
        self._escalations = escalations
        self._route = route
        self._log = log
        self._counts = counts
        self._refused: set[str] = set()  # calls not taken: a channel name AMI cannot carry

    def replan(self, plan: NumberPlan) -> None:
        """A reloaded number plan holds from now on (cti/core/core.py, PlanReloaded)."""
        self._plan = plan

    def ended(self, call_id: str) -> None:
        self._refused.discard(call_id)

    def waiting(
        self,
        node: str,
        chan: ChannelSnapshot,
        at: float,
        out: list[Effect],
        *,
        adopted: bool,
        entered_at: float | None = None,
    ) -> None:
        """`chan` is in ``cti-hold``: a call to take, or one of ours coming back."""
        held = self._hold.get(chan.linkedid)
        if held is None:
            self._take(node, chan, at, out, adopted=adopted, entered_at=entered_at)
        elif held.channel != chan.channel:
            self._counts["hold_other_channel"] += 1
        else:
            self._back_in_hold(chan.linkedid, at, out)

    def _take(
        self,
        node: str,
        chan: ChannelSnapshot,
        at: float,
        out: list[Effect],
        *,
        adopted: bool,
        entered_at: float | None,
    ) -> None:
        call_id = chan.linkedid
        if self._refuse(node, chan):
            return
        active = self._tracker.call(node, call_id)
        if active is None:
            # the tracker refused its channels (table full, `call_tracker_full`): a call
            # whose end would never be seen must not take a place in the queue; left
            # untaken, the holding loop times out into the dialplan's Queue()
            self._counts["untracked_not_taken"] += 1
            return
        out.append(self._hold.take(node, chan.channel, call_id))
        line, caller = active.line, active.caller
        self._counts["adopted" if adopted else "taken"] += 1
        self._log.info(
            "call_taken", linkedid=call_id, node=node, line=line, caller=caller, adopted=adopted
        )
        blocked = self._plan.blocked(caller) if caller else None
        if blocked is not None:
            self._counts[f"blacklisted_{blocked.treatment}"] += 1
            self._log.warning(
                "call_blacklisted",
                linkedid=call_id,
                caller=caller,
                treatment=blocked.treatment,
                reason=blocked.reason,
            )
            if blocked.treatment == "reject":
                if self._entries is not None:
                    self._entries.entered(
                        call_id,
                        node=node,
                        line=line,
                        at=at,
                        entered_at=entered_at,
                        blacklisted=True,
                    )
                out.append(RejectCall(node=node, channel=chan.channel, call_id=call_id))
                return
        # the ticket is opened before the agent says a word; after a restart the same
        # idempotency key makes an adopted call's draft a no-op
        self._tickets.opened(call_id)
        transfer = None
        plan_line = self._plan.line(line)
        if plan_line is not None and plan_line.dispatch110:
            tid = active.transfer_id
            transfer = self._transfers.book.call_arrived(call_id, caller, tid or None, at)
            self._log.info(
                "call_110",
                linkedid=call_id,
                transfer_id=transfer.transfer_id if transfer is not None else None,
                carried_id=tid or None,
            )
        draft = draft_for(
            self._plan,
            call_id=str(CallRef(node, call_id)),
            node=node,
            number=line,
            caller=caller,
            caller_name=chan.caller_name,
            at=at,
            transfer=transfer,
            via=active.via,
        )
        self._screen.show(call_id, draft)
        out.append(StoreTicketOp(op=OutboxOp.create(draft)))
        incoming = IncomingCall(
            call_id=call_id,
            line=line,
            at=at,
            caller=caller,
            demoted=blocked is not None and blocked.treatment == "last",
            entered_at=entered_at,
        )
        if self._entries is not None:
            self._entries.entered(call_id, node=node, line=line, at=at, entered_at=entered_at)
        self._route(self._dispatcher.on_call_waiting(incoming), out)

    def _back_in_hold(self, call_id: str, at: float, out: list[Effect]) -> None:
        held = self._hold.get(call_id)
        if held is None:
            return
        held.in_hold = True
        if self._escalations.back_in_hold(call_id, at, out):
            return
        if held.expected_returns > 0:
            held.expected_returns -= 1  # our own ReturnToHold arriving
            return
        if self._dispatcher.offered_to(call_id) is not None:
            # the dialplan's Dial gave up (no answer / busy / unavailable): RONA
            self._counts["ring_failed_in_dialplan"] += 1
            self._route(self._dispatcher.on_ring_timeout(call_id, at), out)

    def _refuse(self, node: str, chan: ChannelSnapshot) -> bool:
        """Refuse a call at the door when every action on its channel would be refused
        (a CR or LF in the name: AMI framing); a seat offered a call it can never get
        would ring out into RONA. Not taken, the holding loop sends it to the plain
        Queue() at its deadline; the tracker still writes its call record."""
        if chan.actionable:
            return False
        call_id = chan.linkedid
        if call_id not in self._refused:  # the holding loop comes round again: log once
            self._refused.add(call_id)
            self._counts["refused_channel_name"] += 1
            self._log.warning(
                "call_refused",
                linkedid=call_id,
                node=node,
                channel=chan.channel,
                reason="channel name has a line break (not usable in AMI actions)",
            )
        return True
