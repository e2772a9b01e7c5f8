"""The Call model: states and their transitions, and the frozen records that leave the core."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "ActiveCall",
    "CallAnswered",
    "CallConnected",
    "CallEnded",
    "CallNotification",
    "CallState",
    "CallSummary",
    "HangupBy",
    "Outcome",
    "Transfer",
    "TransferType",
    "Trigger",
    "Via",
    "next_state",
]

Outcome = Literal[
    "answered", "abandoned", "busy", "no_answer", "rejected", "failed", "voicemail", "ivr_only"
]
"""``ivr_only``: set by the core for a call on a line that never entered the line (the
progress query alone), which the tracker would call ``abandoned``."""
HangupBy = Literal["caller", "callee", "system"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """The county node a call crossed from over its trunk (docs/county-nodes.md): the
    node's name, what the citizen dialled there and the call's linkedid there (its id in
    the county's CDRs). Set from the trunk's checked ``X-CTI-*`` headers; empty when the
    node did not send one or it was refused."""

    node: str
    dialed: str = ""
    call_id: str = ""

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "dialed": self.dialed, "call_id": self.call_id}

    @classmethod
    def from_json(cls, data: object) -> Via | None:
        """Read back (a stored draft); anything but an object with a node is None."""
        if not isinstance(data, dict) or not isinstance(data.get("node"), str):
            return None
        return cls(
            node=data["node"],
            dialed=str(data.get("dialed") or ""),
            call_id=str(data.get("call_id") or ""),
        )


TransferType = Literal["blind", "attended", "redirect", "escalation_blind", "escalation_threeway"]


class CallState(enum.Enum):
    """Where a call is. One call = one Linkedid (plus merged consultation legs)."""

    WAITING = "waiting"  # in the dialplan: IVR, holding loop, back in line after RONA
    RINGING = "ringing"  # a seat (or an external number) is ringing
    TALKING = "talking"  # bridged with a seat / the party it was transferred to
    ENDED = "ended"


class Trigger(enum.Enum):
    RING = "ring"  # DialBegin towards a callee
    RING_END = "ring_end"  # DialEnd without answer
    ANSWER = "answer"  # caller bridged with a callee
    UNBRIDGE = "unbridge"  # the callee left (transfer, hangup of the callee leg)
    TRANSFER = "transfer"  # BlindTransfer / AttendedTransfer succeeded
    END = "end"  # the last channel hung up, or resync found it gone


_W, _R, _T, _E = CallState.WAITING, CallState.RINGING, CallState.TALKING, CallState.ENDED
_TRANSITIONS: Final[dict[tuple[CallState, Trigger], CallState]] = {
    (_W, Trigger.RING): _R,
    (_W, Trigger.RING_END): _W,
    (_W, Trigger.ANSWER): _T,
    (_W, Trigger.UNBRIDGE): _W,
    (_W, Trigger.END): _E,
    (_R, Trigger.RING): _R,
    (_R, Trigger.RING_END): _W,
    (_R, Trigger.ANSWER): _T,
    (_R, Trigger.UNBRIDGE): _R,
    (_R, Trigger.END): _E,
    # while talking, another leg may ring (consultation, transfer target)
    (_T, Trigger.RING): _T,
    (_T, Trigger.RING_END): _T,
    (_T, Trigger.ANSWER): _T,
    (_T, Trigger.UNBRIDGE): _W,
    (_T, Trigger.TRANSFER): _T,
    (_T, Trigger.END): _E,
    # Not here, so logged and counted: a transfer of a call nobody answered, and anything
    # after the end.
}


def next_state(state: CallState, trigger: Trigger) -> CallState | None:
    """The state after `trigger`, or None when the transition is impossible."""
    return _TRANSITIONS.get((state, trigger))


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    type: TransferType
    by: str  # the party that transferred (a seat)
    to: str  # where the caller went: a seat, or a number
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSummary:
    """How one call went. Times are epoch seconds from Asterisk's event timestamps.

    `history_complete` is False for a call adopted at a resync (the daemon was not
    connected when it started): its `started_at` comes from the channel's age and
    `answered_at`/`rang` may be missing.
    """

    call_id: str
    node: str
    caller: str
    caller_name: str
    dialed: str
    line: str
    started_at: float
    answered_at: float | None
    ended_at: float
    answered_by: str | None
    rang: tuple[str, ...]
    outcome: Outcome
    hangup_by: HangupBy
    cause: int | None
    transfers: tuple[Transfer, ...]
    wait_s: float | None
    talk_s: float | None
    history_complete: bool
    via: Via | None = None  # a county node's call: where it came from

    def to_json(self) -> dict[str, Any]:
        """The `cti replay` / call-record JSON object (see docs/call-records.md); ``via``
        only for a call that came over a county node's trunk."""
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "node": self.node,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "dialed": self.dialed,
            "line": self.line,
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "answered_by": self.answered_by,
            "rang": list(self.rang),
            "outcome": self.outcome,
            "hangup_by": self.hangup_by,
            "cause": self.cause,
            "transfers": [
                {"type": t.type, "by": t.by, "to": t.to, "at": t.at} for t in self.transfers
            ],
            "wait_s": self.wait_s,
            "talk_s": self.talk_s,
            "history_complete": self.history_complete,
        }
        if self.via is not None:
            out["via"] = self.via.to_json()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveCall:
    """A snapshot of a call in progress (for tests, the API and resync checks)."""

    call_id: str
    node: str
    state: CallState
    caller: str
    dialed: str
    line: str
    answered_by: str | None
    channels: tuple[str, ...]
    stale: bool
    history_complete: bool
    transfer_id: str = ""  # CTI_TRANSFER_ID: the 110 transfer the trunk said this call is
    started_at: float = 0.0  # its first channel's birth (for an adopted call: its age)
    via: Via | None = None  # a county node's call: where it came from (CTI_VIA_*)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    call_id: str
    node: str
    answered_by: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    summary: CallSummary


@dataclass(frozen=True, slots=True, kw_only=True)
class CallConnected:
    """The caller is now talking to `party` (every new callee: the first answer, and
    again after a transfer). `CallAnswered` comes only for the first."""

    call_id: str
    node: str
    party: str
    at: float


CallNotification = CallAnswered | CallConnected | CallEnded
