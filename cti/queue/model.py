"""What waits in the one queue, and what comes out of it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Abandonment", "Position", "PositionMark", "WaitingCall"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingCall:
    """A call waiting for a seat (or being offered to one).

    Attributes:
        call_id: the call's id (the caller channel's ``linkedid``).
        line: the dialled number (``CTI_LINE``), e.g. ``12345`` or ``12315``.
        skills: skills a seat needs, all of them, at ``min_level`` or above.
        min_level: lowest skill level that may answer.
        language: the caller's language (dialect desk, ``en``...), ``None`` = any.
        priority_class: name of the call's priority class.
        priority: that class's points (higher is served first), resolved when enqueued.
        enqueued_at: when the call joined the line; kept across ring-no-answer.
        caller: the caller's number (sticky agent, repeat detection); may be empty.
        repeat_caller / callback / dispatch110: why the call has its class.
        last_seat / last_seen_at: the seat that last talked to this caller, and when
            (sticky agent); ``None`` when unknown.
        offers: how many times the call was offered to a seat without being answered.
    """

    call_id: str
    line: str
    skills: frozenset[str]
    min_level: int = 1
    language: str | None = None
    priority_class: str
    priority: int = 0
    enqueued_at: float
    caller: str = ""
    repeat_caller: bool = False
    callback: bool = False
    dispatch110: bool = False
    last_seat: str | None = None
    last_seen_at: float | None = None
    offers: int = 0

    def waited(self, now: float) -> float:
        """Seconds waited at *now* (never negative, even with a clock step)."""
        return max(0.0, now - self.enqueued_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionMark:
    """Where a call stood at one moment of its wait (the pop's queue-position history).

    ``event``: ``queued`` (joined the line), ``requeued`` (its offer failed, or a transfer
    put it back at the head), ``overflow`` (an overflow step widened its seats),
    ``offered`` (a seat was picked for it). ``position`` is 1-based overall; ``waiting``
    is how many calls were in the line then (itself included).
    """

    at: float
    event: str
    position: int
    waiting: int

    def to_json(self) -> dict[str, float | int | str]:
        return {
            "at": self.at,
            "event": self.event,
            "position": self.position,
            "waiting": self.waiting,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """Where a call stands: 1-based, overall and among calls needing each of its skills."""

    overall: int
    by_skill: dict[str, int] = field(default_factory=dict)

    @property
    def in_skill(self) -> int:
        """The worst of the per-skill positions (the one that decides its wait)."""
        return max(self.by_skill.values(), default=self.overall)


@dataclass(frozen=True, slots=True, kw_only=True)
class Abandonment:
    """Outcome: the caller hung up before talking to anyone (漏接; for the callback list).

    Attributes:
        during_offer: the caller hung up while a seat was reserved or ringing for them.
        seat_id: that seat, when ``during_offer``.
    """

    call_id: str
    line: str
    caller: str
    priority_class: str
    enqueued_at: float
    abandoned_at: float
    waited_s: float
    position: int
    during_offer: bool = False
    seat_id: str | None = None
