"""The CTI core: call tracking and the one queue behind one sans-IO ``handle``.

Inputs: every AMI and connection event (in stream order), agent commands, and ``Tick``
(time passing) — all in :mod:`cti.core.messages`. Output: a list of frozen *effects* that
the adapters carry out (AMI actions, MQTT publishes, database writes). Nothing here awaits
or does I/O; time comes from the events and ticks.

:class:`Core` composes the parts, each of which owns its own per-call state:

* :mod:`~cti.core.hold` — held channels, Redirect/ReturnToHold, the lease;
* :mod:`~cti.core.screen` — what a pop shows, seat/queue payloads, call events;
* :mod:`~cti.core.tickets` — ticket drafts and their origin;
* :mod:`~cti.core.seat_commands`, :mod:`~cti.core.escalation`, :mod:`~cti.core.callbacks`,
  :mod:`~cti.core.transfers110`, :mod:`~cti.core.adoption`, :mod:`~cti.core.recovery`.

What stays here is the life of a call: taken when it first enters ``cti-hold`` (or adopted
at a resync), offered by the dispatcher, ringing on its seat's ``DialBegin``, answered by
the tracker, back in hold on ring-no-answer, and ended — stored, ticketed and published.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from structlog.typing import FilteringBoundLogger

from cti.calls.ids import CallRef
from cti.calls.model import (
    ActiveCall,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallNotification,
    CallSummary,
)
from cti.calls.seatnames import seat_namer
from cti.calls.tracker import DEFAULT_MAX_CHANNELS, CallTracker
from cti.core.adoption import Adoption
from cti.core.callbacks import Callbacks
from cti.core.entries import EntryBook
from cti.core.escalation import Escalations
from cti.core.hold import Holding
from cti.core.intake import Intake
from cti.core.messages import (
    AdoptedChannelRead,
    CallbackKeepPlace,
    CallbackRequested,
    CoreInput,
    Effect,
    MessageLeft,
    PlanReloaded,
    Publish,
    SeatCommandReceived,
    StateRestored,
    StoreCall,
    StoreSeatState,
    Tick,
    TicketNumberKnown,
    Transfer110NotStored,
    Transfer110Pushed,
)
from cti.core.recovery import Recovery
from cti.core.screen import SCHEMA_VERSION, Screen, call_event, seat_payload, snapshot_payload
from cti.core.seat_commands import SeatCommands
from cti.core.supervision import Supervision
from cti.core.supervision_types import SPY_ID_PREFIX, SupervisorRequested
from cti.core.tickets import TicketBook
from cti.core.transfers110 import Transfers110
from cti.dialplan.contract import (
    CONTEXT_CONNECT,
    CONTEXT_FALLBACK,
    CONTEXT_HOLD,
    PROMPT_CHECK_ID_PREFIX,
)
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    AmiEvent,
    BridgeEnter,
    ConnectionEvent,
    CoreShowChannel,
    CoreShowChannelsComplete,
    DeviceStateChange,
    DialBegin,
    Hangup,
    Newchannel,
    Newexten,
    OriginateResponse,
)
from cti.kpis.facts import Outcome as KpiOutcome
from cti.numberplan import LineMode, NumberPlan
from cti.queue.model import Position, WaitingCall
from cti.routing import commands as rc
from cti.routing.dispatcher import Dispatcher
from cti.seats.model import SeatState
from cti.workorders.model import TicketDraft

__all__ = ["Core", "call_event"]

_ESCALATION_EVENTS = (Newchannel, Hangup, BridgeEnter, OriginateResponse)


class Core:
    """See the module docstring. One instance per daemon, driven from one task."""

    def __init__(
        self,
        plan: NumberPlan,
        *,
        log: FilteringBoundLogger,
        lease_s: float = 15.0,
        lease_every_s: float = 5.0,
        recording: str = "/var/spool/asterisk/monitor/hotline-cti/{call_id}.wav",
        match_window_s: float = 300.0,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        transit_nodes: frozenset[str] = frozenset(),
    ) -> None:
        self._log = log
        # county nodes (ami.nodes[].transit): their calls are carried to the city's node
        self._transit_nodes = transit_nodes
        self.plan = plan
        # a seat's channel is named by the seat, not its phone (PJSIP/6001 -> seat 1001):
        # answered_by, rang and transfers of records, events and tickets hold seat ids
        self.tracker = CallTracker(
            logger=log,
            name_of=seat_namer({s.endpoint: s.id for s in plan.seats}),
            max_channels=max_channels,
        )
        self.dispatcher = Dispatcher(plan, log)
        self.counts: Counter[str] = Counter()
        self._hold = Holding(lease_s=lease_s, lease_every_s=lease_every_s)
        self._screen = Screen(recording=recording, transfer_of=self._transfer_of)
        self._tickets = TicketBook()
        # the queue-entry facts (KPIs): fed the dispatcher's commands at the input's time
        self._entries = EntryBook(plan)
        # the (status, reason) last stored per seat (seat_events rows are changes only)
        self._stored_seat: dict[str, tuple[str, str | None]] = {}
        self._now = 0.0
        # the parts, each handed what it needs (no part imports the core)
        n = self.counts
        d, tr, hold, screen, route = (
            self.dispatcher,
            self.tracker,
            self._hold,
            self._screen,
            self._route,
        )
        self.transfers = Transfers110(
            plan=plan, screen=screen, match_window_s=match_window_s, log=log, counts=n
        )
        self._escalations = esc = Escalations(
            plan=plan,
            dispatcher=d,
            tracker=tr,
            hold=hold,
            screen=screen,
            transfers=self.transfers,
            route=route,
            log=log,
            counts=n,
        )
        self._callbacks = Callbacks(
            plan=plan,
            dispatcher=d,
            hold=hold,
            screen=screen,
            route=route,
            log=log,
            counts=n,
            tracker=tr,
        )
        self._seat_commands = SeatCommands(
            plan=plan,
            dispatcher=d,
            tracker=tr,
            hold=hold,
            screen=screen,
            escalations=esc,
            route=route,
            log=log,
            counts=n,
            entries=self._entries,
        )
        self.supervision = Supervision(
            plan=plan,
            dispatcher=d,
            tracker=tr,
            hold=hold,
            seat_commands=self._seat_commands,
            log=log,
            counts=n,
        )
        self._intake = Intake(
            plan=plan,
            dispatcher=d,
            tracker=tr,
            hold=hold,
            screen=screen,
            tickets=self._tickets,
            transfers=self.transfers,
            escalations=esc,
            route=route,
            log=log,
            counts=n,
            entries=self._entries,
        )
        self._adoption = Adoption(
            dispatcher=d, tracker=tr, hold=hold, wait=self._intake.waiting, log=log, counts=n
        )
        self._recovery = Recovery(
            dispatcher=d,
            tracker=tr,
            screen=screen,
            tickets=self._tickets,
            route=route,
            log=log,
            counts=n,
        )
        self._inputs = self._input_table()
        self._commands = self._command_table()

    def _transfer_of(self, call_id: str) -> Any:
        return self.transfers.transfer_of(call_id)

    # ------------------------------------------------------------------ API

    def handle(self, item: CoreInput) -> list[Effect]:
        """Apply one input; return the effects, in the order they must happen."""
        out: list[Effect] = []
        at = getattr(item, "at", None)
        if at is None:
            at = getattr(item, "time", None)
        if isinstance(at, int | float):
            self._now = float(at)  # when the dispatcher's commands of this input happen
        handler = self._inputs.get(type(item))
        if handler is not None:
            handler(item, out)
        else:  # every AMI event and connection event (cti.events)
            self._ami(item, out)  # type: ignore[arg-type]  # the rest of the union
        return out

    def next_deadline(self) -> float:
        """When :meth:`handle` wants the next ``Tick`` at the latest."""
        due = self.dispatcher.next_deadline()
        return min(due if due is not None else float("inf"), self._hold.next_deadline())

    def _input_table(self) -> dict[type, Callable[[Any, list[Effect]], None]]:
        """One entry per input type other than AMI events (STYLE.md: a table, no chain)."""
        return {
            Tick: self._tick,
            SeatCommandReceived: self._seat_commands.received,
            Transfer110Pushed: self.transfers.pushed,
            TicketNumberKnown: self._ticket_number,
            CallbackRequested: self._callbacks.requested,
            CallbackKeepPlace: self._callbacks.keep_place,
            MessageLeft: self._message_left,
            AdoptedChannelRead: self._adoption.read,
            StateRestored: self._restored,
            Transfer110NotStored: lambda item, _out: self.transfers.forget(item.transfer_id),
            PlanReloaded: self._replanned,
            SupervisorRequested: self.supervision.requested,
        }

    def _replanned(self, item: PlanReloaded, out: list[Effect]) -> None:
        """A reloaded configuration's number plan (SIGHUP, `cti reload`): every part reads
        the new one from now on; the dispatcher keeps the calls in progress as they are
        (:meth:`~cti.routing.dispatcher.Dispatcher.replan`)."""
        plan = item.plan
        self.plan = plan
        for part in (
            self.transfers,
            self._escalations,
            self._callbacks,
            self._intake,
            self.supervision,
        ):
            part.replan(plan)
        self._entries.replan(plan)
        # new seats' channels are named by the seat (answered_by, records, tickets)
        self.tracker.rename_parties(seat_namer({s.endpoint: s.id for s in plan.seats}))
        self._route(self.dispatcher.replan(plan, item.at), out)
        self._seat_commands.replan(plan, self.dispatcher.retiring())
        self._log.info(
            "plan_reloaded",
            seats=len(plan.seats),
            lines=len(plan.lines),
            leaving_after_call=sorted(self.dispatcher.retiring()),
        )

    def _message_left(self, item: MessageLeft, _out: list[Effect]) -> None:
        self._tickets.message_left(item.call_id, item.recording)
        self._entries.message_left(item.call_id)
        self._log.info("call_message_left", linkedid=item.call_id, recording=item.recording)

    def _restored(self, item: StateRestored, out: list[Effect]) -> None:
        """Start-up: the seats (a seat that was on a call comes back on it, unless the
        plan says `after_restart: not_ready`), the calls to settle at each node's first
        channel list, and the 110 transfers."""
        saved = dict(item.seats)
        if self.plan.queue.after_restart != "not_ready":
            saved = {k: v for k, v in saved.items() if k not in item.busy}
        self._route(self.dispatcher.restore_seats(saved, item.at), out)
        self._recovery.restore(item.taken, item.last_alive)
        self._route(self.dispatcher.restore_busy_seats(dict(item.busy)), out)
        self.transfers.restore(item.transfers110)

    def _ticket_number(self, item: TicketNumberKnown, out: list[Effect]) -> None:
        """The backend created a ticket: the seat showing the call sees its number now
        (an update pop), and 110 hears of it for a transfer."""
        try:
            ref = CallRef.parse(item.call_id)
        except ValueError:
            self.counts["ticket_number_bad_call_id"] += 1
            return
        call_id = item.call_id if ref.is_data_transfer else ref.linkedid
        if not ref.is_data_transfer:
            pop = self._screen.number_known(call_id, item.number)
            if pop is not None:
                out.append(pop)
        self.transfers.report(self.transfers.book.ticket_known(call_id, item.number, item.at), out)

    # ------------------------------------------------------------------ AMI

    def _ami(self, ev: AmiEvent | ConnectionEvent, out: list[Effect]) -> None:
        if isinstance(ev, AmiConnected):
            out.append(self._hold.node_up(ev.node, ev.time))
        elif isinstance(ev, AmiDisconnected):
            self._hold.node_down(ev.node)
        notes = self.tracker.handle(ev)
        if isinstance(ev, Newchannel | Hangup) and ev.chan.uniqueid.startswith(SPY_ID_PREFIX):
            self.supervision.event_in(ev, out)  # a supervisor's spy channel
        if isinstance(ev, Newexten):
            self._on_newexten(ev, out)
        elif isinstance(ev, CoreShowChannel):
            self._listed_channel(ev, out)
        elif isinstance(ev, DialBegin):
            self._on_dial_begin(ev, out)
        elif isinstance(ev, DeviceStateChange):
            self._route(self.dispatcher.on_device_state(ev.device, ev.state, ev.time), out)
        elif self._escalations and isinstance(ev, _ESCALATION_EVENTS):
            self._escalations.event_in(ev, out)
        self._notes(notes, out)
        if isinstance(ev, CoreShowChannelsComplete):
            self._recovery.first_list(ev.node, ev.time, out)

    def _listed_channel(self, ev: CoreShowChannel, out: list[Effect]) -> None:
        """A channel of the resync's list: waiting in hold, or in a fallback Queue() and
        not talking to a queue member (yet)."""
        if ev.chan.context == CONTEXT_HOLD:
            if not self._offer_undelivered(ev, out):
                self._adoption.adopt_or_wait(ev.node, ev.chan, ev.time, out)
        elif ev.chan.context == CONTEXT_FALLBACK and not ev.bridge_id:
            self._adoption.in_fallback(ev.node, ev.chan, ev.time, out)

    def _offer_undelivered(self, ev: CoreShowChannel, out: list[Effect]) -> bool:
        """A call offered while the AMI link was down (Asterisk frozen or restarting) whose
        Redirect never arrived is listed still in the holding loop at the resync: its seat
        never rang, so this is no ring-no-answer (that would make the seat not ready, RONA):
        the offer is withdrawn and the call offered again (issue 15, the Asterisk freeze)."""
        held = self._hold.get(ev.chan.linkedid)
        if held is None or held.channel != ev.chan.channel or not held.in_hold:
            return False
        if held.expected_returns or self.dispatcher.offered_to(ev.chan.linkedid) is None:
            return False
        commands = self.dispatcher.on_offer_undelivered(ev.chan.linkedid, ev.time)
        if not commands:
            return False  # its seat rang: the usual ring-no-answer rule
        self.counts["offer_undelivered"] += 1
        self._route(commands, out)
        return True  # in hold and offered again: nothing else to do with this listing

    def _notes(self, notes: list[CallNotification], out: list[Effect]) -> None:
        for note in notes:
            if self._callbacks.owns(note):
                self._callbacks.note(note, out)
            elif isinstance(note, CallConnected):
                self._connected(note, out)
            elif isinstance(note, CallAnswered):
                out.append(
                    call_event(
                        "answered",
                        note.call_id,
                        node=note.node,
                        answered_by=note.answered_by,
                        at=note.at,
                    )
                )
            elif isinstance(note, CallEnded):
                self._call_ended(note.summary, out)

    def _connected(self, note: CallConnected, out: list[Effect]) -> None:
        if note.call_id in self._escalations:
            return  # the operator's leg: the seat answered long ago
        self._route(self.dispatcher.on_answer(note.call_id, note.at), out)
        # MixMonitor starts with the bridge (cti-record): the file exists
        pop = self._screen.answered(
            note.call_id, note.at, recording=self._screen.recording(note.call_id)
        )
        if pop is not None:
            out.append(pop)
            self.transfers.report(
                self.transfers.book.call_answered(note.call_id, pop.seat, note.at), out
            )

    def _call_ended(self, s: CallSummary, out: list[Effect]) -> None:
        if s.call_id.startswith((PROMPT_CHECK_ID_PREFIX, SPY_ID_PREFIX)):
            # the daemon's prompt check (cti/adapters/prompt_check.py) or a supervisor's
            # spy channel (cti/core/supervision.py): not a citizen's call
            return
        if s.node in self._transit_nodes:
            self._transit_ended(s)
            return
        s = self._with_draft_facts(s)
        entries = self._entries.ended(s, callback_kept=self._callbacks.is_virtual(s.call_id))
        if (
            s.outcome == "abandoned"
            and len(entries) == 1
            and entries[0].outcome is KpiOutcome.IVR_ONLY
        ):
            # never in the line, only the IVR (the progress query): not an abandoned call
            s = dataclasses.replace(s, outcome="ivr_only", wait_s=None)
        self._hold.drop(s.call_id)
        self._adoption.ended(s.call_id)
        self._intake.ended(s.call_id)
        recording = self._screen.recording(s.call_id) if s.answered_by else None
        pop = self._screen.withdraw(
            s.call_id,
            outcome=s.outcome,
            wait_s=s.wait_s,
            talk_s=s.talk_s,
            hangup_by=s.hangup_by,
            transfers=list(s.to_json()["transfers"]),
            recording=recording,
        )
        if pop is not None:
            out.append(pop)
        virtual = self._callbacks.is_virtual(s.call_id)  # hung up to be called back
        self._screen.ended(s.call_id, keep_draft=virtual)
        esc = self._escalations.ended(s.call_id)
        if (esc is None or not esc.released) and not virtual:  # released: wrap-up already
            self._route(self.dispatcher.on_hangup(s.call_id, s.ended_at), out)
        transfer = self.transfers.transfer_of(s.call_id)
        self.transfers.report(
            self.transfers.book.call_ended(
                s.call_id, s.ended_at, outcome=s.outcome, wait_s=s.wait_s, talk_s=s.talk_s
            ),
            out,
        )
        taken = self._tickets.is_open(s.call_id)
        self._callbacks.ended(s, out)
        ops = self._tickets.closing_ops(
            s,
            recording=recording,
            external_ref=transfer.transfer_id if transfer is not None else None,
        )
        missed = taken and s.outcome == "abandoned" and bool(s.caller) and not virtual
        out.append(StoreCall(summary=s, ticket_ops=ops, missed=missed, entries=entries))
        body = s.to_json()
        del body["call_id"]
        out.append(call_event("ended", s.call_id, **body))

    def _with_draft_facts(self, s: CallSummary) -> CallSummary:
        """A call adopted while talking (the daemon restarted mid-call) showed the tracker
        neither its line variables nor a county node's CTI_VIA_*: its record takes them
        from its ticket draft, which the restarted daemon read back from the outbox, so
        the record keeps the line, and a county call its county, that its ticket has."""
        draft = self._screen.draft(s.call_id)
        if s.history_complete or draft is None or (s.line and s.via is not None):
            return s
        via = s.via or draft.via
        return dataclasses.replace(
            s,
            line=s.line or draft.line,
            dialed=s.dialed or (via.dialed if via is not None and via.dialed else draft.line),
            via=via,
        )

    def _transit_ended(self, s: CallSummary) -> None:
        """A county node's leg of a call it sent over the trunk: the city's node holds the
        same call (its own linkedid), which is the one recorded, ticketed and counted. A
        second record here would count the call twice, answered by the trunk. Unanswered
        means the trunk never took it: the city has no trace of that caller, so say so."""
        self.counts["transit_calls_ended"] += 1
        if s.answered_by is None:
            self._log.warning(
                "transit_call_not_carried",
                node=s.node,
                call_id=s.call_id,
                caller=s.caller,
                dialed=s.dialed,
                outcome=s.outcome,
                cause=s.cause,
            )
        else:
            self._log.info(
                "transit_call_ended", node=s.node, call_id=s.call_id, carried_by=s.answered_by
            )

    def _on_newexten(self, ev: Newexten, out: list[Effect]) -> None:
        if ev.chan.priority != 1:
            return
        ctx = ev.chan.context
        if ctx == CONTEXT_HOLD:
            self._adoption.adopt_or_wait(ev.node, ev.chan, ev.time, out, adopted=False)
        elif ctx == CONTEXT_CONNECT:
            self._hold.left_hold(ev.chan.linkedid, ev.chan.channel)
        elif ctx == CONTEXT_FALLBACK:
            self._adoption.in_fallback(ev.node, ev.chan, ev.time, out)

    def _on_dial_begin(self, ev: DialBegin, out: list[Effect]) -> None:
        if ev.chan is None:
            return
        call_id = ev.chan.linkedid
        held = self._hold.get(call_id)
        if (
            held is not None
            and held.channel == ev.chan.channel
            and self.dispatcher.offered_to(call_id) is not None
        ):
            if ev.dest is not None:
                self._escalations.seat_rings(call_id, ev.dest.channel)
            self._route(self.dispatcher.on_ringing(call_id, ev.time), out)

    # ------------------------------------------------------------------ time

    def _tick(self, item: Tick, out: list[Effect]) -> None:
        self._route(self.dispatcher.tick(item.at), out)
        out.extend(self._hold.renew(item.at))

    # ------------------------------------------------------------------ dispatcher commands

    def _command_table(self) -> dict[type, Callable[[Any, list[Effect]], None]]:
        """What each of the dispatcher's commands becomes (StartTimer: the driver asks
        next_deadline(); CommandRejected: the seat command's reply says it)."""
        return {
            rc.ConnectCall: self._connect,
            rc.CancelRing: self._cancel_ring,
            rc.PublishSeatState: self._seat_state,
            rc.PublishQueueSnapshot: self._queue_snapshot,
            rc.CallAnswered: self._answered,
            rc.RecordAbandonment: self._abandoned,
            rc.TransferOut: self._transfer_out,
        }

    def _route(self, commands: list[rc.Command], out: list[Effect]) -> None:
        for c in commands:
            self._entries.command(c, self._now)
            handler = self._commands.get(type(c))
            if handler is not None:
                handler(c, out)

    def _seat_state(self, c: rc.PublishSeatState, out: list[Effect]) -> None:
        st = c.state
        out.append(Publish(topic=f"seats/{st.seat_id}/state", payload=seat_payload(c), retain=True))
        # a not-ready asked for during a call: the reason the agent chose (what a restart
        # restores), not the talking state's
        reason = _str(
            st.pending.reason
            if c.cause == "pending_not_ready" and st.pending is not None
            else st.reason
        )
        # seat_events holds changes of status or reason only: a DeviceStateChange while the
        # seat talks (the phone's INUSE), a wrap-up extended, change the published state but
        # not the seat's time, and stored a second `talking` row at the same moment
        row = (str(st.status), reason)
        if self._stored_seat.get(st.seat_id) == row:
            return
        self._stored_seat[st.seat_id] = row
        out.append(
            StoreSeatState(
                seat_id=st.seat_id,
                status=row[0],
                reason=reason,
                previous=c.previous,
                cause=c.cause,
                call_id=st.call_id,
                at=st.since,
            )
        )

    def _queue_snapshot(self, c: rc.PublishQueueSnapshot, out: list[Effect]) -> None:
        out.append(
            Publish(
                topic="queue/snapshot",
                retain=True,
                payload={"schema_version": SCHEMA_VERSION, **snapshot_payload(c.snapshot)},
            )
        )

    def _answered(self, c: rc.CallAnswered, _out: list[Effect]) -> None:
        self._log.info(
            "call_connected",
            linkedid=c.call_id,
            seat=c.seat_id,
            line=c.line,
            waited_s=round(c.waited_s, 3),
            step=c.step,
        )

    def _abandoned(self, c: rc.RecordAbandonment, _out: list[Effect]) -> None:
        a = c.outcome
        self._log.info(
            "call_abandoned",
            linkedid=a.call_id,
            line=a.line,
            waited_s=round(a.waited_s, 3),
            position=a.position,
            during_offer=a.during_offer,
        )

    def _transfer_out(self, _c: rc.TransferOut, _out: list[Effect]) -> None:
        # the dialplan already dials sub-centre lines itself (cti-inbound); a held call on
        # such a line came back from an unanswered sub-centre: it stays here
        self.counts["transfer_out_ignored"] += 1

    def _connect(self, c: rc.ConnectCall, out: list[Effect]) -> None:
        if self._callbacks.connect(c, out):
            return  # a kept place: the seat calls the citizen back
        redirect = self._hold.offer(c)
        if redirect is None:
            self.counts["connect_unknown_call"] += 1
            self._log.error("connect_unknown_call", linkedid=c.call_id, seat=c.seat_id)
            return
        self._log.info(
            "call_offered", linkedid=c.call_id, seat=c.seat_id, step=c.step, attempt=c.attempt
        )
        out.append(redirect)
        out.append(self._screen.offered(c))

    def _cancel_ring(self, c: rc.CancelRing, out: list[Effect]) -> None:
        self._callbacks.ring_cancelled(c.call_id)
        pop = self._screen.withdraw(c.call_id, reason=c.reason)
        if pop is not None:
            out.append(pop)
        held = self._hold.get(c.call_id)
        if held is None or held.in_hold:
            return  # gone, or the dialplan already brought the caller back
        back = self._hold.send_back(c.call_id, c.reason)
        if back is not None:
            out.append(back)

    # ------------------------------------------------------------------ questions
    # What the daemon (HTTP, metrics, the IVR) asks. Answers are snapshots (frozen, or
    # copies): nothing returned here lets a caller change the core behind `handle`.

    def seat_states(self) -> list[SeatState]:
        """Every seat's state, by seat id."""
        return sorted(self.dispatcher.seats.states(), key=lambda st: st.seat_id)

    def seat_state(self, seat: str) -> SeatState | None:
        return self.dispatcher.seats.get(seat)

    def ready_seats_by_line(self) -> dict[str, int]:
        """Per line of the plan (by number), the routable seats with the skill its calls
        need (the line's, else the general one) at its ``min_level`` or above — the KPI
        alarm "no seat ready" (docs/kpis.md). A subcentre line is transferred out, so it is
        not judged (absent)."""
        plan = self.dispatcher.plan
        routable = {st.seat_id for st in self.dispatcher.seats.states() if st.routable}
        out: dict[str, int] = {}
        for line in plan.lines:
            if line.mode is LineMode.SUBCENTRE:
                continue
            skill = line.skill or plan.general_skill
            out[line.number] = sum(
                1
                for seat in plan.seats
                if seat.id in routable and seat.skills.get(skill, 0) >= line.min_level
            )
        return out

    def queue_snapshot(self, now: float) -> rc.QueueSnapshot:
        return self.dispatcher.snapshot(now)

    def waiting(self, limit: int) -> list[WaitingCall]:
        """The first `limit` waiting calls, in service order."""
        return list(itertools.islice(self.dispatcher.queue, limit))

    def position(self, call_id: str) -> Position | None:
        return self.dispatcher.position(call_id)

    def expected_wait(self, call_id: str, now: float) -> float | None:
        return self.dispatcher.expected_wait(call_id, now)

    def offered_to(self, call_id: str) -> str | None:
        return self.dispatcher.offered_to(call_id)

    def active_calls(self) -> list[ActiveCall]:
        return self.tracker.active_calls()

    def active_page(self, offset: int, limit: int) -> list[ActiveCall]:
        """At most `limit` calls in progress from `offset`, oldest tracked first: a page
        costs its own size, not the table's (HTTP paging)."""
        return self.tracker.active_page(offset, limit)

    def active_call(self, node: str, call_id: str) -> ActiveCall | None:
        return self.tracker.call(node, call_id)

    def draft(self, call_id: str) -> TicketDraft | None:
        """What the core knows of a call's caller and line (its ticket draft)."""
        return self._screen.draft(call_id)

    def transfer110_status(self, transfer_id: str) -> dict[str, Any] | None:
        return self.transfers.status(transfer_id)

    def tracker_load(self) -> dict[str, int]:
        """Calls and channels tracked now, and the cap (issue 16: a bounded table)."""
        return {
            "calls": self.tracker.call_count(),
            "channels": self.tracker.channel_count(),
            "max_channels": self.tracker.max_channels,
        }

    def channels_by_node(self, nodes: Iterable[str]) -> dict[str, int]:
        return {n: self.tracker.channel_count(n) for n in nodes}

    def counters(self) -> dict[str, dict[str, int]]:
        """The core's counters: its own, the tracker's anomalies, the dispatcher's events."""
        return {
            "core": dict(self.counts),
            "tracker": dict(self.tracker.anomalies),
            "dispatcher": dict(self.dispatcher.stats),
        }


def _str(value: object) -> str | None:
    return None if value is None else str(value)
