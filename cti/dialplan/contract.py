"""The dialplan contract: the contexts the daemon sends calls to and the variables it sets
and reads. The generated dialplan (:mod:`cti.dialplan.generate`), the core and the AMI
adapter all use these names; docs/dialplan.md describes them. Imports nothing."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ADOPTION_VARIABLES",
    "AFTER_HOURS_VARIABLE",
    "CALLBACK_KEEP_VARIABLE",
    "CALLBACK_OF_VARIABLE",
    "CALL_ID_VARIABLE",
    "CONTEXT_BLOCKED",
    "CONTEXT_CALLBACK",
    "CONTEXT_CONNECT",
    "CONTEXT_DIAL_SEAT",
    "CONTEXT_ESCALATE",
    "CONTEXT_FALLBACK",
    "CONTEXT_FROM_TRUNK",
    "CONTEXT_HOLD",
    "CONTEXT_INBOUND",
    "CONTEXT_LINE",
    "CONTEXT_NODE_HEADER",
    "CONTEXT_PROMPT_CHECK",
    "CONTEXT_RECORD",
    "CONTEXT_SPY",
    "DNIS_VARIABLE",
    "ENTERED_VARIABLE",
    "ESCALATED_TO_VARIABLE",
    "FALLBACK_MARKER",
    "LEASE_VARIABLE",
    "LINE_VARIABLE",
    "NO_SURVEY_VARIABLE",
    "PROMPT_CHECK_ID_PREFIX",
    "PROMPT_FORMATS",
    "RING_TIMEOUT_VARIABLE",
    "SEAT_ENDPOINT_VARIABLE",
    "SEAT_VARIABLE",
    "SPY_MODE_DIGITS",
    "SPY_TARGET_VARIABLE",
    "TAKEN_VARIABLE",
    "TRANSFER_ID_VARIABLE",
    "VIA_CALL_ID_VARIABLE",
    "VIA_DIALED_VARIABLE",
    "VIA_NODE_VARIABLE",
    "VOICEMAIL_VARIABLE",
]

CONTEXT_FROM_TRUNK: Final = "cti-from-trunk"
"""Context of a trunk endpoint (pjsip.conf ``context = cti-from-trunk``)."""
CONTEXT_NODE_HEADER: Final = "cti-node-header"
"""Gosub of ``cti-from-trunk`` on a county node's trunk: one ``X-CTI-*`` header, checked."""
CONTEXT_INBOUND: Final = "cti-inbound"
"""One extension per number of the plan (and patterns for unknown numbers)."""
CONTEXT_LINE: Final = "cti-line"
"""Common part of every answered line: answer, call id, hold deadline, optional AGI."""
CONTEXT_HOLD: Final = "cti-hold"
"""The holding loop (music); ``s``, priority 1. RONA returns here."""
CONTEXT_FALLBACK: Final = "cti-fallback"
"""Plain Asterisk ``Queue()`` for calls the daemon has not taken."""
CONTEXT_CONNECT: Final = "cti-connect"
"""Redirect target of the daemon: exten = seat id, priority 1."""
CONTEXT_DIAL_SEAT: Final = "cti-dial-seat"
CONTEXT_BLOCKED: Final = "cti-blocked"
"""Redirect target of a blacklisted caller (treatment reject): a prompt, then hang up."""
CONTEXT_PROMPT_CHECK: Final = "cti-prompt-check"
"""Originated by the daemon at start-up: reports which IVR prompts exist (UserEvents)."""
PROMPT_FORMATS: Final = ("gsm", "wav", "ulaw", "alaw", "sln", "g722", "wav16")
PROMPT_CHECK_ID_PREFIX: Final = "ctiprompts"
"""The check channel's ids: its "call" is not a citizen's and is not recorded."""
CONTEXT_CALLBACK: Final = "cti-callback"
"""Originate target of a callback: the seat answered, now dial the citizen (<number>)."""
"""Common part of cti-connect: record, Dial the seat, back to holding on no answer."""
CONTEXT_RECORD: Final = "cti-record"
"""Gosub: start MixMonitor once per call."""
CONTEXT_ESCALATE: Final = "cti-escalate"
"""Redirect target of a blind escalation: exten = the emergency number (110), priority 1."""
CONTEXT_SPY: Final = "cti-spy"
"""Originate target of a supervisor's phone: exten = listen, whisper or barge (the mode it
starts in); runs ChanSpy on the channel in ``CTI_SPY_TARGET`` (docs/supervision.md)."""
SPY_MODE_DIGITS: Final = {"listen": "4", "whisper": "5", "barge": "6"}
"""ChanSpy's ``d`` option: the digit that switches a running spy to the mode."""
SPY_TARGET_VARIABLE: Final = "CTI_SPY_TARGET"
"""Channel variable of the spy channel: the agent's channel name ChanSpy spies on."""

TAKEN_VARIABLE: Final = "CTI_TAKEN"
"""Channel variable: ``1`` once the daemon has taken the call (set by cti-connect, or by the
daemon with AMI ``Setvar``). A taken call stays held while the lease is valid."""
LEASE_VARIABLE: Final = "CTI_LEASE_UNTIL"
"""Global variable: epoch seconds until which a running daemon answers for taken calls. The
daemon renews it with AMI ``Setvar`` (no ``Channel``) while it runs."""

ENTERED_VARIABLE: Final = "CTI_ENTERED"
"""Channel variable: when ``cti-line`` put the call in the line (epoch seconds, ms). A daemon
that adopts a waiting call it did not see arrive reads it back, so the call keeps the place
its wait gives it in the one line (cti/core/adoption.py)."""

FALLBACK_MARKER: Final = "CTIFALLBACK"
"""queue_log event the fallback context writes (``QueueLog()``) as a call enters it, its data
``<CTI_CALL_ID>|<CTI_LINE>|<CTI_ENTERED>``: app_queue's own lines know only the channel's
uniqueid, this line ties them to the call (cti/kpis/fallback_log.py)."""

# ---- set by the inbound dialplan, read by the daemon (the call tracker, adoption)
LINE_VARIABLE: Final = "CTI_LINE"
"""Channel variable: the number of the plan the call came in on (12345, 12315, ...)."""
DNIS_VARIABLE: Final = "CTI_DNIS"
"""Channel variable: the number the caller dialled, as the trunk delivered it."""
TRANSFER_ID_VARIABLE: Final = "CTI_TRANSFER_ID"
"""Channel variable: the 110 transfer id a 110 trunk carried (X-Transfer-Id)."""

# ---- set by cti-from-trunk on a county node's trunk (numberplan.trunks[].node), read by
# the daemon (docs/county-nodes.md). Only that trunk's headers are read; each is refused
# whole (left unset) when it holds a character outside its set or is too long.
VIA_NODE_VARIABLE: Final = "CTI_VIA_NODE"
"""Channel variable: the county node the call came from (the trunk's ``node``, from the
configuration: the trunk is identified by its address, not by what the node says)."""
VIA_DIALED_VARIABLE: Final = "CTI_VIA_DIALED"
"""Channel variable: what the citizen dialled at the county node (its ``X-CTI-Dialed``)."""
VIA_CALL_ID_VARIABLE: Final = "CTI_VIA_CALL_ID"
"""Channel variable: the call's linkedid on the county node (its ``X-CTI-Origin``): the id
of the same call in the county's CDRs and in the daemon's transit log."""

# ---- set by the daemon, read by the dialplan
SEAT_ENDPOINT_VARIABLE: Final = "CTI_SEAT_ENDPOINT"
"""Channel variable: the seat's endpoint, set before the Redirect to ``cti-connect`` (the
daemon's plan is authoritative, so a seat added to cti.yaml works before a reload)."""
RING_TIMEOUT_VARIABLE: Final = "CTI_RING_TIMEOUT"
"""Channel variable: seconds the seat's phone rings before the Dial gives up (RONA)."""
CALLBACK_KEEP_VARIABLE: Final = "CTI_CALLBACK_KEEP"
"""Channel variable: ``1`` once a waiting caller chose a callback (or left a message): the
holding loop clears the line, the call keeps its place without a channel."""
NO_SURVEY_VARIABLE: Final = "CTI_NO_SURVEY"
"""Channel variable: ``1``: no satisfaction survey after this Dial (an escalation to 110)."""
CALLBACK_OF_VARIABLE: Final = "CTI_CALLBACK_OF"
"""Inherited variable of a callback call: the missed call (or kept place) it calls back."""
SEAT_VARIABLE: Final = "CTI_SEAT"
"""Inherited variable of a callback call: the seat whose phone rang first."""
CALL_ID_VARIABLE: Final = "CTI_CALL_ID"
"""Inherited variable: the call a leg belongs to (an escalation's operator leg)."""
ESCALATED_TO_VARIABLE: Final = "CTI_ESCALATED_TO"
"""Inherited variable of an escalation's operator leg: the service (110/119/120/122)."""

ADOPTION_VARIABLES: Final = (
    LINE_VARIABLE,
    DNIS_VARIABLE,
    ENTERED_VARIABLE,
    TRANSFER_ID_VARIABLE,
    VIA_NODE_VARIABLE,
    VIA_DIALED_VARIABLE,
    VIA_CALL_ID_VARIABLE,
)
"""What the daemon reads back from a waiting call it adopts (AMI ``Status`` with
``Variables``): what the inbound dialplan set, and when the call joined the line."""

AFTER_HOURS_VARIABLE: Final = "CTI_AFTER_HOURS"
"""Channel variable: ``1`` set by the daemon when it found the line closed and takes a
message; the call record's outcome is then ``voicemail`` (not ``abandoned``)."""
VOICEMAIL_VARIABLE: Final = "CTI_VOICEMAIL"
"""Channel variable: ``1`` once the daemon's after-hours flow has dealt with the call (a
message taken, or the caller said nothing): the line's extension then hangs up instead of
holding. Unset (the daemon is down, or failed): the call is held and queued as usual."""
