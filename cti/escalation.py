"""Escalating a call to an emergency service (12345 -> 110/119/120/122): the effects the
core emits and the AMI actions that carry them out. Sans-IO: no asyncio, no sockets.

The decisions live in :class:`cti.core.Core` (its "escalation" section), which knows the
seat, the caller's channel and the call; this module holds what leaves the core and what
the core remembers about an escalated call. docs/escalation.md tells the whole story,
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

from dataclasses import dataclass
from typing import Final

from cti.dialplan import CONTEXT_ESCALATE
from cti.numberplan import EscalationMode

__all__ = [
    "AddEmergencyLeg",
    "EscalateBlind",
    "Escalation",
    "EscalationEffect",
    "HangupLeg",
    "escalation_actions",
    "leg_ids",
]

_ORIGINATE_MARGIN_S: Final = 5.0


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


def escalation_actions(effect: EscalationEffect) -> list[dict[str, str]]:
    """The AMI actions of one escalation effect."""
    if isinstance(effect, EscalateBlind):
        return [
            {
                "Action": "Redirect",
                "Channel": effect.channel,
                "Context": CONTEXT_ESCALATE,
                "Exten": effect.number,
                "Priority": "1",
            }
        ]
    if isinstance(effect, AddEmergencyLeg):
        originate = {
            "Action": "Originate",
            "Channel": effect.endpoint,
            # BridgeAdd(<channel>) joins the bridge that channel is in; it runs on the
            # originated channel once the operator answers
            "Application": "BridgeAdd",
            "Data": effect.caller_channel,
            "Timeout": str(round(effect.timeout_s * 1000)),
            "CallerID": effect.caller_id,
            # the operator's leg carries the call's id, like every other leg of it
            "Variable": f"__CTI_CALL_ID={effect.call_id},__CTI_ESCALATED_TO={effect.number}",
            "ChannelId": effect.channel_id,
            "OtherChannelId": effect.other_channel_id,
            "Async": "true",
        }
        if not effect.caller_id:
            del originate["CallerID"]
        # no 12345 satisfaction survey when the caller's Dial ends in a call with 110
        # - see cti-dial-seat and dialplan.survey
        no_survey = {
            "Action": "Setvar",
            "Channel": effect.caller_channel,
            "Variable": "CTI_NO_SURVEY",
            "Value": "1",
        }
        return [no_survey, originate]
    return [{"Action": "Hangup", "Channel": effect.channel}]
