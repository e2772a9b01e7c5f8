"""The stored facts KPIs are computed from: one row per queue entry, ratings, seat time.

A **queue entry** is a call entering one line (12345, a special number, the 110 line, a
department line). A call put back in line after ring-no-answer stays the same entry (its
``offers`` grows); a call transferred to a department line or overflowing into another line
is a *new* entry there with the next ``entry_seq``, linked to the first by ``(node,
call_id)``. Every figure of docs/kpis.md is a function of these rows, so a report is
reproducible from the database and survives restarts (Asterisk's own queue counters do not).

The rows are validated when built: a time that is negative, NaN or infinite, an outcome
without the timestamps it implies, is a :class:`ValueError` naming the field, so a bad row
is refused at the edge instead of turning a ratio into NaN later.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

from cti.numberplan import Line
from cti.seats.model import Reason, SeatStatus

__all__ = [
    "IVR_ONLY",
    "NOT_OFFERED",
    "OFFERED",
    "Origin",
    "Outcome",
    "QueueEntry",
    "Rating",
    "SeatInterval",
    "line_facts",
]


class Outcome(enum.StrEnum):
    """How a queue entry ended."""

    ANSWERED = "answered"
    """A seat answered (connected_at is set). An answered entry a seat later transferred on
    (to a department, to 110/119/120/122) stays answered; ``transferred_to`` says where."""
    ABANDONED = "abandoned"
    """The caller hung up while waiting or ringing."""
    CALLBACK_REQUESTED = "callback_requested"
    """The caller left the line asking to be called back (漏接/预约回拨)."""
    VOICEMAIL = "voicemail"
    """The caller left a message while waiting (line full, wait too long)."""
    FALLBACK = "fallback"
    """The daemon was down: Asterisk's fallback dialplan took the call, fate unknown here."""
    TRANSFERRED_OUT = "transferred_out"
    """Left this line before any seat answered, sent elsewhere (overflow to another line,
    a sub-centre, an external number): the next entry of the call, if any, is offered."""
    AFTER_HOURS = "after_hours"
    """Outside service hours: the caller heard a message (or left one). IVR only."""
    BLACKLISTED = "blacklisted"
    """A nuisance number refused before the line. IVR only."""
    IVR_ONLY = "ivr_only"
    """Used only a self-service menu (progress query, survey call-in) and never asked for a
    person: today's call records store these as ``abandoned``; here they are not offered."""


OFFERED: Final = frozenset(
    {
        Outcome.ANSWERED,
        Outcome.ABANDONED,
        Outcome.CALLBACK_REQUESTED,
        Outcome.VOICEMAIL,
        Outcome.FALLBACK,
    }
)
"""Outcomes of an entry that asked for a person: 人工请求量 (offered)."""
IVR_ONLY: Final = frozenset({Outcome.AFTER_HOURS, Outcome.BLACKLISTED, Outcome.IVR_ONLY})
"""Outcomes counted apart, never as offered."""
NOT_OFFERED: Final = frozenset(Outcome) - OFFERED


class Origin(enum.StrEnum):
    """How the call came to this line."""

    DIRECT = "direct"  # dialled 12345
    SPECIAL_NUMBER = "special_number"  # a ministry special number answered by 12345
    POLICE_110 = "110"  # passed on by 110 (非警务警情分流)
    CALLBACK = "callback"  # a citizen calling back after a missed-call callback
    TRANSFER = "transfer"  # a seat transferred it here (a department line)
    OVERFLOW = "overflow"  # another line overflowed into this one


def line_facts(line: Line | None) -> tuple[str | None, Origin, str]:
    """A line's department, the origin of a call entering it and its priority class,
    from the number plan (a number not in the plan: none, direct, normal)."""
    if line is None:
        return None, Origin.DIRECT, "normal"
    department = line.department or None
    if line.dispatch110:
        origin = Origin.POLICE_110
    elif department is not None:
        origin = Origin.SPECIAL_NUMBER  # a ministry/department number folded in
    else:
        origin = Origin.DIRECT
    return department, origin, line.priority_class


def _check_time(name: str, value: float | None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        msg = f"{name} must be a finite number >= 0, got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    """One call's stay on one line. Times are epoch seconds; durations are seconds.

    ``outcome`` is ``None`` for an entry still in progress (waiting, ringing or talking): it
    counts in no figure except the live longest wait (see :func:`cti.kpis.compute`).

    ``wait_s`` runs from entering the line to the answer (answered) or to leaving (all
    other outcomes), ringing included; ``ring_s`` is the time seats rang for it (all
    offers), ``talk_s`` ends when the agent's leg ends (a survey after the agent hung up is
    not talk), ``wrapup_s`` is the answering seat's after-call work. ``offers`` is how many
    times a seat rang without answering (RONA) while this entry waited.
    """

    call_id: str
    node: str
    entry_seq: int = 1
    line: str
    department: str | None = None
    origin: Origin = Origin.DIRECT
    priority: str = "normal"
    entered_at: float
    first_offered_at: float | None = None
    connected_at: float | None = None
    left_at: float | None = None
    outcome: Outcome | None
    seat: str | None = None
    wait_s: float = 0.0
    ring_s: float = 0.0
    talk_s: float = 0.0
    wrapup_s: float = 0.0
    offers: int = 0
    transferred_to: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "entered_at",
            "first_offered_at",
            "connected_at",
            "left_at",
            "wait_s",
            "ring_s",
            "talk_s",
            "wrapup_s",
        ):
            _check_time(name, getattr(self, name))
        if self.entry_seq < 1:
            raise ValueError(f"entry_seq must be >= 1, got {self.entry_seq}")
        if self.offers < 0:
            raise ValueError(f"offers must be >= 0, got {self.offers}")
        if not self.call_id or not self.line:
            raise ValueError("call_id and line must not be empty")
        if self.outcome is None:
            if self.left_at is not None:
                raise ValueError("an entry in progress (outcome None) has no left_at")
        elif self.left_at is None:
            raise ValueError(f"a finished entry ({self.outcome}) needs left_at")
        if self.outcome is Outcome.ANSWERED and (self.connected_at is None or self.seat is None):
            raise ValueError("an answered entry needs connected_at and seat")

    @property
    def key(self) -> tuple[str, str]:
        """The call this entry belongs to: call ids are unique per node."""
        return (self.node, self.call_id)

    @property
    def offered(self) -> bool:
        return self.outcome in OFFERED

    @property
    def answered(self) -> bool:
        return self.outcome is Outcome.ANSWERED


@dataclass(frozen=True, slots=True, kw_only=True)
class Rating:
    """One survey answer (话务服务一次一评) for a call, by its stored label (e.g. 满意)."""

    call_id: str
    node: str
    label: str
    at: float

    def __post_init__(self) -> None:
        _check_time("at", self.at)

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.call_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatInterval:
    """A seat in one status (and reason, when not ready) from ``start`` to ``end``.

    ``end`` is ``None`` while the interval is open; it then counts up to ``now`` when the
    calculator is given one, and not at all otherwise.
    """

    seat: str
    status: SeatStatus
    reason: Reason | None = None
    start: float
    end: float | None = None

    def __post_init__(self) -> None:
        _check_time("start", self.start)
        _check_time("end", self.end)
        if self.end is not None and self.end < self.start:
            raise ValueError(f"interval of seat {self.seat} ends before it starts")
        if self.reason is not None and self.status is not SeatStatus.NOT_READY:
            raise ValueError(f"a reason goes with not_ready only, not {self.status}")

    def duration(self, now: float | None) -> float:
        """Seconds in this status; an open interval up to ``now`` (0 without one)."""
        if self.end is not None:
            return self.end - self.start
        if now is None:
            return 0.0
        return max(0.0, now - self.start)
