"""Seat states, reason codes, device states, the events a seat reacts to and its outputs."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

__all__ = [
    "AGENT_REASONS",
    "ROUTABLE_DEVICE",
    "Answer",
    "DeviceState",
    "DeviceStatus",
    "GoNotReady",
    "GoReady",
    "Hangup",
    "Login",
    "Logout",
    "OfferCancelled",
    "OfferFailed",
    "Pending",
    "PendingKind",
    "Reason",
    "Reserve",
    "Ring",
    "RingNoAnswer",
    "SeatEvent",
    "SeatOutput",
    "SeatState",
    "SeatStateChanged",
    "SeatStatus",
    "StartTimer",
    "WrapupDone",
    "WrapupExtend",
    "WrapupTimerExpired",
]


class SeatStatus(enum.StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    """示闲: may be offered a call."""
    NOT_READY = "not_ready"
    """示忙, with a :class:`Reason`."""
    RESERVED = "reserved"
    """The router chose this seat for a call; the connect is on its way."""
    RINGING = "ringing"
    TALKING = "talking"
    WRAP_UP = "wrap_up"
    """话后处理: timed; the agent can extend or end it."""


class Reason(enum.StrEnum):
    """Why a seat is not ready. The first five are the agent's, the rest the system's."""

    MEAL = "meal"
    MEETING = "meeting"
    TRAINING = "training"
    REST = "rest"
    OTHER = "other"
    LOGIN = "login"
    """Just logged in, not ready yet."""
    RONA = "rona"
    """Ring no answer: the seat was offered a call and did not answer in time."""
    DEVICE_UNAVAILABLE = "device_unavailable"
    """Asterisk reports the seat's endpoint unavailable (unregistered phone)."""
    CALLBACK = "callback"
    """Calling a citizen back from the missed-call list (漏接电话回拨)."""
    RESTART = "restart"
    """With ``numberplan.queue.after_restart: not_ready``: the daemon restarted while the seat
    was on a call; not offered calls until the agent says ready."""


AGENT_REASONS: Final = frozenset(
    {Reason.MEAL, Reason.MEETING, Reason.TRAINING, Reason.REST, Reason.OTHER}
)


class DeviceStatus(enum.StrEnum):
    """Asterisk's device states (``DeviceStateChange`` ``State``), as Asterisk spells them."""

    UNKNOWN = "UNKNOWN"
    NOT_INUSE = "NOT_INUSE"
    INUSE = "INUSE"
    BUSY = "BUSY"
    INVALID = "INVALID"
    UNAVAILABLE = "UNAVAILABLE"
    RINGING = "RINGING"
    RINGINUSE = "RINGINUSE"
    ONHOLD = "ONHOLD"

    @classmethod
    def parse(cls, text: str) -> DeviceStatus:
        """Asterisk's text (any case) to a status; anything else reads as ``UNKNOWN``."""
        try:
            return cls(text.strip().upper())
        except ValueError:
            return cls.UNKNOWN


# A ready seat is only offered calls when its device is in one of these states: UNKNOWN
# because Local channels (the testbed's seats) usually report no device state at all.
ROUTABLE_DEVICE: Final = frozenset({DeviceStatus.UNKNOWN, DeviceStatus.NOT_INUSE})
DEAD_DEVICE: Final = frozenset({DeviceStatus.UNAVAILABLE, DeviceStatus.INVALID})


class PendingKind(enum.StrEnum):
    NOT_READY = "not_ready"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """What the agent asked for during a call, applied when the call (and wrap-up) ends."""

    kind: PendingKind
    reason: Reason | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatState:
    """Snapshot of one seat: published (retained MQTT) and persisted on every change.

    Attributes:
        since: when the seat entered ``status`` (or, for not-ready, its reason).
        ready_since: start of the current idle period, for "longest idle first"; kept when
            an offer is cancelled by the caller so the seat does not lose its turn.
        wrapup_started / wrapup_until: the wrap-up window while in ``WRAP_UP``.
    """

    seat_id: str
    status: SeatStatus = SeatStatus.LOGGED_OUT
    since: float = 0.0
    reason: Reason | None = None
    call_id: str | None = None
    ready_since: float | None = None
    pending: Pending | None = None
    wrapup_started: float | None = None
    wrapup_until: float | None = None
    device: DeviceStatus = DeviceStatus.UNKNOWN

    def to_json(self) -> dict[str, Any]:
        """The state as published (MQTT `seats/{seat}/state`) and served (HTTP)."""
        pending = self.pending
        return {
            "seat": self.seat_id,
            "status": str(self.status),
            "reason": None if self.reason is None else str(self.reason),
            "since": self.since,
            "call_id": self.call_id,
            "pending": None
            if pending is None
            else {"kind": str(pending.kind), "reason": pending.reason and str(pending.reason)},
            "ready_since": self.ready_since,
            "wrapup_until": self.wrapup_until,
            "device": str(self.device),
        }

    @property
    def routable(self) -> bool:
        """Ready, and the device is not busy with something else or gone."""
        return self.status is SeatStatus.READY and self.device in ROUTABLE_DEVICE


# ------------------------------------------------------------------------ events in


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    ready: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class GoReady:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class GoNotReady:
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserve:
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    """The call the seat was talking on ended."""

    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCancelled:
    """The caller hung up while this seat was reserved or ringing for them."""

    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RingNoAnswer:
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapupTimerExpired:
    """The wrap-up timer fired; ``deadline`` tells a stale timer (wrap-up extended) apart."""

    deadline: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapupExtend:
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapupDone:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceState:
    """Asterisk's view of the seat's endpoint changed (``DeviceStateChange``)."""

    status: DeviceStatus


SeatEvent: TypeAlias = (
    Login
    | Logout
    | GoReady
    | GoNotReady
    | Reserve
    | Ring
    | Answer
    | Hangup
    | OfferCancelled
    | RingNoAnswer
    | WrapupTimerExpired
    | WrapupExtend
    | WrapupDone
    | DeviceState
)

# ------------------------------------------------------------------------ outputs


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatStateChanged:
    """Publish (``cti/seats/{seat}/state``, retained) and persist this snapshot."""

    state: SeatState
    previous: SeatStatus
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    """Call the core back at ``at`` (``name``/``key`` identify it; a newer one replaces)."""

    name: str
    key: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferFailed:
    """The seat cannot take the call it was offered: put the call back at the head."""

    seat_id: str
    call_id: str
    reason: Reason


SeatOutput: TypeAlias = SeatStateChanged | StartTimer | OfferFailed
