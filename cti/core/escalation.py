"""Escalating a call to an emergency service (12345 -> 110/119/120/122): the effects the
core emits and what it remembers of an escalated call. Sans-IO: no asyncio, no sockets.

:class:`Escalations` decides (the core hands it the seat commands ``escalate``/``leave``
and the events of the escalated calls); its effects are in :mod:`cti.core.messages` and
their AMI actions in :mod:`cti.adapters.ami_actions`. docs/escalation.md tells the whole story,
including the Asterisk 22 behaviour it relies on (measured on the testbed):

* **blind** (一键转接): AMI ``Redirect`` of the caller's channel to
  ``cti-escalate,<number>,1`` (generated from ``numberplan.emergency``). The caller leaves
  the seat's ``Dial``, which ends the seat's leg; the dialplan ``Dial``s the service.
* **threeway** (三方通话): AMI ``Originate`` of the service's dial string with
  ``Application=BridgeAdd``, ``Data=<the caller's channel>``: once the operator answers,
  its channel joins the bridge the caller shares with the seat (Asterisk turns the
  two-party bridge into a multi-party mixing one). The caller's ``Dial`` stays where it is.
* **leave**: AMI ``Hangup`` of the seat's channel only. The bridge Dial made is *not*
  dissolved by that hangup: caller and operator stay connected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from structlog.typing import FilteringBoundLogger

from cti.calls.tracker import CallTracker
from cti.core.hold import Holding
from cti.core.messages import (
    AddEmergencyLeg,
    Effect,
    EscalateBlind,
    HangupLeg,
    NotifyEscalation,
    Publish,
)
from cti.core.parts import Route
from cti.core.screen import Screen, call_event
from cti.core.transfers110 import Transfers110
from cti.dialplan.dialstrings import DialplanError, emergency_dial
from cti.events import BridgeEnter, Hangup, Newchannel, OriginateResponse
from cti.numberplan import EscalationMode, NumberPlan
from cti.routing.dispatcher import Dispatcher, IncomingCall
from cti.seats.commands import CommandError, Escalate, Leave, RefusalCode
from cti.seats.model import SeatStatus

__all__ = ["Escalation", "Escalations", "leg_ids"]


@dataclass(slots=True, kw_only=True)
class Escalation:
    """What the core remembers of one escalated call until it ends."""

    call_id: str
    node: str
    seat: str
    number: str
    mode: EscalationMode
    at: float
    seat_channel: str = ""  # the seat's leg (threeway: what `leave` hangs up)
    leg_ids: tuple[str, ...] = ()  # threeway: the operator leg's Uniqueids
    endpoint: str = ""
    leg_channel: str = ""  # threeway: the operator leg's channel while it exists
    leg_up: bool = False  # threeway: the operator's leg entered the caller's bridge
    released: bool = False  # the seat is out of the call (blind, or left the three-way)


def leg_ids(call_id: str, at: float) -> tuple[str, str]:
    """Uniqueids for the operator's leg (``;1`` and ``;2`` of a Local channel).

    Asterisk refuses an Originate whose ChannelId is a *prefix* of a live channel's
    Uniqueid (docs/ami.md), so neither id may start another: both end in a distinct
    ``-1``/``-2``, and the milliseconds keep two escalations of one call apart. They do not
    start with the call id either, which *is* a live Uniqueid (the caller's).
    """
    stem = f"esc{round(at * 1000)}-{call_id}"
    return f"{stem}-1", f"{stem}-2"


class Escalations:
    """The escalated calls until they end, and the seat leg of each ringing call (what a
    three-way ``leave`` hangs up)."""

    def __init__(
        self,
        *,
        plan: NumberPlan,
        dispatcher: Dispatcher,
        tracker: CallTracker,
        hold: Holding,
        screen: Screen,
        transfers: Transfers110,
        route: Route,
        log: FilteringBoundLogger,
        counts: Counter[str],
    ) -> None:
        self._plan = plan
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._hold = hold
        self._screen = screen
        self._transfers = transfers
        self._route = route
        self._log = log
        self._counts = counts
        self._escalations: dict[str, Escalation] = {}
        self._seat_legs: dict[str, str] = {}  # call_id -> the channel of the seat it rings

    def replan(self, plan: NumberPlan) -> None:
        """A reloaded number plan holds from now on (cti/core/core.py, PlanReloaded)."""
        self._plan = plan

    def __bool__(self) -> bool:
        return bool(self._escalations)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._escalations

    def seat_rings(self, call_id: str, channel: str) -> None:
        """The seat's leg of a call (its DialBegin): what a three-way ``leave`` hangs up."""
        self._seat_legs[call_id] = channel

    def ended(self, call_id: str) -> Escalation | None:
        """The call is over: what was escalated of it, if anything."""
        self._seat_legs.pop(call_id, None)
        return self._escalations.pop(call_id, None)

    def command(
        self, seat: str, cmd: Escalate | Leave, now: float, out: list[Effect]
    ) -> Escalate | Leave | CommandError:
        """`escalate` / `leave`: the command itself when done (effects in `out`), or why not."""
        state = self._dispatcher.seats.get(seat)
        talking = state is not None and state.status is SeatStatus.TALKING
        call_id = state.call_id if state is not None and talking else None
        status = str(state.status) if state is not None else "?"
        if isinstance(cmd, Leave):
            return self._leave(seat, cmd, call_id, now, out, status=status)
        return self._escalate(seat, cmd, call_id, now, out, status=status)

    def _leave(
        self,
        seat: str,
        cmd: Leave,
        call_id: str | None,
        now: float,
        out: list[Effect],
        *,
        status: str,
    ) -> Leave | CommandError:
        esc = self._escalations.get(call_id) if call_id is not None else None
        if esc is None or esc.mode is not EscalationMode.THREEWAY or esc.seat != seat:
            return _refuse(cmd, "no_call", f"no three-way call to leave while {status}")
        if not esc.leg_up:
            # national rule: the first platform keeps the caller unless the two agree;
            # leaving before the operator is there would leave the caller alone
            return _refuse(cmd, "rejected", f"the {esc.number} operator has not joined yet")
        if not esc.seat_channel:  # its DialBegin was not seen (e.g. the daemon restarted)
            return _refuse(cmd, "rejected", "the seat's channel is not known: hang up instead")
        self._release(esc, now, out, reason="left")
        out.append(
            HangupLeg(node=esc.node, call_id=esc.call_id, channel=esc.seat_channel, reason="leave")
        )
        out.append(self._event("left", esc, now))
        return cmd

    def _escalate(
        self,
        seat: str,
        cmd: Escalate,
        call_id: str | None,
        now: float,
        out: list[Effect],
        *,
        status: str,
    ) -> Escalate | CommandError:
        target = self._plan.emergency_target(cmd.target)
        if target is None:
            return _refuse(
                cmd,
                "unknown_target",
                f"no emergency service {cmd.target!r} in the number plan (numberplan.emergency)",
            )
        mode = EscalationMode(cmd.mode)
        if mode not in target.modes:
            allowed = ", ".join(m.value for m in target.modes)
            return _refuse(cmd, "mode_not_allowed", f"{target.number} allows {allowed}, not {mode}")
        held = self._hold.get(call_id) if call_id is not None else None
        if call_id is None or held is None:
            return _refuse(cmd, "no_call", f"no call of the daemon to escalate while {status}")
        if call_id in self._escalations:
            done = self._escalations[call_id].number
            return _refuse(cmd, "rejected", f"already escalated to {done}")
        esc = Escalation(
            call_id=call_id,
            node=held.node,
            seat=seat,
            number=target.number,
            mode=mode,
            at=now,
            seat_channel=self._seat_legs.get(call_id, ""),
        )
        if mode is EscalationMode.BLIND:
            # the caller leaves the seat's Dial for cti-escalate: the seat's leg ends there
            held.in_hold = False
            out.append(
                EscalateBlind(
                    node=held.node, channel=held.channel, call_id=call_id, number=target.number
                )
            )
            self._release(esc, now, out, reason="escalated")
        else:
            try:
                endpoint = emergency_dial(self._plan, target)
            except DialplanError as exc:
                return _refuse(cmd, "rejected", str(exc))
            esc.leg_ids = leg_ids(call_id, now)
            esc.endpoint = endpoint
            # an Originate starts a new Linkedid: tell the tracker the leg is this call's
            self._tracker.expect_channels(held.node, call_id, esc.leg_ids)
            active = self._tracker.call(held.node, call_id)
            caller = active.caller if active is not None else ""
            out.append(
                AddEmergencyLeg(
                    node=held.node,
                    call_id=call_id,
                    number=target.number,
                    endpoint=endpoint,
                    caller_channel=held.channel,
                    caller_id=f"<{caller}>" if caller.lstrip("+").isdigit() else "",
                    channel_id=esc.leg_ids[0],
                    other_channel_id=esc.leg_ids[1],
                    timeout_s=target.ring_timeout_s,
                )
            )
        self._escalations[call_id] = esc
        self._tracker.note_transfer(
            held.node,
            call_id,
            type_="escalation_blind" if mode is EscalationMode.BLIND else "escalation_threeway",
            by=seat,
            to=target.number,
            at=now,
        )
        self._counts[f"escalated_{mode}"] += 1
        self._log.info(
            "call_escalated", linkedid=call_id, seat=seat, target=target.number, mode=str(mode)
        )
        event = self._event("escalated", esc, now, target_name=target.name)
        out.append(event)
        # a transfer from 110 going back to 110 (or on to 119/120/122): 110 hears of it
        self._transfers.report(
            self._transfers.book.call_escalated(call_id, target.number, str(mode), now), out
        )
        if target.notify_url is not None:
            # the receiving side gets the call and the ticket (工单推送 in the other direction)
            draft = self._screen.draft(call_id)
            transfer = self._transfers.transfer_of(call_id)
            payload = {
                **event.payload,
                "event_id": f"escalation:{held.node}:{call_id}:{target.number}:{mode}",
                "ticket": self._screen.ticket_number(call_id),
                "ticket_content": draft.content if draft is not None else "",
                "address": draft.address if draft is not None else "",
                "department": draft.department if draft is not None else "",
                "transfer110": transfer.transfer_id if transfer is not None else None,
            }
            out.append(
                NotifyEscalation(
                    url=target.notify_url, event_id=payload["event_id"], payload=payload
                )
            )
        return cmd

    def _release(self, esc: Escalation, now: float, out: list[Effect], *, reason: str) -> None:
        """The seat is out of the escalated call (blind, or it left): wrap-up, end pop."""
        esc.released = True
        self._seat_legs.pop(esc.call_id, None)
        pop = self._screen.withdraw(esc.call_id, reason=reason, to=esc.number)
        if pop is not None:
            out.append(pop)
        self._route(self._dispatcher.on_seat_released(esc.call_id, now), out)

    def _event(self, kind: str, esc: Escalation, at: float, **extra: Any) -> Publish:
        """`cti/calls/events`: the call's data for the receiving side and supervisors."""
        draft = self._screen.draft(esc.call_id)
        return call_event(
            kind if kind == "escalated" else f"escalation_{kind}",
            esc.call_id,
            event=f"escalation-{esc.number}-{esc.mode}-{kind}",
            node=esc.node,
            seat=esc.seat,
            target=esc.number,
            mode=str(esc.mode),
            at=at,
            caller=draft.caller if draft is not None else None,
            caller_name=draft.caller_name if draft is not None else None,
            line=draft.line if draft is not None else None,
            # the ticket's key on the work-order backend (its number comes in a `ticket` event)
            ticket_draft=draft.call_id if draft is not None else None,
            **extra,
        )

    def event_in(
        self, ev: Newchannel | Hangup | BridgeEnter | OriginateResponse, out: list[Effect]
    ) -> None:
        """What Asterisk did with an escalation: the operator joined, did not, the agent
        or the caller hung up."""
        for esc in list(self._escalations.values()):
            if esc.node != ev.node:
                continue
            if isinstance(ev, Newchannel):
                if esc.leg_ids and ev.chan.uniqueid == esc.leg_ids[0]:
                    esc.leg_channel = ev.chan.channel
            elif isinstance(ev, BridgeEnter):
                if ev.chan.uniqueid in esc.leg_ids and not esc.leg_up:
                    esc.leg_up = True
                    esc.leg_channel = ev.chan.channel
                    self._log.info("escalation_joined", linkedid=esc.call_id, target=esc.number)
                    out.append(self._event("joined", esc, ev.time))
            elif isinstance(ev, Hangup):
                self._hangup(esc, ev, out)
            elif (
                ev.response != "Success"
                and esc.leg_ids
                and not esc.leg_up
                and (ev.uniqueid in esc.leg_ids or ev.channel == esc.endpoint)
            ):
                self._leg_failed(esc, ev.time, out, reason=f"originate failed ({ev.reason})")

    def _hangup(self, esc: Escalation, ev: Hangup, out: list[Effect]) -> None:
        if esc.mode is not EscalationMode.THREEWAY:
            return
        held = self._hold.get(esc.call_id)
        if not esc.released and ev.chan.channel == esc.seat_channel:
            # the agent hung up its phone: the same as `leave`
            self._release(esc, ev.time, out, reason="left")
            out.append(self._event("left", esc, ev.time))
        elif esc.leg_ids and ev.chan.uniqueid == esc.leg_ids[0]:
            esc.leg_channel = ""
            if not esc.leg_up:
                self._leg_failed(esc, ev.time, out, reason=ev.cause_txt or "hangup")
        elif not esc.released and held is not None and ev.chan.channel == held.channel:
            # The citizen hung up while all three talked. Asterisk 22 keeps the bridge Dial
            # made while two are left in it (measured: agent and operator stayed connected
            # and the call never ended), so end it for everybody: it is the citizen's call.
            # (After the agent left, the caller's hangup ends the operator's leg by itself.)
            out.extend(
                HangupLeg(node=esc.node, call_id=esc.call_id, channel=leg, reason="caller_gone")
                for leg in (esc.leg_channel, esc.seat_channel)
                if leg
            )

    def _leg_failed(self, esc: Escalation, at: float, out: list[Effect], *, reason: str) -> None:
        # the operator never answered: the agent still has the caller and may try again
        self._escalations.pop(esc.call_id, None)
        self._counts["escalation_failed"] += 1
        self._log.warning(
            "escalation_failed", linkedid=esc.call_id, target=esc.number, reason=reason
        )
        out.append(self._event("failed", esc, at, reason=reason))

    def back_in_hold(self, call_id: str, at: float, out: list[Effect]) -> bool:
        """A blind escalation's caller back in cti-hold: the service did not answer
        (cti-escalate). 12345 keeps the caller: queued again, in the 110 class."""
        esc = self._escalations.get(call_id)
        if esc is None or esc.mode is not EscalationMode.BLIND:
            return False
        self._leg_failed(esc, at, out, reason="not answered")
        active = self._tracker.call(esc.node, call_id)
        self._route(
            self._dispatcher.on_call_waiting(
                IncomingCall(
                    call_id=call_id,
                    line=active.line if active is not None else "",
                    at=at,
                    caller=active.caller if active is not None else "",
                    escalated=True,
                )
            ),
            out,
        )
        return True


def _refuse(cmd: Escalate | Leave, code: RefusalCode, message: str) -> CommandError:
    return CommandError(code=code, message=message, request_id=cmd.request_id)
