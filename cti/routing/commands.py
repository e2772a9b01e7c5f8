"""Commands the dispatcher returns: what the adapters must do (AMI, MQTT, database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cti.queue.model import Abandonment, PositionMark
from cti.seats.model import SeatState

__all__ = [
    "CallAnswered",
    "CancelRing",
    "Command",
    "CommandRejected",
    "ConnectCall",
    "PublishQueueSnapshot",
    "PublishSeatState",
    "QueueSnapshot",
    "RecordAbandonment",
    "StartTimer",
    "TransferOut",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectCall:
    """Ring *seat_id* for the held call (AMI: Redirect to the connect context that Dials
    ``endpoint`` with MixMonitor). The seat is reserved until answer, RONA or hangup."""

    call_id: str
    seat_id: str
    endpoint: str
    line: str
    ring_timeout_s: float
    step: str
    reason: str
    attempt: int
    queue_positions: tuple[PositionMark, ...] = ()  # its wait so far, for the pop


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRing:
    """Stop ringing *seat_id* for *call_id* and keep the caller on hold (RONA, device gone,
    seat logged out); the caller has been put back in the line."""

    call_id: str
    seat_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferOut:
    """A sub-centre line (分中心, e.g. 12366): transfer the call to ``number``."""

    call_id: str
    line: str
    number: str
    trunk_endpoint: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishSeatState:
    """Publish (retained) and persist a seat's new state."""

    state: SeatState
    previous: str
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSnapshot:
    """The line at a glance, for ``cti/queue/snapshot`` (retained) and supervisors."""

    at: float
    waiting: int
    offered: int
    by_class: dict[str, int]
    by_skill: dict[str, int]
    longest_wait_s: float
    ready_seats: int
    staffed_seats: int
    aht_s: float
    ewt_new_call_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishQueueSnapshot:
    snapshot: QueueSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    """Call :meth:`Dispatcher.tick` at or after ``at`` (a newer timer with the same
    ``name``/``key`` replaces this one). Ticking regularly (e.g. every 0.25 s) also works."""

    name: str
    key: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordAbandonment:
    """A caller hung up before talking to anyone: record it (KPIs, callback list)."""

    outcome: Abandonment


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """A seat answered a queued call (KPIs: answered within 15 s)."""

    call_id: str
    seat_id: str
    line: str
    priority_class: str
    waited_s: float
    step: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """An agent command that is impossible in the seat's state; nothing changed."""

    seat_id: str
    command: str
    reason: str


Command: TypeAlias = (
    ConnectCall
    | CancelRing
    | TransferOut
    | PublishSeatState
    | PublishQueueSnapshot
    | StartTimer
    | RecordAbandonment
    | CallAnswered
    | CommandRejected
)
