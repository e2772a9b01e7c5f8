"""CallTracker: AMI events in, call notifications out. Sans-IO, synchronous, never raises.

Vocabulary (Asterisk's own words where it has them):

* channel: one Asterisk channel, keyed by (node, Uniqueid).
* call: everything sharing one Linkedid on one node, plus consultation legs merged in by
  an attended transfer. The call id is that Linkedid.
* party: one participant of a call. The two halves of a Local channel (`...;1`/`...;2`)
  are one party (they are one pipe through the dialplan, see `_party_key`), and a callee
  that dials onwards (a transfer context that rings the seat) stays one party with the
  leg it dials. The *caller party* holds the channel whose Uniqueid is the Linkedid.

Time only comes from events (`AmiEvent.time`: Asterisk's Timestamp, or receive time).
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

import structlog

from cti.calls.model import (
    ActiveCall,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallNotification,
    CallState,
    CallSummary,
    HangupBy,
    Outcome,
    Transfer,
    TransferType,
    Trigger,
    Via,
    next_state,
)
from cti.dialplan.contract import (
    AFTER_HOURS_VARIABLE,
    LINE_VARIABLE,
    TRANSFER_ID_VARIABLE,
    VIA_CALL_ID_VARIABLE,
    VIA_DIALED_VARIABLE,
    VIA_NODE_VARIABLE,
)
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    AmiEventsLost,
    AttendedTransfer,
    BlindTransfer,
    BridgeEnter,
    BridgeLeave,
    ChannelEvent,
    ChannelSnapshot,
    CoreShowChannel,
    CoreShowChannelsComplete,
    DialBegin,
    DialEnd,
    Hangup,
    HangupRequest,
    LocalBridge,
    LocalOptimizationBegin,
    NewCallerid,
    Newchannel,
    Newexten,
    Newstate,
    Rename,
    SoftHangupRequest,
    VarSet,
)

__all__ = ["DEFAULT_MAX_CHANNELS", "CallTracker", "party_name"]

Event = Any  # an AmiEvent or a ConnectionEvent; anything else is ignored
_Key = tuple[str, str]  # (node, uniqueid) / (node, linkedid)

_NO_CALLER_ID: Final = frozenset({"", "<unknown>", "unknown", "anonymous"})
# Hangups we remember so a CoreShowChannels item that arrives after the channel's own
# Hangup (the list and the event stream race) does not resurrect it as a ghost.
_RECENTLY_GONE_MAX: Final = 50_000
_LINE_VARIABLE: Final = LINE_VARIABLE
# the 110 transfer id the 110 trunk carried (X-Transfer-Id), set on 110 lines (the generated
# dialplan, cti/dialplan/generate.py)
_TRANSFER_VARIABLE: Final = TRANSFER_ID_VARIABLE
# set by the after-hours flow (cti/ivr/flows.py) once the daemon found the line closed: an
# unanswered call is then a message taken (voicemail), not an abandoned call
_AFTER_HOURS_VARIABLE: Final = AFTER_HOURS_VARIABLE
# a county node's call (docs/county-nodes.md): set by cti-from-trunk from the trunk's
# X-CTI-* headers, already filtered there; checked again here like any outside input
# (a dialplan edited by hand, a variable set by something else), each value on its own
_VIA_CHECKS: Final = {
    VIA_NODE_VARIABLE: re.compile(r"[a-z0-9][a-z0-9_-]{0,39}"),  # a Slug, as the config's
    VIA_DIALED_VARIABLE: re.compile(r"\+?[0-9*#]{1,32}"),
    VIA_CALL_ID_VARIABLE: re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}"),
}
# The only variables the tracker reads from a VarSet (_on_var_set; the county's
# via ones too) (leading underscores stripped): the AMI
# adapter drops every other VarSet unparsed (ami.drop_unread_events; a call through the
# holding loop and a Local seat brings ~30 of them, DIALSTATUS, BRIDGEPEER, RINGTIME...).
VARIABLES_READ: Final = frozenset(
    {_LINE_VARIABLE, _TRANSFER_VARIABLE, _AFTER_HOURS_VARIABLE, *_VIA_CHECKS}
)
_SOFTHANGUP_SHUTDOWN: Final = 4
# The table is bounded (issue 16): 120,000 Newchannel events without a Hangup (a broken
# or hostile AMI peer) grew the daemon by 200 MB and made a reconnect write 120,000 bogus
# call records. Past `max_channels` a node's new calls are refused; legs of calls already
# tracked get this much more room, so a call being tracked is not cut in half at the brim.
_LEG_HEADROOM: Final = 0.25
DEFAULT_MAX_CHANNELS: Final = 20_000
# calls announced by expect_originated and not seen yet (an Originate that failed before it
# made a channel is never seen): the oldest are forgotten past this many
_ORIGINATED_MAX: Final = 10_000
# the refusals are logged at error, but at most once per this many seconds per node (a
# flood must not become a log flood); the count in between goes in the next line
_FULL_LOG_EVERY_S: Final = 10.0


def _party_key(ch: ChannelSnapshot) -> str:
    # `Local/1001@seats-00000001;1` and `;2` are the two ends of one pipe: one party.
    name = ch.channel
    if name.startswith("Local/") and name[-2:] in {";1", ";2"}:
        return name[:-2]
    return ch.uniqueid


def party_name(channel: str) -> str:
    """The human name of a party from its channel name.

    `Local/1001@seats-00000001;1` -> `1001`; `PJSIP/1001-0000002a` -> `1001`;
    `SIP/trunk-00000001` -> `trunk`; anything else -> the channel name.
    """
    tech, sep, rest = channel.partition("/")
    if not sep:
        return channel
    if tech == "Local":
        return rest.split("@", 1)[0]
    base, dash, _seq = rest.rpartition("-")
    return base if dash else rest


def _duration_s(text: str) -> float:
    # CoreShowChannel Duration is "HH:MM:SS"
    parts = text.split(":")
    try:
        total = 0.0
        for p in parts:
            total = total * 60 + int(p)
    except ValueError:
        return 0.0
    return total


@dataclass(slots=True)
class _Party:
    key: str
    name: str
    is_caller: bool
    first_end: int | None = None  # event sequence number of its first hangup (request)
    first_end_requested: bool = False
    # when its last channel hung up: the end of its leg (a Local pair optimised away, whose
    # halves hang up while the phone behind it talks on, is not its end)
    gone_at: float | None = None


@dataclass(slots=True)
class _Channel:
    uniqueid: str
    name: str
    call: _Call
    party: str
    born: int
    bridge: str = ""


@dataclass(slots=True)
class _Call:
    node: str
    call_id: str
    started_at: float
    history_complete: bool
    state: CallState = CallState.WAITING
    channels: dict[str, _Channel] = field(default_factory=dict)
    parties: dict[str, _Party] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # merged party key -> party key
    caller_party: str = ""
    caller: str = ""
    caller_from_origin: bool = False
    caller_name: str = ""
    dialed: str = ""
    line: str = ""
    transfer_id: str = ""
    # CTI_VIA_* (a county node's call): variable name -> checked value
    via: dict[str, str] = field(default_factory=dict)
    after_hours: bool = False
    answered_at: float | None = None
    answered_by: str | None = None
    connected: str | None = None  # the callee party the caller talks to (or last did)
    rang: list[str] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    last_dial_status: str = ""
    cause: int | None = None
    cause_from_caller: bool = False
    system_end: bool = False  # Asterisk itself hung the call up (shutdown)
    # the daemon Originated it seat first (a callback, see `expect_originated`): the caller
    # party is the first leg, and only what its origin channel dials can answer the call
    originated: bool = False
    stale: bool = False
    last_time: float = 0.0

    def party(self, key: str) -> _Party | None:
        seen = 0
        while key in self.alias and seen < 32:
            key = self.alias[key]
            seen += 1
        return self.parties.get(key)


def _snapshot(c: _Call) -> ActiveCall:
    return ActiveCall(
        call_id=c.call_id,
        node=c.node,
        state=c.state,
        caller=c.caller,
        dialed=c.dialed,
        line=c.line or c.dialed,
        answered_by=c.answered_by,
        channels=tuple(sorted(ch.name for ch in c.channels.values())),
        stale=c.stale,
        history_complete=c.history_complete,
        transfer_id=c.transfer_id,
        started_at=c.started_at,
        via=_via(c),
    )


def _via(c: _Call) -> Via | None:
    node = c.via.get(VIA_NODE_VARIABLE)
    if node is None:
        return None
    return Via(
        node=node,
        dialed=c.via.get(VIA_DIALED_VARIABLE, ""),
        call_id=c.via.get(VIA_CALL_ID_VARIABLE, ""),
    )


def _note_via(call: _Call, name: str, value: str) -> bool:
    """A CTI_VIA_* value of the call's caller channel, kept if it passes its check; the
    citizen's number dialled at the county is the call's dialled number (the trunk's
    Request-URI is the county line's plan number, which is the call's line)."""
    check = _VIA_CHECKS.get(name)
    if check is None or not check.fullmatch(value):
        return False
    call.via[name] = value
    if name == VIA_DIALED_VARIABLE:
        call.dialed = value
    return True


class CallTracker:
    """Tracks channels, bridges and calls of one or more Asterisk nodes.

    Feed it every event in order with :meth:`handle`; it returns the notifications the
    event caused (:class:`CallAnswered`, :class:`CallEnded` with the call's summary).

    Resync protocol (the app's side): after each `AmiConnected(node)` event, send
    `CoreShowChannels` to that node and feed the resulting `CoreShowChannel` items and the
    closing `CoreShowChannelsComplete` through :meth:`handle` like any other event.
    Unknown listed channels are adopted (their calls get ``history_complete=False``);
    channels of that node not listed (and born before the resync started) are gone, and
    calls left without channels end with ``hangup_by="system"``.

    The table is bounded: at most `max_channels` channels per node start new calls; a
    call already tracked may add legs up to 25 % beyond. A refused channel is counted
    (``anomalies["channel_refused_table_full"]``), logged as ``call_tracker_full`` (error,
    at most once per 10 s per node) and otherwise ignored: its later events are unknown
    channels, its call is not taken (the dialplan's fallback answers it).
    """

    def __init__(
        self,
        *,
        logger: Any = None,
        name_of: Callable[[str], str] = party_name,
        max_channels: int = DEFAULT_MAX_CHANNELS,
    ) -> None:
        self._log = logger if logger is not None else structlog.get_logger("cti.calls")
        # channel name -> party name; the core gives the plan's seat lookup
        # (cti/calls/seatnames.py), so a seat's SIP phone is recorded as the seat
        self._name_of = name_of
        self.max_channels = max_channels
        self._max_legs = max_channels + int(max_channels * _LEG_HEADROOM)
        self._per_node: Counter[str] = Counter()  # live channels per node
        self._full_logged: dict[str, float] = {}  # node -> when call_tracker_full was logged
        self._refused_unlogged: Counter[str] = Counter()
        self._now = 0.0  # the time of the event being handled
        self._channels: dict[_Key, _Channel] = {}
        self._calls: dict[_Key, _Call] = {}
        self._call_alias: dict[_Key, _Key] = {}  # merged consultation linkedid -> call key
        # calls the daemon is about to Originate first leg first (bounded: an Originate
        # that never makes a channel leaves its key behind)
        self._originated: OrderedDict[_Key, None] = OrderedDict()
        self._bridges: dict[_Key, set[str]] = {}
        self._seq = 0
        self._recently_gone: OrderedDict[_Key, None] = OrderedDict()
        # Local halves being optimised away: (node, uniqueid) -> (the Source channel's
        # uniqueid, the bridge of the `;1` half). See _on_local_optimization_begin.
        self._optimizing: dict[_Key, tuple[str, str]] = {}
        self._resync_start: dict[str, int] = {}
        self._resync_seen: dict[str, set[str]] = {}
        self._disconnected_at: dict[str, float] = {}
        self.anomalies: Counter[str] = Counter()
        """What the tracker had to tolerate: impossible transitions, unknown channels..."""
        self._handlers: dict[type, Callable[[Any], list[CallNotification]]] = {
            Newchannel: self._on_newchannel,
            Newstate: self._on_channel_event,
            NewCallerid: self._on_channel_event,
            Newexten: self._on_channel_event,
            Rename: self._on_rename,
            VarSet: self._on_var_set,
            LocalBridge: self._on_local_bridge,
            LocalOptimizationBegin: self._on_local_optimization_begin,
            DialBegin: self._on_dial_begin,
            DialEnd: self._on_dial_end,
            BridgeEnter: self._on_bridge_enter,
            BridgeLeave: self._on_bridge_leave,
            BlindTransfer: self._on_blind_transfer,
            AttendedTransfer: self._on_attended_transfer,
            HangupRequest: self._on_hangup_request,
            SoftHangupRequest: self._on_hangup_request,
            Hangup: self._on_hangup,
            CoreShowChannel: self._on_core_show_channel,
            CoreShowChannelsComplete: self._on_core_show_channels_complete,
            AmiConnected: self._on_connected,
            AmiDisconnected: self._on_disconnected,
            AmiEventsLost: self._on_events_lost,
        }

    # ------------------------------------------------------------------ public API

    def rename_parties(self, name_of: Callable[[str], str]) -> None:
        """Name channels with *name_of* from now on (a reloaded plan's seats); parties
        already in a call keep the name they were given."""
        self._name_of = name_of

    def handle(self, ev: Event) -> list[CallNotification]:
        """Apply one event; return the notifications it caused. Never raises."""
        handler = self._handlers.get(type(ev))
        if handler is None:
            return []
        self._seq += 1
        self._now = float(getattr(ev, "time", self._now) or self._now)
        try:
            return handler(ev)
        except Exception as exc:  # noqa: BLE001 - a bug must not stop call tracking
            # The core must survive any input; the bug is counted and logged loudly.
            self.anomalies["handler_error"] += 1
            self._log.error("call_tracker_error", ami_event=type(ev).__name__, error=repr(exc))
            return []

    def active_calls(self, node: str | None = None) -> list[ActiveCall]:
        """Snapshots of the calls in progress (all nodes, or one)."""
        return [_snapshot(c) for c in self._calls.values() if node is None or c.node == node]

    def active_page(self, offset: int, limit: int) -> list[ActiveCall]:
        """Snapshots of at most `limit` calls in progress from position `offset`, oldest
        tracked first: a page costs its own size, not the table's (HTTP paging)."""
        calls: Iterator[_Call] = islice(self._calls.values(), max(0, offset), None)
        return [_snapshot(c) for c in islice(calls, max(0, limit))]

    def call_count(self) -> int:
        """Calls in progress, every node (O(1): /metrics asks on every scrape)."""
        return len(self._calls)

    def call(self, node: str, call_id: str) -> ActiveCall | None:
        """The snapshot of one call in progress, or None."""
        key = self._call_alias.get((node, call_id), (node, call_id))
        c = self._calls.get(key)
        return _snapshot(c) if c is not None else None

    def note_transfer(
        self, node: str, call_id: str, *, type_: TransferType, by: str, to: str, at: float
    ) -> bool:
        """Record a transfer the daemon itself made (an AMI Redirect): Asterisk reports
        no BlindTransfer for it. False when the call is unknown."""
        key = self._call_alias.get((node, call_id), (node, call_id))
        call = self._calls.get(key)
        if call is None:
            self._anomaly("transfer_unknown_call", linkedid=call_id, node=node)
            return False
        call.transfers.append(Transfer(type=type_, by=by, to=to, at=at))
        return True

    def note_adopted(
        self,
        node: str,
        call_id: str,
        *,
        line: str,
        dialed: str,
        transfer_id: str,
        via: Mapping[str, str] | None = None,
    ) -> bool:
        """What an adopted call's channel says it is (read back with AMI ``Status``, see
        :mod:`cti.core.adoption`): the line, the dialled number and the 110 transfer id it was
        not seen to get, and a county node's call's CTI_VIA_* (`via`, checked here, the
        citizen's dialled number at the county before `dialed`). Only fills what is unknown.
        False when the call is unknown."""
        key = self._call_alias.get((node, call_id), (node, call_id))
        call = self._calls.get(key)
        if call is None:
            return False
        call.line = call.line or line
        call.dialed = call.dialed or dialed
        call.transfer_id = call.transfer_id or transfer_id
        if not call.via:
            for name, value in (via or {}).items():
                _note_via(call, name, value)
        return True

    def expect_channels(self, node: str, call_id: str, uniqueids: tuple[str, ...]) -> None:
        """Channels the daemon is about to originate for a call (an emergency operator's
        leg, docs/escalation.md): an Originate starts a new Linkedid, so without this its
        channels would make a call of their own. Counted as parties of `call_id`."""
        key = self._call_alias.get((node, call_id), (node, call_id))
        for uid in uniqueids:
            self._call_alias[(node, uid)] = key

    def expect_originated(self, node: str, call_id: str) -> None:
        """A call the daemon is about to Originate whose first leg is not the called party
        (a callback rings the seat's phone first, then dials the citizen): its linkedid
        `call_id` is the Originate's ChannelId.

        Such a call is answered only when a leg its origin channel dials answers. What the
        first leg's other channels dial (a seat endpoint like ``Local/1001@phones`` that
        Dials the desk phone from its ``;2`` half) is part of the first leg: without this,
        the seat's phone answering made a callback the citizen never picked up "answered".
        """
        key = (node, call_id)
        if key in self._calls:
            self._calls[key].originated = True
            return
        self._originated[key] = None
        if len(self._originated) > _ORIGINATED_MAX:
            self._originated.popitem(last=False)

    def channel_count(self, node: str | None = None) -> int:
        """Live channels of a node, or of every node (compare with `core show channels`)."""
        return len(self._channels) if node is None else self._per_node[node]

    # ------------------------------------------------------------------ helpers

    def _anomaly(self, kind: str, **facts: Any) -> None:
        self.anomalies[kind] += 1
        self._log.debug(kind, **facts)

    def _move(self, call: _Call, trigger: Trigger) -> None:
        new = next_state(call.state, trigger)
        if new is None:
            self._anomaly(
                "impossible_transition",
                linkedid=call.call_id,
                state=call.state.value,
                trigger=trigger.value,
            )
            return
        call.state = new

    def _call_for(self, node: str, linkedid: str, t: float, *, complete: bool) -> _Call:
        key = (node, linkedid)
        key = self._call_alias.get(key, key)
        call = self._calls.get(key)
        if call is None:
            call = _Call(node=node, call_id=key[1], started_at=t, history_complete=complete)
            if key in self._originated:
                del self._originated[key]
                call.originated = True
            self._calls[key] = call
        return call

    def _room_for(self, node: str, ch: ChannelSnapshot) -> bool:
        """Whether the table takes one more channel of `node` (see the class docstring)."""
        count = self._per_node[node]
        if count < self.max_channels:
            return True
        key = (node, ch.linkedid or ch.uniqueid)
        if count < self._max_legs and self._call_alias.get(key, key) in self._calls:
            return True  # a leg of a call already tracked
        self.anomalies["channel_refused_table_full"] += 1
        self._refused_unlogged[node] += 1
        now, last = self._now, self._full_logged.get(node)
        if last is None or now - last >= _FULL_LOG_EVERY_S or now < last:
            self._full_logged[node] = now
            self._log.error(
                "call_tracker_full",
                node=node,
                channels=count,
                max_channels=self.max_channels,
                refused=self._refused_unlogged.pop(node, 0),
                uniqueid=ch.uniqueid,
                hint="an AMI peer reporting channels it never hangs up, or ami.max_channels "
                "too low for this centre; refused calls fall back to the dialplan's Queue()",
            )
        return False

    def _add_channel(
        self, node: str, ch: ChannelSnapshot, t: float, *, complete: bool
    ) -> _Channel | None:
        if not self._room_for(node, ch):
            return None
        call = self._call_for(node, ch.linkedid or ch.uniqueid, t, complete=complete)
        pkey = _party_key(ch)
        party = call.party(pkey)
        origin = ch.uniqueid == call.call_id
        if party is None:
            party = _Party(key=pkey, name=self._name_of(ch.channel), is_caller=False)
            call.parties[pkey] = party
        if (origin or not call.caller_party) and not party.is_caller:
            # the origin channel may show up after another one (adoption order)
            old = call.parties.get(call.caller_party)
            if old is not None:
                old.is_caller = False
            party.is_caller = True
            call.caller_party = party.key
        chan = _Channel(
            uniqueid=ch.uniqueid, name=ch.channel, call=call, party=party.key, born=self._seq
        )
        call.channels[ch.uniqueid] = chan
        self._channels[(node, ch.uniqueid)] = chan
        self._per_node[node] += 1
        # an adopted channel's exten is where it is now, not what the caller dialled
        if complete and party.is_caller and not call.dialed and ch.exten not in {"", "s"}:
            call.dialed = ch.exten
        self._update_caller(call, chan, ch)
        return chan

    def _chan(self, node: str, ch: ChannelSnapshot | None, t: float) -> _Channel | None:
        """The known channel of a snapshot, adopting it (history incomplete) if unknown."""
        if ch is None or not ch.uniqueid:
            return None
        chan = self._channels.get((node, ch.uniqueid))
        if chan is not None:
            return chan
        if (node, ch.uniqueid) in self._recently_gone:
            return None
        self._anomaly(
            "unknown_channel_adopted", node=node, uniqueid=ch.uniqueid, channel=ch.channel
        )
        chan = self._add_channel(node, ch, t, complete=False)
        if chan is not None:
            chan.call.history_complete = False
        return chan

    def _update_caller(self, call: _Call, chan: _Channel, ch: ChannelSnapshot) -> None:
        party = call.party(chan.party)
        if party is None or not party.is_caller or ch.caller_num in _NO_CALLER_ID:
            return
        origin = ch.uniqueid == call.call_id
        if origin or not call.caller_from_origin:
            call.caller = ch.caller_num
            call.caller_from_origin = origin
            if ch.caller_name not in _NO_CALLER_ID:
                call.caller_name = ch.caller_name

    def _first_leg_dials(self, call: _Call, src: _Channel) -> bool:
        """`src` dials as the first leg of an originated call (not its origin channel)."""
        return (
            call.originated
            and src.call is call
            and src.uniqueid != call.call_id
            and self._is_caller(src)
        )

    def _is_caller(self, chan: _Channel) -> bool:
        party = chan.call.party(chan.party)
        return party is not None and party.is_caller

    def _end_call(self, call: _Call, t: float, *, system: bool = False) -> list[CallNotification]:
        self._move(call, Trigger.END)
        key = (call.node, call.call_id)
        self._calls.pop(key, None)
        for uid in list(call.channels):
            self._forget_channel(call.node, uid)
        summary = self._summary(call, t, system=system)
        # debug: the daemon logs the whole summary at info where it stores it
        self._log.debug(
            "call_ended",
            linkedid=call.call_id,
            node=call.node,
            outcome=summary.outcome,
            hangup_by=summary.hangup_by,
        )
        return [CallEnded(summary=summary)]

    def _forget_channel(self, node: str, uid: str) -> None:
        chan = self._channels.pop((node, uid), None)
        if chan is None:
            return
        self._per_node[node] -= 1
        chan.call.channels.pop(uid, None)
        if chan.bridge:
            members = self._bridges.get((node, chan.bridge))
            if members is not None:
                members.discard(uid)
                if not members:
                    del self._bridges[(node, chan.bridge)]
        gone = self._recently_gone
        gone[(node, uid)] = None
        if len(gone) > _RECENTLY_GONE_MAX:
            gone.popitem(last=False)

    def _hangup_by(self, call: _Call, *, system: bool) -> HangupBy:
        if system or call.system_end:
            return "system"
        caller = call.parties.get(call.caller_party)
        callee = call.party(call.connected) if call.connected else None
        c_seq = caller.first_end if caller is not None else None
        k_seq = callee.first_end if callee is not None else None
        if k_seq is not None and (c_seq is None or k_seq < c_seq):
            return "callee"
        if caller is not None and c_seq is not None and caller.first_end_requested:
            return "caller"
        return "system"

    def _summary(self, call: _Call, t: float, *, system: bool) -> CallSummary:
        hangup_by = self._hangup_by(call, system=system)
        answered = call.answered_by is not None
        outcome: Outcome
        if answered:
            outcome = "answered"
        elif call.after_hours:
            outcome = "voicemail"
        elif hangup_by == "caller":
            outcome = "abandoned"
        else:
            outcome = _unanswered_outcome(call.last_dial_status, call.cause)
        started = call.started_at
        # talk ends when the leg of the party the caller talked to (last) ends: a caller who
        # stays for the survey after the agent hung up is not talking to anyone
        talk_end = t
        callee = call.party(call.connected) if call.connected else None
        if callee is not None and callee.gone_at is not None:
            talk_end = min(t, callee.gone_at)
        wait_end = call.answered_at if call.answered_at is not None else t
        wait_s = round(max(0.0, wait_end - started), 6)
        if answered and call.answered_at is None:
            wait_s_or_none: float | None = None  # adopted while talking: unknown
        else:
            wait_s_or_none = wait_s
        return CallSummary(
            call_id=call.call_id,
            node=call.node,
            caller=call.caller,
            caller_name=call.caller_name,
            dialed=call.dialed,
            line=call.line or call.dialed,
            started_at=started,
            answered_at=call.answered_at,
            # never before the start: Asterisk stamps events per thread, so a hangup can
            # carry a time a fraction of a millisecond before an event seen earlier
            ended_at=max(t, started),
            answered_by=call.answered_by,
            rang=tuple(call.rang),
            outcome=outcome,
            hangup_by=hangup_by,
            cause=call.cause,
            transfers=tuple(call.transfers),
            wait_s=wait_s_or_none,
            talk_s=(
                round(max(0.0, talk_end - call.answered_at), 6)
                if call.answered_at is not None
                else None
            ),
            history_complete=call.history_complete,
            via=_via(call),
        )

    def _connect(
        self, call: _Call, callee: _Party, t: float, *, live: bool = True
    ) -> list[CallNotification]:
        again = call.connected == callee.key and call.state is CallState.TALKING
        call.connected = callee.key
        self._move(call, Trigger.ANSWER)
        if again:
            return []
        out: list[CallNotification] = [
            CallConnected(call_id=call.call_id, node=call.node, party=callee.name, at=t)
        ]
        if call.answered_by is not None:
            return out
        call.answered_by = callee.name
        # an adopted call answered after its adoption was seen answering (live): its answer
        # time is known; one found talking at a resync (not live) was answered earlier
        if call.history_complete or live:
            call.answered_at = t
        self._log.debug("call_answered", linkedid=call.call_id, node=call.node, by=callee.name)
        return [
            CallAnswered(call_id=call.call_id, node=call.node, answered_by=callee.name, at=t),
            *out,
        ]

    def _check_bridge(
        self, node: str, bridge: str, t: float, *, live: bool = True
    ) -> list[CallNotification]:
        """A caller-party channel and a callee-party channel share a bridge: connected."""
        members = self._bridges.get((node, bridge), set())
        chans = [c for u in members if (c := self._channels.get((node, u))) is not None]
        out: list[CallNotification] = []
        for a in chans:
            if not self._is_caller(a):
                continue
            call = a.call
            parties = [
                p
                for b in chans
                if b.call is call and not self._is_caller(b)
                if (p := call.party(b.party)) is not None
            ]
            current = call.party(call.connected) if call.connected else None
            if call.state is CallState.TALKING and current is not None and current in parties:
                return out  # a third party joined (a three-way call): still the same callee
            if parties:
                out += self._connect(call, parties[0], t, live=live)
                return out
        return out

    # ------------------------------------------------------------------ channel events

    def _on_newchannel(self, ev: Newchannel) -> list[CallNotification]:
        ch = ev.chan
        if not ch.uniqueid:
            self._anomaly("event_without_channel", ami_event=ev.name)
            return []
        if (ev.node, ch.uniqueid) in self._channels:
            self._anomaly("duplicate_newchannel", uniqueid=ch.uniqueid)
            return []
        self._add_channel(ev.node, ch, ev.time, complete=True)
        return []

    def _on_channel_event(self, ev: ChannelEvent) -> list[CallNotification]:
        chan = self._chan(ev.node, ev.chan, ev.time)
        if chan is not None:
            self._update_caller(chan.call, chan, ev.chan)
        return []

    def _on_rename(self, ev: Rename) -> list[CallNotification]:
        chan = self._chan(ev.node, ev.chan, ev.time)
        if chan is not None and ev.new_name:
            chan.name = ev.new_name
        return []

    def _on_var_set(self, ev: VarSet) -> list[CallNotification]:
        name = ev.variable.lstrip("_")
        if name == _LINE_VARIABLE:
            chan = self._chan(ev.node, ev.chan, ev.time)
            if chan is not None and ev.value and (self._is_caller(chan) or not chan.call.line):
                chan.call.line = ev.value
        elif name == _TRANSFER_VARIABLE and ev.value:
            chan = self._chan(ev.node, ev.chan, ev.time)
            if chan is not None:
                chan.call.transfer_id = ev.value
        elif name in _VIA_CHECKS and ev.value:
            chan = self._chan(ev.node, ev.chan, ev.time)
            if chan is None or not self._is_caller(chan):
                return []  # only the trunk's channel says where the call came from
            if not _note_via(chan.call, name, ev.value):
                self._anomaly("via_value_refused", linkedid=chan.call.call_id, variable=name)
        elif name == _AFTER_HOURS_VARIABLE and ev.value == "1":
            chan = self._chan(ev.node, ev.chan, ev.time)
            if chan is not None:
                chan.call.after_hours = True
        return []

    def _on_local_bridge(self, ev: LocalBridge) -> list[CallNotification]:
        # Both halves are already one party by name (_party_key); this only adopts halves
        # we missed the Newchannel of.
        self._chan(ev.node, ev.local_one, ev.time)
        self._chan(ev.node, ev.local_two, ev.time)
        return []

    def _on_local_optimization_begin(self, ev: LocalOptimizationBegin) -> list[CallNotification]:
        # A Dial(Local/...) chain collapses while the call is up (older dialplans, issue
        # 15): the Source channel (the far side of `;2`) is swapped into the bridge of
        # `;1`, then both halves hang up. That hang-up is the pipe going away, not the
        # party leaving: the party lives on in the Source (one party already, by the
        # DialBegin alias). Asterisk 22 reports `Success: No` in LocalOptimizationEnd
        # even when the swap happened (seen live, every run), so the swap itself is the
        # proof: see _optimized_away, checked at the hang-up.
        one, two, src = ev.local_one, ev.local_two, ev.source
        if one is None or two is None or src is None or not src.uniqueid:
            return []
        target = self._optimization_target(ev.node, one.uniqueid, two.uniqueid, src.uniqueid)
        if not target:
            return []
        if len(self._optimizing) >= self._max_legs:
            self._optimizing.clear()  # a peer that never hangs the halves up: stay bounded
            self._anomaly("local_optimizations_dropped", node=ev.node)
        for half in (one, two):
            self._optimizing[(ev.node, half.uniqueid)] = (src.uniqueid, target)
        return []

    def _optimization_target(self, node: str, one: str, two: str, src: str) -> str | None:
        """The bridge the Source is swapped into: that of the half it is *not* bridged with.
        Either way round happens on the same dialplan, run to run (seen live: Asterisk
        optimises from whichever side first passes a frame): the Source bridged with `;2`
        goes into `;1`'s bridge, and a Source bridged with `;1` into `;2`'s. Taking `;1`'s
        bridge always named the callee as hanging up first whenever a consultation chain
        collapsed the other way (the open defect of tests/real/test_calls_live_real.py)."""
        one_ch = self._channels.get((node, one))
        two_ch = self._channels.get((node, two))
        src_ch = self._channels.get((node, src))
        one_bridge = one_ch.bridge if one_ch is not None else None
        two_bridge = two_ch.bridge if two_ch is not None else None
        if src_ch is not None and src_ch.bridge and src_ch.bridge == one_bridge:
            return two_bridge or None
        return one_bridge or None

    def _optimized_away(self, node: str, uid: str, *, forget: bool) -> bool:
        """The channel is a Local half whose Source took its place in a bridge (its
        HangupRequest and Hangup are the pipe going away)."""
        entry = (
            self._optimizing.pop((node, uid), None) if forget else self._optimizing.get((node, uid))
        )
        if entry is None:
            return False
        src_uid, bridge = entry
        src = self._channels.get((node, src_uid))
        return src is not None and src.bridge == bridge

    def _on_dial_begin(self, ev: DialBegin) -> list[CallNotification]:
        dest = self._chan(ev.node, ev.dest, ev.time)
        if dest is None:
            return []
        call = dest.call
        dparty = call.party(dest.party)
        if dparty is None or dparty.is_caller:
            return []  # the Originate that creates the caller itself
        src = self._chan(ev.node, ev.chan, ev.time) if ev.chan is not None else None
        if src is not None and self._first_leg_dials(call, src):
            # the first leg of an originated call ringing its own phone: still the first leg
            caller = call.parties.get(call.caller_party)
            if caller is not None and caller.key != dparty.key:
                call.alias[dparty.key] = caller.key
                call.parties.pop(dparty.key, None)
                _merge_end(caller, dparty)
            return []
        if src is not None and src.call is call and not self._is_caller(src):
            # a callee dialling onwards (a transfer context ringing the seat): one party
            sparty = call.party(src.party)
            if sparty is not None and sparty.key != dparty.key:
                call.alias[dparty.key] = sparty.key
                call.parties.pop(dparty.key, None)
                _merge_end(sparty, dparty)
                # an attended transfer's consultation leg is created without a DialBegin
                if sparty.name not in call.rang:
                    call.rang.append(sparty.name)
            return []
        if dparty.name not in call.rang:
            call.rang.append(dparty.name)
        self._move(call, Trigger.RING)
        return []

    def _on_dial_end(self, ev: DialEnd) -> list[CallNotification]:
        src = self._chan(ev.node, ev.chan, ev.time) if ev.chan is not None else None
        if src is None or not self._is_caller(src):
            return []
        call = src.call
        if self._first_leg_dials(call, src):
            return []  # its phone answered (or not): the first leg, see expect_originated
        dest = self._chan(ev.node, ev.dest, ev.time)
        if ev.dial_status == "ANSWER":
            party = call.party(dest.party) if dest is not None and dest.call is call else None
            if party is not None and not party.is_caller:
                return self._connect(call, party, ev.time)
            return []
        if ev.dial_status:
            call.last_dial_status = ev.dial_status
        self._move(call, Trigger.RING_END)
        return []

    def _on_bridge_enter(self, ev: BridgeEnter) -> list[CallNotification]:
        chan = self._chan(ev.node, ev.chan, ev.time)
        bid = ev.bridge.uniqueid
        if chan is None or not bid:
            return []
        self._leave_bridge(ev.node, chan)
        chan.bridge = bid
        self._bridges.setdefault((ev.node, bid), set()).add(chan.uniqueid)
        return self._check_bridge(ev.node, bid, ev.time)

    def _leave_bridge(self, node: str, chan: _Channel) -> None:
        if not chan.bridge:
            return
        members = self._bridges.get((node, chan.bridge))
        if members is not None:
            members.discard(chan.uniqueid)
            if not members:
                del self._bridges[(node, chan.bridge)]
        chan.bridge = ""

    def _on_bridge_leave(self, ev: BridgeLeave) -> list[CallNotification]:
        chan = self._channels.get((ev.node, ev.chan.uniqueid))
        if chan is None:
            self._anomaly("unknown_channel", ami_event=ev.name, uniqueid=ev.chan.uniqueid)
            return []
        self._leave_bridge(ev.node, chan)
        call = chan.call
        if self._is_caller(chan):
            if call.state is CallState.TALKING:
                self._move(call, Trigger.UNBRIDGE)
            return []
        if call.connected is not None and call.party(chan.party) is call.party(call.connected):
            # the party the caller talked to left a bridge with more in it (an agent leaving
            # a three-way call): the caller now talks to whoever else of the call is there
            for other in call.channels.values():
                if other.bridge and self._is_caller(other):
                    return self._check_bridge(ev.node, other.bridge, ev.time)
        return []

    # ------------------------------------------------------------------ transfers

    def _on_blind_transfer(self, ev: BlindTransfer) -> list[CallNotification]:
        if ev.result != "Success":
            return []
        transferee = self._chan(ev.node, ev.transferee, ev.time)
        transferer = self._chan(ev.node, ev.transferer, ev.time)
        chan = transferee or transferer
        if chan is None:
            return []
        call = chan.call
        by = ""
        if transferer is not None:
            party = transferer.call.party(transferer.party)
            by = party.name if party is not None else self._name_of(transferer.name)
        call.transfers.append(Transfer(type="blind", by=by, to=ev.extension, at=ev.time))
        call.connected = None  # the transferer is out; whoever answers next is connected
        self._move(call, Trigger.TRANSFER)
        return []

    def _on_attended_transfer(self, ev: AttendedTransfer) -> list[CallNotification]:
        if ev.result != "Success":
            return []
        transferee = self._chan(ev.node, ev.transferee, ev.time)
        target = self._chan(ev.node, ev.transfer_target, ev.time)
        transferer = self._chan(ev.node, ev.orig_transferer, ev.time)
        if transferee is None:
            self._anomaly("attended_transfer_without_transferee", node=ev.node)
            return []
        call = transferee.call
        if target is not None and target.call is not call:
            self._merge(call, target.call)
        by = ""
        if transferer is not None:
            p = transferer.call.party(transferer.party)
            by = p.name if p is not None else self._name_of(transferer.name)
        to = ""
        if target is not None:
            tp = call.party(target.party)
            if tp is not None:
                to = tp.name
                call.connected = tp.key
        if not to and ev.transfer_target is not None:
            # the target's channel may be gone already (a Local pair optimised away, seen
            # live about one run in ten): its name in the event still says who it was
            to = self._name_of(ev.transfer_target.channel)
        if not to:
            # Asterisk 22 sometimes sends no TransferTarget* headers at all (with the
            # transferer's Local pair optimised, both Orig- and SecondTransferer name the
            # same channel; seen live in 3 runs of 12): the target is whoever else is in
            # the bridge the transferee was moved to
            to = self._other_in_bridge(
                call,
                ev.node,
                ev.dest_bridge_uniqueid,
                {transferee.party, transferer.party if transferer else ""},
            )
        call.transfers.append(Transfer(type="attended", by=by, to=to, at=ev.time))
        self._move(call, Trigger.TRANSFER)
        return []

    def _other_in_bridge(self, call: _Call, node: str, bridge: str, skip: set[str]) -> str:
        for uid in sorted(self._bridges.get((node, bridge), ())):
            ch = self._channels.get((node, uid))
            if ch is None or ch.party in skip:
                continue
            party = call.party(ch.party) or ch.call.party(ch.party)
            return party.name if party is not None else self._name_of(ch.name)
        return ""

    def _merge(self, call: _Call, other: _Call) -> None:
        """Fold a consultation call into the call it was transferred into."""
        for party in other.parties.values():
            party.is_caller = False
            call.parties.setdefault(party.key, party)
        call.alias.update(other.alias)
        for uid, chan in other.channels.items():
            chan.call = call
            call.channels[uid] = chan
        other.channels.clear()
        okey = (other.node, other.call_id)
        self._calls.pop(okey, None)
        self._call_alias[okey] = (call.node, call.call_id)

    # ------------------------------------------------------------------ hangups

    def _on_hangup_request(self, ev: HangupRequest | SoftHangupRequest) -> list[CallNotification]:
        chan = self._channels.get((ev.node, ev.chan.uniqueid))
        if chan is None:
            self._anomaly("unknown_channel", ami_event=ev.name, uniqueid=ev.chan.uniqueid)
            return []
        if isinstance(ev, SoftHangupRequest) and ev.cause == _SOFTHANGUP_SHUTDOWN:
            # ast_softhangup() reports its reason flags, not a Q.850 cause, in `Cause`:
            # 4 is AST_SOFTHANGUP_SHUTDOWN (`core stop`, `core restart`)
            chan.call.system_end = True
        if self._optimized_away(ev.node, ev.chan.uniqueid, forget=False):
            return []
        self._mark_end(chan, requested=True)
        return []

    def _mark_end(self, chan: _Channel, *, requested: bool) -> None:
        party = chan.call.party(chan.party)
        if party is not None and party.first_end is None:
            party.first_end = self._seq
            party.first_end_requested = requested

    def _on_hangup(self, ev: Hangup) -> list[CallNotification]:
        node, uid = ev.node, ev.chan.uniqueid
        chan = self._channels.get((node, uid))
        if chan is None:
            self._anomaly("unknown_channel", ami_event=ev.name, uniqueid=uid)
            return []
        call = chan.call
        if self._optimized_away(node, uid, forget=True):
            # optimised out of a Local chain: neither a party's end nor the call's cause
            self._forget_channel(node, uid)
            return self._end_call(call, ev.time) if not call.channels else []
        self._mark_end(chan, requested=False)
        if ev.cause:
            # the call's cause: the first one reported on the caller's side, else any
            if self._is_caller(chan):
                if not call.cause_from_caller:
                    call.cause, call.cause_from_caller = ev.cause, True
            elif call.cause is None:
                call.cause = ev.cause
        party = call.party(chan.party)
        self._forget_channel(node, uid)
        if not call.channels:
            return self._end_call(call, ev.time)
        if party is not None and all(
            call.party(c.party) is not party for c in call.channels.values()
        ):
            party.gone_at = ev.time
        return []

    # ------------------------------------------------------------------ resync

    def _on_connected(self, ev: AmiConnected) -> list[CallNotification]:
        self._log.info("ami_resync_started", node=ev.node, version=ev.version)
        self._resync_start[ev.node] = self._seq
        self._resync_seen[ev.node] = set()
        return []

    def _on_disconnected(self, ev: AmiDisconnected) -> list[CallNotification]:
        self._disconnected_at.setdefault(ev.node, ev.time)
        for call in self._calls.values():
            if call.node == ev.node:
                call.stale = True
        return []

    def _on_events_lost(self, ev: AmiEventsLost) -> list[CallNotification]:
        for call in self._calls.values():
            if call.node == ev.node:
                call.stale = True
        return []

    def _on_core_show_channel(self, ev: CoreShowChannel) -> list[CallNotification]:
        node, ch = ev.node, ev.chan
        if not ch.uniqueid or (node, ch.uniqueid) in self._recently_gone:
            return []
        self._resync_start.setdefault(node, self._seq)
        self._resync_seen.setdefault(node, set()).add(ch.uniqueid)
        chan = self._channels.get((node, ch.uniqueid))
        out: list[CallNotification] = []
        if chan is None:
            started = ev.time - _duration_s(ev.duration)
            added = self._add_channel(node, ch, started, complete=False)
            if added is None:
                return []
            chan = added
            call = chan.call
            call.history_complete = False
            call.started_at = min(call.started_at, started)
            self._log.info("call_adopted", linkedid=call.call_id, node=node, channel=ch.channel)
        if ev.bridge_id and chan.bridge != ev.bridge_id:
            # who talks to whom is decided at CoreShowChannelsComplete: the caller's own
            # channel may be listed after the others
            self._leave_bridge(node, chan)
            chan.bridge = ev.bridge_id
            self._bridges.setdefault((node, ev.bridge_id), set()).add(chan.uniqueid)
        return out

    def _on_core_show_channels_complete(
        self, ev: CoreShowChannelsComplete
    ) -> list[CallNotification]:
        node = ev.node
        start = self._resync_start.pop(node, self._seq)
        seen = self._resync_seen.pop(node, set())
        ended_at = self._disconnected_at.pop(node, ev.time)
        out: list[CallNotification] = []
        for call in [c for c in self._calls.values() if c.node == node]:
            gone = [
                uid for uid, ch in call.channels.items() if uid not in seen and ch.born <= start
            ]
            for uid in gone:
                self._forget_channel(node, uid)
            if gone:
                self._log.info(
                    "resync_channels_gone", linkedid=call.call_id, node=node, count=len(gone)
                )
            if not call.channels:
                out += self._end_call(call, max(ended_at, call.started_at), system=True)
            else:
                call.stale = False
        for bnode, bid in list(self._bridges):
            if bnode == node:
                out += self._check_bridge(node, bid, ev.time, live=False)
        return out


def _merge_end(into: _Party, other: _Party) -> None:
    if other.first_end is not None and (into.first_end is None or other.first_end < into.first_end):
        into.first_end = other.first_end
        into.first_end_requested = other.first_end_requested


_CAUSE_OUTCOME: Final[dict[int, Outcome]] = {
    17: "busy",
    18: "no_answer",
    19: "no_answer",
    21: "rejected",
}
_DIAL_OUTCOME: Final[dict[str, Outcome]] = {
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CONGESTION": "failed",
    "CHANUNAVAIL": "failed",
}


def _unanswered_outcome(dial_status: str, cause: int | None) -> Outcome:
    if dial_status in _DIAL_OUTCOME:
        return _DIAL_OUTCOME[dial_status]
    if cause is not None and cause in _CAUSE_OUTCOME:
        return _CAUSE_OUTCOME[cause]
    return "failed"
