"""Typed AMI events: what the core sees of Asterisk.

The AMI adapter (and `cti replay`) turns every AMI message into one of these frozen
dataclasses exactly once, at the edge; the core never touches header dictionaries.
Conversion is pure (no I/O, no panoramisk), so a recorded trace and a live socket give
identical events.

Header names follow Asterisk's own words (`uniqueid`, `linkedid`, ...). Asterisk 12+
prefixes the channel-snapshot headers of a second channel (`DestChannel`,
`TransfereeChannel`, ...); :func:`channel_snapshot` reads any of them by prefix.

Bad input never raises: a missing header reads as ``""``, a number that does not parse
reads as ``None``; the raw headers stay on the event for logging and re-recording.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "EVENT_TYPES",
    "AmiConnected",
    "AmiDisconnected",
    "AmiEvent",
    "AmiEventsLost",
    "AttendedTransfer",
    "BlindTransfer",
    "BridgeCreate",
    "BridgeDestroy",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeSnapshot",
    "ChannelEvent",
    "ChannelSnapshot",
    "ChannelState",
    "ConnectionEvent",
    "CoreShowChannel",
    "CoreShowChannelsComplete",
    "DeviceStateChange",
    "DialBegin",
    "DialEnd",
    "DialState",
    "FullyBooted",
    "Hangup",
    "HangupRequest",
    "Hold",
    "LocalBridge",
    "LocalOptimizationBegin",
    "LocalOptimizationEnd",
    "MusicOnHoldStart",
    "MusicOnHoldStop",
    "NewCallerid",
    "NewConnectedLine",
    "Newchannel",
    "Newexten",
    "Newstate",
    "OriginateResponse",
    "Rename",
    "Shutdown",
    "SoftHangupRequest",
    "Unhold",
    "UserEvent",
    "VarSet",
    "channel_snapshot",
    "parse_event",
]


class ChannelState(enum.IntEnum):
    """`ChannelState` of an AMI channel snapshot (Asterisk's `enum ast_channel_state`)."""

    DOWN = 0
    RESERVED = 1
    OFFHOOK = 2
    DIALING = 3
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7
    DIALING_OFFHOOK = 8
    PRERING = 9


_STATES: Final = {s.value: s for s in ChannelState}


def _int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


# Timestamps outside this range are not Asterisk's clock (epoch seconds 1e11 is the year
# 5138): "nan", "inf" or 1e308 went into call records as started_at and broke every
# datetime conversion and JSON payload after it (found by tests/fuzz).
_MAX_TIMESTAMP: Final = 1e11


def _timestamp(value: str | None, received: float) -> float:
    t = _float(value)
    if t is None or not 0.0 < t < _MAX_TIMESTAMP:  # also False for nan
        return received
    return t


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in {"yes", "true", "1", "on"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSnapshot:
    """The channel fields Asterisk puts on every channel event (optionally prefixed)."""

    channel: str
    uniqueid: str
    linkedid: str
    state: ChannelState | None
    caller_num: str
    caller_name: str
    connected_num: str
    connected_name: str
    language: str
    account_code: str
    context: str
    exten: str
    priority: int | None

    @property
    def actionable(self) -> bool:
        """The channel name can be sent back in an AMI action (Setvar, Redirect): no CR or
        LF in it. Asterisk never makes such a name, but a peer (or a technology that puts
        a dialled string into the name) can; AMI framing is CR LF, so the action would be
        refused (an injection) — the daemon must not take a call it cannot act on."""
        return "\r" not in self.channel and "\n" not in self.channel

    @property
    def is_local(self) -> bool:
        """A Local channel half (`Local/100@inbound-0000001;1` or `;2`)."""
        return self.channel.startswith("Local/")


def channel_snapshot(h: Mapping[str, str], prefix: str = "") -> ChannelSnapshot | None:
    """Read the channel snapshot with the given header prefix, or None if it is absent."""
    channel = h.get(prefix + "Channel", "")
    uniqueid = h.get(prefix + "Uniqueid", "")
    if not channel and not uniqueid:
        return None
    state_no = _int(h.get(prefix + "ChannelState"))
    return ChannelSnapshot(
        channel=channel,
        uniqueid=uniqueid,
        linkedid=h.get(prefix + "Linkedid", "") or uniqueid,
        state=_STATES.get(state_no) if state_no is not None else None,
        caller_num=h.get(prefix + "CallerIDNum", ""),
        caller_name=h.get(prefix + "CallerIDName", ""),
        connected_num=h.get(prefix + "ConnectedLineNum", ""),
        connected_name=h.get(prefix + "ConnectedLineName", ""),
        language=h.get(prefix + "Language", ""),
        account_code=h.get(prefix + "AccountCode", ""),
        context=h.get(prefix + "Context", ""),
        exten=h.get(prefix + "Exten", ""),
        priority=_int(h.get(prefix + "Priority")),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeSnapshot:
    """Bridge fields (`BridgeUniqueid`, `BridgeType`, ...), optionally prefixed."""

    uniqueid: str
    type: str
    technology: str
    creator: str
    name: str
    num_channels: int | None


def _bridge(h: Mapping[str, str], prefix: str = "") -> BridgeSnapshot | None:
    uid = h.get(prefix + "BridgeUniqueid", "")
    if not uid:
        return None
    return BridgeSnapshot(
        uniqueid=uid,
        type=h.get(prefix + "BridgeType", ""),
        technology=h.get(prefix + "BridgeTechnology", ""),
        creator=h.get(prefix + "BridgeCreator", ""),
        name=h.get(prefix + "BridgeName", ""),
        num_channels=_int(h.get(prefix + "BridgeNumChannels")),
    )


# --------------------------------------------------------------------------- base types


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiEvent:
    """Any AMI event. Unknown event names are delivered as this base type.

    Attributes:
        node: the configured name of the Asterisk node it came from.
        name: the `Event` header.
        time: Asterisk's `Timestamp` header if present, else when it was received (epoch s).
        headers: every header as received (repeated headers joined with a newline).
    """

    node: str
    name: str
    time: float
    headers: Mapping[str, str] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent(AmiEvent):
    """An event about one channel (the unprefixed channel snapshot)."""

    chan: ChannelSnapshot


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True, slots=True, kw_only=True)
class Newchannel(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Newstate(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCallerid(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class NewConnectedLine(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Newexten(ChannelEvent):
    application: str
    app_data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VarSet(ChannelEvent):
    variable: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rename(ChannelEvent):
    new_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup(ChannelEvent):
    cause: int | None
    cause_txt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupRequest(ChannelEvent):
    cause: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftHangupRequest(ChannelEvent):
    cause: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold(ChannelEvent):
    music_class: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unhold(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class MusicOnHoldStart(ChannelEvent):
    music_class: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MusicOnHoldStop(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreShowChannel(ChannelEvent):
    """One item of a `CoreShowChannels` list (resync after a (re)connect)."""

    application: str
    app_data: str
    duration: str
    bridge_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreShowChannelsComplete(AmiEvent):
    """The end of a `CoreShowChannels` list: every channel of the node has been listed."""

    action_id: str
    listed: int | None


# --------------------------------------------------------------------------- dialing


@dataclass(frozen=True, slots=True, kw_only=True)
class DialBegin(AmiEvent):
    """`chan` is the caller; it is absent when the dial comes from an Originate."""

    chan: ChannelSnapshot | None
    dest: ChannelSnapshot | None
    dial_string: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DialState(AmiEvent):
    chan: ChannelSnapshot | None
    dest: ChannelSnapshot | None
    dial_status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DialEnd(AmiEvent):
    """`dial_status`: ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL, ..."""

    chan: ChannelSnapshot | None
    dest: ChannelSnapshot | None
    dial_status: str
    forward: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateResponse(AmiEvent):
    """Result of an async Originate. `uniqueid` is `<unknown>` on failure."""

    action_id: str
    response: str
    channel: str
    uniqueid: str
    reason: int | None


# --------------------------------------------------------------------------- bridges


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeCreate(AmiEvent):
    bridge: BridgeSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeDestroy(AmiEvent):
    bridge: BridgeSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeEnter(ChannelEvent):
    bridge: BridgeSnapshot
    swap_uniqueid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeLeave(ChannelEvent):
    bridge: BridgeSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalBridge(AmiEvent):
    """The two halves (`;1` = LocalOne, `;2` = LocalTwo) of a Local channel."""

    local_one: ChannelSnapshot | None
    local_two: ChannelSnapshot | None
    context: str
    exten: str
    local_optimization: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalOptimizationBegin(AmiEvent):
    local_one: ChannelSnapshot | None
    local_two: ChannelSnapshot | None
    source: ChannelSnapshot | None
    dest_uniqueid: str
    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalOptimizationEnd(AmiEvent):
    local_one: ChannelSnapshot | None
    local_two: ChannelSnapshot | None
    success: bool
    id: str


# --------------------------------------------------------------------------- transfers


@dataclass(frozen=True, slots=True, kw_only=True)
class BlindTransfer(AmiEvent):
    result: str
    transferer: ChannelSnapshot | None
    transferee: ChannelSnapshot | None
    bridge: BridgeSnapshot | None
    is_external: bool
    context: str
    extension: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttendedTransfer(AmiEvent):
    """`OrigTransferer` is in the original bridge, `SecondTransferer` in the consult one."""

    result: str
    orig_transferer: ChannelSnapshot | None
    orig_bridge: BridgeSnapshot | None
    second_transferer: ChannelSnapshot | None
    second_bridge: BridgeSnapshot | None
    transferee: ChannelSnapshot | None
    transfer_target: ChannelSnapshot | None
    dest_type: str
    dest_bridge_uniqueid: str
    dest_app: str
    local_one: ChannelSnapshot | None
    local_two: ChannelSnapshot | None
    dest_transferer_channel: str
    is_external: bool


# --------------------------------------------------------------------------- system


@dataclass(frozen=True, slots=True, kw_only=True)
class FullyBooted(AmiEvent):
    """Sent after login (and at the end of boot): the signal to resync."""

    uptime: int | None
    last_reload: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown(AmiEvent):
    shutdown: str
    restart: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStateChange(AmiEvent):
    device: str
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserEvent(AmiEvent):
    user_event: str
    chan: ChannelSnapshot | None


# --------------------------------------------------------------------------- connection
# Not AMI events but events of the connection to a node, delivered through the same
# ordered queue so the core sees them between the right AMI events.


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEvent:
    node: str
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiConnected(ConnectionEvent):
    """Logged in to a node. The core must resync: Asterisk keeps no backlog of events."""

    version: str
    reconnect: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiDisconnected(ConnectionEvent):
    """The connection to a node is gone; events from `time` on are missing."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiEventsLost(ConnectionEvent):
    """The bounded event queue overflowed and `count` events were dropped: resync."""

    count: int


# --------------------------------------------------------------------------- parsing

_Builder = Callable[[str, str, float, Mapping[str, str]], AmiEvent]


_NO_CHANNEL: Final = ChannelSnapshot(
    channel="",
    uniqueid="",
    linkedid="",
    state=None,
    caller_num="",
    caller_name="",
    connected_num="",
    connected_name="",
    language="",
    account_code="",
    context="",
    exten="",
    priority=None,
)


def _chan(h: Mapping[str, str]) -> ChannelSnapshot:
    # An event that should carry a channel but does not: keep it typed, with blanks,
    # so handlers look it up (and miss) instead of crashing.
    return channel_snapshot(h) or _NO_CHANNEL


def _simple_channel(cls: type[ChannelEvent]) -> _Builder:
    def build(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
        return cls(node=node, name=name, time=t, headers=h, chan=_chan(h))

    return build


_TABLE: dict[str, _Builder] = {
    "Newchannel": _simple_channel(Newchannel),
    "Newstate": _simple_channel(Newstate),
    "NewCallerid": _simple_channel(NewCallerid),
    "NewConnectedLine": _simple_channel(NewConnectedLine),
    "Unhold": _simple_channel(Unhold),
    "MusicOnHoldStop": _simple_channel(MusicOnHoldStop),
}


def _on(name: str) -> Callable[[_Builder], _Builder]:
    def deco(fn: _Builder) -> _Builder:
        _TABLE[name] = fn
        return fn

    return deco


def _bridge_or_blank(h: Mapping[str, str]) -> BridgeSnapshot:
    return _bridge(h) or BridgeSnapshot(
        uniqueid="",
        type="",
        technology="",
        creator="",
        name="",
        num_channels=None,
    )


@_on("Newexten")
def _newexten(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return Newexten(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        application=h.get("Application", ""),
        app_data=h.get("AppData", ""),
    )


@_on("VarSet")
def _var_set(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return VarSet(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        variable=h.get("Variable", ""),
        value=h.get("Value", ""),
    )


@_on("Rename")
def _rename(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return Rename(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        new_name=h.get("Newname", ""),
    )


@_on("Hangup")
def _hangup(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return Hangup(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        cause=_int(h.get("Cause")),
        cause_txt=h.get("Cause-txt", ""),
    )


@_on("HangupRequest")
def _hangup_request(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return HangupRequest(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        cause=_int(h.get("Cause")),
    )


@_on("SoftHangupRequest")
def _soft_hangup_request(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return SoftHangupRequest(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        cause=_int(h.get("Cause")),
    )


@_on("Hold")
def _hold(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return Hold(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        music_class=h.get("MusicClass", ""),
    )


@_on("MusicOnHoldStart")
def _music_on_hold_start(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return MusicOnHoldStart(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        music_class=h.get("Class", ""),
    )


@_on("CoreShowChannel")
def _core_show_channel(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return CoreShowChannel(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        application=h.get("Application", ""),
        app_data=h.get("ApplicationData", ""),
        duration=h.get("Duration", ""),
        bridge_id=h.get("BridgeId", ""),
    )


@_on("CoreShowChannelsComplete")
def _core_show_channels_complete(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return CoreShowChannelsComplete(
        node=node,
        name=name,
        time=t,
        headers=h,
        action_id=h.get("ActionID", ""),
        listed=_int(h.get("ListItems")),
    )


@_on("DialBegin")
def _dial_begin(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return DialBegin(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=channel_snapshot(h),
        dest=channel_snapshot(h, "Dest"),
        dial_string=h.get("DialString", ""),
    )


@_on("DialState")
def _dial_state(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return DialState(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=channel_snapshot(h),
        dest=channel_snapshot(h, "Dest"),
        dial_status=h.get("DialStatus", ""),
    )


@_on("DialEnd")
def _dial_end(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return DialEnd(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=channel_snapshot(h),
        dest=channel_snapshot(h, "Dest"),
        dial_status=h.get("DialStatus", ""),
        forward=h.get("Forward", ""),
    )


@_on("OriginateResponse")
def _originate_response(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return OriginateResponse(
        node=node,
        name=name,
        time=t,
        headers=h,
        action_id=h.get("ActionID", ""),
        response=h.get("Response", ""),
        channel=h.get("Channel", ""),
        uniqueid=h.get("Uniqueid", ""),
        reason=_int(h.get("Reason")),
    )


@_on("BridgeCreate")
def _bridge_create(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return BridgeCreate(node=node, name=name, time=t, headers=h, bridge=_bridge_or_blank(h))


@_on("BridgeDestroy")
def _bridge_destroy(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return BridgeDestroy(node=node, name=name, time=t, headers=h, bridge=_bridge_or_blank(h))


@_on("BridgeEnter")
def _bridge_enter(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return BridgeEnter(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        bridge=_bridge_or_blank(h),
        swap_uniqueid=h.get("SwapUniqueid", ""),
    )


@_on("BridgeLeave")
def _bridge_leave(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return BridgeLeave(
        node=node,
        name=name,
        time=t,
        headers=h,
        chan=_chan(h),
        bridge=_bridge_or_blank(h),
    )


@_on("LocalBridge")
def _local_bridge(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return LocalBridge(
        node=node,
        name=name,
        time=t,
        headers=h,
        local_one=channel_snapshot(h, "LocalOne"),
        local_two=channel_snapshot(h, "LocalTwo"),
        context=h.get("Context", ""),
        exten=h.get("Exten", ""),
        local_optimization=_yes(h.get("LocalOptimization")),
    )


@_on("LocalOptimizationBegin")
def _local_optimization_begin(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return LocalOptimizationBegin(
        node=node,
        name=name,
        time=t,
        headers=h,
        local_one=channel_snapshot(h, "LocalOne"),
        local_two=channel_snapshot(h, "LocalTwo"),
        source=channel_snapshot(h, "Source"),
        dest_uniqueid=h.get("DestUniqueId", ""),
        id=h.get("Id", ""),
    )


@_on("LocalOptimizationEnd")
def _local_optimization_end(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return LocalOptimizationEnd(
        node=node,
        name=name,
        time=t,
        headers=h,
        local_one=channel_snapshot(h, "LocalOne"),
        local_two=channel_snapshot(h, "LocalTwo"),
        success=_yes(h.get("Success")),
        id=h.get("Id", ""),
    )


@_on("BlindTransfer")
def _blind_transfer(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return BlindTransfer(
        node=node,
        name=name,
        time=t,
        headers=h,
        result=h.get("Result", ""),
        transferer=channel_snapshot(h, "Transferer"),
        transferee=channel_snapshot(h, "Transferee"),
        bridge=_bridge(h),
        is_external=_yes(h.get("IsExternal")),
        context=h.get("Context", ""),
        extension=h.get("Extension", ""),
    )


@_on("AttendedTransfer")
def _attended_transfer(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return AttendedTransfer(
        node=node,
        name=name,
        time=t,
        headers=h,
        result=h.get("Result", ""),
        orig_transferer=channel_snapshot(h, "OrigTransferer"),
        orig_bridge=_bridge(h, "Orig"),
        second_transferer=channel_snapshot(h, "SecondTransferer"),
        second_bridge=_bridge(h, "Second"),
        transferee=channel_snapshot(h, "Transferee"),
        transfer_target=channel_snapshot(h, "TransferTarget"),
        dest_type=h.get("DestType", ""),
        dest_bridge_uniqueid=h.get("DestBridgeUniqueid", ""),
        dest_app=h.get("DestApp", ""),
        local_one=channel_snapshot(h, "LocalOne"),
        local_two=channel_snapshot(h, "LocalTwo"),
        dest_transferer_channel=h.get("DestTransfererChannel", ""),
        is_external=_yes(h.get("IsExternal")),
    )


@_on("FullyBooted")
def _fully_booted(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return FullyBooted(
        node=node,
        name=name,
        time=t,
        headers=h,
        uptime=_int(h.get("Uptime")),
        last_reload=_int(h.get("LastReload")),
    )


@_on("Shutdown")
def _shutdown(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return Shutdown(
        node=node,
        name=name,
        time=t,
        headers=h,
        shutdown=h.get("Shutdown", ""),
        restart=_yes(h.get("Restart")),
    )


@_on("DeviceStateChange")
def _device_state_change(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return DeviceStateChange(
        node=node,
        name=name,
        time=t,
        headers=h,
        device=h.get("Device", ""),
        state=h.get("State", ""),
    )


@_on("UserEvent")
def _user_event(node: str, name: str, t: float, h: Mapping[str, str]) -> AmiEvent:
    return UserEvent(
        node=node,
        name=name,
        time=t,
        headers=h,
        user_event=h.get("UserEvent", ""),
        chan=channel_snapshot(h),
    )


EVENT_TYPES: Final[Mapping[str, _Builder]] = _TABLE


def parse_event(node: str, headers: Mapping[str, str], received: float) -> AmiEvent:
    """Turn one AMI event (its headers) into a typed event.

    Args:
        node: the configured Asterisk node name.
        headers: the headers of one message that has an `Event` header.
        received: when it was received (epoch seconds); used when Asterisk sent no
            `Timestamp` (manager.conf `timestampevents = no`).
    """
    name = headers.get("Event", "")
    t = _timestamp(headers.get("Timestamp"), received)
    builder = EVENT_TYPES.get(name)
    if builder is None:
        return AmiEvent(node=node, name=name, time=t, headers=headers)
    return builder(node, name, t, headers)
