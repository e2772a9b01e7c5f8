"""Channel and bridge tracking, the Call model and its state machine (sans-IO)."""

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
    Trigger,
    Via,
    next_state,
)
from cti.calls.tracker import CallTracker, party_name

__all__ = [
    "ActiveCall",
    "CallAnswered",
    "CallConnected",
    "CallEnded",
    "CallNotification",
    "CallState",
    "CallSummary",
    "CallTracker",
    "HangupBy",
    "Outcome",
    "Transfer",
    "Trigger",
    "Via",
    "next_state",
    "party_name",
]
