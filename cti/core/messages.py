"""What goes into the core and what comes out of it: frozen dataclasses, nothing else.

Inputs are AMI and connection events (:mod:`cti.events`) plus the ones below (time passing,
agent commands, 110 pushes, tickets created, IVR outcomes); effects are what the adapters
carry out (AMI actions, MQTT publishes, database writes, webhooks). The adapters know these
types and nothing else of the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cti.calls.ids import CallRef
from cti.calls.model import CallSummary
from cti.core.supervision_types import (
    AuditEntry,
    StartSpy,
    StopSpy,
    StoreAudit,
    Supervisor,
    SupervisorAction,
    SupervisorRequested,
    SwitchSpy,
)
from cti.dialplan.contract import ADOPTION_VARIABLES
from cti.dispatch110 import Feedback110, Transfer110
from cti.events import AmiEvent, ConnectionEvent
from cti.kpis.facts import QueueEntry
from cti.numberplan import NumberPlan
from cti.seats.commands import CommandError, SeatCommand
from cti.seats.model import Pending
from cti.workorders.model import OutboxOp, TicketDraft

__all__ = [
    "AddEmergencyLeg",
    "AdoptedChannelRead",
    "AmiEffect",
    "AuditEntry",
    "CallbackDone",
    "CallbackKeepPlace",
    "CallbackReply",
    "CallbackRequested",
    "CoreInput",
    "Effect",
    "EscalateBlind",
    "EscalationEffect",
    "HangupLeg",
    "MarkTaken",
    "MessageLeft",
    "NotifyEscalation",
    "OriginateCallback",
    "PlanReloaded",
    "Pop",
    "Publish",
    "ReadAdoptedChannel",
    "RedirectToSeat",
    "RejectCall",
    "RenewLease",
    "Reply110",
    "Report110",
    "ReturnToHold",
    "SeatCommandReceived",
    "SeatMark",
    "StartSpy",
    "StateRestored",
    "StopSpy",
    "StoreAudit",
    "StoreCall",
    "StoreSeatState",
    "StoreTicketOp",
    "Supervisor",
    "SupervisorAction",
    "SupervisorRequested",
    "SwitchSpy",
    "TakenCall",
    "Tick",
    "TicketNumberKnown",
    "Transfer110NotStored",
    "Transfer110Pushed",
]

_ORIGINATE_MARGIN_S: Final = 5.0


# ------------------------------------------------------------------------ inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Time passes: fire the dispatcher's timers, renew the lease."""

    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatCommandReceived:
    """An agent command (parsed, or the reason it could not be) for `seat`."""

    seat: str
    command: SeatCommand | CommandError
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer110Pushed:
    """The 110 system pushed a transfer (validated at the edge); `request_id` is echoed in
    the reply."""

    transfer: Transfer110
    at: float
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackRequested:
    """Call back the citizen of a missed call (`callback_id`, "<node>:<linkedid>") from
    `seat`, whose phone rings first; `node` is where to place the call."""

    callback_id: str
    node: str
    seat: str
    number: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackKeepPlace:
    """A waiting caller asked to be called back, keeping its place (the IVR's offer): the
    call stays in the line without a channel; a seat that picks it calls the citizen."""

    call_id: str  # the waiting call's linkedid
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageLeft:
    """A waiting caller left a message instead (overload voicemail): it goes on the call's
    ticket as its recording when the call ends."""

    call_id: str
    recording: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketNumberKnown:
    """The work-order backend created a ticket: `call_id` in the outbox's form
    (``<node>:<linkedid>``, or ``110:<transfer id>`` for a 110 data transfer)."""

    call_id: str
    number: str
    at: float


# ------------------------------------------------------------------------ effects


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkTaken:
    """Setvar ``CTI_TAKEN=1`` on the held channel: the daemon has this call."""

    node: str
    channel: str
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RedirectToSeat:
    """Setvar ``CTI_RING_TIMEOUT`` (and the endpoint), then Redirect the held channel to
    ``cti-connect,<seat>,1``."""

    node: str
    channel: str
    call_id: str
    seat_id: str
    endpoint: str
    ring_timeout_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnToHold:
    """Redirect the caller's channel back to ``cti-hold,s,1`` (ends a ringing Dial)."""

    node: str
    channel: str
    call_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewLease:
    """Set the global ``CTI_LEASE_UNTIL`` (epoch s) on `node`."""

    node: str
    until: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """An MQTT message; `topic` is relative to the configured prefix."""

    topic: str
    payload: dict[str, Any]
    retain: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCall:
    """A finished call's record, its ticket update and its queue-entry facts (KPIs,
    docs/kpis.md), in one transaction."""

    summary: CallSummary
    ticket_ops: tuple[OutboxOp, ...] = ()
    missed: bool = False  # abandoned in the queue: onto the callback list (漏接电话回拨)
    entries: tuple[QueueEntry, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectCall:
    """A blacklisted caller (treatment reject): Redirect to ``cti-blocked,s,1``, which
    plays dialplan.blocked_prompt and clears the line."""

    node: str
    channel: str
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyEscalation:
    """POST an escalation's call and ticket data to the receiving side's `url` (durable,
    retried, in order; `event_id` is the idempotency key)."""

    url: str
    event_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateCallback:
    """Ring the seat's `endpoint`; once it answers, `cti-callback,<number>,1` dials the
    citizen. `channel_id` becomes the callback call's linkedid."""

    node: str
    seat_id: str
    endpoint: str
    number: str
    callback_id: str
    channel_id: str
    other_channel_id: str
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackDone:
    """A callback call ended: close the list entry (answered) or reopen it."""

    callback_id: str
    seat_id: str
    call_id: str
    outcome: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackReply:
    """The answer to a `CallbackRequested` (kept by the HTTP API)."""

    callback_id: str
    ok: bool
    code: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreTicketOp:
    """A ticket operation for the durable outbox (the draft when a call is taken)."""

    op: OutboxOp


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply110:
    """The answer to a 110 push: `result` new | duplicate | conflict, and the transfer's
    status. The HTTP API returns it; on MQTT it goes to ``110/transfers/reply``."""

    transfer_id: str
    request_id: str | None
    result: str
    status: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Report110:
    """A feedback event for 110 (``110/feedback/{transfer_id}``, and the webhook) with the
    transfer's status after it — store both before telling anyone."""

    feedback: Feedback110
    status: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pop:
    """A screen-pop (弹屏) for `seat` about `call_id`: `kind` is offer (ringing), answer
    (connected), update (new facts: the ticket number, 110's data), end (hung up, or the
    offer withdrawn). `call` is what the core knows; the adapter adds the caller's
    history."""

    seat: str
    kind: str
    call_id: str
    attempt: int
    call: dict[str, Any]
    ticket: str | None = None  # the ticket number, once the backend has answered


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSeatState:
    """A seat state change (the raw material of seat KPIs)."""

    seat_id: str
    status: str
    reason: str | None
    previous: str
    cause: str
    call_id: str | None
    at: float


# ---- escalation to 110/119/120/122 (docs/escalation.md; decided in cti.core.escalation)


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalateBlind:
    """Redirect the caller's channel to ``cti-escalate,<number>,1``: out of the seat's
    ``Dial`` (the seat's leg ends) and on to the emergency service."""

    node: str
    channel: str
    call_id: str
    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddEmergencyLeg:
    """Originate the operator's leg (`endpoint`) into the bridge of `caller_channel`
    (``Application=BridgeAdd``). `channel_id`/`other_channel_id` are the new channels'
    Uniqueids (the second is the ``;2`` half of a Local channel), chosen by the core so
    the call tracker counts the leg as part of the call."""

    node: str
    call_id: str
    number: str
    endpoint: str
    caller_channel: str
    caller_id: str
    channel_id: str
    other_channel_id: str
    timeout_s: float

    @property
    def action_timeout_s(self) -> float:
        """An async Originate is answered when the leg answers or fails: ring time + margin."""
        return self.timeout_s + _ORIGINATE_MARGIN_S


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupLeg:
    """Hang up one channel of a call (the agent leaving a three-way call)."""

    node: str
    call_id: str
    channel: str
    reason: str


EscalationEffect = EscalateBlind | AddEmergencyLeg | HangupLeg


# ---- adopting a waiting call the daemon did not see arrive (cti.core.adoption)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadAdoptedChannel:
    """Read `names` from the held channel (AMI ``Status`` with ``Variables``), then hand
    the answer back as :class:`AdoptedChannelRead`."""

    node: str
    channel: str
    call_id: str
    names: tuple[str, ...] = ADOPTION_VARIABLES


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptedChannelRead:
    """The answer to :class:`ReadAdoptedChannel`: the variables that are set; `ok` False
    when the action failed (`connected`: whether the node was still up)."""

    node: str
    call_id: str
    channel: str
    variables: Mapping[str, str] = field(default_factory=dict)
    ok: bool = True
    connected: bool = True
    at: float


# ---- after a restart: what the database remembers (cti.core.recovery)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatMark:
    """One stored state change of a seat for a call (``seat_events``: ringing, talking...)."""

    seat_id: str
    status: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TakenCall:
    """A call the daemon had taken (its draft written) whose end was never written."""

    draft: TicketDraft
    marks: tuple[SeatMark, ...] = ()  # oldest first

    @property
    def node(self) -> str:
        return self.draft.node

    @property
    def linkedid(self) -> str:
        return CallRef.parse(self.draft.call_id).linkedid


# ---- start-up and the daemon's own bookkeeping


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRestored:
    """What the database remembers at start-up, handed in once before any AMI event:
    the seats' last states (seat -> (status, reason, since)); the seats that were on a call
    at the stop; the calls taken whose end was never written and when the daemon was last
    alive per node (cti.core.recovery); the 110 transfers of the last 30 days."""

    seats: Mapping[str, tuple[str, str | None, float]]
    busy: Mapping[str, tuple[str, str | None, float, str, Pending | None]] = field(
        default_factory=dict
    )
    taken: tuple[TakenCall, ...] = ()
    last_alive: Mapping[str, float] = field(default_factory=dict)
    transfers110: tuple[Mapping[str, Any], ...] = ()
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer110NotStored:
    """A 110 push the core accepted could not be stored: it is forgotten (not accepted),
    so 110's repeat of it is new."""

    transfer_id: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanReloaded:
    """The configuration was reloaded (SIGHUP, ``cti reload``): this number plan holds
    from now on (``Core._replanned``). Calls in progress keep what they had: a waiting call
    its place, a talking seat its call; a seat gone from the plan leaves when its call
    ends."""

    plan: NumberPlan
    at: float


CoreInput = (
    AmiEvent
    | ConnectionEvent
    | Tick
    | SeatCommandReceived
    | Transfer110Pushed
    | TicketNumberKnown
    | CallbackRequested
    | CallbackKeepPlace
    | MessageLeft
    | AdoptedChannelRead
    | StateRestored
    | Transfer110NotStored
    | PlanReloaded
    | SupervisorRequested
)

Effect = (
    MarkTaken
    | RedirectToSeat
    | ReturnToHold
    | RenewLease
    | Publish
    | StoreCall
    | StoreSeatState
    | StoreTicketOp
    | Pop
    | Reply110
    | Report110
    | OriginateCallback
    | NotifyEscalation
    | RejectCall
    | CallbackDone
    | CallbackReply
    | EscalateBlind
    | AddEmergencyLeg
    | HangupLeg
    | ReadAdoptedChannel
    | StartSpy
    | SwitchSpy
    | StopSpy
    | StoreAudit
)

AmiEffect = (
    MarkTaken
    | RedirectToSeat
    | ReturnToHold
    | RenewLease
    | OriginateCallback
    | RejectCall
    | EscalationEffect
    | StartSpy
    | SwitchSpy
    | StopSpy
)
"""The effects carried out as AMI actions (cti.adapters.ami_actions builds them)."""
