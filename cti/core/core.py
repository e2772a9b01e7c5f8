"""The CTI core: call tracking and the one queue behind one sans-IO ``handle``.

Inputs: every AMI and connection event (in stream order), agent commands, and
:class:`Tick` (time passing). Output: a list of frozen *effects* that the adapters carry
out (AMI actions, MQTT publishes, database writes). Nothing here awaits or does I/O; time
comes from the events and ticks.

How a held call is seen and moved (the dialplan contract of :mod:`cti.dialplan`):

* a channel entering ``cti-hold`` for the first time is a call waiting for a seat:
  :class:`MarkTaken` tells Asterisk the daemon has it (so the holding loop does not fall
  back to ``Queue()`` while the daemon's lease is valid) and the dispatcher queues or
  offers it. A ``CoreShowChannel`` in ``cti-hold`` after a (re)connect is adopted the same
  way: calls already waiting when the daemon starts are taken over without disturbing them;
* an offer is a :class:`RedirectToSeat` of the held channel to ``cti-connect``; the seat's
  ``DialBegin`` is "ringing", the tracker's answer is "answered";
* a call that comes back to ``cti-hold`` while offered means the dialplan's ``Dial`` gave
  up (no answer, busy, unavailable): ring no answer. A return we caused ourselves
  (:class:`ReturnToHold` after the dispatcher's own RONA timer) is expected and ignored;
* the call's end (the tracker's summary) ends it in the dispatcher too, and is stored and
  published.

The lease: every ``lease_every_s`` the core asks for :class:`RenewLease` (the global
``CTI_LEASE_UNTIL`` on every connected node). If the daemon dies, its calls fall back to
the plain queue when the lease runs out.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, assert_never

from structlog.typing import FilteringBoundLogger

from cti.calls.model import (
    ActiveCall,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallNotification,
    CallState,
    CallSummary,
)
from cti.calls.seatnames import seat_namer
from cti.calls.tracker import DEFAULT_MAX_CHANNELS, CallTracker
from cti.core.adoption import AdoptedFacts
from cti.core.escalation import Escalation, leg_ids
from cti.core.messages import (
    AddEmergencyLeg,
    AdoptedChannelRead,
    CallbackDone,
    CallbackKeepPlace,
    CallbackReply,
    CallbackRequested,
    CoreInput,
    Effect,
    EscalateBlind,
    HangupLeg,
    MarkTaken,
    MessageLeft,
    NotifyEscalation,
    OriginateCallback,
    Pop,
    Publish,
    ReadAdoptedChannel,
    RedirectToSeat,
    RejectCall,
    RenewLease,
    Reply110,
    Report110,
    ReturnToHold,
    SeatCommandReceived,
    StateRestored,
    StoreCall,
    StoreSeatState,
    StoreTicketOp,
    TakenCall,
    Tick,
    TicketNumberKnown,
    Transfer110NotStored,
    Transfer110Pushed,
)
from cti.core.recovery import reconstruct
from cti.dialplan.contract import (
    CONTEXT_CONNECT,
    CONTEXT_FALLBACK,
    CONTEXT_HOLD,
    PROMPT_CHECK_ID_PREFIX,
)
from cti.dialplan.dialstrings import DialplanError, emergency_dial
from cti.dispatch110 import Feedback110, Transfer110, TransferBook, TransferMode
from cti.dispatch110.book import data_call_id
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    AmiEvent,
    BridgeEnter,
    ChannelSnapshot,
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
from cti.numberplan import EscalationMode, Line, NumberPlan, number_key
from cti.queue.model import Position, WaitingCall
from cti.routing import commands as rc
from cti.routing.dispatcher import Dispatcher, IncomingCall
from cti.seats.commands import (
    CommandError,
    Escalate,
    Leave,
    Login,
    Logout,
    NotReady,
    Ready,
    RefusalCode,
    SeatCommand,
    Transfer,
    WrapupDone,
    WrapupExtend,
)
from cti.seats.model import Reason, SeatState, SeatStatus
from cti.workorders.model import Origin, OutboxOp, TicketCallFacts, TicketDraft

__all__ = ["Core", "call_event", "ticket_origin"]

SCHEMA_VERSION: Final = 1


@dataclass(slots=True)
class _Held:
    node: str
    channel: str
    in_hold: bool = True
    expected_returns: int = 0  # ReturnToHold we issued whose cti-hold entry is still to come


@dataclass(slots=True)
class _Adopting:
    """A waiting call the daemon did not see arrive, until its channel's variables are
    read back (cti/core/adoption.py)."""

    node: str
    chan: ChannelSnapshot
    from_fallback: bool


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
    ) -> None:
        self._log = log
        self.plan = plan
        # a seat's channel is named by the seat, not its phone (PJSIP/6001 -> seat 1001):
        # answered_by, rang and transfers of records, events and tickets hold seat ids
        self.tracker = CallTracker(
            logger=log,
            name_of=seat_namer({s.endpoint: s.id for s in plan.seats}),
            max_channels=max_channels,
        )
        self.dispatcher = Dispatcher(plan, log)
        self._seats = {s.id for s in plan.seats}
        self._held: dict[str, _Held] = {}  # call_id -> the caller's held channel
        self._refused: set[str] = set()  # calls not taken: a channel name AMI cannot carry
        self._nodes: set[str] = set()
        self._lease_s = lease_s
        self._lease_every_s = lease_every_s
        self._lease_due = 0.0
        self.counts: Counter[str] = Counter()
        # effects a seat command produces before the dispatcher's (transfer: hold first)
        self._pending_effects: list[Effect] = []
        self._recording = recording  # where cti-record puts a call's recording
        self._tickets: set[str] = set()  # calls whose ticket draft was written
        self._drafts: dict[str, TicketDraft] = {}  # call_id -> what a pop shows of it
        self.drafts = self._drafts  # read-only view for the IVR (who is calling)
        self._queue_marks: dict[str, list[dict[str, Any]]] = {}  # call_id -> its wait so far
        self._popped: dict[str, tuple[str, int]] = {}  # call_id -> (seat, attempt) popped
        # 110 ⇄ 12345: pushed transfers, matched to the calls on 110 lines
        self.transfers = TransferBook(match_window_s=match_window_s)
        self._talking: dict[str, str] = {}  # call_id -> the seat that answered it
        self._numbers: dict[str, str] = {}  # call_id -> its ticket number, once known
        # escalation to 110/119/120/122 (docs/escalation.md)
        self._seat_legs: dict[str, str] = {}  # call_id -> the channel of the seat it rings
        self._escalations: dict[str, Escalation] = {}
        # callbacks in progress: the callback call's linkedid -> (list entry, seat, was ready)
        self._callbacks: dict[str, tuple[str, str, bool]] = {}
        self._callback_seq = 0
        # callers who asked to be called back keeping their place: call id -> (node, number);
        # and the callback call placed for one, by its linkedid -> the waiting call's id
        self._virtual: dict[str, tuple[str, str]] = {}
        self._virtual_cb: dict[str, str] = {}
        self._messages: dict[str, str] = {}  # call id -> a message left while waiting
        # after a restart (cti/core/recovery.py): the calls taken before it, by node, until the
        # node's first channel list; the daemon's last sign of life per node
        self._restart_calls: dict[str, dict[str, TakenCall]] = {}
        self._restart_call_node: dict[str, str] = {}  # linkedid -> node
        self._last_alive: dict[str, float] = {}
        self._listed: set[str] = set()  # nodes whose first channel list is complete
        self._adopting: dict[str, _Adopting] = {}  # call id -> waiting for its variables
        self._inputs = self._input_table()

    # ------------------------------------------------------------------ API

    def handle(self, item: CoreInput) -> list[Effect]:
        """Apply one input; return the effects, in the order they must happen."""
        out: list[Effect] = []
        handler = self._inputs.get(type(item))
        if handler is not None:
            handler(item, out)
        else:  # every AMI event and connection event (cti.events): their own table
            self._ami(item, out)  # type: ignore[arg-type]  # the rest of the union
        return out

    def _input_table(self) -> dict[type, Callable[[Any, list[Effect]], None]]:
        """One entry per input type other than AMI events (STYLE.md: a table, no chain)."""
        return {
            Tick: lambda item, out: self._tick(item.at, out),
            SeatCommandReceived: self._seat_command,
            Transfer110Pushed: self._on_push,
            TicketNumberKnown: self._on_ticket_number,
            CallbackRequested: self._on_callback,
            CallbackKeepPlace: self._keep_place,
            MessageLeft: self._message_left,
            AdoptedChannelRead: self._adopted_read,
            StateRestored: self._restored,
            Transfer110NotStored: self._not_stored,
        }

    def _message_left(self, item: MessageLeft, _out: list[Effect]) -> None:
        self._messages[item.call_id] = item.recording
        self._log.info("call_message_left", linkedid=item.call_id, recording=item.recording)

    def _restored(self, item: StateRestored, out: list[Effect]) -> None:
        """Start-up: the seats (a seat that was on a call comes back on it, unless the
        plan says `after_restart: not_ready`), the calls to settle at each node's first
        channel list, and the 110 transfers."""
        saved = dict(item.seats)
        if self.plan.queue.after_restart != "not_ready":
            saved = {k: v for k, v in saved.items() if k not in item.busy}
        self._route(self.dispatcher.restore_seats(saved, item.at), out)
        for call in item.taken:
            self._restart_calls.setdefault(call.node, {})[call.linkedid] = call
            self._restart_call_node[call.linkedid] = call.node
        self._last_alive.update(item.last_alive)
        self._route(self.dispatcher.restore_busy_seats(dict(item.busy)), out)
        self.transfers.restore([dict(row) for row in item.transfers110])

    def _not_stored(self, item: Transfer110NotStored, _out: list[Effect]) -> None:
        self.transfers.forget(item.transfer_id)

    def _recover(self, node: str, at: float, out: list[Effect]) -> None:
        """The node's first channel list after the start is in: every call taken before the
        restart is either still up (followed from now on: its end writes its ticket's facts)
        or ended during the outage (its record and facts reconstructed); every seat restored
        on a call goes on accordingly."""
        since = self._last_alive.get(node, at)
        for linkedid, call in self._restart_calls.pop(node, {}).items():
            if self.tracker.call(node, linkedid) is not None:
                self._tickets.add(linkedid)
                self._drafts.setdefault(linkedid, call.draft)
                continue
            summary, facts = reconstruct(
                call,
                ended_after=min(since, at),
                ended_before=at,
                recording=self._recording.format(call_id=linkedid),
            )
            self.counts["reconstructed"] += 1
            self._log.info(
                "call_reconstructed",
                linkedid=linkedid,
                node=node,
                seat=summary.answered_by,
                ended_after=facts.ended_at,
                ended_before=facts.ended_before,
            )
            missed = summary.answered_by is None and bool(summary.caller)
            ops = (OutboxOp.update(facts),)
            out.append(StoreCall(summary=summary, ticket_ops=ops, missed=missed))
            body = summary.to_json()
            del body["call_id"]
            out.append(
                call_event(
                    "ended", linkedid, reconstructed=True, ended_before=facts.ended_before, **body
                )
            )
        for seat_id, call_id in self.dispatcher.resuming().items():
            owner = self._restart_call_node.get(call_id, node)
            if owner != node:
                continue
            active = self.tracker.call(node, call_id)
            talking = active is not None and active.state is CallState.TALKING
            self._route(self.dispatcher.resume_seat(seat_id, talking=talking, now=at), out)

    def next_deadline(self) -> float:
        """When :meth:`handle` wants the next :class:`Tick` at the latest."""
        due = self.dispatcher.next_deadline()
        lease = self._lease_due if self._nodes else float("inf")
        return min(due if due is not None else float("inf"), lease)

    # ------------------------------------------------------------------ AMI

    def _ami(self, ev: AmiEvent | ConnectionEvent, out: list[Effect]) -> None:  # noqa: C901 - split by part in the next step
        if isinstance(ev, AmiConnected):
            self._nodes.add(ev.node)
            out.append(RenewLease(node=ev.node, until=ev.time + self._lease_s))
        elif isinstance(ev, AmiDisconnected):
            self._nodes.discard(ev.node)
        notes = self.tracker.handle(ev)
        if isinstance(ev, Newexten):
            self._on_newexten(ev, out)
        elif isinstance(ev, CoreShowChannel):
            if ev.chan.context == CONTEXT_HOLD:
                self._adopt_or_wait(ev.node, ev.chan, ev.time, out)
            elif ev.chan.context == CONTEXT_FALLBACK and not ev.bridge_id:
                # in Queue() and not talking to a queue member (yet)
                self._in_fallback(ev.node, ev.chan, ev.time, out)
        elif isinstance(ev, DialBegin):
            self._on_dial_begin(ev, out)
        elif isinstance(ev, DeviceStateChange):
            self._route(self.dispatcher.on_device_state(ev.device, ev.state, ev.time), out)
        elif self._escalations and isinstance(
            ev, Newchannel | Hangup | BridgeEnter | OriginateResponse
        ):
            self._escalation_event_in(ev, out)
        self._notes(notes, out)
        if isinstance(ev, CoreShowChannelsComplete) and ev.node not in self._listed:
            self._listed.add(ev.node)
            self._recover(ev.node, ev.time, out)

    def _notes(self, notes: list[CallNotification], out: list[Effect]) -> None:
        for note in notes:
            if _note_call_id(note) in self._virtual_cb:
                self._virtual_note(note, out)
                continue
            if isinstance(note, CallConnected):
                if note.call_id in self._escalations:
                    continue  # the operator's leg: the seat answered long ago
                self._route(self.dispatcher.on_answer(note.call_id, note.at), out)
                popped = self._popped.get(note.call_id)
                if popped is not None:
                    self._talking[note.call_id] = popped[0]
                    self._report(
                        self.transfers.call_answered(note.call_id, popped[0], note.at), out
                    )
                    out.append(
                        self._pop(
                            popped[0],
                            "answer",
                            note.call_id,
                            popped[1],
                            answered_at=note.at,
                            # MixMonitor starts with the bridge (cti-record): the file exists
                            recording=self._recording.format(call_id=note.call_id),
                        )
                    )
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

    def _call_ended(self, s: CallSummary, out: list[Effect]) -> None:
        if s.call_id.startswith(PROMPT_CHECK_ID_PREFIX):
            return  # the daemon's prompt check (cti/adapters/prompt_check.py), not a citizen's call
        self._held.pop(s.call_id, None)
        self._adopting.pop(s.call_id, None)
        self._refused.discard(s.call_id)
        popped = self._popped.pop(s.call_id, None)
        if popped is not None:
            out.append(
                self._pop(
                    popped[0],
                    "end",
                    s.call_id,
                    popped[1],
                    outcome=s.outcome,
                    wait_s=s.wait_s,
                    talk_s=s.talk_s,
                    hangup_by=s.hangup_by,
                    transfers=list(s.to_json()["transfers"]),
                    recording=self._recording.format(call_id=s.call_id) if s.answered_by else None,
                )
            )
        virtual = s.call_id in self._virtual  # hung up to be called back: keeps its place
        if not virtual:
            self._drafts.pop(s.call_id, None)
            self._queue_marks.pop(s.call_id, None)
        self._talking.pop(s.call_id, None)
        self._numbers.pop(s.call_id, None)
        self._seat_legs.pop(s.call_id, None)
        esc = self._escalations.pop(s.call_id, None)
        if (esc is None or not esc.released) and not virtual:  # released: wrap-up already
            self._route(self.dispatcher.on_hangup(s.call_id, s.ended_at), out)
        transfer = self.transfers.transfer_of(s.call_id)
        self._report(
            self.transfers.call_ended(
                s.call_id, s.ended_at, outcome=s.outcome, wait_s=s.wait_s, talk_s=s.talk_s
            ),
            out,
        )
        ops: tuple[OutboxOp, ...] = ()
        taken = s.call_id in self._tickets
        callback = self._callbacks.pop(s.call_id, None)
        if callback is not None:
            self._callback_done(callback, s, out)
        if s.call_id in self._tickets:
            self._tickets.discard(s.call_id)
            rec = self._recording.format(call_id=s.call_id) if s.answered_by else None
            rec = self._messages.pop(s.call_id, rec)  # overload voicemail: the message
            ref = transfer.transfer_id if transfer is not None else None
            facts = TicketCallFacts.from_summary(s, recording=rec, external_ref=ref)
            ops = (OutboxOp.update(facts),)
        missed = taken and s.outcome == "abandoned" and bool(s.caller) and not virtual
        out.append(StoreCall(summary=s, ticket_ops=ops, missed=missed))
        body = s.to_json()
        del body["call_id"]
        out.append(call_event("ended", s.call_id, **body))

    def _on_newexten(self, ev: Newexten, out: list[Effect]) -> None:
        ctx = ev.chan.context
        if ctx == CONTEXT_HOLD and ev.chan.priority == 1:
            self._adopt_or_wait(ev.node, ev.chan, ev.time, out, adopted=False)
        elif ctx == CONTEXT_CONNECT and ev.chan.priority == 1:
            held = self._held.get(ev.chan.linkedid)
            if held is not None and held.channel == ev.chan.channel:
                held.in_hold = False
        elif ctx == CONTEXT_FALLBACK and ev.chan.priority == 1:
            self._in_fallback(ev.node, ev.chan, ev.time, out)

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
            self.counts["refused_channel_name"] += 1
            self._log.warning(
                "call_refused",
                linkedid=call_id,
                node=node,
                channel=chan.channel,
                reason="channel name has a line break (not usable in AMI actions)",
            )
        return True

    def _waiting(  # noqa: C901, PLR0911 - split by part in the next step (hold, tickets)
        self,
        node: str,
        chan: ChannelSnapshot,
        at: float,
        out: list[Effect],
        *,
        adopted: bool,
        entered_at: float | None = None,
    ) -> None:
        call_id = chan.linkedid
        held = self._held.get(call_id)
        if held is None and self._refuse(node, chan):
            return
        if held is None:
            if self.tracker.call(node, call_id) is None:
                # the tracker refused its channels (table full, `call_tracker_full`): a call
                # whose end would never be seen must not take a place in the queue; left
                # untaken, the holding loop times out into the dialplan's Queue()
                self.counts["untracked_not_taken"] += 1
                return
            held = self._held[call_id] = _Held(node=node, channel=chan.channel)
            out.append(MarkTaken(node=node, channel=chan.channel, call_id=call_id))
            active = self.tracker.call(node, call_id)
            line = active.line if active is not None else chan.exten
            caller = active.caller if active is not None else chan.caller_num
            self.counts["adopted" if adopted else "taken"] += 1
            self._log.info(
                "call_taken", linkedid=call_id, node=node, line=line, caller=caller, adopted=adopted
            )
            blocked = self.plan.blocked(caller) if caller else None
            if blocked is not None:
                self.counts[f"blacklisted_{blocked.treatment}"] += 1
                self._log.warning(
                    "call_blacklisted",
                    linkedid=call_id,
                    caller=caller,
                    treatment=blocked.treatment,
                    reason=blocked.reason,
                )
                if blocked.treatment == "reject":
                    out.append(RejectCall(node=node, channel=chan.channel, call_id=call_id))
                    return
            # the ticket is opened before the agent says a word; after a restart the same
            # idempotency key makes an adopted call's draft a no-op
            self._tickets.add(call_id)
            transfer = None
            plan_line = self.plan.line(line)
            if plan_line is not None and plan_line.dispatch110:
                tid = active.transfer_id if active is not None else ""
                transfer = self.transfers.call_arrived(call_id, caller, tid or None, at)
                self._log.info(
                    "call_110",
                    linkedid=call_id,
                    transfer_id=transfer.transfer_id if transfer is not None else None,
                    carried_id=tid or None,
                )
            draft = self._draft(
                node, call_id, chan=chan, line=line, caller=caller, at=at, transfer=transfer
            )
            self._drafts[call_id] = draft
            out.append(StoreTicketOp(op=OutboxOp.create(draft)))
            self._route(
                self.dispatcher.on_call_waiting(
                    IncomingCall(
                        call_id=call_id,
                        line=line,
                        at=at,
                        caller=caller,
                        demoted=blocked is not None and blocked.treatment == "last",
                        entered_at=entered_at,
                    )
                ),
                out,
            )
            return
        if held.channel != chan.channel:
            self.counts["hold_other_channel"] += 1
            return
        held.in_hold = True
        if self._escalation_back_in_hold(call_id, at, out):
            return
        if held.expected_returns > 0:
            held.expected_returns -= 1  # our own ReturnToHold arriving
            return
        if self.dispatcher.offered_to(call_id) is not None:
            # the dialplan's Dial gave up (no answer / busy / unavailable): RONA
            self.counts["ring_failed_in_dialplan"] += 1
            self._route(self.dispatcher.on_ring_timeout(call_id, at), out)

    def _on_dial_begin(self, ev: DialBegin, out: list[Effect]) -> None:
        if ev.chan is None:
            return
        call_id = ev.chan.linkedid
        held = self._held.get(call_id)
        if (
            held is not None
            and held.channel == ev.chan.channel
            and self.dispatcher.offered_to(call_id) is not None
        ):
            if ev.dest is not None:
                self._seat_legs[call_id] = ev.dest.channel
            self._route(self.dispatcher.on_ringing(call_id, ev.time), out)

    def _draft(
        self,
        node: str,
        call_id: str,
        *,
        chan: ChannelSnapshot,
        line: str,
        caller: str,
        at: float,
        transfer: Transfer110 | None = None,
    ) -> TicketDraft:
        plan_line = self.plan.line(line)
        return TicketDraft(
            call_id=f"{node}:{call_id}",
            node=node,
            caller=caller,
            caller_name=chan.caller_name if chan.caller_name != "<unknown>" else "",
            line=line,
            line_name=plan_line.name if plan_line is not None else line,
            department=plan_line.department if plan_line is not None else "",
            origin=_origin(plan_line, line),
            skill=(plan_line.skill if plan_line is not None else None) or self.plan.general_skill,
            created_at=at,
            **_from_110(transfer),
        )

    # ------------------------------------------------------------------ adoption
    # Calls waiting when the daemon (re)connects, which it did not see arrive (issue 18,
    # items 1 and 4; cti/core/adoption.py): read their variables first, then take them at the
    # place their wait gives them; take back the ones waiting in a fallback Queue().

    def _in_fallback(self, node: str, chan: ChannelSnapshot, at: float, out: list[Effect]) -> None:
        """`chan` waits in a fallback ``Queue()`` (the daemon was down, or its lease ran
        out while the AMI link was down)."""
        call_id = chan.linkedid
        held = self._held.get(call_id)
        if held is None:
            self._adopt_or_wait(node, chan, at, out, from_fallback=True)
        elif held.channel == chan.channel and call_id in self.dispatcher.queue:
            # still in our line: back to the holding loop, or app_queue rings seats too
            self.counts["fallback_taken_back"] += 1
            self._log.info("call_back_from_fallback", linkedid=call_id, node=node)
            self._out_of_fallback(call_id, out)

    def _adopt_or_wait(
        self,
        node: str,
        chan: ChannelSnapshot,
        at: float,
        out: list[Effect],
        *,
        adopted: bool = True,
        from_fallback: bool = False,
    ) -> None:
        """A call in the holding loop (or a fallback queue): one the tracker did not see
        arrive (history incomplete) is taken only once its variables are read back."""
        call_id = chan.linkedid
        if call_id not in self._held:
            active = self.tracker.call(node, call_id)
            if active is None or not active.history_complete:
                self._read_before_taking(node, chan, out, from_fallback=from_fallback)
                return
        self._waiting(node, chan, at, out, adopted=adopted)
        if from_fallback:
            self._out_of_fallback(call_id, out)

    def _read_before_taking(
        self, node: str, chan: ChannelSnapshot, out: list[Effect], *, from_fallback: bool
    ) -> None:
        call_id = chan.linkedid
        pending = self._adopting.get(call_id)
        if pending is not None:  # listed and seen moving: one read is enough
            pending.from_fallback = pending.from_fallback or from_fallback
            return
        self._adopting[call_id] = _Adopting(node=node, chan=chan, from_fallback=from_fallback)
        # CTI_TAKEN first: a held call must not fall back while its variables are read
        out.append(MarkTaken(node=node, channel=chan.channel, call_id=call_id))
        out.append(ReadAdoptedChannel(node=node, channel=chan.channel, call_id=call_id))

    def _adopted_read(self, item: AdoptedChannelRead, out: list[Effect]) -> None:
        pending = self._adopting.pop(item.call_id, None)
        if pending is None or pending.node != item.node:
            return  # ended meanwhile
        call_id, node = item.call_id, item.node
        if not item.ok and not item.connected:
            # the link went down: the resync after the next login lists the call again
            self.counts["adoption_read_lost"] += 1
            return
        facts = AdoptedFacts.from_variables(item.variables, now=item.at)
        active = self.tracker.call(node, call_id)
        if active is None:
            return
        self.tracker.note_adopted(
            node, call_id, line=facts.line, dialed=facts.dnis, transfer_id=facts.transfer_id
        )
        if facts.entered_at is None and active.started_at > 0:
            # a dialplan without CTI_ENTERED: the channel's age (CoreShowChannels Duration)
            facts = AdoptedFacts(
                line=facts.line,
                dnis=facts.dnis,
                transfer_id=facts.transfer_id,
                entered_at=min(active.started_at, item.at),
            )
        self._log.info(
            "call_adoption_read",
            linkedid=call_id,
            node=node,
            ok=item.ok,
            line=facts.line,
            entered_at=facts.entered_at,
            from_fallback=pending.from_fallback,
        )
        if active.answered_by is not None:
            # a fallback queue member answered first: that call is served, leave it be
            self.counts["adopted_answered_in_fallback"] += 1
            self._log.info("call_answered_in_fallback", linkedid=call_id, seat=active.answered_by)
            return
        self._waiting(node, pending.chan, item.at, out, adopted=True, entered_at=facts.entered_at)
        if pending.from_fallback:
            self._out_of_fallback(call_id, out)

    def _out_of_fallback(self, call_id: str, out: list[Effect]) -> None:
        """Redirect a call in a fallback ``Queue()`` to ``cti-hold``, unless routing just
        offered it (its Redirect to ``cti-connect`` takes it out of the queue itself) or
        it was rejected (blacklist)."""
        held = self._held.get(call_id)
        if held is None:
            return
        held.in_hold = False
        if any(isinstance(e, RedirectToSeat | RejectCall) and e.call_id == call_id for e in out):
            return
        held.expected_returns += 1
        out.append(
            ReturnToHold(node=held.node, channel=held.channel, call_id=call_id, reason="fallback")
        )

    # ------------------------------------------------------------------ callbacks

    def _on_callback(self, item: CallbackRequested, out: list[Effect]) -> None:
        """漏接电话回拨: the seat goes not-ready (callback) and its phone rings first; when
        the callback call ends, a seat that was ready is ready again."""
        state = self.dispatcher.seats.get(item.seat)
        refuse = None
        if item.seat not in self._seats or state is None:
            refuse = ("unknown_seat", f"no seat {item.seat!r} in the number plan")
        elif state.status not in (SeatStatus.READY, SeatStatus.NOT_READY):
            refuse = ("seat_busy", f"seat {item.seat} is {state.status.value}")
        elif any(cb[0] == item.callback_id for cb in self._callbacks.values()):
            refuse = ("already_calling", "this citizen is being called back")
        if refuse is not None:
            out.append(
                CallbackReply(
                    callback_id=item.callback_id, ok=False, code=refuse[0], message=refuse[1]
                )
            )
            return
        assert state is not None
        was_ready = state.status is SeatStatus.READY
        self._route(self.dispatcher.on_seat_not_ready(item.seat, Reason.CALLBACK, item.at), out)
        profile = next(p for p in self.plan.seats if p.id == item.seat)
        self._callback_seq += 1
        channel_id = f"cb{int(item.at * 1000):x}{self._callback_seq:04x}"
        self._callbacks[channel_id] = (item.callback_id, item.seat, was_ready)
        self._log.info(
            "callback_started", linkedid=channel_id, seat=item.seat, missed=item.callback_id
        )
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

    def _callback_done(self, cb: tuple[str, str, bool], s: CallSummary, out: list[Effect]) -> None:
        callback_id, seat, was_ready = cb
        # the seat's phone is the "caller" of this call: answered = the citizen picked up
        outcome = s.outcome
        out.append(
            CallbackDone(
                callback_id=callback_id,
                seat_id=seat,
                call_id=s.call_id,
                outcome=outcome,
                at=s.ended_at,
            )
        )
        state = self.dispatcher.seats.get(seat)
        if was_ready and state is not None and state.reason is Reason.CALLBACK:
            self._route(self.dispatcher.on_seat_ready(seat, s.ended_at), out)

    # ------------------------------------------------------------------ callback, keeping the place

    def _keep_place(self, item: CallbackKeepPlace, out: list[Effect]) -> None:
        """The caller will hang up; its call stays in the line, and the seat that picks it
        calls the citizen back (seat first), like a callback from the missed-call list."""
        held = self._held.get(item.call_id)
        draft = self._drafts.get(item.call_id)
        if held is None or draft is None or not draft.caller:
            self.counts["keep_place_unknown_call"] += 1
            return
        if self.dispatcher.offered_to(item.call_id) is not None:
            return  # a seat is already ringing for it: no need
        self._virtual[item.call_id] = (held.node, draft.caller)
        self.counts["callback_kept_place"] += 1
        self._log.info("callback_kept_place", linkedid=item.call_id, caller=draft.caller)
        out.append(call_event("callback_requested", item.call_id, node=held.node, at=item.at))

    def _connect_virtual(
        self, c: rc.ConnectCall, virtual: tuple[str, str], out: list[Effect]
    ) -> None:
        node, number = virtual
        self._callback_seq += 1
        channel_id = f"cb{int(c.ring_timeout_s * 1000):x}{self._callback_seq:06x}{c.call_id[-6:]}"
        channel_id = "".join(ch for ch in channel_id if ch.isalnum())
        self._virtual_cb[channel_id] = c.call_id
        self._log.info(
            "call_offered_callback", linkedid=c.call_id, seat=c.seat_id, callback=channel_id
        )
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
        self._offered(c, out, callback=True)

    def _virtual_note(self, note: CallNotification, out: list[Effect]) -> None:
        """The callback call of a caller who kept its place: for the dispatcher and the
        pops it is that waiting call (answered = the citizen picked up)."""
        cb_id = _note_call_id(note)
        call_id = self._virtual_cb[cb_id]
        if isinstance(note, CallConnected):
            self._route(self.dispatcher.on_answer(call_id, note.at), out)
            popped = self._popped.get(call_id)
            if popped is not None:
                self._talking[call_id] = popped[0]
                out.append(self._pop(popped[0], "answer", call_id, popped[1], answered_at=note.at))
        elif isinstance(note, CallEnded):
            s = note.summary
            del self._virtual_cb[cb_id]
            # answered: the agent talked to the citizen; not: the citizen did not pick up —
            # either way this caller's wait is over
            self._virtual.pop(call_id, None)
            popped = self._popped.pop(call_id, None)
            if popped is not None:
                out.append(
                    self._pop(
                        popped[0], "end", call_id, popped[1], outcome=s.outcome, talk_s=s.talk_s
                    )
                )
            self._talking.pop(call_id, None)
            self._route(self.dispatcher.on_hangup(call_id, s.ended_at), out)
            self._drafts.pop(call_id, None)
            self._queue_marks.pop(call_id, None)
            out.append(StoreCall(summary=s))
            body = s.to_json()
            del body["call_id"]
            out.append(call_event("ended", s.call_id, callback_of=call_id, **body))

    # ------------------------------------------------------------------ 110

    def _on_push(self, item: Transfer110Pushed, out: list[Effect]) -> None:
        t, at = item.transfer, item.at
        outcome = self.transfers.push(t, at)
        self.counts[f"push110_{outcome.result}"] += 1
        self._log.info(
            "transfer110_pushed",
            transfer_id=t.transfer_id,
            mode=t.mode.value,
            caller=number_key(t.caller),  # 138 0013 8000 -> 13800138000, which is masked
            result=outcome.result,
            linkedid=outcome.matched_call,
        )
        self._report(list(outcome.feedback), out)
        if outcome.result == "new" and t.mode is TransferMode.DATA:
            # 工单推送: a ticket and no call; opened like a call's, through the outbox
            line = next((ln for ln in self.plan.lines if ln.dispatch110), None)
            number = line.number if line is not None else "110"
            draft = TicketDraft(
                call_id=data_call_id(t.transfer_id),
                node="110",
                caller=t.caller,
                caller_name=t.caller_name,
                line=number,
                line_name=line.name if line is not None else "110",
                department=line.department if line is not None else "",
                origin="dispatch110",
                skill=(line.skill if line is not None else None) or self.plan.general_skill,
                created_at=at,
                **_from_110(t),
            )
            out.append(StoreTicketOp(op=OutboxOp.create(draft)))
        call_id = outcome.matched_call
        if call_id is not None:
            # the caller was already here: the seat's screen gets the 110 data now
            popped = self._popped.get(call_id)
            if popped is not None:
                out.append(self._pop(popped[0], "update", call_id, popped[1]))
            seat = self._talking.get(call_id)
            if seat is not None:
                self._report(self.transfers.call_answered(call_id, seat, at), out)
            known = self._numbers.get(call_id)
            if known is not None:
                self._report(self.transfers.ticket_known(call_id, known, at), out)
        out.append(
            Reply110(
                transfer_id=t.transfer_id,
                request_id=item.request_id,
                result=outcome.result,
                status=self.transfers.status(t.transfer_id) or outcome.status,
            )
        )

    def _on_ticket_number(self, item: TicketNumberKnown, out: list[Effect]) -> None:
        node, _, rest = item.call_id.partition(":")
        call_id = item.call_id if node == "110" else rest
        if node != "110" and call_id in self._drafts:
            self._numbers[call_id] = item.number
        self._report(self.transfers.ticket_known(call_id, item.number, item.at), out)

    def _report(self, feedback: list[Feedback110], out: list[Effect]) -> None:
        for fb in feedback:
            status = self.transfers.status(fb.transfer_id) or {}
            out.append(Report110(feedback=fb, status=status))

    # ------------------------------------------------------------------ seats

    def _seat_command(self, item: SeatCommandReceived, out: list[Effect]) -> None:
        seat, cmd, now = item.seat, item.command, item.at
        if seat not in self._seats:
            cmd = CommandError(
                code="unknown_seat",
                message=f"no seat {seat!r} in the number plan",
                request_id=getattr(cmd, "request_id", None),
            )
        if isinstance(cmd, Escalate | Leave):
            cmd = self._escalation_command(seat, cmd, now, out)
        if isinstance(cmd, CommandError):
            self.counts["command_refused"] += 1
            self._log.warning("seat_command_refused", seat=seat, code=cmd.code, error=cmd.message)
            out.append(Publish(topic=f"seats/{seat}/reply", payload=cmd.reply()))
            return
        if isinstance(cmd, Escalate | Leave):  # done: effects in `out`
            done = {"ok": True, "request_id": cmd.request_id, "cmd": cmd.cmd}
            out.append(Publish(topic=f"seats/{seat}/reply", payload=done))
            return
        routed = self._apply_seat_command(seat, cmd, now)
        out.extend(self._pending_effects)
        self._pending_effects.clear()
        rejected = [c for c in routed if isinstance(c, rc.CommandRejected)]
        reply: dict[str, Any] = {"ok": not rejected, "request_id": cmd.request_id, "cmd": cmd.cmd}
        if rejected:
            reply["error"] = {"code": "rejected", "message": rejected[0].reason, "fields": []}
        self._route(routed, out)
        out.append(Publish(topic=f"seats/{seat}/reply", payload=reply))

    def _apply_seat_command(  # noqa: PLR0911 - one case per command of the union
        self, seat: str, cmd: SeatCommand, now: float
    ) -> list[rc.Command]:
        d = self.dispatcher
        match cmd:
            case Login():
                return d.on_login(seat, now, ready=cmd.ready)
            case Logout():
                return d.on_logout(seat, now)
            case Ready():
                return d.on_seat_ready(seat, now)
            case NotReady():
                return d.on_seat_not_ready(seat, cmd.reason_code, now)
            case WrapupDone():
                return d.on_wrapup_done(seat, now)
            case WrapupExtend():
                return d.on_wrapup_extend(seat, cmd.seconds, now)
            case Transfer():
                return self._transfer(seat, cmd.target, now)
            case Escalate() | Leave():
                return []  # _seat_command hands these to _escalation_command
            case _:
                assert_never(cmd)

    def _transfer(self, seat: str, target: str, now: float) -> list[rc.Command]:
        """一键转接 to a department: the caller back to hold and to the head of the line
        with the target's skill; the seat to wrap-up. The Redirect is recorded on the call
        (Asterisk reports no transfer event for it)."""
        line = self.plan.line(target)
        skills = {s.name for s in self.plan.skills}
        if line is not None:
            skill, min_level = line.skill or self.plan.general_skill, line.min_level
        elif target in skills:
            skill, min_level = target, 1
        else:
            return [
                rc.CommandRejected(
                    seat_id=seat,
                    command="transfer",
                    reason=f"unknown target {target!r}: a line or a skill",
                )
            ]
        state = self.dispatcher.seats.get(seat)
        call_id = state.call_id if state is not None else None
        held = self._held.get(call_id) if call_id is not None else None
        if (
            state is None
            or state.status is not SeatStatus.TALKING
            or call_id is None
            or held is None
        ):
            status = str(state.status) if state is not None else "?"
            return [
                rc.CommandRejected(
                    seat_id=seat,
                    command="transfer",
                    reason=f"no call of the daemon to transfer while {status}",
                )
            ]
        routed = self.dispatcher.on_transfer(call_id, skill, now, min_level=min_level)
        self.tracker.note_transfer(held.node, call_id, type_="redirect", by=seat, to=target, at=now)
        self._log.info("call_transferred", linkedid=call_id, seat=seat, target=target, skill=skill)
        # the caller goes back to hold first; a new offer (in `routed`) follows it
        held.in_hold = False
        held.expected_returns += 1
        self._pending_effects.append(
            ReturnToHold(node=held.node, channel=held.channel, call_id=call_id, reason="transfer")
        )
        popped = self._popped.pop(call_id, None)
        if popped is not None:  # the sender's screen: the call has left it
            self._pending_effects.append(
                self._pop(popped[0], "end", call_id, popped[1], reason="transferred", to=target)
            )
        return routed

    # ------------------------------------------------------------------ escalation
    # 12345 -> 110/119/120/122 (docs/escalation.md). The effects and the AMI actions are in
    # cti/escalation.py; what Asterisk does with them was measured on the testbed.

    def _escalation_command(
        self, seat: str, cmd: Escalate | Leave, now: float, out: list[Effect]
    ) -> Escalate | Leave | CommandError:
        """`escalate` / `leave`: the command itself when done (effects in `out`), or why not."""
        state = self.dispatcher.seats.get(seat)
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
        out.append(self._escalation_event("left", esc, now))
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
        target = self.plan.emergency_target(cmd.target)
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
        held = self._held.get(call_id) if call_id is not None else None
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
                endpoint = emergency_dial(self.plan, target)
            except DialplanError as exc:
                return _refuse(cmd, "rejected", str(exc))
            esc.leg_ids = leg_ids(call_id, now)
            esc.endpoint = endpoint
            # an Originate starts a new Linkedid: tell the tracker the leg is this call's
            self.tracker.expect_channels(held.node, call_id, esc.leg_ids)
            active = self.tracker.call(held.node, call_id)
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
        self.tracker.note_transfer(
            held.node,
            call_id,
            type_="escalation_blind" if mode is EscalationMode.BLIND else "escalation_threeway",
            by=seat,
            to=target.number,
            at=now,
        )
        self.counts[f"escalated_{mode}"] += 1
        self._log.info(
            "call_escalated", linkedid=call_id, seat=seat, target=target.number, mode=str(mode)
        )
        event = self._escalation_event("escalated", esc, now, target_name=target.name)
        out.append(event)
        # a transfer from 110 going back to 110 (or on to 119/120/122): 110 hears of it
        self._report(self.transfers.call_escalated(call_id, target.number, str(mode), now), out)
        if target.notify_url is not None:
            # the receiving side gets the call and the ticket (工单推送 in the other direction)
            draft = self._drafts.get(call_id)
            transfer = self.transfers.transfer_of(call_id)
            payload = {
                **event.payload,
                "event_id": f"escalation:{held.node}:{call_id}:{target.number}:{mode}",
                "ticket": self._numbers.get(call_id),
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
        popped = self._popped.pop(esc.call_id, None)
        if popped is not None:
            out.append(
                self._pop(popped[0], "end", esc.call_id, popped[1], reason=reason, to=esc.number)
            )
        self._route(self.dispatcher.on_seat_released(esc.call_id, now), out)

    def _escalation_event(self, kind: str, esc: Escalation, at: float, **extra: Any) -> Publish:
        """`cti/calls/events`: the call's data for the receiving side and supervisors."""
        draft = self._drafts.get(esc.call_id)
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

    def _escalation_event_in(
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
                    out.append(self._escalation_event("joined", esc, ev.time))
            elif isinstance(ev, Hangup):
                self._escalation_hangup(esc, ev, out)
            elif (
                ev.response != "Success"
                and esc.leg_ids
                and not esc.leg_up
                and (ev.uniqueid in esc.leg_ids or ev.channel == esc.endpoint)
            ):
                self._leg_failed(esc, ev.time, out, reason=f"originate failed ({ev.reason})")

    def _escalation_hangup(self, esc: Escalation, ev: Hangup, out: list[Effect]) -> None:
        if esc.mode is not EscalationMode.THREEWAY:
            return
        held = self._held.get(esc.call_id)
        if not esc.released and ev.chan.channel == esc.seat_channel:
            # the agent hung up its phone: the same as `leave`
            self._release(esc, ev.time, out, reason="left")
            out.append(self._escalation_event("left", esc, ev.time))
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
        self.counts["escalation_failed"] += 1
        self._log.warning(
            "escalation_failed", linkedid=esc.call_id, target=esc.number, reason=reason
        )
        out.append(self._escalation_event("failed", esc, at, reason=reason))

    def _escalation_back_in_hold(self, call_id: str, at: float, out: list[Effect]) -> bool:
        """A blind escalation's caller back in cti-hold: the service did not answer
        (cti-escalate). 12345 keeps the caller: queued again, in the 110 class."""
        esc = self._escalations.get(call_id)
        if esc is None or esc.mode is not EscalationMode.BLIND:
            return False
        self._leg_failed(esc, at, out, reason="not answered")
        active = self.tracker.call(esc.node, call_id)
        self._route(
            self.dispatcher.on_call_waiting(
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

    # ------------------------------------------------------------------ time

    def _tick(self, now: float, out: list[Effect]) -> None:
        self._route(self.dispatcher.tick(now), out)
        if self._nodes and now >= self._lease_due:
            self._lease_due = now + self._lease_every_s
            out.extend(RenewLease(node=n, until=now + self._lease_s) for n in sorted(self._nodes))

    # ------------------------------------------------------------------ dispatcher commands

    def _route(self, commands: list[rc.Command], out: list[Effect]) -> None:
        for c in commands:
            if isinstance(c, rc.ConnectCall):
                self._connect(c, out)
            elif isinstance(c, rc.CancelRing):
                self._cancel_ring(c, out)
            elif isinstance(c, rc.PublishSeatState):
                st = c.state
                payload = _seat_payload(c)
                out.append(Publish(topic=f"seats/{st.seat_id}/state", payload=payload, retain=True))
                out.append(
                    StoreSeatState(
                        seat_id=st.seat_id,
                        status=str(st.status),
                        reason=_str(
                            st.pending.reason
                            if c.cause == "pending_not_ready" and st.pending is not None
                            else st.reason
                        ),
                        previous=c.previous,
                        cause=c.cause,
                        call_id=st.call_id,
                        at=st.since,
                    )
                )
            elif isinstance(c, rc.PublishQueueSnapshot):
                out.append(
                    Publish(
                        topic="queue/snapshot",
                        retain=True,
                        payload={"schema_version": SCHEMA_VERSION, **_snapshot_payload(c.snapshot)},
                    )
                )
            elif isinstance(c, rc.CallAnswered):
                self._log.info(
                    "call_connected",
                    linkedid=c.call_id,
                    seat=c.seat_id,
                    line=c.line,
                    waited_s=round(c.waited_s, 3),
                    step=c.step,
                )
            elif isinstance(c, rc.RecordAbandonment):
                a = c.outcome
                self._log.info(
                    "call_abandoned",
                    linkedid=a.call_id,
                    line=a.line,
                    waited_s=round(a.waited_s, 3),
                    position=a.position,
                    during_offer=a.during_offer,
                )
            elif isinstance(c, rc.TransferOut):
                # the dialplan already dials sub-centre lines itself (cti-inbound); a held
                # call on such a line came back from an unanswered sub-centre: it stays here
                self.counts["transfer_out_ignored"] += 1
            # StartTimer: the driver asks next_deadline(); CommandRejected: replied above

    def _connect(self, c: rc.ConnectCall, out: list[Effect]) -> None:
        virtual = self._virtual.get(c.call_id)
        if virtual is not None:
            self._connect_virtual(c, virtual, out)
            return
        held = self._held.get(c.call_id)
        if held is None:
            self.counts["connect_unknown_call"] += 1
            self._log.error("connect_unknown_call", linkedid=c.call_id, seat=c.seat_id)
            return
        self._log.info(
            "call_offered", linkedid=c.call_id, seat=c.seat_id, step=c.step, attempt=c.attempt
        )
        out.append(
            RedirectToSeat(
                node=held.node,
                channel=held.channel,
                call_id=c.call_id,
                seat_id=c.seat_id,
                endpoint=c.endpoint,
                ring_timeout_s=c.ring_timeout_s,
            )
        )
        self._offered(c, out)

    def _offered(self, c: rc.ConnectCall, out: list[Effect], **extra: Any) -> None:
        """The seat's screen: the offer pop, with where the call stood while it waited."""
        self._popped[c.call_id] = (c.seat_id, c.attempt)
        if c.queue_positions:
            self._queue_marks[c.call_id] = [m.to_json() for m in c.queue_positions]
        out.append(self._pop(c.seat_id, "offer", c.call_id, c.attempt, step=c.step, **extra))

    def _cancel_ring(self, c: rc.CancelRing, out: list[Effect]) -> None:
        if c.call_id in self._virtual:
            # the seat did not answer the callback in time: that attempt is no longer this
            # call's (the waiting call is back in the line for the next seat)
            for cb_id in [k for k, v in self._virtual_cb.items() if v == c.call_id]:
                del self._virtual_cb[cb_id]
        popped = self._popped.pop(c.call_id, None)
        if popped is not None:
            out.append(self._pop(popped[0], "end", c.call_id, popped[1], reason=c.reason))
        held = self._held.get(c.call_id)
        if held is None:
            return
        if held.in_hold:
            return  # the dialplan already brought the caller back
        held.expected_returns += 1
        out.append(
            ReturnToHold(node=held.node, channel=held.channel, call_id=c.call_id, reason=c.reason)
        )

    def _pop(self, seat: str, kind: str, call_id: str, attempt: int, **extra: Any) -> Pop:
        draft = self._drafts.get(call_id)
        call: dict[str, Any] = {"call_id": call_id}
        if draft is not None:
            call.update(
                node=draft.node,
                caller=draft.caller,
                caller_name=draft.caller_name,
                line=draft.line,
                line_name=draft.line_name,
                department=draft.department,
                skill=draft.skill,
                origin=draft.origin,
                arrived_at=draft.created_at,
            )
        call["queue_positions"] = self._queue_marks.get(call_id, [])
        transfer = self.transfers.transfer_of(call_id)
        if transfer is not None:
            call["dispatch110"] = transfer.pop_json()
        call.update(extra)
        return Pop(seat=seat, kind=kind, call_id=call_id, attempt=attempt, call=call)

    # ------------------------------------------------------------------ questions
    # What the daemon (HTTP, metrics, the IVR) asks. Answers are snapshots (frozen, or
    # copies): nothing returned here lets a caller change the core behind `handle`.

    def seat_states(self) -> list[SeatState]:
        """Every seat's state, by seat id."""
        return sorted(self.dispatcher.seats.states(), key=lambda st: st.seat_id)

    def seat_state(self, seat: str) -> SeatState | None:
        return self.dispatcher.seats.get(seat)

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
        return self._drafts.get(call_id)

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


def call_event(kind: str, call_id: str, *, event: str | None = None, **body: Any) -> Publish:
    """A `cti/calls/events` message; `event_id` is `<call id>:<event or kind>`, the same on
    a re-delivery (docs/mqtt.md)."""
    return Publish(
        topic="calls/events",
        payload={
            "schema_version": SCHEMA_VERSION,
            "event_id": f"{call_id}:{event or kind}",
            "type": kind,
            "call_id": call_id,
            **body,
        },
    )


MAIN_LINE: Final = "12345"


def _note_call_id(note: CallNotification) -> str:
    return note.summary.call_id if isinstance(note, CallEnded) else note.call_id


def _from_110(t: Transfer110 | None) -> dict[str, Any]:
    """What a ticket takes from 110's push: the summary as content, the address, and
    110's incident number."""
    if t is None:
        return {}
    head = f"【110转办 {t.category}】" if t.category else "【110转办】"
    return {"content": head + t.summary, "address": t.address, "external_ref": t.transfer_id}


def ticket_origin(line: Line | None, number: str) -> Origin:
    """The ticket's `origin` of a call to *number* (its plan line, if any)."""
    return _origin(line, number)


def _origin(line: Line | None, number: str) -> Origin:
    """How the call reached 12345 (a ticket field): the 110 line, the main number, a
    ministry special number (123xx), or an old department number folded in."""
    if line is not None and line.dispatch110:
        return "dispatch110"
    if line is None or number == MAIN_LINE:
        return "direct"
    if len(number) == 5 and number.startswith("123"):
        return "special_number"
    return "department_line"


def _refuse(cmd: Escalate | Leave, code: RefusalCode, message: str) -> CommandError:
    return CommandError(code=code, message=message, request_id=cmd.request_id)


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _seat_payload(c: rc.PublishSeatState) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        **c.state.to_json(),
        "previous": c.previous,
        "cause": c.cause,
    }


def _snapshot_payload(s: rc.QueueSnapshot) -> dict[str, Any]:
    return {
        "at": s.at,
        "waiting": s.waiting,
        "offered": s.offered,
        "by_class": s.by_class,
        "by_skill": s.by_skill,
        "longest_wait_s": s.longest_wait_s,
        "ready_seats": s.ready_seats,
        "staffed_seats": s.staffed_seats,
        "aht_s": s.aht_s,
        "ewt_new_call_s": s.ewt_new_call_s,
    }
