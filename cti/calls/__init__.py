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
from cti.calls.tracker import VARIABLES_READ, CallTracker, party_name

__all__ = [
    "VARIABLES_READ",
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
