"""The one place where the core's AMI effects become AMI actions (dicts of header names and
values, as panoramisk sends them). Every action an effect needs is here, in order; the
executor (cti.app.daemon.AmiExecutor) sends them and never re-sends one blindly."""

from __future__ import annotations

import math

from cti.core.messages import (
    AddEmergencyLeg,
    AmiEffect,
    EscalateBlind,
    EscalationEffect,
    MarkTaken,
    OriginateCallback,
    RedirectToSeat,
    RejectCall,
    RenewLease,
    ReturnToHold,
    StartSpy,
    StopSpy,
    SwitchSpy,
)
from cti.dialplan.contract import (
    CALL_ID_VARIABLE,
    CALLBACK_OF_VARIABLE,
    CONTEXT_BLOCKED,
    CONTEXT_CALLBACK,
    CONTEXT_CONNECT,
    CONTEXT_ESCALATE,
    CONTEXT_HOLD,
    CONTEXT_SPY,
    ESCALATED_TO_VARIABLE,
    LEASE_VARIABLE,
    NO_SURVEY_VARIABLE,
    RING_TIMEOUT_VARIABLE,
    SEAT_ENDPOINT_VARIABLE,
    SEAT_VARIABLE,
    SPY_MODE_DIGITS,
    SPY_TARGET_VARIABLE,
    TAKEN_VARIABLE,
)

__all__ = ["actions", "escalation_actions", "originate_timeout", "spy_actions"]


def originate_timeout(effect: AddEmergencyLeg | OriginateCallback | StartSpy) -> float:
    if isinstance(effect, AddEmergencyLeg):
        return effect.action_timeout_s
    if isinstance(effect, StartSpy):
        return effect.timeout_s + 10.0  # answered when the supervisor's phone is
    return effect.timeout_s + 10.0  # an async Originate answers when the seat does


def _call_actions(effect: OriginateCallback | RejectCall) -> list[dict[str, str]]:
    """A callback's Originate, or a blacklisted caller's Redirect."""
    if isinstance(effect, OriginateCallback):
        # 漏接电话回拨: the seat's phone first; once it answers, cti-callback dials the
        # citizen. ChannelId: the callback call's linkedid, which the core follows.
        return [
            {
                "Action": "Originate",
                "Channel": effect.endpoint,
                "Context": CONTEXT_CALLBACK,
                "Exten": effect.number,
                "Priority": "1",
                "Timeout": str(round(effect.timeout_s * 1000)),
                "CallerID": f"<{effect.number}>",
                "Variable": (
                    f"__{CALLBACK_OF_VARIABLE}={effect.callback_id},"
                    f"__{SEAT_VARIABLE}={effect.seat_id}"
                ),
                "ChannelId": effect.channel_id,
                "OtherChannelId": effect.other_channel_id,
                "Async": "true",
            }
        ]
    # the blacklist's reject: the prompt, then the line is cleared (cti-blocked)
    return [
        {
            "Action": "Redirect",
            "Channel": effect.channel,
            "Context": CONTEXT_BLOCKED,
            "Exten": "s",
            "Priority": "1",
        }
    ]


def actions(effect: AmiEffect) -> list[dict[str, str]]:
    """The AMI actions of one effect (Redirect carries no variables: Setvar first)."""
    if isinstance(effect, OriginateCallback | RejectCall):
        return _call_actions(effect)
    if not isinstance(effect, MarkTaken | RedirectToSeat | ReturnToHold | RenewLease):
        # 110/119/120/122: cti/core/escalation.py; a supervisor's spy: cti/core/supervision.py
        spy = isinstance(effect, StartSpy | SwitchSpy | StopSpy)
        return spy_actions(effect) if spy else escalation_actions(effect)  # type: ignore[arg-type]
    if isinstance(effect, RenewLease):
        # no Channel: a global variable, read by every holding loop as GLOBAL(...)
        # whole seconds (the dialplan compares with EPOCH), rounded up: truncating would
        # cut up to 1 s off a lease of a few seconds
        until = str(math.ceil(effect.until))
        return [{"Action": "Setvar", "Variable": LEASE_VARIABLE, "Value": until}]
    if isinstance(effect, MarkTaken):
        return [_taken(effect.channel)]
    if isinstance(effect, RedirectToSeat):
        # the daemon's plan is authoritative: the endpoint goes along, so a seat added to
        # cti.yaml works before the generated dialplan is reloaded
        return [
            {
                "Action": "Setvar",
                "Channel": effect.channel,
                "Variable": SEAT_ENDPOINT_VARIABLE,
                "Value": effect.endpoint,
            },
            {
                "Action": "Setvar",
                "Channel": effect.channel,
                "Variable": RING_TIMEOUT_VARIABLE,
                "Value": str(round(effect.ring_timeout_s)),
            },
            {
                "Action": "Redirect",
                "Channel": effect.channel,
                "Context": CONTEXT_CONNECT,
                "Exten": effect.seat_id,
                "Priority": "1",
            },
        ]
    # Back to the holding loop, marked taken again: a call's MarkTaken is lost when the AMI
    # link drops with it in flight (a Setvar is not re-sent), and a holding loop that finds
    # no CTI_TAKEN sends the call to the fallback Queue() at once once the lease has run
    # out: the daemon would take it back from there, and round again, every few ms.
    return [
        _taken(effect.channel),
        {
            "Action": "Redirect",
            "Channel": effect.channel,
            "Context": CONTEXT_HOLD,
            "Exten": "s",
            "Priority": "1",
        },
    ]


def _taken(channel: str) -> dict[str, str]:
    """The Setvar that tells the holding loop the daemon holds this call."""
    return {"Action": "Setvar", "Channel": channel, "Variable": TAKEN_VARIABLE, "Value": "1"}


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
            "Variable": (
                f"__{CALL_ID_VARIABLE}={effect.call_id},__{ESCALATED_TO_VARIABLE}={effect.number}"
            ),
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
            "Variable": NO_SURVEY_VARIABLE,
            "Value": "1",
        }
        return [no_survey, originate]
    return [{"Action": "Hangup", "Channel": effect.channel}]


def spy_actions(effect: StartSpy | SwitchSpy | StopSpy) -> list[dict[str, str]]:
    """A supervisor's spy channel (cti/core/supervision.py): its Originate into cti-spy,
    the DTMF digit that switches its mode, its Hangup."""
    if isinstance(effect, StartSpy):
        return [
            {
                "Action": "Originate",
                "Channel": effect.endpoint,
                "Context": CONTEXT_SPY,
                "Exten": effect.mode,
                "Priority": "1",
                "Timeout": str(round(effect.timeout_s * 1000)),
                "CallerID": f'"CTI {effect.mode}" <{effect.mode}>',
                # not inherited (no `_`): only the spy channel spies
                "Variable": f"{SPY_TARGET_VARIABLE}={effect.target}",
                "ChannelId": effect.spy_id,
                "Async": "true",
            }
        ]
    if isinstance(effect, SwitchSpy):
        # ChanSpy's `d` option: digits *from* the spy channel switch the mode (4 spy,
        # 5 whisper, 6 barge). `Receive: true` queues the digit as if the supervisor's
        # phone had sent it; without it PlayDTMF sends it out *to* the phone, where
        # ChanSpy never sees it. The call and the channel stay as they are (a Redirect to
        # another cti-spy extension restarted ChanSpy, and on the testbed the channel was
        # sometimes hung up in the restart).
        return [
            {
                "Action": "PlayDTMF",
                "Channel": effect.channel,
                "Digit": SPY_MODE_DIGITS[effect.mode],
                "Duration": "120",
                "Receive": "true",
            }
        ]
    return [{"Action": "Hangup", "Channel": effect.channel}]
